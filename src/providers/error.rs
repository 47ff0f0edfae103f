use std::fmt;
use std::time::Duration;

use crate::domain::Outcome;

/// How a failed provider call must be treated. The status rules hang on
/// this: only `RejectedExpired` and `RejectedRevoked` may change an
/// account's status; `Config` is the operator's problem, never the user's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Network, timeout, 5xx, malformed answer: retry later.
    Transient,
    /// 429 or a platform's throttling answer: retry after the reset.
    RateLimited,
    /// The grant is expired or invalid: the user must reconnect.
    RejectedExpired,
    /// The user or the platform revoked access.
    RejectedRevoked,
    /// The app itself is refused (invalid_client, unauthorized_client, ...).
    Config,
}

impl FailureKind {
    pub fn outcome(self) -> Outcome {
        match self {
            FailureKind::Transient => Outcome::TransientError,
            FailureKind::RateLimited => Outcome::RateLimited,
            FailureKind::RejectedExpired => Outcome::RejectedExpired,
            FailureKind::RejectedRevoked => Outcome::RejectedRevoked,
            FailureKind::Config => Outcome::ConfigError,
        }
    }
}

/// A classified provider failure. `message` is for humans and is scrubbed of
/// credentials by the engine before it is stored or logged.
#[derive(Clone, Debug)]
pub struct ProviderError {
    pub kind: FailureKind,
    pub http_status: Option<u16>,
    /// The platform's own error code (`invalid_grant`, `190`, ...).
    pub code: Option<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The failure is this account's own (its instance, its throttle, its
    /// disabled login), not the platform's: it must not pause the platform.
    pub account_only: bool,
    /// The daemon does not know this answer's shape: it is recorded
    /// verbatim, retried with backoff, counted per platform and HTTP status,
    /// and never changes a status or pauses a platform (always `account_only`).
    pub unrecognised: bool,
    /// The platform said the account itself is inactive (deactivated,
    /// disabled, pending approval): it cannot post, whatever its token.
    pub account_inactive: bool,
}

impl ProviderError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            http_status: None,
            code: None,
            message: message.into(),
            retry_after: None,
            account_only: false,
            unrecognised: false,
            account_inactive: false,
        }
    }

    /// An answer whose shape no row of the platform's table describes. The
    /// text is the platform's own, kept verbatim (shortened, control
    /// characters flattened; the engine scrubs credentials).
    pub fn unrecognised(status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let text = if text.trim().is_empty() {
            "(empty body)".to_owned()
        } else {
            crate::providers::token_response::short(text.trim())
        };
        let mut error = Self::new(FailureKind::Transient, text).with_status(status);
        error.account_only = true;
        error.unrecognised = true;
        error
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Transient, message)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Marks the failure as the account's own (see `account_only`).
    pub fn account_scoped(mut self) -> Self {
        self.account_only = true;
        self
    }

    /// Marks the answer as the platform saying the account is inactive (see
    /// `account_inactive`); the message is the reason shown in health.
    pub fn inactive(mut self) -> Self {
        self.account_inactive = true;
        self.account_only = true;
        self
    }

    /// Whether the failure says something about the platform as a whole, and
    /// so counts towards pausing it. A rejection is the platform answering
    /// properly about one account; an account-scoped failure is that
    /// account's alone.
    pub fn affects_platform(&self) -> bool {
        !self.account_only
            && matches!(
                self.kind,
                FailureKind::Transient | FailureKind::RateLimited | FailureKind::Config
            )
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unrecognised {
            f.write_str("unrecognised answer: ")?;
        }
        if let Some(status) = self.http_status {
            write!(f, "HTTP {status}: ")?;
        }
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {}
