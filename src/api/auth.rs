//! Bearer API keys: any configured key is accepted (so keys rotate without
//! downtime), compared in constant time.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

pub async fn require_api_key(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
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
