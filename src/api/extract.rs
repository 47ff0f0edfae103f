//! Extractors for what a request carries (JSON body, path id, query
//! string) whose every rejection is the API's own JSON error, naming the
//! field and never repeating the value given.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::domain::AccountId;
use crate::registration::{self, AccountSpec, SpecError};

/// A registration body: `application/json` (or `+json`), within the body
/// limit, parsed by [`registration::parse_spec`].
pub struct SpecBody(pub AccountSpec);

impl<S: Send + Sync> FromRequest<S> for SpecBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        JsonBody::from_request(request, state)
            .await
            .map(|JsonBody(spec)| SpecBody(spec))
    }
}

/// Any JSON request body, read with the same rules as a registration.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    payload_too_large()
                } else {
                    ApiError::bad_request("invalid_body", "the request body could not be read")
                }
            })?;
        registration::parse_json(&bytes)
            .map(JsonBody)
            .map_err(|e| match e {
                SpecError::Syntax(message) => {
                    ApiError::bad_request("invalid_json", format!("the body is {message}"))
                }
                SpecError::Field(e) => ApiError::invalid_field(&e.field, e.to_string()),
            })
    }
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than api.max_body_bytes allows",
    )
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// The `{id}` of an account route. A string no id could be (not UTF-8, a
/// control character) is 422 on `id`; a well-formed string that is not an
/// account id names no account: 404. Neither repeats what was sent.
pub struct AccountPath(pub AccountId);

impl<S: Send + Sync> FromRequestParts<S> for AccountPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(_) => {
                    ApiError::invalid_field("id", "id: is not valid UTF-8 once percent-decoded")
                }
                other => ApiError::internal("the route has no id", &other),
            })?;
        parse_account_id(&raw).map(AccountPath)
    }
}

pub fn parse_account_id(raw: &str) -> Result<AccountId, ApiError> {
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "id",
            "id: must not contain control characters (such as NUL)",
        ));
    }
    raw.parse().map_err(|_| {
        ApiError::not_found("no account has this id (ids are acc_ and 32 hexadecimal digits)")
    })
}

/// A query string, deserialized with the field named on failure and the
/// value left out.
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes());
    let deserializer = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = registration::safe_path(error.path());
        let e = registration::field_error(&path, &error.into_inner().to_string());
        ApiError::invalid_field(&e.field, e.to_string())
    })
}

/// A query string as the handler's parameters (see [`query`]).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        query(parts.uri.query()).map(Params)
    }
}

/// A text query parameter: bounded, and with no control characters (NUL
/// cannot even be stored, so it could never match).
pub fn text_param(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid_field(
            field,
            format!("{field}: must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field}: must not contain control characters (such as NUL)"),
        ));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let ok = |v: &str| is_json(Some(&header::HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/+json"));
        assert!(!ok("application/jsonx"));
        assert!(!is_json(None));
    }
}
