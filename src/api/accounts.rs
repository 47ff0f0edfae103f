//! `/v1/accounts`: register, list, show, force a refresh, hand out a valid
//! access token, read attempts, disconnect.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::extract::{AccountPath, Params, SpecBody, text_param};
use super::params::{decode_attempts_cursor, decode_list_cursor, encode_list_cursor, limit};
use super::views::{AccountView, account_view};
use super::{ApiError, ApiState};
use crate::domain::RefreshReport;
use crate::domain::{AccountStatus, Outcome, Provider, Trigger};
use crate::engine::{EngineError, TokenUnavailable};
use crate::registration::AccountSpec;
use crate::store::accounts::{self, ListCursor, ListFilter};
use crate::store::attempts;

/// Register an account, or reconnect it (same workspace, provider and
/// external id): a reconnect replaces the credentials, sets ACTIVE, clears
/// failures and emits a recovery event.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts",
    request_body = AccountSpec,
    responses(
        (status = 201, description = "Registered", body = AccountView),
        (status = 200, description = "Reconnected", body = AccountView),
        (status = 401, body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 422, description = "A field is invalid; `error.field` or the message names it", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<ApiState>,
    SpecBody(spec): SpecBody,
) -> Result<Response, ApiError> {
    let new = spec
        .into_new_account(Utc::now())
        .map_err(|e| ApiError::invalid_field(&e.field, e.to_string()))?;
    let engine = &state.inner.engine;
    let policy = engine.config().policy(new.provider);
    let keyring = engine.keyring();
    let registered = accounts::register(&state.inner.pool, keyring, policy, &new).await?;
    if registered.status_changed {
        crate::metrics::record_status_change(new.provider, AccountStatus::Active);
    }
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tracing::info!(account_id = %registered.account.id, provider = %new.provider, created = registered.created, "account registered");
    Ok((status, Json(account_view(engine, &registered.account))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    provider: Option<Provider>,
    /// Given DISCONNECTED, lists disconnected accounts.
    status: Option<AccountStatus>,
    /// No control characters.
    #[param(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    workspace_id: Option<String>,
    /// Part of the handle or display name, any case; no control characters.
    #[param(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    q: Option<String>,
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page, as returned; any other value is 422.
    #[param(pattern = r"^[0-9]{1,18}-acc_[0-9a-f]{32}$")]
    cursor: Option<String>,
    /// Also list DISCONNECTED accounts.
    #[serde(default)]
    include_disconnected: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountPage {
    pub items: Vec<AccountView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The query as a store filter, every parameter checked.
fn list_filter(q: ListQuery) -> Result<ListFilter, ApiError> {
    let limit = limit(q.limit, 50, 100)?;
    Ok(ListFilter {
        status: q.status,
        provider: q.provider,
        workspace_id: text_param("workspace_id", q.workspace_id, 255)?,
        query: text_param("q", q.q, 255)?.filter(|s| !s.trim().is_empty()),
        include_disconnected: q.include_disconnected,
        after: q.cursor.as_deref().map(decode_list_cursor).transpose()?,
        // One more than asked tells whether another page exists.
        limit: limit + 1,
        ..ListFilter::default()
    })
}

/// List accounts, newest connected first, keyset-paginated.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    params(ListQuery),
    responses(
        (status = 200, body = AccountPage),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    Params(q): Params<ListQuery>,
) -> Result<Json<AccountPage>, ApiError> {
    let filter = list_filter(q)?;
    let limit = filter.limit - 1;
    let mut rows = accounts::list(&state.inner.pool, &filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_list_cursor(&ListCursor::of(r))))
        .flatten();
    let engine = &state.inner.engine;
    Ok(Json(AccountPage {
        items: rows.iter().map(|r| account_view(engine, r)).collect(),
        next_cursor,
    }))
}

/// One account with its health.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id: acc_ and 32 lowercase hexadecimal digits", pattern = r"^acc_[0-9a-f]{32}$")),
    responses(
        (status = 200, body = AccountView),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<ApiState>,
    AccountPath(id): AccountPath,
) -> Result<Json<AccountView>, ApiError> {
    let row = accounts::get(&state.inner.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown account {id}")))?;
    Ok(Json(account_view(&state.inner.engine, &row)))
}

/// The API's reading of a failed refresh, for 409 answers.
fn refresh_failure(report: &RefreshReport) -> ApiError {
    let code = match report.outcome {
        Outcome::RejectedExpired => "token_expired",
        Outcome::RejectedRevoked => "revoked",
        Outcome::RateLimited => "rate_limited",
        Outcome::ConfigError => "provider_config_error",
        Outcome::TransientError => "provider_unavailable",
        Outcome::Skipped => "not_refreshed",
        Outcome::Refreshed | Outcome::Healthy => "none",
    };
    let message = report
        .message
        .clone()
        .unwrap_or_else(|| format!("refresh ended {}", report.outcome));
    let mut error = ApiError::new(StatusCode::CONFLICT, code, message);
    error.body.error.provider_status = report.http_status;
    if let Some(at) = report.retry_at {
        let seconds = (at - Utc::now()).num_seconds().max(1) as u64;
        error.body.error.retry_after = Some(seconds);
    }
    error
}

/// Refresh now, through the same single-flight and lease as the scheduler:
/// concurrent calls share one platform call.
#[utoipa::path(post, path = "/v1/accounts/{id}/refresh", tag = "accounts",
    params(("id" = String, Path, description = "Account id: acc_ and 32 lowercase hexadecimal digits", pattern = r"^acc_[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "Refreshed (or, for tokens that never expire, checked)", body = AccountView),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "The refresh failed: `error.code` is token_expired, revoked, rate_limited, provider_unavailable or provider_config_error, with `provider_status` and `retry_after`; `account` holds the account after the attempt", body = super::error::ErrorBody),
        (status = 429, description = "This account was force-refreshed moments ago; see Retry-After", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn refresh(
    State(state): State<ApiState>,
    AccountPath(id): AccountPath,
) -> Result<Json<AccountView>, ApiError> {
    let report = match forced_refresh(
        &state.inner.engine,
        &id,
        state.inner.force_refresh_min_interval,
    )
    .await?
    {
        ForcedRefresh::Ran(report) => report,
        ForcedRefresh::TooSoon {
            since_seconds,
            wait_seconds,
            min_interval_seconds,
        } => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "account {id} was force-refreshed {since_seconds}s ago; at most one forced refresh per {min_interval_seconds}s"
                ),
            )
            .with_retry_after(wait_seconds));
        }
    };
    let row = accounts::get(&state.inner.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown account {id}")))?;
    let view = account_view(&state.inner.engine, &row);
    if report.succeeded() {
        return Ok(Json(view));
    }
    let mut error = refresh_failure(&report);
    error.extra = Some(Box::new((
        "account",
        serde_json::to_value(&view).expect("account view serializes"),
    )));
    Err(error)
}

/// What a forced refresh came to.
pub enum ForcedRefresh {
    /// It ran (or joined one that finished after it was asked for).
    Ran(RefreshReport),
    /// The account was force-refreshed moments ago: no platform call.
    TooSoon {
        since_seconds: i64,
        wait_seconds: u64,
        min_interval_seconds: i64,
    },
}

/// A forced refresh under `api.force_refresh_min_interval`, through the
/// engine's single flight and lease: the API's `POST .../refresh` and the
/// console's Refresh now both come here.
pub async fn forced_refresh(
    engine: &crate::engine::Engine,
    id: &crate::domain::AccountId,
    min_interval: std::time::Duration,
) -> Result<ForcedRefresh, EngineError> {
    // Taken before the limit is checked: a refresh that finishes after this
    // moment (one this caller raced past the check) is this caller's answer.
    let requested_at = Utc::now();
    // Counted from the attempt history, so the limit holds across replicas;
    // callers arriving while a refresh is in flight join it instead.
    let min_interval = crate::policy::delta(min_interval);
    if let Some(last) = attempts::last_forced(engine.pool(), id).await? {
        let since = Utc::now() - last;
        // A forced refresh that finished after this request arrived is
        // this request's answer (the engine joins it), never a 429.
        if since < min_interval && last < requested_at {
            return Ok(ForcedRefresh::TooSoon {
                since_seconds: since.num_seconds().max(0),
                wait_seconds: (min_interval - since).num_seconds().max(1) as u64,
                min_interval_seconds: min_interval.num_seconds(),
            });
        }
    }
    engine
        .refresh_requested_at(id, Trigger::Forced, requested_at)
        .await
        .map(ForcedRefresh::Ran)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccessTokenBody {
    pub access_token: String,
    pub token_type: &'static str,
    pub provider: Provider,
    /// None: the token does not expire.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A currently valid access token; refreshed first when it is inside its
/// refresh window or expired. Never cached (`Cache-Control: no-store`).
#[utoipa::path(get, path = "/v1/accounts/{id}/access-token", tag = "accounts",
    params(("id" = String, Path, description = "Account id: acc_ and 32 lowercase hexadecimal digits", pattern = r"^acc_[0-9a-f]{32}$")),
    responses(
        (status = 200, body = AccessTokenBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "No valid token can be had: the account needs a reconnect, or the token expired and the refresh failed", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn access_token(
    State(state): State<ApiState>,
    AccountPath(id): AccountPath,
) -> Result<Response, ApiError> {
    let engine = &state.inner.engine;
    let token = match engine.access_token(&id).await {
        Ok(token) => token,
        Err(TokenUnavailable::Engine(e)) => return Err(e.into()),
        Err(TokenUnavailable::Status(status, reason)) => {
            let code = match status {
                AccountStatus::Revoked => "revoked",
                _ => "token_expired",
            };
            let message = match reason {
                Some(reason) => {
                    format!("the account is {status} ({reason}); the user must reconnect")
                }
                None => format!("the account is {status}; the user must reconnect"),
            };
            return Err(ApiError::new(StatusCode::CONFLICT, code, message));
        }
        Err(TokenUnavailable::Refresh(report)) => return Err(refresh_failure(&report)),
    };
    let row = accounts::get(&state.inner.pool, &id)
        .await?
        .ok_or_else(|| ApiError::from(EngineError::NotFound(id.clone())))?;
    let body = AccessTokenBody {
        access_token: token.expose().to_owned(),
        token_type: "Bearer",
        provider: row.provider,
        expires_at: row.token_expires_at,
    };
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response())
}

/// Disconnect: revoke the grant at the platform where it supports that,
/// wipe the stored credentials, mark DISCONNECTED, emit an event.
#[utoipa::path(delete, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id: acc_ and 32 lowercase hexadecimal digits", pattern = r"^acc_[0-9a-f]{32}$")),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, description = "Unknown or already disconnected", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn disconnect(
    State(state): State<ApiState>,
    AccountPath(id): AccountPath,
) -> Result<StatusCode, ApiError> {
    match state.inner.engine.disconnect(&id).await? {
        Some(done) => {
            tracing::info!(account_id = %id, revocation = ?done.revoked, "account disconnected");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found(format!(
            "unknown or already disconnected account {id}"
        ))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page, as returned.
    #[param(pattern = r"^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub id: i64,
    pub trigger: Trigger,
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub http_status: Option<i32>,
    pub provider_error_code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptPage {
    /// Newest first.
    pub items: Vec<AttemptView>,
    pub next_cursor: Option<String>,
    /// All of the account's attempts, by outcome.
    pub counts: BTreeMap<String, i64>,
}

/// The account's refresh attempts, newest first, with counts by outcome.
#[utoipa::path(get, path = "/v1/accounts/{id}/attempts", tag = "accounts",
    params(("id" = String, Path, description = "Account id: acc_ and 32 lowercase hexadecimal digits", pattern = r"^acc_[0-9a-f]{32}$"), AttemptsQuery),
    responses(
        (status = 200, body = AttemptPage),
        (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn attempts(
    State(state): State<ApiState>,
    AccountPath(id): AccountPath,
    Params(q): Params<AttemptsQuery>,
) -> Result<Json<AttemptPage>, ApiError> {
    let limit = limit(q.limit, 50, 100)?;
    let before = q
        .cursor
        .as_deref()
        .map(decode_attempts_cursor)
        .transpose()?;
    let pool = &state.inner.pool;
    if accounts::get(pool, &id).await?.is_none() {
        return Err(ApiError::not_found(format!("unknown account {id}")));
    }
    let mut rows = attempts::page(pool, &id, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let counts = attempts::counts_by_outcome(pool, &id)
        .await?
        .into_iter()
        .collect();
    Ok(Json(AttemptPage {
        items: rows
            .into_iter()
            .map(|r| AttemptView {
                id: r.id,
                trigger: r.trigger,
                outcome: r.outcome,
                started_at: r.started_at,
                finished_at: r.finished_at,
                duration_ms: r.duration_ms,
                http_status: r.http_status,
                provider_error_code: r.provider_error_code,
                message: r.message,
            })
            .collect(),
        next_cursor,
        counts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::extract::query;
    use proptest::prelude::*;

    fn parse(raw: &str) -> Result<ListFilter, ApiError> {
        list_filter(query::<ListQuery>(Some(raw))?)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any query string: a filter whose values are within their
        /// documented bounds, or 422 naming a field.
        #[test]
        fn any_listing_query(raw in prop_oneof![
            ".{0,120}",
            "((limit|q|workspace_id|cursor|status|provider|include_disconnected)=[%0-9a-zA-Z_|.-]{0,20}&?){0,6}",
        ]) {
            match parse(&raw) {
                Ok(filter) => {
                    prop_assert!((2..=101).contains(&filter.limit));
                    for text in [&filter.workspace_id, &filter.query].into_iter().flatten() {
                        prop_assert!(!text.chars().any(char::is_control));
                        prop_assert!(text.chars().count() <= 255);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
                    prop_assert!(e.body.error.field.is_some(), "{:?}", e);
                }
            }
        }
    }
}
