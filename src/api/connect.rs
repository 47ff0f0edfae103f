//! The connect flow's routes: start (`POST /v1/connect`), the platforms'
//! redirect (`GET /v1/connect/callback`, the only route a browser reaches,
//! so it needs no API key: the single-use state is its credential), the
//! API form of the callback (`POST /v1/connect/exchange`), the choice of
//! pages (`POST /v1/connect/select`), and the atproto OAuth client metadata
//! (`GET /oauth/client-metadata.json`, fetched by Bluesky's authorization
//! servers, so no API key either).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::extract::{JsonBody, Params};
use super::views::{AccountView, account_view};
use super::{ApiError, ApiState};
use crate::connect::{
    Callback, ChoiceOption, ConnectError, Failed, Finished, Landed, StartRequest,
};
use crate::domain::Provider;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    provider: Provider,
    /// 1 to 255 characters, no control characters.
    #[schema(min_length = 1, max_length = 255)]
    workspace_id: String,
    /// Where the browser is sent when the flow ends, with `account_id` (or
    /// `error`) added to its query. Must start with one of
    /// `connect.allowed_redirects`, name no user, and hold none of
    /// `account_id`, `error`, `error_description`, `selection_required`,
    /// `state` in its query.
    #[schema(max_length = 2048, format = "uri")]
    redirect_after: String,
    /// The scopes to ask for; the platform's `connect_scopes` when absent.
    #[schema(max_items = 64)]
    scopes: Option<Vec<String>>,
    /// Reconnect this account: the platform account authorized must be the
    /// same one.
    account_id: Option<String>,
    /// Platform inputs: `instance` (Mastodon), `handle` (Bluesky),
    /// `page_ids` (Facebook Pages, Instagram with Facebook Login). At most
    /// 16 KiB, nested at most 4 deep, no NUL characters.
    #[schema(value_type = Option<Object>)]
    extras: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectStarted {
    /// Send the user's browser here.
    authorization_url: String,
    /// The single-use value the platform hands back; `POST
    /// /v1/connect/exchange` takes it with the code.
    state: String,
    expires_at: DateTime<Utc>,
}

#[utoipa::path(post, path = "/v1/connect", tag = "connect",
    request_body = ConnectBody,
    responses(
        (status = 201, description = "Started: send the browser to `authorization_url`", body = ConnectStarted),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "`redirect_after` is not under any of `connect.allowed_redirects` (`redirect_not_allowed`)", body = super::error::ErrorBody),
        (status = 409, description = "The connect flow or this platform is not configured", body = super::error::ErrorBody),
        (status = 422, description = "A field is invalid", body = super::error::ErrorBody),
        (status = 502, description = "The platform refused (app registration, PAR)", body = super::error::ErrorBody),
        (status = 503, description = "The platform or the database is unavailable", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<ConnectBody>,
) -> Result<Response, ApiError> {
    let started = state
        .inner
        .connect
        .start(StartRequest {
            provider: body.provider,
            workspace_id: body.workspace_id,
            redirect_after: body.redirect_after,
            scopes: body.scopes,
            account_id: body.account_id,
            extras: body.extras,
        })
        .await
        .map_err(connect_error)?;
    Ok((
        StatusCode::CREATED,
        Json(ConnectStarted {
            authorization_url: started.authorization_url.to_string(),
            state: started.state,
            expires_at: started.expires_at,
        }),
    )
        .into_response())
}

/// What the platform sends the browser back with.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    #[param(max_length = 4096)]
    code: Option<String>,
    #[param(max_length = 256)]
    state: Option<String>,
    /// RFC 9207: the authorization server's issuer (atproto sends it).
    #[param(max_length = 2048)]
    iss: Option<String>,
    /// The platform's refusal (`access_denied`, ...).
    #[param(max_length = 256)]
    error: Option<String>,
    #[param(max_length = 1024)]
    error_description: Option<String>,
}

impl CallbackQuery {
    /// The flow's state, and the platform's answer for the connect service.
    pub fn into_parts(self) -> (Option<String>, Callback) {
        let callback = Callback {
            code: self.code.map(SecretString::from),
            error: self.error,
            error_description: self.error_description,
            issuer: self.iss,
        };
        (self.state, callback)
    }
}

#[utoipa::path(get, path = "/v1/connect/callback", tag = "connect",
    params(CallbackQuery),
    responses(
        (status = 303, description = "To `redirect_after`, with `account_id` (once per account), or `selection_required=true` and `state`, or `error` and `error_description`"),
        (status = 400, description = "`state` is expired or already used: nowhere trusted to send the browser", body = super::error::ErrorBody),
        (status = 404, description = "`state` is missing or was never issued (`state_unknown`)", body = super::error::ErrorBody),
    ))]
pub async fn callback(
    State(state): State<ApiState>,
    Params(query): Params<CallbackQuery>,
) -> Result<Response, ApiError> {
    let (flow_state, callback) = query.into_parts();
    let Some(flow_state) = flow_state else {
        return Err(connect_error(ConnectError::state_unknown()));
    };
    let finished = state.inner.connect.finish(&flow_state, callback).await;
    match finished {
        Ok(Finished::Connected {
            accounts,
            redirect_after,
        }) => {
            let ids = accounts
                .iter()
                .map(|a| ("account_id", a.registered.account.id.to_string()));
            Ok(see_other(with_query(redirect_after, ids)))
        }
        Ok(Finished::ChoiceRequired { redirect_after, .. }) => Ok(see_other(with_query(
            redirect_after,
            [
                ("selection_required", "true".to_owned()),
                ("state", flow_state),
            ],
        ))),
        Err(Failed {
            error,
            redirect_after: Some(target),
        }) => Ok(see_other(with_query(
            target,
            [
                ("error", error.redirect_error().to_owned()),
                ("error_description", error.message.clone()),
            ],
        ))),
        Err(Failed { error, .. }) => Err(connect_error(error)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    #[schema(max_length = 256)]
    state: String,
    #[schema(max_length = 4096)]
    code: String,
    /// The callback's `iss`, where the platform sent one.
    #[schema(max_length = 2048)]
    iss: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectResult {
    /// The accounts registered or reconnected; empty while a choice is
    /// pending.
    accounts: Vec<ConnectedView>,
    /// Present when the user must choose (pages): pass some of these ids
    /// to `POST /v1/connect/select` with the same state.
    #[serde(skip_serializing_if = "Option::is_none")]
    selection_required: Option<Vec<ChoiceOption>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectedView {
    account: AccountView,
    /// True when the account is new, false when it was reconnected.
    created: bool,
    /// What the account's health will say from the start (no refresh token
    /// was issued, ...).
    warnings: Vec<String>,
}

#[utoipa::path(post, path = "/v1/connect/exchange", tag = "connect",
    request_body = ExchangeBody,
    responses(
        (status = 200, description = "Connected, or a choice is pending", body = ConnectResult),
        (status = 400, description = "`state` expired or already used; or the user declined", body = super::error::ErrorBody),
        (status = 404, description = "`state` was never issued (`state_unknown`)", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 409, description = "The authorized account is not the one being reconnected", body = super::error::ErrorBody),
        (status = 502, description = "The platform refused the code or its answer is unusable", body = super::error::ErrorBody),
        (status = 503, description = "The platform or the database is unavailable", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn exchange(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<ExchangeBody>,
) -> Result<Json<ConnectResult>, ApiError> {
    let finished = state
        .inner
        .connect
        .finish(
            &body.state,
            Callback {
                code: Some(SecretString::from(body.code)),
                error: None,
                error_description: None,
                issuer: body.iss,
            },
        )
        .await
        .map_err(|failed| connect_error(failed.error))?;
    Ok(Json(match finished {
        Finished::Connected { accounts, .. } => ConnectResult {
            accounts: views(&state, accounts),
            selection_required: None,
        },
        Finished::ChoiceRequired { options, .. } => ConnectResult {
            accounts: Vec::new(),
            selection_required: Some(options),
        },
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectBody {
    #[schema(max_length = 256)]
    state: String,
    /// Ids from `selection_required`, 1 to 100.
    #[schema(min_items = 1, max_items = 100)]
    ids: Vec<String>,
}

#[utoipa::path(post, path = "/v1/connect/select", tag = "connect",
    request_body = SelectBody,
    responses(
        (status = 200, description = "The chosen accounts, registered", body = ConnectResult),
        (status = 400, description = "The choice was made already, or expired", body = super::error::ErrorBody),
        (status = 404, description = "No pending choice has this state (`state_unknown`)", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, description = "An id is not one of the options", body = super::error::ErrorBody),
        (status = 502, description = "The platform's answer is unusable", body = super::error::ErrorBody),
        (status = 503, description = "The platform or the database is unavailable", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn select(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<SelectBody>,
) -> Result<Json<ConnectResult>, ApiError> {
    let accounts = state
        .inner
        .connect
        .choose(&body.state, &body.ids)
        .await
        .map_err(connect_error)?;
    Ok(Json(ConnectResult {
        accounts: views(&state, accounts),
        selection_required: None,
    }))
}

fn views(state: &ApiState, accounts: Vec<Landed>) -> Vec<ConnectedView> {
    accounts
        .into_iter()
        .map(|landed| ConnectedView {
            account: account_view(&state.inner.engine, &landed.registered.account),
            created: landed.registered.created,
            warnings: landed.warnings,
        })
        .collect()
}

fn connect_error(error: ConnectError) -> ApiError {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
    ApiError::new(status, error.code, error.message)
}

fn with_query<K: AsRef<str>, V: AsRef<str>>(
    mut target: Url,
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Url {
    {
        let mut query = target.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key.as_ref(), value.as_ref());
        }
    }
    target
}

fn see_other(target: Url) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, target.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

#[utoipa::path(get, path = "/oauth/client-metadata.json", tag = "connect",
    responses(
        (status = 200, description = "The atproto OAuth client metadata: Bluesky's authorization servers fetch it, its URL being the client id (`<connect.public_url>oauth/client-metadata.json` unless `providers.bluesky.client_id` names another URL, which must then serve this same document)", body = Object),
        (status = 404, description = "The connect flow is off (`connect.public_url` is not set)", body = super::error::ErrorBody),
    ))]
pub async fn client_metadata(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let document = state.inner.connect.client_metadata().ok_or_else(|| {
        ApiError::not_found("the connect flow is off: connect.public_url is not set")
    })?;
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(document.clone()),
    )
        .into_response())
}
