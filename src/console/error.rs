//! Every console failure is an HTML page with its status, saying what went
//! wrong in words for an operator; internal details go to the log only.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use crate::engine::EngineError;

#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A defect: logged, and shown as a generic failure.
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "console: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; see the daemon's log.",
        )
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "console: database error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The database did not answer; try again shortly.",
        )
    }
}

impl From<EngineError> for ConsoleError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => Self::not_found(format!("There is no account {id}.")),
            EngineError::Disconnected(id) => Self::new(
                StatusCode::CONFLICT,
                format!("Account {id} is disconnected; only a reconnect brings it back."),
            ),
            EngineError::InFlightTimeout { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "A refresh of this account is still running elsewhere; try again shortly.",
            ),
            EngineError::Database(e) => {
                tracing::warn!(error = %e, "console: database error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database did not answer; try again shortly.",
                )
            }
            other => {
                tracing::error!(error = %other, "console: engine error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error; see the daemon's log.",
                )
            }
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " · tokenwarden" }
                    link rel="icon" href="data:,";
                }
                body {
                    main {
                        h1 { (title) }
                        p { (self.message) }
                    }
                }
            }
        };
        (self.status, Html(body.into_string())).into_response()
    }
}
