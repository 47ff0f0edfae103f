//! The `social_accounts` aggregate: registration (upsert), reads and listing.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use crate::crypto::{Field, Keyring};
use crate::domain::{
    AccessToken, AccountId, AccountStatus, ConnectionType, Provider, RefreshToken,
};
use crate::policy::RefreshPolicy;
use crate::providers::{DpopKey, needs_dpop_key};
use crate::store::events;

/// The columns of an account row beyond `social_accounts a`: its schedule,
/// kept in `account_schedule s` (migration 0009).
macro_rules! schedule_columns {
    () => {
        "s.next_attempt_at, s.claim_id, s.claimed_at, s.claimed_by"
    };
}
pub(crate) use schedule_columns;

/// One account: its row of `social_accounts` with its schedule. Ciphertexts
/// are opaque bytes here; the engine decrypts them only for the duration of
/// a provider call.
#[derive(Debug, Clone, FromRow)]
pub struct AccountRow {
    #[sqlx(try_from = "String")]
    pub id: AccountId,
    pub workspace_id: String,
    #[sqlx(try_from = "String")]
    pub provider: Provider,
    pub external_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    #[sqlx(try_from = "String")]
    pub connection_type: ConnectionType,
    pub granted_scopes: Vec<String>,
    /// Publishing scopes the account lacks (`scopes::missing`).
    pub missing_scopes: Vec<String>,
    pub meta: serde_json::Value,
    pub default_board_id: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub token_issued_at: Option<DateTime<Utc>>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub last_refresh_attempt_at: Option<DateTime<Utc>>,
    pub last_refresh_error: Option<String>,
    pub last_refresh_error_status: Option<i32>,
    pub consecutive_failures: i32,
    /// The scheduler's plan: None when nothing is planned or the account is
    /// not ACTIVE.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub access_token_ciphertext: Option<Vec<u8>>,
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    pub credentials_key_id: Option<String>,
    /// atproto OAuth accounts only: the DPoP private key, under the same key id.
    pub dpop_key_ciphertext: Option<Vec<u8>>,
    pub credentials_version: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub lease_started_at: Option<DateTime<Utc>>,
    pub interrupted_refresh_at: Option<DateTime<Utc>>,
    /// How that refresh ended (see migration 0007).
    pub interrupted_refresh_cause: Option<String>,
    pub claim_id: Option<uuid::Uuid>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The platform reports the account itself inactive, with its reason:
    /// ACTIVE still, but unable to post.
    pub account_inactive_reason: Option<String>,
    pub account_inactive_since: Option<DateTime<Utc>>,
    /// The latest answer was unrecognised (kept in `last_refresh_error`).
    pub unrecognised_answer: bool,
}

impl AccountRow {
    pub fn has_refresh_token(&self) -> bool {
        self.refresh_token_ciphertext.is_some()
    }
}

/// An account as the API tier or the CLI registers it.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub workspace_id: String,
    pub provider: Provider,
    pub external_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub connection_type: ConnectionType,
    pub granted_scopes: Vec<String>,
    pub meta: serde_json::Value,
    pub default_board_id: Option<String>,
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub token_issued_at: DateTime<Utc>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// A DPoP key supplied by the API tier; one is generated for flows that
    /// need one when none is given.
    pub dpop_key: Option<DpopKey>,
}

#[derive(Debug, Clone)]
pub struct Registered {
    pub account: AccountRow,
    /// False when an existing account (same workspace, provider and external
    /// id) was reconnected with new credentials.
    pub created: bool,
    /// Whether the status changed (a new account, or a reconnect from
    /// anything but ACTIVE): an outbox event was written.
    pub status_changed: bool,
}

/// Registers an account, or reconnects it: a reconnect replaces the
/// credentials, sets ACTIVE, clears failures, and bumps the credentials
/// version so that any refresh in flight for the old credentials is fenced
/// out. A status change is written to the outbox in the same transaction.
pub async fn register(
    pool: &PgPool,
    keyring: &Keyring,
    policy: &RefreshPolicy,
    new: &NewAccount,
) -> Result<Registered, sqlx::Error> {
    // Two registrations of one new account can race to INSERT; the loser
    // retries and takes the reconnect path.
    for _ in 0..2 {
        match register_once(pool, keyring, policy, new).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            other => return other,
        }
    }
    register_once(pool, keyring, policy, new).await
}

async fn register_once(
    pool: &PgPool,
    keyring: &Keyring,
    policy: &RefreshPolicy,
    new: &NewAccount,
) -> Result<Registered, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let existing: Option<(String, String)> = sqlx::query_as(
        "SELECT id, status FROM social_accounts
         WHERE workspace_id = $1 AND provider = $2 AND external_id = $3
         FOR UPDATE",
    )
    .bind(&new.workspace_id)
    .bind(new.provider.as_str())
    .bind(&new.external_id)
    .fetch_optional(&mut *tx)
    .await?;

    let (id, previous_status) = match existing {
        Some((id, status)) => (
            id.parse::<AccountId>()
                .map_err(|e| sqlx::Error::Decode(e.into()))?,
            Some(
                status
                    .parse::<AccountStatus>()
                    .map_err(|e| sqlx::Error::Decode(e.into()))?,
            ),
        ),
        None => (AccountId::generate(), None),
    };
    let access = keyring.encrypt(&id, Field::AccessToken, new.access_token.expose());
    let refresh = new
        .refresh_token
        .as_ref()
        .map(|rt| keyring.encrypt(&id, Field::RefreshToken, rt.expose()));
    let dpop_key = new
        .dpop_key
        .clone()
        .or_else(|| needs_dpop_key(new.provider, &new.meta).then(DpopKey::generate))
        .map(|key| {
            keyring.encrypt(
                &id,
                Field::DpopKey,
                secrecy::ExposeSecret::expose_secret(&key.to_private_jwk()),
            )
        });
    let next_attempt_at = policy
        .plan(&id, new.token_issued_at, new.token_expires_at)
        .at();
    // Where the platform gave no refresh-token expiry, the configured
    // lifetime (if known) counts from this connection.
    let refresh_token_expires_at = new.refresh_token_expires_at.or_else(|| {
        new.refresh_token.as_ref()?;
        policy
            .refresh_token_lifetime
            .map(|l| new.token_issued_at + crate::policy::delta(l))
    });
    let dead_at = policy.dead_at(
        new.token_expires_at,
        new.refresh_token.is_some(),
        refresh_token_expires_at,
    );

    let account: AccountRow = sqlx::query_as(concat!(
        "WITH a AS (
         INSERT INTO social_accounts (
             id, workspace_id, provider, external_id, handle, display_name, avatar_url,
             status, connection_type, granted_scopes, meta, default_board_id,
             token_issued_at, token_expires_at, refresh_token_expires_at,
             access_token_ciphertext, refresh_token_ciphertext, credentials_key_id, missing_scopes,
             dpop_key_ciphertext)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'ACTIVE', $8, $9, $10, $11, $12, $13, $14, $16, $17, $18, $19, $20)
         ON CONFLICT (id) DO UPDATE SET
             handle = EXCLUDED.handle,
             display_name = EXCLUDED.display_name,
             avatar_url = EXCLUDED.avatar_url,
             status = 'ACTIVE',
             status_reason = NULL,
             connection_type = EXCLUDED.connection_type,
             granted_scopes = EXCLUDED.granted_scopes,
             missing_scopes = EXCLUDED.missing_scopes,
             meta = EXCLUDED.meta,
             default_board_id = EXCLUDED.default_board_id,
             connected_at = now(),
             token_issued_at = EXCLUDED.token_issued_at,
             token_expires_at = EXCLUDED.token_expires_at,
             refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
             last_refresh_error = NULL,
             last_refresh_error_status = NULL,
             consecutive_failures = 0,
             access_token_ciphertext = EXCLUDED.access_token_ciphertext,
             refresh_token_ciphertext = EXCLUDED.refresh_token_ciphertext,
             credentials_key_id = EXCLUDED.credentials_key_id,
             dpop_key_ciphertext = EXCLUDED.dpop_key_ciphertext,
             credentials_version = social_accounts.credentials_version + 1,
             interrupted_refresh_at = NULL,
             interrupted_refresh_cause = NULL,
             account_inactive_reason = NULL,
             account_inactive_since = NULL,
             unrecognised_answer = false,
             updated_at = now()
         RETURNING *),
         s AS (
         INSERT INTO account_schedule (account_id, next_attempt_at, access_expires_at, dead_at)
         SELECT id, $15, token_expires_at, $21 FROM a
         ON CONFLICT (account_id) DO UPDATE SET
             next_attempt_at = EXCLUDED.next_attempt_at,
             access_expires_at = EXCLUDED.access_expires_at,
             dead_at = EXCLUDED.dead_at,
             claim_id = NULL, claimed_at = NULL, claimed_by = NULL
         RETURNING *)
         SELECT a.*, ",
        schedule_columns!(),
        " FROM a JOIN s ON s.account_id = a.id"
    ))
    .bind(id.as_str())
    .bind(&new.workspace_id)
    .bind(new.provider.as_str())
    .bind(&new.external_id)
    .bind(&new.handle)
    .bind(&new.display_name)
    .bind(&new.avatar_url)
    .bind(new.connection_type.as_str())
    .bind(&new.granted_scopes)
    .bind(&new.meta)
    .bind(&new.default_board_id)
    .bind(new.token_issued_at)
    .bind(new.token_expires_at)
    .bind(refresh_token_expires_at)
    .bind(next_attempt_at)
    .bind(access)
    .bind(refresh)
    .bind(keyring.primary_key_id())
    .bind(crate::scopes::missing(
        &policy.publish_scopes,
        &new.granted_scopes,
    ))
    .bind(dpop_key)
    .bind(dead_at)
    .fetch_one(&mut *tx)
    .await?;

    let reason = match previous_status {
        None => Some("connected"),
        Some(AccountStatus::Active) => None,
        Some(_) => Some("reconnected"),
    };
    if let Some(reason) = reason {
        events::insert(
            &mut tx,
            &account,
            previous_status,
            AccountStatus::Active,
            reason,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Registered {
        account,
        created: previous_status.is_none(),
        status_changed: previous_status != Some(AccountStatus::Active),
    })
}

/// Records the scopes an account now holds (the API tier learns of a new
/// grant, or a platform answered with its `scope`) and recomputes what it
/// lacks for publishing. None when the account does not exist.
pub async fn update_scopes(
    pool: &PgPool,
    id: &AccountId,
    policy: &RefreshPolicy,
    granted: &[String],
) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "WITH a AS (
             UPDATE social_accounts
             SET granted_scopes = $2, missing_scopes = $3, updated_at = now()
             WHERE id = $1
             RETURNING *)
         SELECT a.*, ",
        schedule_columns!(),
        " FROM a LEFT JOIN account_schedule s ON s.account_id = a.id"
    ))
    .bind(id.as_str())
    .bind(granted)
    .bind(crate::scopes::missing(&policy.publish_scopes, granted))
    .fetch_optional(pool)
    .await
}

pub async fn get(pool: &PgPool, id: &AccountId) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT a.*, ",
        schedule_columns!(),
        " FROM social_accounts a LEFT JOIN account_schedule s ON s.account_id = a.id
         WHERE a.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<AccountStatus>,
    pub provider: Option<Provider>,
    pub workspace_id: Option<String>,
    /// Matched case-insensitively anywhere in the handle or display name.
    pub query: Option<String>,
    /// DISCONNECTED accounts are left out unless asked for by status or here.
    pub include_disconnected: bool,
    /// Keyset position: rows strictly after this one in listing order.
    pub after: Option<ListCursor>,
    pub limit: i64,
    /// The console's search: part of the handle or display name (any
    /// case), or exactly the external id, the workspace id or the id.
    pub search: Option<String>,
    /// Only accounts of this health (see [`HEALTH_SQL`]).
    pub health: Option<HealthFilter>,
    /// Only ACTIVE accounts whose refreshes fail now (failures counted, an
    /// expired access token, or an answer not recognised).
    pub failing: bool,
}

/// An account's health word in SQL, the same rules as the API's view of an
/// account: `disconnected`, `revoked`, `expired`, `inactive` (the platform
/// reports the account itself inactive), `degraded` (failures, or an
/// expired access token), `healthy`.
pub const HEALTH_SQL: &str = "CASE
        WHEN status = 'DISCONNECTED' THEN 'disconnected'
        WHEN status = 'REVOKED' THEN 'revoked'
        WHEN status = 'TOKEN_EXPIRED' THEN 'expired'
        WHEN account_inactive_reason IS NOT NULL THEN 'inactive'
        WHEN token_expires_at <= now() OR consecutive_failures > 0 THEN 'degraded'
        ELSE 'healthy' END";

/// What the console filters accounts by: a health word, or lacking
/// publish scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthFilter {
    Healthy,
    Degraded,
    Inactive,
    Expired,
    Revoked,
    Disconnected,
    MissingScopes,
}

impl HealthFilter {
    pub const ALL: [HealthFilter; 7] = [
        HealthFilter::Healthy,
        HealthFilter::Degraded,
        HealthFilter::Inactive,
        HealthFilter::Expired,
        HealthFilter::Revoked,
        HealthFilter::Disconnected,
        HealthFilter::MissingScopes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HealthFilter::Healthy => "healthy",
            HealthFilter::Degraded => "degraded",
            HealthFilter::Inactive => "inactive",
            HealthFilter::Expired => "expired",
            HealthFilter::Revoked => "revoked",
            HealthFilter::Disconnected => "disconnected",
            HealthFilter::MissingScopes => "missing_scopes",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == text)
    }
}

/// A position in the listing order (newest connected first, then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub connected_at: DateTime<Utc>,
    pub id: String,
}

impl ListCursor {
    pub fn of(row: &AccountRow) -> Self {
        Self {
            connected_at: row.connected_at,
            id: row.id.as_str().to_owned(),
        }
    }
}

/// Newest connected first, keyset-paginated so that inserts between pages
/// neither repeat nor skip rows already in the listing.
pub async fn list(pool: &PgPool, filter: &ListFilter) -> Result<Vec<AccountRow>, sqlx::Error> {
    let pattern = filter.query.as_deref().map(like_pattern);
    let search_pattern = filter.search.as_deref().map(like_pattern);
    // A health filter names its own statuses, as a status filter does.
    let include_disconnected =
        filter.include_disconnected || filter.health == Some(HealthFilter::Disconnected);
    let sql = format!(concat!(
        "SELECT a.*, ",
        schedule_columns!(),
        " FROM social_accounts a LEFT JOIN account_schedule s ON s.account_id = a.id
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR provider = $2)
           AND ($3::text IS NULL OR workspace_id = $3)
           AND ($4::text IS NULL OR handle ILIKE $4 OR display_name ILIKE $4)
           AND ($5 OR $1::text IS NOT NULL OR status <> 'DISCONNECTED')
           AND ($6::timestamptz IS NULL OR (connected_at, id) < ($6, $7))
           AND ($9::text IS NULL OR handle ILIKE $10 OR display_name ILIKE $10
                OR external_id = $9 OR workspace_id = $9 OR id = $9)
           AND ($11::text IS NULL
                OR ($11 = 'missing_scopes' AND status = 'ACTIVE' AND cardinality(missing_scopes) > 0)
                OR {HEALTH_SQL} = $11)
           AND (NOT $12 OR (status = 'ACTIVE' AND (consecutive_failures > 0
                OR token_expires_at <= now() OR unrecognised_answer)))
         ORDER BY connected_at DESC, id DESC
         LIMIT $8"
        ),
        HEALTH_SQL = HEALTH_SQL
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.provider.map(|p| p.as_str()))
        .bind(&filter.workspace_id)
        .bind(pattern)
        .bind(include_disconnected)
        .bind(filter.after.as_ref().map(|c| c.connected_at))
        .bind(filter.after.as_ref().map(|c| c.id.as_str()))
        .bind(filter.limit)
        .bind(filter.search.as_deref())
        .bind(search_pattern)
        .bind(filter.health.map(HealthFilter::as_str))
        .bind(filter.failing)
        .fetch_all(pool)
        .await
}

/// `text` as an ILIKE pattern matching it anywhere, its wildcards escaped.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// ACTIVE accounts whose access token expires within `within` (not yet
/// refreshed: a refresh moves the expiry), soonest first. Read from the
/// schedule's copy of the expiry (migration 0013), in its index's order.
pub async fn expiring_within(
    pool: &PgPool,
    within: std::time::Duration,
    limit: i64,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT a.*, ",
        schedule_columns!(),
        " FROM account_schedule s JOIN social_accounts a ON a.id = s.account_id
         WHERE s.access_expires_at > now() AND s.access_expires_at <= now() + $1
           AND a.status = 'ACTIVE'
         ORDER BY s.access_expires_at LIMIT $2"
    ))
    .bind(within)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// ACTIVE accounts whose refresh token ends within `within`, or whose
/// access token does and that hold no refresh token: the candidates for a
/// reconnect deadline (the view decides, knowing each platform's flow),
/// soonest first. Both are among the accounts whose credentials die by time
/// within `within`: the schedule's `dead_at` index finds those (migration
/// 0013), the account row decides.
pub async fn reconnect_candidates(
    pool: &PgPool,
    within: std::time::Duration,
    limit: i64,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT a.*, ",
        schedule_columns!(),
        " FROM account_schedule s JOIN social_accounts a ON a.id = s.account_id
         WHERE s.dead_at > now() AND s.dead_at <= now() + $1
           AND status = 'ACTIVE'
           AND ((refresh_token_expires_at > now() AND refresh_token_expires_at <= now() + $1)
                OR (refresh_token_expires_at IS NULL AND refresh_token_ciphertext IS NULL
                    AND token_expires_at > now() AND token_expires_at <= now() + $1))
         -- The death instant is the deadline in both cases: the index's
         -- order, read until the limit.
         ORDER BY s.dead_at LIMIT $2"
    ))
    .bind(within)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Marks an account DISCONNECTED and wipes its credentials, with an event.
/// Bumping the credentials version fences out a refresh in flight. None when
/// the account is unknown or already disconnected.
pub async fn disconnect(
    pool: &PgPool,
    id: &AccountId,
    reason: &str,
) -> Result<Option<AccountRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let before: Option<(String,)> = sqlx::query_as(
        "SELECT status FROM social_accounts WHERE id = $1 AND status <> 'DISCONNECTED' FOR UPDATE",
    )
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status,)) = before else {
        return Ok(None);
    };
    let from: AccountStatus = status
        .parse()
        .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))?;
    let account: AccountRow = sqlx::query_as(concat!(
        "WITH a AS (
             UPDATE social_accounts SET
                 status = 'DISCONNECTED', status_reason = $2,
                 access_token_ciphertext = NULL, refresh_token_ciphertext = NULL,
                 credentials_key_id = NULL,
                 credentials_version = credentials_version + 1,
                 updated_at = now()
             WHERE id = $1
             RETURNING *),
         s AS (
             UPDATE account_schedule SET
                 next_attempt_at = NULL, claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
                 access_expires_at = NULL, dead_at = NULL
             WHERE account_id = $1
             RETURNING *)
         SELECT a.*, ",
        schedule_columns!(),
        " FROM a LEFT JOIN s ON s.account_id = a.id"
    ))
    .bind(id.as_str())
    .bind(reason)
    .fetch_one(&mut *tx)
    .await?;
    events::insert(
        &mut tx,
        &account,
        Some(from),
        AccountStatus::Disconnected,
        reason,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(account))
}

/// Ids of ACTIVE accounts whose next attempt is due, oldest first.
pub async fn due_ids(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AccountId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT account_id FROM account_schedule
         WHERE next_attempt_at <= $1
         ORDER BY next_attempt_at
         LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    ids.into_iter()
        .map(|id| {
            id.parse()
                .map_err(|e: crate::domain::InvalidAccountId| sqlx::Error::Decode(e.into()))
        })
        .collect()
}
