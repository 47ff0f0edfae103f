//! The fake platforms the demo runs against, one per wire format, and the
//! settings that point the daemon at them.

use std::time::Duration;

use tokenwarden::config::{ClientAuth, Flow, Settings};
use tokenwarden::domain::Provider;
use tokenwarden_fakes::{
    FakeBluesky, FakeGoogle, FakeGraph, FakeLinkedin, FakeOAuthServer, FakePinterest,
};

const DEMO_CLIENT: &str = "demo-client";

/// The fakes, one per platform wire format.
pub(super) struct DemoFakes {
    /// X-style strict rotating endpoint.
    pub(super) oauth: FakeOAuthServer,
    pub(super) pinterest: FakePinterest,
    pub(super) google: FakeGoogle,
    pub(super) linkedin: FakeLinkedin,
    pub(super) graph: FakeGraph,
    /// PDS and atproto authorization server; strict about replays, so the
    /// final check would catch one.
    pub(super) bluesky: FakeBluesky,
}

/// The demo's atproto OAuth client id (a client-metadata URL; never fetched).
const BLUESKY_CLIENT_ID: &str = "https://tokenwarden.invalid/oauth-client-metadata.json";

impl DemoFakes {
    pub(super) async fn start(secret: &str) -> std::io::Result<Self> {
        let linkedin = FakeLinkedin::start(DEMO_CLIENT, secret).await?;
        linkedin.set_access_lifetime(LINKEDIN_DEMO_LIFETIME);
        Ok(Self {
            oauth: FakeOAuthServer::start(DEMO_CLIENT, secret).await?,
            pinterest: FakePinterest::start(DEMO_CLIENT, secret).await?,
            google: FakeGoogle::start(DEMO_CLIENT, secret).await?,
            linkedin,
            graph: FakeGraph::facebook(DEMO_CLIENT, secret).await?,
            bluesky: FakeBluesky::start(BLUESKY_CLIENT_ID).await?,
        })
    }

    pub(super) fn configure(&self, settings: &mut Settings, secret: &str) {
        let endpoints = [
            (
                Provider::X,
                Flow::X,
                self.oauth.url("/x/2/oauth2/token"),
                None,
            ),
            (
                Provider::Pinterest,
                Flow::Pinterest,
                self.pinterest.token_url(),
                None,
            ),
            (
                Provider::Youtube,
                Flow::Google,
                self.google.token_url(),
                None,
            ),
            (
                Provider::LinkedinPerson,
                Flow::Linkedin,
                self.linkedin.token_url(),
                Some(self.linkedin.introspect_url()),
            ),
            (
                Provider::FacebookPage,
                Flow::Facebook,
                self.graph.exchange_url(),
                Some(self.graph.debug_token_url()),
            ),
        ];
        for (provider, flow, token_url, health_url) in endpoints {
            let section = settings.providers.get_mut(provider);
            section.flow = flow;
            section.token_url = Some(token_url);
            section.health_url = health_url;
            section.client_id = Some(DEMO_CLIENT.into());
            section.client_secret = Some(secret.to_owned().into());
            section.refresh_margin = Duration::from_secs(5);
            // Never-expiring tokens and LinkedIn accounts without a refresh
            // token are checked every few seconds instead of daily.
            section.health_check_interval = Duration::from_secs(8);
        }
        // The generic fake checks X's Basic client authentication.
        settings.providers.x.client_auth = ClientAuth::Basic;
        let bluesky = settings.providers.get_mut(Provider::Bluesky);
        bluesky.flow = Flow::Bluesky;
        bluesky.client_id = Some(BLUESKY_CLIENT_ID.into());
        bluesky.allowed_origins = vec![
            self.bluesky
                .origin()
                .parse()
                .expect("the fake's origin is a URL"),
        ];
        bluesky.refresh_margin = Duration::from_secs(5);
    }

    pub(super) fn calls(&self) -> u64 {
        self.oauth.call_count() as u64
            + self.pinterest.calls()
            + self.google.calls()
            + self.linkedin.calls()
            + u64::from(self.graph.calls())
            + u64::from(self.bluesky.pds_calls())
            + u64::from(self.bluesky.token_calls())
    }
}

/// LinkedIn's fake hands out access tokens this short-lived in the demo.
pub(super) const LINKEDIN_DEMO_LIFETIME: u64 = 30;
