//! Query-string handling shared by the listing endpoints: rejections as the
//! API's own 422, page sizes, and cursors the API did not hand out.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

use super::ApiError;

pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.body_text(),
        )
    })
}

/// `limit`, or `default` when absent; 422 outside 1..=`max`.
pub fn limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_field(
            "limit",
            format!("limit: must be between 1 and {max}"),
        )),
    }
}

/// A cursor parameter this API never returned.
pub fn bad_cursor(field: &str) -> ApiError {
    ApiError::invalid_field(field, format!("{field}: not a cursor this API returned"))
}
