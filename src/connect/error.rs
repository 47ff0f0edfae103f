//! Why a connect flow stopped, as a stable code for the API tier, an HTTP
//! status, and a message that names what went wrong without repeating any
//! code, verifier, token or secret.

use crate::providers::ProviderError;
use crate::providers::token_response::short;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ConnectError {
    /// Stable and documented: `state_unknown`, `state_expired`,
    /// `state_reused`, `access_denied`, `redirect_not_allowed`, `exchange_failed`,
    /// `identity_failed`, `account_mismatch`, `invalid_request`,
    /// `not_configured`, `platform_unavailable`.
    pub code: &'static str,
    pub message: String,
    /// The HTTP status of the API answer.
    pub status: u16,
}

impl ConnectError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status,
        }
    }

    /// 404: no flow has this state (a forged or mistyped one).
    pub fn state_unknown() -> Self {
        Self::new(
            "state_unknown",
            404,
            "state is unknown: it was never issued here, or its session was removed",
        )
    }

    pub fn state_expired() -> Self {
        Self::new(
            "state_expired",
            400,
            "state has expired: start the connection again",
        )
    }

    pub fn state_reused() -> Self {
        Self::new(
            "state_reused",
            400,
            "state was already used: each authorization can be completed once",
        )
    }

    /// The user declined, or the platform refused the authorization request:
    /// `error` is the platform's code (`access_denied`, ...).
    pub fn declined(error: &str, description: Option<&str>) -> Self {
        let error = short(error);
        let message = match description.map(short) {
            Some(text) if !text.is_empty() => format!("the platform answered {error}: {text}"),
            _ => format!("the platform answered {error}"),
        };
        Self::new("access_denied", 400, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new("invalid_request", 422, message)
    }

    /// 403: a well-formed `redirect_after` the configuration does not allow.
    pub fn redirect_not_allowed() -> Self {
        Self::new(
            "redirect_not_allowed",
            403,
            "redirect_after: not under any of connect.allowed_redirects",
        )
    }

    pub fn not_configured(message: impl Into<String>) -> Self {
        Self::new("not_configured", 409, message)
    }

    pub fn account_mismatch(message: impl Into<String>) -> Self {
        Self::new("account_mismatch", 409, message)
    }

    /// The platform refused the code (an OAuth error answer): 502, since the
    /// request was right and the platform said no.
    pub fn exchange_failed(message: impl Into<String>) -> Self {
        Self::new("exchange_failed", 502, message)
    }

    /// The platform's answer about the account could not be read.
    pub fn identity_failed(message: impl Into<String>) -> Self {
        Self::new("identity_failed", 502, message)
    }

    pub fn platform_unavailable(message: impl Into<String>) -> Self {
        Self::new("platform_unavailable", 503, message)
    }

    /// A failed call to the platform during `stage` ("code exchange",
    /// "profile"), classified: an OAuth error answer refuses the
    /// exchange, an outage is unavailable, anything else is unreadable.
    pub fn from_provider(stage: &str, error: ProviderError) -> Self {
        use crate::providers::FailureKind::*;
        let detail = match (&error.code, error.http_status) {
            (Some(code), Some(status)) => format!("HTTP {status}, {code}: {}", error.message),
            (None, Some(status)) => format!("HTTP {status}: {}", error.message),
            (Some(code), None) => format!("{code}: {}", error.message),
            (None, None) => error.message.clone(),
        };
        let message = format!("{stage}: {detail}");
        match error.kind {
            Transient | RateLimited => Self::platform_unavailable(message),
            _ if stage.contains("exchange") => Self::exchange_failed(message),
            _ => Self::identity_failed(message),
        }
    }

    /// For the browser's redirect: the OAuth error code the API tier sees.
    pub fn redirect_error(&self) -> &'static str {
        match self.code {
            "access_denied" => "access_denied",
            "platform_unavailable" => "temporarily_unavailable",
            "invalid_request" | "not_configured" | "redirect_not_allowed" => "invalid_request",
            _ => "server_error",
        }
    }
}
