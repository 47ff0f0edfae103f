//! Group commit of successful refreshes and group leasing (see
//! `store::batch`): one fenced multi-row UPDATE with its attempt rows and
//! events for the writes, one multi-row UPDATE for the leases.
//!
//! Each request keeps its own answer: the rows the fence (or the lease's
//! conditions) matched are named in the statement's result, so a fenced-out
//! account is told apart from its neighbours; and a batch the database
//! refuses as a whole is run again one request at a time, so one account's
//! bad row never fails another's.

use std::time::Duration;

use sqlx::PgPool;

use super::NewCredentials;
use super::grant::commit_refreshed;
use super::lease::{Leased, acquire_lease};
use crate::domain::{AccountId, AccountStatus};
use crate::store::accounts::AccountRow;
use crate::store::attempts::NewAttempt;
use crate::store::batch::{Batcher, Keyed};

/// Most requests in one flush: bounds the statement's size and the time its
/// rows stay locked.
const MAX_BATCH: usize = 128;

/// Flushes at the database at once: one forms while another is out.
const FLUSHERS: usize = 2;

/// One successful refresh waiting to be stored.
struct Write {
    leased: AccountRow,
    attempt: NewAttempt,
    credentials: NewCredentials,
}

impl Keyed for Write {
    fn account(&self) -> &str {
        self.leased.id.as_str()
    }
}

type Stored = Result<Option<AccountStatus>, sqlx::Error>;

/// Where refreshes send their new credentials; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    pool: PgPool,
    owner: String,
    batcher: Batcher<Write, Stored>,
}

impl GroupCommit {
    /// Starts the flusher on the current runtime.
    pub fn start(pool: PgPool, owner: String) -> Self {
        let (flush_pool, flush_owner) = (pool.clone(), owner.clone());
        let batcher = Batcher::start(MAX_BATCH, FLUSHERS, move |writes| {
            let (pool, owner) = (flush_pool.clone(), flush_owner.clone());
            async move { flush_writes(&pool, &owner, writes).await }
        });
        Self {
            pool,
            owner,
            batcher,
        }
    }

    /// As `commit_refreshed`: Some(the status the account had) when the
    /// write landed, None when the fence did not match.
    pub async fn commit_refreshed(
        &self,
        leased: &AccountRow,
        attempt: &NewAttempt,
        credentials: &NewCredentials,
    ) -> Stored {
        let write = Write {
            leased: leased.clone(),
            attempt: attempt.clone(),
            credentials: credentials.clone(),
        };
        match self.batcher.submit(write).await {
            Ok(stored) => stored,
            Err(()) => {
                commit_refreshed(&self.pool, leased, &self.owner, attempt, credentials).await
            }
        }
    }

    /// Flushes so far (each one transaction, or one per write of a batch
    /// the database refused as a whole).
    pub fn flushes(&self) -> u64 {
        self.batcher.flushes()
    }
}

async fn flush_writes(pool: &PgPool, owner: &str, writes: Vec<Write>) -> Vec<Stored> {
    if writes.len() > 1 {
        if let Ok(applied) = commit_many(pool, owner, &writes).await {
            return writes
                .iter()
                .map(|write| {
                    Ok(applied
                        .iter()
                        .find(|(id, _)| id == write.leased.id.as_str())
                        .map(|(_, status)| *status))
                })
                .collect();
        }
    }
    let mut stored = Vec::with_capacity(writes.len());
    for w in &writes {
        stored.push(commit_refreshed(pool, &w.leased, owner, &w.attempt, &w.credentials).await);
    }
    stored
}

/// The writes of a batch in one statement; returns the accounts the fence
/// matched, with the status each had.
async fn commit_many(
    pool: &PgPool,
    owner: &str,
    batch: &[Write],
) -> Result<Vec<(String, AccountStatus)>, sqlx::Error> {
    let ids: Vec<&str> = batch.iter().map(|w| w.leased.id.as_str()).collect();
    let access: Vec<&[u8]> = batch
        .iter()
        .map(|w| w.credentials.access_token_ciphertext.as_slice())
        .collect();
    let refresh: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|w| w.credentials.refresh_token_ciphertext.as_deref())
        .collect();
    let key_ids: Vec<&str> = batch
        .iter()
        .map(|w| w.credentials.key_id.as_str())
        .collect();
    let issued_at: Vec<_> = batch.iter().map(|w| w.credentials.issued_at).collect();
    let expires_at: Vec<_> = batch.iter().map(|w| w.credentials.expires_at).collect();
    let refresh_expires_at: Vec<_> = batch
        .iter()
        .map(|w| w.credentials.refresh_token_expires_at)
        .collect();
    // Scope lists travel as JSON: a text[] of text[] cannot be unnested.
    let as_json = |scopes: &Option<Vec<String>>| {
        scopes
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("strings serialize"))
    };
    let granted: Vec<Option<String>> = batch
        .iter()
        .map(|w| as_json(&w.credentials.granted_scopes))
        .collect();
    let missing: Vec<Option<String>> = batch
        .iter()
        .map(|w| as_json(&w.credentials.missing_scopes))
        .collect();
    let next_attempt_at: Vec<_> = batch
        .iter()
        .map(|w| w.credentials.next_attempt_at)
        .collect();
    let finished_at: Vec<_> = batch.iter().map(|w| w.attempt.finished_at).collect();
    let dpop: Vec<Option<&[u8]>> = batch
        .iter()
        .map(|w| w.credentials.dpop_key_ciphertext.as_deref())
        .collect();
    let versions: Vec<i64> = batch.iter().map(|w| w.leased.credentials_version).collect();
    let triggers: Vec<&str> = batch.iter().map(|w| w.attempt.trigger.as_str()).collect();
    let started_at: Vec<_> = batch.iter().map(|w| w.attempt.started_at).collect();
    let messages: Vec<Option<&str>> = batch.iter().map(|w| w.attempt.message.as_deref()).collect();
    let durations: Vec<i32> = batch
        .iter()
        .map(|w| {
            (w.attempt.finished_at - w.attempt.started_at)
                .num_milliseconds()
                .clamp(0, i32::MAX as i64) as i32
        })
        .collect();
    let event_ids: Vec<uuid::Uuid> = batch.iter().map(|_| uuid::Uuid::now_v7()).collect();

    let rows: Vec<(String, String)> = sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[],
                                  $5::timestamptz[], $6::timestamptz[], $7::timestamptz[],
                                  $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[],
                                  $12::bytea[], $13::int8[], $14::text[], $15::timestamptz[],
                                  $16::text[], $17::int4[], $18::uuid[])
                 AS i(id, access, refresh, key_id, issued_at, expires_at, refresh_expires_at,
                      granted, next_attempt_at, finished_at, missing, dpop, version, trigger,
                      started_at, message, duration_ms, event_id)),
         upd AS (
             UPDATE social_accounts a SET
                 access_token_ciphertext = i.access,
                 refresh_token_ciphertext = i.refresh,
                 credentials_key_id = i.key_id,
                 credentials_version = a.credentials_version + 1,
                 token_issued_at = i.issued_at,
                 last_refreshed_at = i.issued_at,
                 token_expires_at = i.expires_at,
                 refresh_token_expires_at = i.refresh_expires_at,
                 granted_scopes = CASE WHEN i.granted IS NULL THEN a.granted_scopes
                     ELSE ARRAY(SELECT jsonb_array_elements_text(i.granted::jsonb)) END,
                 missing_scopes = CASE WHEN i.missing IS NULL THEN a.missing_scopes
                     ELSE ARRAY(SELECT jsonb_array_elements_text(i.missing::jsonb)) END,
                 next_attempt_at = i.next_attempt_at,
                 last_refresh_attempt_at = i.finished_at,
                 dpop_key_ciphertext = i.dpop,
                 unrecognised_answer = false,
                 last_refresh_error = NULL,
                 last_refresh_error_status = NULL,
                 consecutive_failures = 0,
                 status = 'ACTIVE',
                 status_reason = NULL,
                 interrupted_refresh_at = NULL,
                 interrupted_refresh_cause = NULL,
                 claim_id = NULL, claimed_at = NULL, claimed_by = NULL,
                 updated_at = now(),
                 lease_owner = CASE WHEN a.lease_owner = $19 THEN NULL ELSE a.lease_owner END,
                 lease_until = CASE WHEN a.lease_owner = $19 THEN NULL ELSE a.lease_until END,
                 lease_started_at = CASE WHEN a.lease_owner = $19 THEN NULL
                                         ELSE a.lease_started_at END
             FROM input i,
                  -- Locked in one order (no deadlock between batches), and
                  -- read before the update: the status the account had.
                  (SELECT id, status FROM social_accounts WHERE id = ANY($1)
                   ORDER BY id FOR UPDATE) prev
             WHERE a.id = i.id AND prev.id = a.id AND a.credentials_version = i.version
               AND a.status <> 'DISCONNECTED'
             RETURNING a.id, prev.status, a.workspace_id, a.provider, i.trigger, i.started_at,
                       i.finished_at, i.message, i.duration_ms, i.event_id),
         attempt AS (
             INSERT INTO refresh_attempts
                 (account_id, provider, trigger, started_at, finished_at, outcome, message, duration_ms)
             SELECT id, provider, trigger, started_at, finished_at, 'refreshed', message, duration_ms
             FROM upd),
         event AS (
             INSERT INTO account_events (event_id, account_id, workspace_id, provider, from_status, to_status, reason)
             SELECT event_id, id, workspace_id, provider, status, 'ACTIVE', 'refreshed'
             FROM upd WHERE status <> 'ACTIVE')
         SELECT id, status FROM upd",
    )
    .bind(&ids)
    .bind(&access)
    .bind(&refresh)
    .bind(&key_ids)
    .bind(&issued_at)
    .bind(&expires_at)
    .bind(&refresh_expires_at)
    .bind(&granted)
    .bind(&next_attempt_at)
    .bind(&finished_at)
    .bind(&missing)
    .bind(&dpop)
    .bind(&versions)
    .bind(&triggers)
    .bind(&started_at)
    .bind(&messages)
    .bind(&durations)
    .bind(&event_ids)
    .bind(owner)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, status)| {
            let status = status
                .parse()
                .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))?;
            Ok((id, status))
        })
        .collect()
}

/// One request for an account's refresh lease.
struct LeaseRequest {
    id: AccountId,
    claim: Option<uuid::Uuid>,
}

impl Keyed for LeaseRequest {
    fn account(&self) -> &str {
        self.id.as_str()
    }
}

type Taken = Result<Option<Leased>, sqlx::Error>;

/// Where refreshes ask for their lease; cheap to clone. All leases of one
/// engine have the same owner and duration.
#[derive(Clone)]
pub struct GroupLease {
    pool: PgPool,
    owner: String,
    lease_for: Duration,
    batcher: Batcher<LeaseRequest, Taken>,
}

impl GroupLease {
    /// Starts the flusher on the current runtime.
    pub fn start(pool: PgPool, owner: String, lease_for: Duration) -> Self {
        let (flush_pool, flush_owner) = (pool.clone(), owner.clone());
        let batcher = Batcher::start(MAX_BATCH, FLUSHERS, move |requests| {
            let (pool, owner) = (flush_pool.clone(), flush_owner.clone());
            async move { flush_leases(&pool, &owner, lease_for, requests).await }
        });
        Self {
            pool,
            owner,
            lease_for,
            batcher,
        }
    }

    /// As `acquire_lease`.
    pub async fn acquire(&self, id: &AccountId, claim: Option<uuid::Uuid>) -> Taken {
        let request = LeaseRequest {
            id: id.clone(),
            claim,
        };
        match self.batcher.submit(request).await {
            Ok(taken) => taken,
            Err(()) => acquire_lease(&self.pool, id, &self.owner, self.lease_for, claim).await,
        }
    }

    /// Flushes so far.
    pub fn flushes(&self) -> u64 {
        self.batcher.flushes()
    }
}

async fn flush_leases(
    pool: &PgPool,
    owner: &str,
    lease_for: Duration,
    requests: Vec<LeaseRequest>,
) -> Vec<Taken> {
    if requests.len() > 1 {
        if let Ok(mut taken) = acquire_many(pool, owner, lease_for, &requests).await {
            return requests
                .iter()
                .map(|request| {
                    let at = taken.iter().position(|l| l.row.id == request.id);
                    Ok(at.map(|at| taken.swap_remove(at)))
                })
                .collect();
        }
    }
    let mut taken = Vec::with_capacity(requests.len());
    for r in &requests {
        taken.push(acquire_lease(pool, &r.id, owner, lease_for, r.claim).await);
    }
    taken
}

/// `acquire_lease` for many accounts in one statement: the leases taken.
async fn acquire_many(
    pool: &PgPool,
    owner: &str,
    lease_for: Duration,
    requests: &[LeaseRequest],
) -> Result<Vec<Leased>, sqlx::Error> {
    let ids: Vec<&str> = requests.iter().map(|r| r.id.as_str()).collect();
    let claims: Vec<Option<uuid::Uuid>> = requests.iter().map(|r| r.claim).collect();
    let rows = sqlx::query(
        "WITH prev AS (SELECT id, lease_owner AS previous_owner
                       FROM social_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE),
              input AS (SELECT * FROM unnest($1::text[], $4::uuid[]) AS i(id, claim))
         UPDATE social_accounts
         SET lease_owner = $2,
             lease_until = now() + make_interval(secs => $3),
             lease_started_at = now(),
             interrupted_refresh_at = CASE WHEN lease_owner IS NOT NULL
                                           THEN lease_started_at
                                           ELSE interrupted_refresh_at END,
             interrupted_refresh_cause = CASE WHEN lease_owner IS NOT NULL
                                              THEN 'ended without a result (its lease expired)'
                                              ELSE interrupted_refresh_cause END
         FROM prev JOIN input ON input.id = prev.id
         WHERE social_accounts.id = prev.id
           AND status <> 'DISCONNECTED'
           AND (lease_owner IS NULL OR lease_until < now())
           AND (input.claim IS NULL OR (claim_id = input.claim AND status = 'ACTIVE'))
         RETURNING social_accounts.*, prev.previous_owner",
    )
    .bind(&ids)
    .bind(owner)
    .bind(lease_for.as_secs_f64())
    .bind(&claims)
    .fetch_all(pool)
    .await?;
    rows.iter().map(Leased::from_row).collect()
}
