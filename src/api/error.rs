//! Every error the API answers with: `{"error": {"code", "message", ...}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::engine::EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    // Boxed: handlers return Result<_, ApiError> everywhere.
    pub body: Box<ErrorBody>,
    pub retry_after: Option<u64>,
    /// Extra top-level members beside `error` (the account on a 409).
    pub extra: Option<Box<(&'static str, serde_json::Value)>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `not_found`,
    /// `invalid_field`, `invalid_json`, `token_expired`, `revoked`,
    /// `provider_unavailable`, `rate_limited`, `provider_config_error`,
    /// `too_many_requests`, `disconnected`, `unavailable`, ...
    pub code: String,
    pub message: String,
    /// The field a validation error is about (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The platform's HTTP status, when a platform answered (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<u16>,
    /// Seconds until a retry makes sense (409, 429, 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.into(),
                    field: None,
                    provider_status: None,
                    retry_after: None,
                },
            }),
            retry_after: None,
            extra: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message);
        e.body.error.field = Some(field.to_owned());
        e
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self.body.error.retry_after = Some(seconds);
        self
    }

    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}; see the daemon's log"),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        tracing::warn!(error = %error, "database error in a request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is not reachable; try again",
        )
        .with_retry_after(5)
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match &error {
            EngineError::NotFound(id) => Self::not_found(format!("unknown account {id}")),
            EngineError::Disconnected(id) => Self::new(
                StatusCode::CONFLICT,
                "disconnected",
                format!("account {id} is disconnected; register it again to reconnect"),
            ),
            EngineError::Credentials { .. } => {
                Self::internal("stored credentials cannot be decrypted", &error)
            }
            EngineError::Internal(_) => {
                Self::internal("the refresh stopped on an internal error", &error)
            }
            EngineError::InFlightTimeout { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "refresh_in_flight",
                error.to_string(),
            )
            .with_retry_after(5),
            EngineError::Database(e) => {
                tracing::warn!(error = %e, "database error in a request");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is not reachable; try again",
                )
                .with_retry_after(5)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut value = serde_json::to_value(&self.body).expect("error body serializes");
        if let (Some(extra), Some(object)) = (self.extra, value.as_object_mut()) {
            let (key, extra) = *extra;
            object.insert(key.to_owned(), extra);
        }
        let mut response = (self.status, Json(value)).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}
