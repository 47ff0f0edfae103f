//! Accounts: the searchable list, one account's page with its history, and
//! the actions on it (Refresh now, Health check now, Disconnect), each
//! written to the outbox with the operator key's id.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Shell, badge, csrf_field, page, when};
use super::overview::label;
use super::{ConsoleError, ConsoleState, Operator, parse_form, parse_query};
use crate::api::views::account_view;
use crate::api::{ForcedRefresh, forced_refresh};
use crate::domain::{AccountId, AccountStatus, Provider, Trigger};
use crate::store::accounts::{self, AccountRow, HealthFilter, ListCursor, ListFilter};
use crate::store::{attempts, events};

const PAGE_SIZE: i64 = 50;
const ATTEMPTS_PAGE: i64 = 25;

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    platform: Option<String>,
    status: Option<String>,
    health: Option<String>,
    failing: Option<String>,
    cursor: Option<String>,
}

/// Empty form fields mean "any".
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn list_filter(q: &ListQuery) -> Result<ListFilter, ConsoleError> {
    let search = given(&q.q).map(str::to_owned);
    if search
        .as_deref()
        .is_some_and(|s| s.chars().count() > 255 || s.chars().any(char::is_control))
    {
        return Err(ConsoleError::bad_request(
            "Search: at most 255 characters, no control characters.",
        ));
    }
    let provider = given(&q.platform)
        .map(|p| p.parse::<Provider>())
        .transpose()
        .map_err(|_| ConsoleError::bad_request("Platform: not a platform tokenwarden knows."))?;
    let status = given(&q.status)
        .map(|s| s.parse::<AccountStatus>())
        .transpose()
        .map_err(|_| ConsoleError::bad_request("Status: not an account status."))?;
    let health = given(&q.health)
        .map(|h| HealthFilter::parse(h).ok_or(()))
        .transpose()
        .map_err(|_| ConsoleError::bad_request("Health: not a health word."))?;
    let after = given(&q.cursor)
        .map(|c| {
            crate::api::decode_list_cursor(c)
                .map_err(|_| ConsoleError::bad_request("Cursor: not one this console gave."))
        })
        .transpose()?;
    Ok(ListFilter {
        status,
        provider,
        search,
        health,
        failing: given(&q.failing).is_some_and(|f| f == "1" || f == "on" || f == "true"),
        after,
        limit: PAGE_SIZE + 1,
        ..ListFilter::default()
    })
}

pub async fn list(
    State(state): State<ConsoleState>,
    operator: Operator,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, ConsoleError> {
    let q: ListQuery = parse_query(raw.as_deref())?;
    let filter = list_filter(&q)?;
    let mut rows = accounts::list(&state.inner.pool, &filter).await?;
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    let next = more
        .then(|| {
            rows.last()
                .map(|r| crate::api::encode_list_cursor(&ListCursor::of(r)))
        })
        .flatten();
    let base = state.base();
    let engine = &state.inner.engine;
    let next_href = next.map(|cursor| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", &q.q),
            ("platform", &q.platform),
            ("status", &q.status),
            ("health", &q.health),
            ("failing", &q.failing),
        ] {
            if let Some(value) = given(value) {
                query.append_pair(key, value);
            }
        }
        query.append_pair("cursor", &cursor);
        format!("{base}/accounts?{}", query.finish())
    });
    let selected = |value: &Option<String>, option: &str| given(value) == Some(option);
    let body = html! {
        form.filters method="get" action={ (base) "/accounts" } role="search" {
            label for="q" {
                "Search"
                input #q type="search" name="q" value=[given(&q.q)]
                    placeholder="handle, external id, workspace or account id";
            }
            label for="platform" {
                "Platform"
                select #platform name="platform" {
                    option value="" { "any" }
                    @for p in Provider::ALL {
                        option value=(p.as_str()) selected[selected(&q.platform, p.as_str())] { (p.as_str()) }
                    }
                }
            }
            label for="status" {
                "Status"
                select #status name="status" {
                    option value="" { "any (not disconnected)" }
                    @for s in AccountStatus::ALL {
                        option value=(s.as_str()) selected[selected(&q.status, s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label for="health" {
                "Health"
                select #health name="health" {
                    option value="" { "any" }
                    @for h in HealthFilter::ALL {
                        option value=(h.as_str()) selected[selected(&q.health, h.as_str())] { (h.as_str().replace('_', " ")) }
                    }
                }
            }
            label for="failing" {
                "Failing now"
                input #failing type="checkbox" name="failing" value="1" checked[given(&q.failing).is_some()];
            }
            button type="submit" { "Search" }
        }
        @if rows.is_empty() {
            p.muted { "No account matches." }
        } @else {
            table {
                caption.muted { (rows.len()) " shown" @if next_href.is_some() { ", more on the next page" } }
                thead { tr {
                    th scope="col" { "Account" }
                    th scope="col" { "Platform" }
                    th scope="col" { "Workspace" }
                    th scope="col" { "Status" }
                    th scope="col" { "Health" }
                    th scope="col" { "Why" }
                    th scope="col" { "Token expires" }
                    th.num scope="col" { "Failures" }
                } }
                tbody {
                    @for row in &rows {
                        @let view = account_view(engine, row);
                        tr {
                            td { a href={ (base) "/accounts/" (row.id) } { (label(row)) } br; span.muted { (row.external_id) } }
                            td { (row.provider.as_str()) }
                            td { (row.workspace_id) }
                            td { (badge(row.status.as_str())) }
                            td { (badge(health_word(&view))) }
                            td { (view.health.reason.clone().unwrap_or_default()) }
                            td { (when(row.token_expires_at)) }
                            td.num { (row.consecutive_failures) }
                        }
                    }
                }
            }
        }
        @if let Some(href) = next_href {
            p.pager { a href=(href) rel="next" { "Next page →" } }
        }
    };
    let shell = Shell {
        base,
        operator: Some((&operator.key_id, &operator.csrf)),
    };
    Ok(Html(page(&shell, "Accounts", body).into_string()))
}

fn health_word(view: &crate::api::views::AccountView) -> &'static str {
    use crate::api::views::HealthStatus::*;
    match view.health.status {
        Healthy => "healthy",
        Degraded => "degraded",
        Inactive => "inactive",
        Expired => "expired",
        Revoked => "revoked",
        Disconnected => "disconnected",
    }
}

fn account_id(raw: &str) -> Result<AccountId, ConsoleError> {
    raw.parse().map_err(|_| {
        ConsoleError::not_found(
            "There is no such account (ids are acc_ and 32 hexadecimal digits).",
        )
    })
}

async fn load(state: &ConsoleState, id: &AccountId) -> Result<AccountRow, ConsoleError> {
    accounts::get(&state.inner.pool, id)
        .await?
        .ok_or_else(|| ConsoleError::not_found(format!("There is no account {id}.")))
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    /// The action just taken: `refresh`, `health_check`, `disconnect`.
    action: Option<String>,
    /// The attempt the action made.
    attempt: Option<String>,
    /// The forced-refresh limit refused the refresh: seconds to wait.
    wait: Option<String>,
    /// Older attempts: before this attempt id.
    before: Option<String>,
}

pub async fn show(
    State(state): State<ConsoleState>,
    operator: Operator,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Html<String>, ConsoleError> {
    let id = account_id(&raw)?;
    let q: ShowQuery = parse_query(query.as_deref())?;
    let row = load(&state, &id).await?;
    let pool = &state.inner.pool;
    let base = state.base();
    let view = account_view(&state.inner.engine, &row);
    let before = match given(&q.before) {
        None => None,
        Some(text) => Some(
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ConsoleError::bad_request("before: not an attempt id."))?,
        ),
    };
    let mut history = attempts::page(pool, &id, before, ATTEMPTS_PAGE + 1).await?;
    let older = (history.len() as i64 > ATTEMPTS_PAGE)
        .then(|| history.get(ATTEMPTS_PAGE as usize - 1).map(|a| a.id))
        .flatten();
    history.truncate(ATTEMPTS_PAGE as usize);
    let counts = attempts::counts_by_outcome(pool, &id).await?;
    let changes = events::latest_for_account(pool, id.as_str(), 50).await?;
    let result = match (
        given(&q.action),
        given(&q.attempt).and_then(|a| a.parse::<i64>().ok()),
    ) {
        (Some(_), Some(attempt)) => attempts::get(pool, &id, attempt).await?,
        _ => None,
    };
    let action_name = |a: &str| match a {
        "refresh" => "Refresh now",
        "health_check" => "Health check now",
        "disconnect" => "Disconnect",
        _ => "Action",
    };
    let path = format!("{base}/accounts/{id}");
    let active = row.status != AccountStatus::Disconnected;
    let body = html! {
        @if let Some(action) = given(&q.action) {
            @if let Some(wait) = given(&q.wait) {
                div.notice.warn role="status" {
                    (action_name(action)) ": not run. This account was force-refreshed moments ago; "
                    "try again in " (wait) " s (api.force_refresh_min_interval)."
                }
            } @else if let Some(attempt) = &result {
                div class={ "notice " (if attempt.outcome.is_success() { "ok" } else { "bad" }) } role="status" {
                    (action_name(action)) ": " (badge(attempt.outcome.as_str()))
                    @if let Some(status) = attempt.http_status { " HTTP " (status) }
                    " in " (attempt.duration_ms) " ms"
                    @if let Some(message) = &attempt.message { " — " (message) }
                }
            } @else if action == "disconnect" {
                div.notice.ok role="status" { "Disconnected." }
            }
        }
        p {
            (badge(row.status.as_str())) " " (badge(health_word(&view)))
            @for flag in &view.health.flags { " " (badge(flag)) }
            @if let Some(reason) = &view.health.reason { " " (reason) }
        }
        @if active {
            div.actions aria-label="Actions" {
                form method="post" action={ (path) "/refresh" } {
                    (csrf_field(&operator.csrf))
                    button type="submit" data-busy="Refreshing…" { "Refresh now" }
                }
                form method="post" action={ (path) "/health-check" } {
                    (csrf_field(&operator.csrf))
                    button.secondary type="submit" data-busy="Checking…" { "Health check now" }
                }
                form method="post" action={ (path) "/disconnect" } {
                    (csrf_field(&operator.csrf))
                    button.danger type="submit" { "Disconnect…" }
                }
            }
        }
        div.grid {
            section.card aria-labelledby="account" {
                h2 #account { "Account" }
                dl.fields {
                    dt { "Id" } dd { code { (view.id) } }
                    dt { "Platform" } dd { a href={ (base) "/platforms/" (row.provider.config_key()) } { (view.provider.as_str()) } }
                    dt { "Workspace" } dd { (view.workspace_id) }
                    dt { "External id" } dd { (view.external_id) }
                    dt { "Handle" } dd { (view.handle.clone().unwrap_or_default()) }
                    dt { "Display name" } dd { (view.display_name.clone().unwrap_or_default()) }
                    dt { "Connection" } dd { (view.connection_type.as_str()) }
                    dt { "Status reason" } dd { (view.status_reason.clone().unwrap_or_default()) }
                    dt { "Can post" } dd { (if view.health.can_post { "yes" } else { "no" }) }
                    dt { "Scopes" } dd { (view.scopes.join(" ")) }
                    dt { "Missing scopes" } dd { @if view.missing_scopes.is_empty() { span.muted { "none" } } @else { (view.missing_scopes.join(" ")) } }
                    dt { "Default board" } dd { (view.default_board_id.clone().unwrap_or_default()) }
                    dt { "Meta" } dd { code { (view.meta.to_string()) } }
                }
            }
            section.card aria-labelledby="tokens" {
                h2 #tokens { "Tokens and schedule" }
                dl.fields {
                    dt { "Connected" } dd { (when(Some(view.connected_at))) }
                    dt { "Access token expires" } dd { (when(view.token_expires_at)) }
                    dt { "Refresh token expires" } dd { (when(view.refresh_token_expires_at)) }
                    dt { "Reconnect by" } dd { (when(view.reconnect_by)) }
                    dt { "Last refreshed" } dd { (when(view.last_refreshed_at)) }
                    dt { "Last attempt" } dd { (when(view.last_refresh_attempt_at)) }
                    dt { "Last error" } dd {
                        (view.last_refresh_error.clone().unwrap_or_default())
                        @if let Some(status) = view.last_refresh_error_status { " (HTTP " (status) ")" }
                    }
                    dt { "Consecutive failures" } dd { (view.consecutive_failures) }
                    dt { "Next refresh" } dd { (when(view.next_refresh_at)) }
                }
            }
        }
        section.card aria-labelledby="attempts" {
            h2 #attempts { "Attempts" }
            p.muted {
                @for (n, (outcome, count)) in counts.iter().enumerate() {
                    @if n > 0 { ", " }
                    (outcome) ": " (count)
                }
            }
            @if history.is_empty() {
                p.muted { "No attempts." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Finished" } th scope="col" { "Trigger" } th scope="col" { "Outcome" }
                        th.num scope="col" { "HTTP" } th.num scope="col" { "ms" } th scope="col" { "Error code" } th scope="col" { "Message" }
                    } }
                    tbody {
                        @for a in &history {
                            tr {
                                td { (when(Some(a.finished_at))) }
                                td { (a.trigger.as_str()) }
                                td { (badge(a.outcome.as_str())) }
                                td.num { (a.http_status.map(|s| s.to_string()).unwrap_or_default()) }
                                td.num { (a.duration_ms) }
                                td { (a.provider_error_code.clone().unwrap_or_default()) }
                                td { (a.message.clone().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            @if let Some(older) = older {
                p.pager { a href={ (path) "?before=" (older) "#attempts" } rel="next" { "Older attempts →" } }
            }
        }
        section.card aria-labelledby="events" {
            h2 #events { "Status changes and operator actions" }
            (events_table(&changes))
        }
    };
    let shell = Shell {
        base,
        operator: Some((&operator.key_id, &operator.csrf)),
    };
    Ok(Html(page(&shell, &label(&row), body).into_string()))
}

fn events_table(changes: &[events::EventRow]) -> Markup {
    html! {
        @if changes.is_empty() {
            p.muted { "None." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Kind" } th scope="col" { "From" }
                    th scope="col" { "To" } th scope="col" { "Reason" } th scope="col" { "Operator" }
                } }
                tbody {
                    @for e in changes {
                        tr {
                            td { (when(Some(e.occurred_at))) }
                            td { (e.kind.replace('_', " ")) }
                            td { (e.from_status.clone().unwrap_or_default()) }
                            td { (e.to_status) }
                            td { (e.reason) }
                            td { (e.operator_key_id.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct ActionForm {}

/// Every operator action goes to the outbox (so webhooks and `/v1/events`)
/// with the operator's key id, never the key, and to the log.
async fn audit(
    state: &ConsoleState,
    row: &AccountRow,
    operator: &Operator,
    what: &str,
) -> Result<(), ConsoleError> {
    events::insert_operator_action(&state.inner.pool, row, what, &operator.key_id).await?;
    tracing::info!(account_id = %row.id, operator_key_id = %operator.key_id, action = what, "console: operator action");
    Ok(())
}

/// Where an action's result is shown: the account page, with the attempt
/// the action made (read back from the history, so a reload shows the same
/// and resubmits nothing).
async fn after_action(
    state: &ConsoleState,
    id: &AccountId,
    action: &str,
) -> Result<Response, ConsoleError> {
    let latest = attempts::page(&state.inner.pool, id, None, 1).await?;
    let attempt = latest
        .first()
        .map(|a| format!("&attempt={}", a.id))
        .unwrap_or_default();
    Ok(Redirect::to(&format!(
        "{}/accounts/{id}?action={action}{attempt}",
        state.base()
    ))
    .into_response())
}

/// Refresh now: the API's forced refresh (its rate limit, the engine's
/// single flight and lease).
pub async fn refresh(
    State(state): State<ConsoleState>,
    operator: Operator,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let _: ActionForm = parse_form(&body, &operator.csrf)?;
    let id = account_id(&raw)?;
    load(&state, &id).await?;
    let result = forced_refresh(
        &state.inner.engine,
        &id,
        state.inner.settings.api.force_refresh_min_interval,
    )
    .await?;
    let row = load(&state, &id).await?;
    match result {
        ForcedRefresh::Ran(report) => {
            let what = match report.http_status {
                Some(status) => format!("refresh now: {} (HTTP {status})", report.outcome),
                None => format!("refresh now: {}", report.outcome),
            };
            audit(&state, &row, &operator, &what).await?;
            after_action(&state, &id, "refresh").await
        }
        ForcedRefresh::TooSoon { wait_seconds, .. } => {
            audit(
                &state,
                &row,
                &operator,
                "refresh now: refused, force-refreshed moments ago",
            )
            .await?;
            Ok(Redirect::to(&format!(
                "{}/accounts/{id}?action=refresh&wait={wait_seconds}",
                state.base()
            ))
            .into_response())
        }
    }
}

/// Health check now: the platform's check of the token, through the
/// engine's single flight.
pub async fn health_check(
    State(state): State<ConsoleState>,
    operator: Operator,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let _: ActionForm = parse_form(&body, &operator.csrf)?;
    let id = account_id(&raw)?;
    load(&state, &id).await?;
    let report = state
        .inner
        .engine
        .refresh(&id, Trigger::HealthCheck)
        .await?;
    let row = load(&state, &id).await?;
    let what = format!("health check now: {}", report.outcome);
    audit(&state, &row, &operator, &what).await?;
    after_action(&state, &id, "health_check").await
}

#[derive(Deserialize)]
struct DisconnectForm {
    confirm: Option<String>,
}

/// Disconnect: first a page asking to confirm (works without JavaScript),
/// then the engine's disconnect (revocation at the platform where it
/// supports that, credentials wiped).
pub async fn disconnect(
    State(state): State<ConsoleState>,
    operator: Operator,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let form: DisconnectForm = parse_form(&body, &operator.csrf)?;
    let id = account_id(&raw)?;
    let row = load(&state, &id).await?;
    let base = state.base();
    if form.confirm.as_deref() != Some("yes") {
        let body = html! {
            div.notice.warn {
                p { "Disconnecting " strong { (label(&row)) } " (" (row.provider.as_str()) ", workspace " (row.workspace_id) ") "
                    "revokes its grant at the platform where the platform supports that and deletes the stored credentials. "
                    "Only the user reconnecting brings it back." }
            }
            div.actions {
                form method="post" action={ (base) "/accounts/" (id) "/disconnect" } {
                    (csrf_field(&operator.csrf))
                    input type="hidden" name="confirm" value="yes";
                    button.danger type="submit" { "Yes, disconnect" }
                }
                a href={ (base) "/accounts/" (id) } { "Cancel" }
            }
        };
        let shell = Shell {
            base,
            operator: Some((&operator.key_id, &operator.csrf)),
        };
        return Ok(
            Html(page(&shell, "Disconnect this account?", body).into_string()).into_response(),
        );
    }
    let Some(done) = state.inner.engine.disconnect(&id).await? else {
        return Err(ConsoleError::new(
            axum::http::StatusCode::CONFLICT,
            format!("Account {id} is already disconnected."),
        ));
    };
    let revocation = match &done.revoked {
        crate::engine::Revocation::Revoked => "grant revoked at the platform",
        crate::engine::Revocation::NotSupported => "the platform has no revocation",
        crate::engine::Revocation::Failed(_) => "revocation at the platform failed",
    };
    audit(
        &state,
        &done.account,
        &operator,
        &format!("disconnect: {revocation}"),
    )
    .await?;
    Ok(Redirect::to(&format!("{base}/accounts/{id}?action=disconnect")).into_response())
}
