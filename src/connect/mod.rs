//! The connect flow: the OAuth authorization-code dance run by the daemon
//! itself, so the API tier never holds a client secret. `POST /v1/connect`
//! starts it (`start`), the platform's redirect or `POST
//! /v1/connect/exchange` finishes it (`finish`), and the account is
//! registered exactly as `POST /v1/accounts` registers one.
//!
//! `connector` is what each platform implements; `exchange` the shared
//! RFC 6749 code exchange; `pkce` the verifier and state; `request` the
//! checks of what a caller sends; `sealed` the secrets kept between the
//! steps; `service` the flow itself. The platforms' connectors live in
//! `platforms`.

mod connector;
mod error;
pub mod exchange;
pub mod pkce;

pub use connector::{
    Authorization, Begin, Choice, ChoiceOption, Chosen, Complete, Connected, ConnectedAccount,
    Connector, SessionSecrets,
};
pub use error::ConnectError;
mod platforms;
mod request;
mod sealed;
mod service;

pub use platforms::bluesky::client_metadata;

pub use service::{Callback, ConnectService, Failed, Finished, Landed, StartRequest, Started};
