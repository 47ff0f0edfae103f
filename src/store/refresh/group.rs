//! Group commit of successful refreshes: the writes that arrive while one
//! flush is at the database go together in the next, as one fenced
//! multi-row UPDATE with its attempt rows and events. Under light load a
//! flush holds one write and adds no wait; under heavy load one transaction
//! serves many refreshes, which is where PostgreSQL's time per refresh goes.
//!
//! Each write keeps its own answer: the rows the fence matched are named in
//! the statement's result, so a fenced-out account is told apart from its
//! neighbours; and a batch the database refuses as a whole is written again
//! one row at a time, so one account's bad row never fails another's.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::NewCredentials;
use super::grant::commit_refreshed;
use crate::domain::{AccountId, AccountStatus};
use crate::store::accounts::AccountRow;
use crate::store::attempts::NewAttempt;

/// Most writes in one flush: bounds the statement's size and the time a row
/// stays locked.
const MAX_BATCH: usize = 128;

/// One successful refresh waiting to be stored.
struct Write {
    leased: AccountRow,
    attempt: NewAttempt,
    credentials: NewCredentials,
    reply: oneshot::Sender<Result<Option<AccountStatus>, sqlx::Error>>,
}

/// The handle refreshes send their writes to; cheap to clone. Dropping every
/// handle ends the flusher after its last flush.
#[derive(Clone)]
pub struct GroupCommit {
    pool: PgPool,
    owner: String,
    writes: mpsc::UnboundedSender<Write>,
    flushes: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the flusher on the current runtime.
    pub fn start(pool: PgPool, owner: String) -> Self {
        let (writes, queue) = mpsc::unbounded_channel();
        let flushes = Arc::new(AtomicU64::new(0));
        tokio::spawn(flush_until_closed(
            pool.clone(),
            owner.clone(),
            queue,
            flushes.clone(),
        ));
        Self {
            pool,
            owner,
            writes,
            flushes,
        }
    }

    /// Flushes so far (each one transaction, or one per write of a batch the
    /// database refused as a whole).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// As `commit_refreshed`: Some(the status the account had) when the
    /// write landed, None when the fence did not match.
    pub async fn commit_refreshed(
        &self,
        leased: &AccountRow,
        attempt: &NewAttempt,
        credentials: &NewCredentials,
    ) -> Result<Option<AccountStatus>, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let write = Write {
            leased: leased.clone(),
            attempt: attempt.clone(),
            credentials: credentials.clone(),
            reply,
        };
        if self.writes.send(write).is_ok()
            && let Ok(result) = answer.await
        {
            return result;
        }
        // The flusher is gone (the runtime is shutting down): write alone.
        commit_refreshed(&self.pool, leased, &self.owner, attempt, credentials).await
    }
}

async fn flush_until_closed(
    pool: PgPool,
    owner: String,
    mut queue: mpsc::UnboundedReceiver<Write>,
    flushes: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // A write for an account already in the batch waits for the next one:
    // one UPDATE cannot apply two rows to the same account.
    let mut held_back: Vec<Write> = Vec::new();
    loop {
        if held_back.is_empty() {
            match queue.recv().await {
                Some(write) => batch.push(write),
                None => return,
            }
        } else {
            batch.append(&mut held_back);
        }
        let mut ids: HashSet<AccountId> = batch.iter().map(|w| w.leased.id.clone()).collect();
        while batch.len() < MAX_BATCH {
            let Ok(write) = queue.try_recv() else { break };
            if ids.insert(write.leased.id.clone()) {
                batch.push(write);
            } else {
                held_back.push(write);
            }
        }
        flush(&pool, &owner, std::mem::take(&mut batch)).await;
        flushes.fetch_add(1, Ordering::Relaxed);
    }
}

async fn flush(pool: &PgPool, owner: &str, batch: Vec<Write>) {
    if batch.len() == 1 {
        let write = batch.into_iter().next().expect("one write");
        let result = commit_refreshed(
            pool,
            &write.leased,
            owner,
            &write.attempt,
            &write.credentials,
        )
        .await;
        let _ = write.reply.send(result);
        return;
    }
    match commit_many(pool, owner, &batch).await {
        Ok(applied) => {
            for write in batch {
                let from = applied
                    .iter()
                    .find(|(id, _)| id == write.leased.id.as_str())
                    .map(|(_, status)| *status);
                let _ = write.reply.send(Ok(from));
            }
        }
        // Refused as a whole: each write on its own, so the error (or the
        // success) is that account's.
        Err(_) => {
            for write in batch {
                let result = commit_refreshed(
                    pool,
                    &write.leased,
                    owner,
                    &write.attempt,
                    &write.credentials,
                )
                .await;
                let _ = write.reply.send(result);
            }
        }
    }
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
