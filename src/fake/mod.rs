//! Fake platforms on loopback, speaking the platforms' wire formats. They
//! serve the demo and the tests; they behave like strict real servers
//! (single-use rotating refresh tokens whose reuse revokes the whole family).

mod oauth;

pub use oauth::{
    CallRecord, ClientAuthSeen, FakeOAuthServer, FamilySpec, IssuedTokens, ScriptedResponse,
};
