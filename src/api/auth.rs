//! Bearer API keys: any configured key is accepted (so keys rotate without
//! downtime), compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

/// The credential of `Authorization: Bearer <key>`; the scheme name is
/// case-insensitive (RFC 9110 11.1).
fn bearer_credential(value: &str) -> Option<&str> {
    let (scheme, credential) = value.trim_start().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

pub async fn require_api_key(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credential);
    let accepted = presented.is_some_and(|presented| {
        // Every key is compared, so timing does not tell which one matched.
        state.inner.keys.iter().fold(false, |found, key| {
            let equal: bool = key
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into();
            found | equal
        })
    });
    if accepted {
        return next.run(request).await;
    }
    let message = if presented.is_none() {
        "missing bearer API key: send Authorization: Bearer <key>"
    } else {
        "invalid API key"
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tokenwarden\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::bearer_credential;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in [
            "Bearer k",
            "bearer k",
            "BEARER k",
            "BeArEr   k ",
            " Bearer k",
        ] {
            assert_eq!(bearer_credential(header), Some("k"), "{header:?}");
        }
        for header in ["k", "Basic k", "Bearer", "Bearer ", "Bearerk", "Token k"] {
            assert_eq!(bearer_credential(header), None, "{header:?}");
        }
    }
}
