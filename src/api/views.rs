//! How an account looks to the API tier: its profile and a health verdict
//! the publisher can act on without knowing the status rules.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{AccountStatus, ConnectionType, Provider};
use crate::engine::Engine;
use crate::store::accounts::AccountRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthWord {
    /// ACTIVE, last attempt fine.
    Healthy,
    /// ACTIVE, but the latest refresh failed for a transient reason (or
    /// the access token already expired and refreshes are being retried).
    Degraded,
    /// TOKEN_EXPIRED: the user must reconnect.
    Expired,
    /// REVOKED: the user or platform withdrew access; reconnect.
    Revoked,
    Disconnected,
}

/// The account's health in the words the platforms' own account APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// ACTIVE, last attempt fine.
    Healthy,
    /// ACTIVE, but the latest refresh failed for a transient reason (or
    /// the access token already expired and refreshes are being retried).
    Degraded,
    /// ACTIVE credentials, but the platform reports the account itself
    /// inactive (deactivated, disabled login, ...): it cannot act.
    Inactive,
    /// TOKEN_EXPIRED: the user must reconnect.
    Expired,
    /// REVOKED: the user or platform withdrew access; reconnect.
    Revoked,
    Disconnected,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// True while the connection works: the account is ACTIVE and the
    /// platform does not report it inactive.
    pub is_active: bool,
    /// Deprecated: the former name of `status` (without `inactive`, which
    /// it reports as `healthy` or `degraded`). Kept for one release.
    #[deprecated = "use `status`"]
    // A plain string here: a `$ref` cannot carry `deprecated`.
    #[schema(value_type = String)]
    pub word: HealthWord,
    /// Whether a post made now can be expected to succeed: false when the
    /// status or token rules it out, a publish scope is missing, or the
    /// platform reports the account inactive.
    pub can_post: bool,
    /// Why, when not healthy or unable to post.
    pub reason: Option<String>,
    /// Facts about the account beside its status: `account_inactive` (the
    /// platform says the account cannot act), `missing_scopes`,
    /// `unrecognised_answer` (the latest answer matched no known shape),
    /// `no_refresh_token` (the platform issued none where refreshes need
    /// one: the user must reconnect by `reconnect_by`).
    pub flags: Vec<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: String,
    pub workspace_id: String,
    pub provider: Provider,
    pub external_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub connection_type: ConnectionType,
    pub health: Health,
    /// Scopes the platform granted.
    pub scopes: Vec<String>,
    /// Scopes the configuration says publishing needs on this platform
    /// (`providers.<name>.publish_scopes`) that were not granted: a publisher
    /// can fail fast instead of posting into a 403.
    pub missing_scopes: Vec<String>,
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
    pub default_board_id: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// The date by which the user must reconnect, where one is known: the
    /// refresh token's end, or the access token's where nothing can renew it.
    pub reconnect_by: Option<DateTime<Utc>>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub last_refresh_attempt_at: Option<DateTime<Utc>>,
    pub last_refresh_error: Option<String>,
    pub last_refresh_error_status: Option<i32>,
    pub consecutive_failures: i32,
    /// When the daemon next refreshes or checks the account.
    pub next_refresh_at: Option<DateTime<Utc>>,
}

// Builds the deprecated `word` beside its successor.
#[allow(deprecated)]
pub fn health(row: &AccountRow, now: DateTime<Utc>) -> Health {
    let (word, can_post, reason) = match row.status {
        AccountStatus::Disconnected => (HealthWord::Disconnected, false, row.status_reason.clone()),
        AccountStatus::Revoked => (HealthWord::Revoked, false, row.status_reason.clone()),
        AccountStatus::TokenExpired => (HealthWord::Expired, false, row.status_reason.clone()),
        AccountStatus::Active => {
            if row.token_expires_at.is_some_and(|at| at <= now) {
                let why = match &row.last_refresh_error {
                    Some(error) => format!("access token expired; refresh failing: {error}"),
                    None => "access token expired; refresh pending".to_owned(),
                };
                (HealthWord::Degraded, false, Some(why))
            } else if row.consecutive_failures > 0 {
                (HealthWord::Degraded, true, row.last_refresh_error.clone())
            } else {
                (HealthWord::Healthy, true, None)
            }
        }
    };
    let status = match word {
        HealthWord::Healthy => HealthStatus::Healthy,
        HealthWord::Degraded => HealthStatus::Degraded,
        HealthWord::Expired => HealthStatus::Expired,
        HealthWord::Revoked => HealthStatus::Revoked,
        HealthWord::Disconnected => HealthStatus::Disconnected,
    };
    let mut health = Health {
        status,
        is_active: row.status == AccountStatus::Active,
        word,
        can_post,
        reason,
        flags: Vec::new(),
    };
    if row.status == AccountStatus::Active {
        if let Some(inactive) = &row.account_inactive_reason {
            health.flags.push("account_inactive");
            health.status = HealthStatus::Inactive;
            health.is_active = false;
            health.can_post = false;
            health.reason = Some(join(health.reason.take(), inactive));
        }
        if !row.missing_scopes.is_empty() {
            health.flags.push("missing_scopes");
            health.can_post = false;
            let missing = format!(
                "missing publish scopes: {}; the user must reconnect and grant them",
                row.missing_scopes.join(", ")
            );
            health.reason = Some(join(health.reason.take(), &missing));
        }
        if row.unrecognised_answer {
            health.flags.push("unrecognised_answer");
        }
    }
    health
}

fn join(first: Option<String>, then: &str) -> String {
    match first {
        Some(first) => format!("{first}; {then}"),
        None => then.to_owned(),
    }
}

pub fn account_view(engine: &Engine, row: &AccountRow) -> AccountView {
    let without_refresh_token =
        !row.has_refresh_token() && engine.needs_refresh_token(row.provider);
    let reconnect_by = row.refresh_token_expires_at.or_else(|| {
        without_refresh_token
            .then_some(row.token_expires_at)
            .flatten()
    });
    let mut health = health(row, Utc::now());
    if without_refresh_token && row.status == AccountStatus::Active {
        health.flags.push("no_refresh_token");
    }
    AccountView {
        id: row.id.as_str().to_owned(),
        workspace_id: row.workspace_id.clone(),
        provider: row.provider,
        external_id: row.external_id.clone(),
        handle: row.handle.clone(),
        display_name: row.display_name.clone(),
        avatar_url: row.avatar_url.clone(),
        status: row.status,
        status_reason: row.status_reason.clone(),
        connection_type: row.connection_type,
        health,
        scopes: row.granted_scopes.clone(),
        missing_scopes: row.missing_scopes.clone(),
        meta: row.meta.clone(),
        default_board_id: row.default_board_id.clone(),
        connected_at: row.connected_at,
        token_expires_at: row.token_expires_at,
        refresh_token_expires_at: row.refresh_token_expires_at,
        reconnect_by: reconnect_by.filter(|_| row.status == AccountStatus::Active),
        last_refreshed_at: row.last_refreshed_at,
        last_refresh_attempt_at: row.last_refresh_attempt_at,
        last_refresh_error: row.last_refresh_error.clone(),
        last_refresh_error_status: row.last_refresh_error_status,
        consecutive_failures: row.consecutive_failures,
        next_refresh_at: row
            .next_attempt_at
            .filter(|_| row.status == AccountStatus::Active),
    }
}
