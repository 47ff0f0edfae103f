//! One platform: its refresh policy and limits as configured, its circuit
//! breaker as the workers report it, its error classes over the last day,
//! and Resume for a paused breaker.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{TimeDelta, Utc};
use maud::html;
use serde::Deserialize;

use super::layout::{Shell, badge, csrf_field, duration, page, when};
use super::overview::{Breaker, breakers};
use super::{ConsoleError, ConsoleState, Operator, parse_form, parse_query};
use crate::domain::Provider;
use crate::store::{attempts, gate_states};

/// A platform by its configuration key (`x`, `linkedin_person`, ...).
fn provider(name: &str) -> Result<Provider, ConsoleError> {
    Provider::ALL
        .iter()
        .copied()
        .find(|p| p.config_key() == name)
        .ok_or_else(|| ConsoleError::not_found("There is no such platform."))
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    resumed: Option<String>,
}

pub async fn show(
    State(state): State<ConsoleState>,
    operator: Operator,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, ConsoleError> {
    let provider = provider(&name)?;
    let q: ShowQuery = parse_query(raw.as_deref())?;
    let pool = &state.inner.pool;
    let base = state.base();
    let settings = &state.inner.settings;
    let section = settings.providers.get(provider);
    let policy = state.inner.engine.config().policy(provider);
    let circuit = &settings.circuit;
    let breaker = breakers(pool).await?.remove(provider.as_str());
    let classes =
        attempts::error_classes(pool, provider, Utc::now() - TimeDelta::hours(24)).await?;
    let resumes = gate_states::resumes_of(pool, provider.as_str(), 10).await?;
    let paused = breaker.as_ref().is_some_and(|b| b.paused_until.is_some());
    let optional =
        |d: Option<std::time::Duration>| d.map(duration).unwrap_or_else(|| "not set".to_owned());
    let body = html! {
        @if q.resumed.is_some() {
            div.notice.ok role="status" { "Resume requested; workers apply it within a few seconds." }
        }
        p { a href={ (base) "/accounts?platform=" (provider.as_str()) } { "Accounts of this platform" } }
        div.grid {
            section.card aria-labelledby="breaker" {
                h2 #breaker { "Circuit breaker" }
                dl.fields {
                    dt { "State" } dd { (badge(breaker.as_ref().map_or("unknown", Breaker::word))) }
                    @match &breaker {
                        None => { dt { "Workers reporting" } dd { "none in the last minute" } },
                        Some(b) => {
                            dt { "Workers reporting" } dd { (b.workers) }
                            @if b.paused_until.is_some() {
                                dt { "Paused until" } dd { (when(b.paused_until)) }
                                dt { "Why" } dd { (b.reasons.join("; ")) }
                            }
                            dt { "App-level errors" } dd { (if b.config_error { "yes: check the client configuration" } else { "no" }) }
                        },
                    }
                }
                @if paused {
                    form method="post" action={ (base) "/platforms/" (provider.config_key()) "/resume" } {
                        (csrf_field(&operator.csrf))
                        p { "Resuming forgets the evidence behind the pause; the next calls go to the platform at once." }
                        button type="submit" { "Resume " (provider.as_str()) }
                    }
                }
                h3 { "Recent resumes" }
                @if resumes.is_empty() {
                    p.muted { "None." }
                } @else {
                    ul { @for r in &resumes { li { (when(Some(r.requested_at))) " by " strong { (r.operator_key_id) } } } }
                }
            }
            section.card aria-labelledby="policy" {
                h2 #policy { "Policy as configured" }
                dl.fields {
                    dt { "Flow" } dd { (format!("{:?}", section.flow)) }
                    dt { "Mode" } dd { (format!("{:?}", policy.mode)) }
                    dt { "Refresh window" } dd { "at " (format!("{:.0}%", policy.refresh_fraction * 100.0)) " of the token's lifetime" }
                    dt { "Margin" } dd { "at least " (duration(policy.refresh_margin)) " before expiry" }
                    dt { "Jitter" } dd { "up to " (duration(policy.jitter)) " earlier" }
                    dt { "Minimum token age" } dd { (duration(policy.min_token_age)) }
                    dt { "Default access-token lifetime" } dd { (duration(policy.default_access_token_lifetime)) }
                    dt { "Refresh-token lifetime" } dd { (optional(policy.refresh_token_lifetime)) }
                    dt { "Rotates refresh tokens" } dd { (policy.rotates_refresh_token) }
                    dt { "Refreshable after expiry" } dd { (policy.refreshable_after_expiry) }
                    dt { "Keep-alive interval" } dd { (duration(policy.keep_alive_interval)) }
                    dt { "Health-check interval" } dd { (duration(policy.health_check_interval)) }
                    dt { "Publish scopes" } dd { (policy.publish_scopes.join(" ")) }
                }
                h3 { "Limits" }
                dl.fields {
                    dt { "Concurrency" } dd { (section.max_concurrency) " calls at once per worker" }
                    dt { "Rate" } dd { (section.rate_per_second) " calls/s per worker" }
                    dt { "Breaker" } dd {
                        "pauses for " (duration(circuit.cooldown)) " when "
                        (format!("{:.0}%", circuit.failure_ratio * 100.0)) " of the latest " (circuit.window)
                        " accounts failed (at least " (circuit.min_calls) "), or on app-level answers from "
                        (circuit.app_error_accounts) " accounts within " (duration(circuit.app_error_window))
                    }
                }
            }
        }
        section.card aria-labelledby="errors" {
            h2 #errors { "Error classes, last 24 h" }
            @if classes.is_empty() {
                p.muted { "No failed attempts." }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { "Outcome" } th.num scope="col" { "HTTP" } th scope="col" { "Error code" }
                        th.num scope="col" { "Attempts" } th.num scope="col" { "Accounts" } th scope="col" { "Last" }
                    } }
                    tbody {
                        @for c in &classes {
                            tr {
                                td { (badge(&c.outcome)) }
                                td.num { (c.http_status.map(|s| s.to_string()).unwrap_or_default()) }
                                td { (c.provider_error_code.clone().unwrap_or_default()) }
                                td.num { (c.attempts) }
                                td.num { (c.accounts) }
                                td { (when(Some(c.last_at))) }
                            }
                        }
                    }
                }
            }
        }
    };
    let shell = Shell {
        base,
        operator: Some((&operator.key_id, &operator.csrf)),
    };
    Ok(Html(page(&shell, provider.as_str(), body).into_string()))
}

#[derive(Deserialize)]
struct ResumeForm {}

/// Resume: recorded with the operator key's id; each worker applies it on
/// its next report.
pub async fn resume(
    State(state): State<ConsoleState>,
    operator: Operator,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let _: ResumeForm = parse_form(&body, &operator.csrf)?;
    let provider = provider(&name)?;
    gate_states::request_resume(&state.inner.pool, provider.as_str(), &operator.key_id).await?;
    tracing::info!(%provider, operator_key_id = %operator.key_id, "console: resume requested");
    Ok(Redirect::to(&format!(
        "{}/platforms/{}?resumed=1",
        state.base(),
        provider.config_key()
    ))
    .into_response())
}
