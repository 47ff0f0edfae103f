//! The page on-call opens first: accounts by platform, status and health;
//! what expires soon; refresh rates and failures over the last hour; each
//! platform's breaker; the queue.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use maud::{Markup, html};

use super::layout::{Shell, badge, page, span, svg, when};
use super::sparkline::sparkline;
use super::{ConsoleError, ConsoleState, Operator};
use crate::api::views::account_view;
use crate::domain::{AccountStatus, Provider};
use crate::store::accounts::{self, AccountRow};
use crate::store::{attempts, census, gate_states};

/// A worker's breaker report older than this is from a process that is
/// gone (workers report every 5 s).
pub const GATE_REPORT_FRESHNESS: Duration = Duration::from_secs(60);

const LISTED: i64 = 10;

/// One platform's breaker, over every worker reporting it.
pub struct Breaker {
    pub paused_until: Option<DateTime<Utc>>,
    pub reasons: Vec<String>,
    pub config_error: bool,
    pub workers: usize,
}

impl Breaker {
    pub fn word(&self) -> &'static str {
        match (self.workers, self.paused_until) {
            (0, _) => "unknown",
            (_, Some(_)) => "paused",
            _ => "closed",
        }
    }
}

/// Each platform's breaker from the workers' latest reports: paused if any
/// worker has it paused.
pub async fn breakers(pool: &sqlx::PgPool) -> Result<BTreeMap<String, Breaker>, sqlx::Error> {
    let now = Utc::now();
    let mut out: BTreeMap<String, Breaker> = BTreeMap::new();
    for row in gate_states::current(pool, GATE_REPORT_FRESHNESS).await? {
        let breaker = out.entry(row.provider.clone()).or_insert(Breaker {
            paused_until: None,
            reasons: Vec::new(),
            config_error: false,
            workers: 0,
        });
        breaker.workers += 1;
        breaker.config_error |= row.config_error;
        if let Some(until) = row.paused_until.filter(|u| *u > now) {
            breaker.paused_until = Some(breaker.paused_until.map_or(until, |u| u.max(until)));
            if let Some(reason) = row.pause_reason
                && !breaker.reasons.contains(&reason)
            {
                breaker.reasons.push(reason);
            }
        }
    }
    Ok(out)
}

pub async fn show(
    State(state): State<ConsoleState>,
    operator: Operator,
) -> Result<Html<String>, ConsoleError> {
    let pool = &state.inner.pool;
    let engine = &state.inner.engine;
    let base = state.base();
    let states = census::state_rows(pool, state.inner.settings.metrics.overdue_after).await?;
    let health = census::health_rows(pool).await?;
    let claims = census::claims(pool).await?;
    let now = Utc::now();
    let hour_ago = now - TimeDelta::hours(1);
    let minutes = attempts::per_minute(pool, hour_ago).await?;
    let breakers = breakers(pool).await?;
    let expiring_1h = accounts::expiring_within(pool, Duration::from_secs(3600), LISTED).await?;
    let expiring_24h = accounts::expiring_within(pool, Duration::from_secs(86_400), LISTED).await?;
    let reconnect: Vec<(AccountRow, DateTime<Utc>)> =
        accounts::reconnect_candidates(pool, Duration::from_secs(30 * 86_400), 200)
            .await?
            .into_iter()
            .filter_map(|row| {
                let by = account_view(engine, &row).reconnect_by?;
                Some((row, by))
            })
            .take(LISTED as usize)
            .collect();

    let providers: Vec<Provider> = Provider::ALL
        .iter()
        .copied()
        .filter(|p| {
            states.iter().any(|r| r.provider == p.as_str())
                || breakers
                    .get(p.as_str())
                    .is_some_and(|b| b.paused_until.is_some())
        })
        .collect();
    let status_of = |p: Provider, status: AccountStatus| -> i64 {
        states
            .iter()
            .filter(|r| r.provider == p.as_str() && r.status == status.as_str())
            .map(|r| r.accounts)
            .sum()
    };
    let health_of = |p: Option<Provider>, word: &str| -> i64 {
        health
            .iter()
            .filter(|r| p.is_none_or(|p| r.provider == p.as_str()) && r.health == word)
            .map(|r| r.accounts)
            .sum()
    };
    let flag_of = |p: Option<Provider>, f: fn(&census::HealthRow) -> i64| -> i64 {
        health
            .iter()
            .filter(|r| p.is_none_or(|p| r.provider == p.as_str()))
            .map(f)
            .sum()
    };
    let sum_of = |p: Option<Provider>, f: fn(&census::StateRow) -> i64| -> i64 {
        states
            .iter()
            .filter(|r| p.is_none_or(|p| r.provider == p.as_str()))
            .map(f)
            .sum()
    };
    let link = |p: Option<Provider>, filter: &str| -> String {
        let platform = p
            .map(|p| format!("&platform={}", p.as_str()))
            .unwrap_or_default();
        format!("{base}/accounts?{filter}{platform}")
    };
    let count = |n: i64, href: String| -> Markup {
        html! {
            @if n == 0 { span.muted { "0" } } @else { a href=(href) { (n) } }
        }
    };
    const HEALTH: [&str; 6] = [
        "healthy",
        "degraded",
        "inactive",
        "expired",
        "revoked",
        "disconnected",
    ];
    const STATUSES: [AccountStatus; 4] = [
        AccountStatus::Active,
        AccountStatus::TokenExpired,
        AccountStatus::Revoked,
        AccountStatus::Disconnected,
    ];

    // Attempts per minute over the hour, oldest first; failures by outcome.
    let start = hour_ago
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(hour_ago);
    let slot = |at: DateTime<Utc>| ((at - start).num_minutes().clamp(0, 60)) as usize;
    let mut all = vec![0i64; 61];
    let mut failures: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (minute, outcome, n) in &minutes {
        all[slot(*minute)] += n;
        if !matches!(outcome.as_str(), "refreshed" | "healthy") {
            failures
                .entry(outcome.clone())
                .or_insert_with(|| vec![0; 61])[slot(*minute)] += n;
        }
    }
    let total: i64 = all.iter().sum();

    let body = html! {
        @let paused: Vec<(&String, &Breaker)> = breakers.iter().filter(|(_, b)| b.paused_until.is_some()).collect();
        @if !paused.is_empty() {
            div.notice.bad role="status" {
                strong { "Paused platforms: " }
                @for (n, (name, _)) in paused.iter().enumerate() {
                    @if n > 0 { ", " }
                    @let p: Option<Provider> = name.parse().ok();
                    @match p { Some(p) => a href={ (base) "/platforms/" (p.config_key()) } { (name) }, None => (name) }
                }
            }
        }
        section.card aria-labelledby="by-platform" {
            h2 #by-platform { "Accounts by platform" }
            table {
                thead { tr {
                    th scope="col" { "Platform" }
                    @for s in STATUSES { th.num scope="col" { (s.as_str()) } }
                    @for h in HEALTH { th.num scope="col" { (h) } }
                    th.num scope="col" { "missing scopes" }
                    th.num scope="col" { "unrecognised answer" }
                } }
                tbody {
                    @for p in &providers {
                        tr {
                            th scope="row" { a href={ (base) "/platforms/" (p.config_key()) } { (p.as_str()) } }
                            @for s in STATUSES { td.num { (count(status_of(*p, s), link(Some(*p), &format!("status={}", s.as_str())))) } }
                            @for h in HEALTH { td.num { (count(health_of(Some(*p), h), link(Some(*p), &format!("health={h}")))) } }
                            td.num { (count(flag_of(Some(*p), |r| r.missing_scopes), link(Some(*p), "health=missing_scopes"))) }
                            td.num { (count(flag_of(Some(*p), |r| r.unrecognised), link(Some(*p), "failing=1"))) }
                        }
                    }
                    @if providers.is_empty() {
                        tr { td colspan="13" { span.muted { "No accounts yet." } } }
                    }
                }
                tfoot { tr {
                    th scope="row" { "All" }
                    @for s in STATUSES {
                        td.num { (count(states.iter().filter(|r| r.status == s.as_str()).map(|r| r.accounts).sum(), link(None, &format!("status={}", s.as_str())))) }
                    }
                    @for h in HEALTH { td.num { (count(health_of(None, h), link(None, &format!("health={h}")))) } }
                    td.num { (count(flag_of(None, |r| r.missing_scopes), link(None, "health=missing_scopes"))) }
                    td.num { (count(flag_of(None, |r| r.unrecognised), link(None, "failing=1"))) }
                } }
            }
        }
        div.grid {
            section.card aria-labelledby="expiring" {
                h2 #expiring { "Expiring, not yet refreshed" }
                dl.fields {
                    dt { "Access token within 1 h" } dd { (sum_of(None, |r| r.expiring_1h)) }
                    dt { "Access token within 24 h" } dd { (sum_of(None, |r| r.expiring_24h)) }
                    dt { "Access token already expired (ACTIVE)" } dd { (count(sum_of(None, |r| r.expired), link(None, "health=degraded"))) }
                    dt { "Refresh token ends within 7 days" } dd { (sum_of(None, |r| r.rt_expiring_7d)) }
                    dt { "Refresh token ends within 30 days" } dd { (sum_of(None, |r| r.rt_expiring_30d)) }
                    dt { "Refresh overdue" } dd { (sum_of(None, |r| r.overdue)) }
                }
                h3 { "Soonest within 1 h" }
                (account_list(base, &expiring_1h, |r| r.token_expires_at))
                h3 { "Soonest within 24 h" }
                (account_list(base, &expiring_24h, |r| r.token_expires_at))
            }
            section.card aria-labelledby="reconnect" {
                h2 #reconnect { "Reconnect deadlines within 30 days" }
                @if reconnect.is_empty() {
                    p.muted { "None." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Account" } th scope="col" { "Platform" } th scope="col" { "Reconnect by" } } }
                        tbody {
                            @for (row, by) in &reconnect {
                                tr {
                                    td { a href={ (base) "/accounts/" (row.id) } { (label(row)) } }
                                    td { (row.provider.as_str()) }
                                    td { (when(Some(*by))) }
                                }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="rates" {
                h2 #rates { "Refreshes, last hour" }
                p {
                    (svg(sparkline(&all, "Attempts per minute over the last hour")))
                    " " strong { (total) } " attempts"
                }
                h3 { "Failures by outcome" }
                @if failures.is_empty() {
                    p.muted { "No failures in the last hour." }
                } @else {
                    table {
                        tbody {
                            @for (outcome, series) in &failures {
                                tr {
                                    th scope="row" { (badge(outcome)) }
                                    td { (svg(sparkline(series, &format!("{outcome} per minute over the last hour")).replace("class=\"spark\"", "class=\"spark failures\""))) }
                                    td.num { (series.iter().sum::<i64>()) }
                                }
                            }
                        }
                    }
                }
            }
            section.card.wide aria-labelledby="breakers" {
                h2 #breakers { "Platforms' circuit breakers" }
                table {
                    thead { tr { th scope="col" { "Platform" } th scope="col" { "State" } th scope="col" { "Why" } } }
                    tbody {
                        @for p in Provider::ALL {
                            @let breaker = breakers.get(p.as_str());
                            @if breaker.is_some() || providers.contains(p) {
                                tr {
                                    th scope="row" { a href={ (base) "/platforms/" (p.config_key()) } { (p.as_str()) } }
                                    td { (badge(breaker.map_or("unknown", Breaker::word))) }
                                    td {
                                        @match breaker {
                                            None => span.muted { "no worker reporting" },
                                            Some(b) if b.paused_until.is_some() => {
                                                (b.reasons.join("; ")) " — until " (when(b.paused_until))
                                            },
                                            Some(_) => span.muted { "—" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="queue" {
                h2 #queue { "Queue" }
                dl.fields {
                    dt { "Claimed, not finished" } dd { (claims.outstanding) }
                    dt { "Oldest claim" } dd { (span(claims.oldest_age_seconds.max(0.0) as u64)) }
                    dt { "Due, not yet claimed" } dd { (claims.due_unclaimed) }
                    dt { "Unrecognised platform answers" } dd { (count(flag_of(None, |r| r.unrecognised), link(None, "failing=1"))) }
                }
            }
        }
    };
    let shell = Shell {
        base,
        operator: Some((&operator.key_id, &operator.csrf)),
    };
    Ok(Html(page(&shell, "Overview", body).into_string()))
}

/// The account's handle, or its external id.
pub fn label(row: &AccountRow) -> String {
    row.handle
        .clone()
        .unwrap_or_else(|| row.external_id.clone())
}

fn account_list(
    base: &str,
    rows: &[AccountRow],
    at: fn(&AccountRow) -> Option<DateTime<Utc>>,
) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "None." }
        } @else {
            ul {
                @for row in rows {
                    li {
                        a href={ (base) "/accounts/" (row.id) } { (label(row)) }
                        " " span.muted { (row.provider.as_str()) } " — " (when(at(row)))
                    }
                }
            }
        }
    }
}
