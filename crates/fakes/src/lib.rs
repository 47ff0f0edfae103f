//! Fake platforms on loopback, speaking the platforms' wire formats. They
//! serve the demo and the tests; they behave like strict real servers
//! (single-use rotating refresh tokens whose reuse revokes the whole family).

mod authorize;
mod bluesky;
mod google;
mod linkedin;
mod mastodon;
mod meta_graph;
mod meta_login;
mod oauth;
mod pinterest;
mod server;
mod tiktok;
mod x;

pub use authorize::{Consent, Desk, Granted, Rules, User};
pub use bluesky::{
    BlueskyAccount, BlueskyAccountState, FakeBluesky, IssuedOAuth, IssuedSession, OAuthSessionSpec,
    SessionSpec,
};
pub use google::{FakeGoogle, GoogleGrant, YOUTUBE_UPLOAD_SCOPE};
pub use linkedin::{
    FakeLinkedin, LINKEDIN_REFRESH_LIFETIME, LinkedinOrganization, LinkedinTokenState,
};
pub use mastodon::{FakeMastodon, MastodonApp, MastodonTokenState};
pub use meta_graph::{
    FakeGraph, GraphTokenKind, GraphTokenState, LONG_LIVED_SECONDS, graph_error_body,
};
pub use meta_login::{FakeInstagramAccount, FakePage, SHORT_LIVED_SECONDS};
pub use oauth::{
    CallRecord, ClientAuthSeen, FakeOAuthServer, FamilySpec, IssuedTokens, ScriptedResponse,
};
pub use pinterest::{FakePinterest, PINTEREST_REFRESH_LIFETIME, PinterestGrant};
pub use tiktok::{FakeTiktok, TIKTOK_ACCESS_LIFETIME, TIKTOK_REFRESH_LIFETIME};
pub use x::FakeX;
