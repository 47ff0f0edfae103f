//! The refresh engine: one account, one refresh, all of ARCHITECTURE.md's
//! rules. This file is the story in order; each phase has a file:
//!
//! 1. single flight: callers in this process share one leader, which runs
//!    in a task of its own so a caller going away never cuts it, and a
//!    panic in it ends as a recorded failure (here);
//! 2. `lease`: re-read the row, skip if no longer due, take the account's
//!    lease (one provider call per account across processes), or join a
//!    refresh that finished meanwhile; leases asked at the same time are
//!    taken in one statement (`store::refresh::GroupLease`);
//! 3. `call`: decrypt and call the platform, or its health check;
//! 4. `success`: new tokens are written first and kept in hand until the
//!    write lands (fenced by the credentials version); writes that arrive
//!    together share one transaction (`store::refresh::GroupCommit`), each
//!    with its own answer;
//! 5. `failure`: a status changes only on a definitive answer; interrupted
//!    refreshes are named in later rejections;
//! 6. `health`, `write`: health verdicts, skips, and the report.

mod access;
mod call;
mod error;
mod failure;
mod health;
mod lease;
mod setup;
mod single_flight;
mod success;
mod write;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::time::Instant;
use tracing::Instrument;

pub use access::{Disconnected, Revocation, TokenUnavailable};
pub use error::EngineError;
use lease::{is_due, joined_report};
pub use setup::{EngineConfig, FaultHook, Phase, default_instance_name};
use single_flight::{Flight, SingleFlight};

use crate::config::Settings;
use crate::crypto::{Field, Keyring};
use crate::domain::{
    AccessToken, AccountId, AccountStatus, Outcome, Provider, RefreshReport, RefreshToken, Trigger,
};
use crate::policy::{RefreshPolicy, after, retry_delay};
use crate::providers::{
    AccountState, Checked, DpopKey, FailureKind, ProviderError, ProviderRegistry, RefreshRequest,
    TokenGrant, lifetime,
};
use crate::scrub::scrub;
use crate::store::accounts::{self, AccountRow};
use crate::store::attempts::{self, AttemptRow, NewAttempt};
use crate::store::refresh::{
    self as refresh_store, Change, Committed, FailureChange, NewCredentials,
};

/// A provider's `Retry-After` is honoured up to this; beyond it the answer is
/// more likely a bug than a plan.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Cheap to clone; all clones share one single-flight table.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    keyring: Arc<Keyring>,
    providers: ProviderRegistry,
    config: EngineConfig,
    flights: SingleFlight,
    /// Refreshes run as tasks of their own, so a caller that goes away (a
    /// closed HTTP connection, a job timeout) never cuts one between the
    /// platform's answer and the write; the daemon waits for them at exit.
    tasks: tokio_util::task::TaskTracker,
    /// Accounts whose new tokens are in memory and not yet stored.
    grants_in_hand: Mutex<HashSet<AccountId>>,
    /// Successful refreshes stored together, many per transaction.
    group_commit: refresh_store::GroupCommit,
    /// Leases taken together, many per transaction.
    group_lease: refresh_store::GroupLease,
}

/// Decrypted credentials, alive only for one provider call.
struct Credentials {
    access: AccessToken,
    refresh: Option<RefreshToken>,
    dpop: Option<DpopKey>,
}

enum Lease {
    Held(Box<AccountRow>),
    /// Another process finished a refresh while this one waited.
    Joined(RefreshReport),
}

impl Engine {
    pub fn new(
        pool: PgPool,
        keyring: Arc<Keyring>,
        providers: ProviderRegistry,
        config: EngineConfig,
    ) -> Self {
        let group_commit = refresh_store::GroupCommit::start(pool.clone(), config.owner.clone());
        let group_lease = refresh_store::GroupLease::start(
            pool.clone(),
            config.owner.clone(),
            config.lease_duration,
        );
        Self {
            inner: Arc::new(Inner {
                pool,
                keyring,
                providers,
                config,
                group_commit,
                group_lease,
                flights: SingleFlight::default(),
                tasks: tokio_util::task::TaskTracker::new(),
                grants_in_hand: Mutex::default(),
            }),
        }
    }

    pub fn owner(&self) -> &str {
        &self.inner.config.owner
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Refreshes still running (each in a task of its own).
    pub fn refreshes(&self) -> &tokio_util::task::TaskTracker {
        &self.inner.tasks
    }

    /// Accounts whose new tokens the platform has issued and the database
    /// has not yet stored: the only copy of those grants is in this process.
    pub fn grants_in_hand(&self) -> Vec<AccountId> {
        let held = self.inner.grants_in_hand.lock();
        let held = held.unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids: Vec<_> = held.iter().cloned().collect();
        ids.sort();
        ids
    }

    fn fault(&self, phase: Phase) {
        if let Some(FaultHook(hook)) = &self.inner.config.fault_hook {
            hook(phase);
        }
    }

    /// Whether the platform's flow refreshes with a refresh token (without
    /// one stored, the access token's expiry is the account's end).
    pub fn needs_refresh_token(&self, provider: Provider) -> bool {
        self.inner
            .providers
            .get(provider)
            .map_or(true, |flow| flow.needs_refresh_token())
    }

    /// Refreshes one account. Concurrent calls for the same account share one
    /// provider call: in this process through the single-flight table, across
    /// processes through the lease. Waiting is bounded by
    /// `engine.single_flight_wait`.
    pub async fn refresh(
        &self,
        id: &AccountId,
        trigger: Trigger,
    ) -> Result<RefreshReport, EngineError> {
        self.run(id, trigger, None, Utc::now()).await
    }

    /// As `refresh`, for a caller that decided to refresh at `requested_at`
    /// (an API request that first checked the forced-refresh limit): a
    /// refresh of the account that finished after that moment, in any
    /// process, is this caller's answer, so a burst makes one platform call.
    pub async fn refresh_requested_at(
        &self,
        id: &AccountId,
        trigger: Trigger,
        requested_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        self.run(id, trigger, None, requested_at).await
    }

    /// Runs a scheduler's job. The claim stands for "due": a job whose claim
    /// is no longer the account's (someone refreshed it meanwhile, or the
    /// claim timed out and a newer job exists) does nothing and writes nothing.
    pub async fn refresh_claimed(
        &self,
        id: &AccountId,
        trigger: Trigger,
        claim: uuid::Uuid,
    ) -> Result<RefreshReport, EngineError> {
        self.run(id, trigger, Some(claim), Utc::now()).await
    }

    async fn run(
        &self,
        id: &AccountId,
        trigger: Trigger,
        claim: Option<uuid::Uuid>,
        requested_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        let deadline = Instant::now() + self.inner.config.single_flight_wait;
        loop {
            match self.inner.flights.join(id) {
                Flight::Lead(guard) => {
                    let span = tracing::info_span!(
                        "refresh",
                        account_id = %id,
                        trigger = %trigger,
                        provider = tracing::field::Empty
                    );
                    let (engine, id) = (self.clone(), id.clone());
                    let task = self.inner.tasks.spawn(
                        async move {
                            let result = engine
                                .lead_unwinding(&id, trigger, claim, deadline, requested_at)
                                .await;
                            guard.publish(&result);
                            result
                        }
                        .instrument(span),
                    );
                    return task.await.unwrap_or_else(|e| {
                        Err(EngineError::Internal(format!("refresh task ended: {e}")))
                    });
                }
                Flight::Follow(mut slot) => {
                    let waited = tokio::time::timeout_at(deadline, async {
                        slot.wait_for(Option::is_some).await.map(|v| v.clone())
                    })
                    .await;
                    match waited {
                        Ok(Ok(Some(result))) => {
                            // A forced refresh, or a job holding the current
                            // claim, cannot settle for another flight that
                            // found nothing to do (not due, or a stale claim).
                            let skipped = matches!(&result, Ok(r) if r.outcome == Outcome::Skipped);
                            if skipped && (trigger.ignores_schedule() || claim.is_some()) {
                                tokio::task::yield_now().await;
                                continue;
                            }
                            return result;
                        }
                        // The leader was cancelled before publishing: lead instead.
                        Ok(_) => continue,
                        Err(_) => return Err(self.timeout_error(id)),
                    }
                }
            }
        }
    }

    fn timeout_error(&self, id: &AccountId) -> EngineError {
        EngineError::InFlightTimeout {
            account: id.clone(),
            waited_secs: self.inner.config.single_flight_wait.as_secs(),
        }
    }

    /// `lead`, with a panic anywhere in it turned into a recorded failure
    /// and a released lease instead of a stranded account.
    async fn lead_unwinding(
        &self,
        id: &AccountId,
        trigger: Trigger,
        claim: Option<uuid::Uuid>,
        deadline: Instant,
        requested_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        let started_at = Utc::now();
        let led = AssertUnwindSafe(self.lead(id, trigger, claim, deadline, requested_at))
            .catch_unwind()
            .await;
        match led {
            Ok(result) => result,
            Err(_panic) => {
                // The payload is not logged: it could quote a value.
                tracing::error!(account_id = %id, "a refresh panicked; recording it as failed");
                self.abandon_after_panic(id, trigger, started_at).await
            }
        }
    }

    async fn abandon_after_panic(
        &self,
        id: &AccountId,
        trigger: Trigger,
        started_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        self.inner
            .grants_in_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        let config = &self.inner.config;
        let message = "internal error: the refresh stopped on a panic; if the platform had \
                       already answered, its new tokens were not stored";
        let retry_at = after(
            Utc::now(),
            retry_delay(1, config.retry_base, config.retry_cap, rand::random()),
        );
        let (pool, owner) = (&self.inner.pool, &config.owner);
        let row = self
            .retry_write(|| {
                refresh_store::abandon(pool, id, owner, trigger, started_at, message, retry_at)
            })
            .await?
            .ok_or_else(|| EngineError::NotFound(id.clone()))?;
        let mut report = self.report(
            &row,
            trigger,
            Outcome::TransientError,
            Some(message.to_owned()),
        );
        report.retry_at = Some(retry_at);
        Ok(report)
    }

    async fn lead(
        &self,
        id: &AccountId,
        trigger: Trigger,
        claim: Option<uuid::Uuid>,
        deadline: Instant,
        requested_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        let started_at = Utc::now();
        if let Some(claim) = claim {
            // The common case for a scheduler's job, in one round trip: the
            // claim still holds and the lease is free.
            if let Some(leased) = self.inner.group_lease.acquire(id, Some(claim)).await? {
                tracing::Span::current().record("provider", leased.row.provider.as_str());
                return match self.settle_takeover(leased).await? {
                    Lease::Held(leased) => self.run_leased(*leased, trigger, started_at).await,
                    Lease::Joined(report) => Ok(report),
                };
            }
        }
        let row = accounts::get(&self.inner.pool, id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.clone()))?;
        tracing::Span::current().record("provider", row.provider.as_str());
        if row.status == AccountStatus::Disconnected {
            return Err(EngineError::Disconnected(id.clone()));
        }
        if claim.is_some() && row.claim_id != claim {
            return Ok(self.report(
                &row,
                trigger,
                Outcome::Skipped,
                Some("claim superseded".into()),
            ));
        }
        if claim.is_none() && !trigger.ignores_schedule() && !is_due(&row, started_at) {
            return self
                .skip(&row, trigger, started_at, "not due", None, None)
                .await;
        }
        if row.status != AccountStatus::Active && !trigger.ignores_schedule() {
            return self
                .skip(&row, trigger, started_at, "not active", None, claim)
                .await;
        }
        let leased = match self.take_lease(&row, requested_at, deadline).await? {
            Lease::Held(leased) => *leased,
            Lease::Joined(report) => return Ok(report),
        };
        // A forced or on-demand caller that got the lease just after another
        // refresh released it (here or in another process) takes that
        // refresh as its answer: one platform call per burst.
        if trigger.ignores_schedule()
            && let Some(attempt) =
                attempts::latest_finished_since(&self.inner.pool, id, requested_at).await?
        {
            refresh_store::release_lease(&self.inner.pool, id, &self.inner.config.owner).await?;
            return Ok(joined_report(&leased, attempt));
        }
        // Re-check under the lease: another process may have refreshed the
        // account between the first read and the lease.
        let still_due = match claim {
            Some(claim) => leased.claim_id == Some(claim) && leased.status == AccountStatus::Active,
            None => trigger.ignores_schedule() || is_due(&leased, Utc::now()),
        };
        if !still_due {
            return self
                .skip(
                    &leased,
                    trigger,
                    started_at,
                    "refreshed meanwhile",
                    None,
                    claim,
                )
                .await;
        }
        self.run_leased(leased, trigger, started_at).await
    }
}
