//! The refresh engine: one account, one refresh, all of ARCHITECTURE.md's
//! rules. Re-read the row, skip if no longer due, take the lease, call the
//! provider, and write the outcome in one fenced transaction.

mod report;
mod single_flight;

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

pub use report::{EngineError, RefreshReport};
use single_flight::{Flight, SingleFlight};

use crate::config::Settings;
use crate::crypto::{Field, Keyring};
use crate::domain::{
    AccessToken, AccountId, AccountStatus, Outcome, Provider, RefreshToken, Trigger,
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

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This process's name in leases; unique per start.
    pub owner: String,
    pub lease_duration: Duration,
    /// How long a process that took over an expired lease waits for the
    /// previous holder's pending write before it calls the platform: longer
    /// than one write attempt (`database.acquire_timeout`) plus the pause
    /// between attempts.
    pub takeover_settle: Duration,
    pub single_flight_wait: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub policies: HashMap<Provider, RefreshPolicy>,
    /// Test-only fault injection: called at each phase of a refresh. Always
    /// None in the daemon.
    #[doc(hidden)]
    pub fault_hook: Option<FaultHook>,
}

/// The phases of a refresh at which a test may inject a fault.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The lease is held; the platform has not been called.
    Leased,
    /// The platform answered with new tokens; nothing is written yet.
    Answered,
    /// The outcome is written.
    Written,
}

#[doc(hidden)]
#[derive(Clone)]
pub struct FaultHook(pub Arc<dyn Fn(Phase) + Send + Sync>);

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultHook")
    }
}

impl EngineConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        let owner = if settings.engine.instance_name.is_empty() {
            default_instance_name()
        } else {
            settings.engine.instance_name.clone()
        };
        Self {
            owner,
            lease_duration: settings.lease_duration(),
            takeover_settle: settings
                .database
                .acquire_timeout
                .saturating_add(Duration::from_secs(1)),
            single_flight_wait: settings.engine.single_flight_wait,
            retry_base: settings.engine.retry_base,
            retry_cap: settings.engine.retry_cap,
            policies: Provider::ALL
                .iter()
                .map(|p| (*p, RefreshPolicy::from(settings.providers.get(*p))))
                .collect(),
            fault_hook: None,
        }
    }

    pub fn policy(&self, provider: Provider) -> &RefreshPolicy {
        &self.policies[&provider]
    }
}

/// Host name, pid and a random suffix: unique per process start.
pub fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

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
}

/// Why no valid access token can be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenUnavailable {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the account is {0}; the user must reconnect")]
    Status(AccountStatus, Option<String>),
    #[error("the access token expired and the refresh failed")]
    Refresh(Box<RefreshReport>),
}

#[derive(Debug)]
pub enum Revocation {
    Revoked,
    NotSupported,
    Failed(String),
}

pub struct Disconnected {
    pub account: AccountRow,
    pub revoked: Revocation,
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
        Self {
            inner: Arc::new(Inner {
                pool,
                keyring,
                providers,
                config,
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

    /// A currently valid access token: the stored one while it is outside
    /// its refresh window, otherwise the result of an on-demand refresh
    /// (single-flight with any other). A failed refresh still yields the
    /// stored token while it has not expired.
    pub async fn access_token(&self, id: &AccountId) -> Result<AccessToken, TokenUnavailable> {
        let row = self.current(id).await?;
        let now = Utc::now();
        if row.status != AccountStatus::Active {
            return Err(TokenUnavailable::Status(row.status, row.status_reason));
        }
        let expired = row.token_expires_at.is_some_and(|at| at <= now);
        let in_window = row.token_expires_at.is_some() && {
            let policy = self.inner.config.policy(row.provider);
            let issued = row.token_issued_at.unwrap_or(row.connected_at);
            policy
                .refresh_at(issued, row.token_expires_at)
                .is_some_and(|at| at <= now)
        };
        if !in_window && !expired {
            return Ok(self.decrypt(&row)?.access);
        }
        let report = self
            .refresh_requested_at(id, Trigger::OnDemand, now)
            .await?;
        let row = self.current(id).await?;
        let still_valid = row.token_expires_at.is_none_or(|at| at > Utc::now());
        if row.status == AccountStatus::Active && still_valid {
            return Ok(self.decrypt(&row)?.access);
        }
        if row.status != AccountStatus::Active {
            return Err(TokenUnavailable::Status(row.status, row.status_reason));
        }
        Err(TokenUnavailable::Refresh(Box::new(report)))
    }

    async fn current(&self, id: &AccountId) -> Result<AccountRow, EngineError> {
        let row = accounts::get(&self.inner.pool, id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.clone()))?;
        if row.status == AccountStatus::Disconnected {
            return Err(EngineError::Disconnected(id.clone()));
        }
        Ok(row)
    }

    /// Disconnects an account: asks the platform to revoke its grant where
    /// the platform supports that (best effort: the user asked to be
    /// disconnected, so a platform outage does not keep the credentials
    /// here), then wipes the stored credentials. None: unknown or already
    /// disconnected.
    pub async fn disconnect(&self, id: &AccountId) -> Result<Option<Disconnected>, EngineError> {
        let row = match self.current(id).await {
            Ok(row) => row,
            Err(EngineError::NotFound(_) | EngineError::Disconnected(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let revoked = match self.inner.providers.revoker(row.provider) {
            None => Revocation::NotSupported,
            Some(revoker) => match self.decrypt(&row) {
                Err(_) => Revocation::Failed("stored credentials could not be decrypted".into()),
                Ok(credentials) => {
                    let token = credentials
                        .refresh
                        .as_ref()
                        .map(|rt| rt.expose())
                        .unwrap_or(credentials.access.expose());
                    match revoker.revoke(token).await {
                        Ok(()) => Revocation::Revoked,
                        Err(e) => Revocation::Failed(scrub(
                            &e.to_string(),
                            &[
                                credentials.access.expose(),
                                token,
                                self.inner.providers.client_secret(row.provider),
                            ],
                        )),
                    }
                }
            },
        };
        if let Revocation::Failed(why) = &revoked {
            tracing::warn!(account_id = %id, provider = %row.provider, error = %why, "revocation at the platform failed; disconnecting anyway");
        }
        let Some(account) = accounts::disconnect(&self.inner.pool, id, "disconnected").await?
        else {
            return Ok(None);
        };
        crate::metrics::record_status_change(account.provider, AccountStatus::Disconnected);
        Ok(Some(Disconnected { account, revoked }))
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
            let config = &self.inner.config;
            if let Some(leased) = refresh_store::acquire_lease(
                &self.inner.pool,
                id,
                &config.owner,
                config.lease_duration,
                Some(claim),
            )
            .await?
            {
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

    async fn take_lease(
        &self,
        row: &AccountRow,
        requested_at: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Lease, EngineError> {
        let config = &self.inner.config;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(leased) = refresh_store::acquire_lease(
                &self.inner.pool,
                &row.id,
                &config.owner,
                config.lease_duration,
                None,
            )
            .await?
            {
                return self.settle_takeover(leased).await;
            }
            if Instant::now() + pause > deadline {
                return Err(self.timeout_error(&row.id));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));

            let current = accounts::get(&self.inner.pool, &row.id)
                .await?
                .ok_or_else(|| EngineError::NotFound(row.id.clone()))?;
            if current.status == AccountStatus::Disconnected {
                return Err(EngineError::Disconnected(row.id.clone()));
            }
            if current.lease_owner.is_none()
                && let Some(attempt) =
                    attempts::latest_finished_since(&self.inner.pool, &row.id, requested_at).await?
            {
                return Ok(Lease::Joined(joined_report(&current, attempt)));
            }
        }
    }

    /// A lease taken over from a holder whose lease expired: that holder may
    /// be alive, holding new tokens it could not store while the database
    /// was out of its reach (it keeps trying, fenced by the credentials
    /// version). Calling the platform now would present a spent token, so
    /// give it a moment first; if its write lands, that is the answer.
    async fn settle_takeover(&self, leased: refresh_store::Leased) -> Result<Lease, EngineError> {
        let refresh_store::Leased { row, took_over } = leased;
        if !took_over {
            return Ok(Lease::Held(Box::new(row)));
        }
        tracing::warn!(
            interrupted_at = ?row.interrupted_refresh_at,
            "took over an expired refresh lease; waiting for its holder's result first"
        );
        tokio::time::sleep(self.inner.config.takeover_settle).await;
        let current = accounts::get(&self.inner.pool, &row.id)
            .await?
            .ok_or_else(|| EngineError::NotFound(row.id.clone()))?;
        if current.credentials_version == row.credentials_version {
            return Ok(Lease::Held(Box::new(row)));
        }
        refresh_store::release_lease(&self.inner.pool, &row.id, &self.inner.config.owner).await?;
        tracing::info!("the previous holder stored its result; not calling the platform");
        let since = row.interrupted_refresh_at.unwrap_or(row.updated_at);
        Ok(Lease::Joined(
            match attempts::latest_finished_since(&self.inner.pool, &row.id, since).await? {
                Some(attempt) => joined_report(&current, attempt),
                None => {
                    let mut report = self.report(
                        &current,
                        Trigger::Scheduled,
                        Outcome::Skipped,
                        Some("refreshed meanwhile".into()),
                    );
                    report.joined = true;
                    report
                }
            },
        ))
    }

    /// Runs the provider call under the lease and counts what came of it.
    async fn run_leased(
        &self,
        leased: AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        let (provider, before) = (leased.provider, leased.status);
        let clock = std::time::Instant::now();
        self.fault(Phase::Leased);
        let result = self.call_and_commit(leased, trigger, started_at).await;
        if let Ok(report) = &result {
            crate::metrics::record_attempt(provider, trigger, report.outcome, clock.elapsed());
            if report.status != before {
                crate::metrics::record_status_change(provider, report.status);
            }
        }
        result
    }

    async fn call_and_commit(
        &self,
        leased: AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        let flow = match self.inner.providers.get(leased.provider) {
            Ok(flow) => flow.clone(),
            Err(why) => {
                let error = ProviderError::new(FailureKind::Config, why.to_owned());
                return self
                    .finish_failure(&leased, trigger, started_at, error, None, false)
                    .await;
            }
        };
        let credentials = match self.decrypt(&leased) {
            Ok(credentials) => credentials,
            Err(error) => {
                // One row's credentials, not the app: never pauses the platform.
                let failure =
                    ProviderError::new(FailureKind::Config, error.to_string()).account_scoped();
                self.finish_failure(&leased, trigger, started_at, failure, None, false)
                    .await?;
                return Err(error);
            }
        };
        // A token that never expires has nothing to refresh: a forced refresh
        // of one checks it instead.
        let never_expires = leased.token_expires_at.is_none() && !flow.needs_refresh_token();
        if trigger == Trigger::HealthCheck || never_expires {
            return self
                .health_check(&leased, trigger, started_at, flow.as_ref(), &credentials)
                .await;
        }
        if flow.needs_refresh_token() && credentials.refresh.is_none() {
            // Nothing to refresh with; where the platform can tell whether
            // the token still works (LinkedIn without programmatic refresh),
            // ask it until expiry, so a revocation is seen early.
            let alive = leased.token_expires_at.is_none_or(|at| at > Utc::now());
            let check = alive
                .then(|| flow.health_check(self.request(&leased, &credentials)))
                .flatten();
            return match check {
                Some(check) => {
                    let note = leased.token_expires_at.map(|at| {
                        format!(
                            "no refresh token is stored; the user must reconnect before {}",
                            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        )
                    });
                    self.checked(&leased, trigger, started_at, check, &credentials, note)
                        .await
                }
                None => self.no_refresh_token(&leased, trigger, started_at).await,
            };
        }

        let result = flow
            .refresh(RefreshRequest {
                account_id: &leased.id,
                provider: leased.provider,
                access_token: &credentials.access,
                refresh_token: credentials.refresh.as_ref(),
                dpop_key: credentials.dpop.as_ref(),
                meta: &leased.meta,
                token_issued_at: leased.token_issued_at,
            })
            .await;
        match result {
            Ok(grant) => {
                self.finish_success(&leased, trigger, started_at, &credentials, grant)
                    .await
            }
            Err(error) => {
                let rotating = credentials.refresh.is_some()
                    && self
                        .inner
                        .config
                        .policy(leased.provider)
                        .rotates_refresh_token;
                self.finish_failure(
                    &leased,
                    trigger,
                    started_at,
                    error,
                    Some(&credentials),
                    rotating,
                )
                .await
            }
        }
    }

    fn decrypt(&self, row: &AccountRow) -> Result<Credentials, EngineError> {
        let keyring = &self.inner.keyring;
        let wrap = |e| EngineError::Credentials {
            account: row.id.clone(),
            source: Arc::new(e),
        };
        let key_id = row.credentials_key_id.as_deref().unwrap_or("");
        let access_blob = row.access_token_ciphertext.as_deref().ok_or_else(|| {
            wrap(crate::crypto::CryptoError::Tampered {
                field: "access token",
                key_id: key_id.to_owned(),
            })
        })?;
        let access = keyring
            .decrypt(&row.id, Field::AccessToken, key_id, access_blob)
            .map_err(wrap)?;
        let refresh = row
            .refresh_token_ciphertext
            .as_deref()
            .map(|blob| keyring.decrypt(&row.id, Field::RefreshToken, key_id, blob))
            .transpose()
            .map_err(wrap)?;
        let dpop = match row.dpop_key_ciphertext.as_deref() {
            Some(blob) => {
                let jwk = keyring
                    .decrypt(&row.id, Field::DpopKey, key_id, blob)
                    .map_err(wrap)?;
                // It decrypted, so it is what was stored: a key that does not
                // parse was altered before encryption, which is tampering too.
                Some(DpopKey::from_jwk(jwk.expose_secret()).map_err(|_| {
                    wrap(crate::crypto::CryptoError::Tampered {
                        field: "DPoP key",
                        key_id: key_id.to_owned(),
                    })
                })?)
            }
            None => None,
        };
        Ok(Credentials {
            access: AccessToken::new(access.expose_secret()),
            refresh: refresh.map(|r| RefreshToken::new(r.expose_secret())),
            dpop,
        })
    }

    /// The platform answered with new tokens: from here to the write
    /// nothing may panic or give up (ARCHITECTURE.md, refresh safety 3 and
    /// 6). Every number in the answer was clamped by the parser, and the
    /// time arithmetic below saturates.
    async fn finish_success(
        &self,
        leased: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        old: &Credentials,
        grant: TokenGrant,
    ) -> Result<RefreshReport, EngineError> {
        self.inner
            .grants_in_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(leased.id.clone());
        self.fault(Phase::Answered);
        let now = Utc::now();
        let policy = self.inner.config.policy(leased.provider);
        let lifetime = grant
            .expires_in
            .unwrap_or(policy.default_access_token_lifetime)
            .clamp(lifetime::MIN, lifetime::MAX);
        let expires_at = after(now, lifetime);
        let rotated = matches!((&grant.refresh_token, &old.refresh), (Some(new), Some(old)) if new.expose() != old.expose())
            || (grant.refresh_token.is_some() && old.refresh.is_none());
        // Never replace a stored refresh token with an absent one.
        let refresh = grant.refresh_token.as_ref().or(old.refresh.as_ref());
        let keyring = &self.inner.keyring;
        let credentials = NewCredentials {
            access_token_ciphertext: keyring.encrypt(
                &leased.id,
                Field::AccessToken,
                grant.access_token.expose(),
            ),
            refresh_token_ciphertext: refresh
                .map(|rt| keyring.encrypt(&leased.id, Field::RefreshToken, rt.expose())),
            key_id: keyring.primary_key_id().to_owned(),
            issued_at: now,
            expires_at: Some(expires_at),
            // The platform's word first; a rotated token restarts the
            // configured lifetime; a kept one keeps its expiry.
            refresh_token_expires_at: match grant.refresh_token_expires_in {
                Some(d) => Some(after(now, d.min(lifetime::MAX))),
                // A new token: its configured lifetime, or unknown; never
                // the spent token's expiry.
                None if rotated => policy.refresh_token_lifetime.map(|l| after(now, l)),
                None => leased.refresh_token_expires_at,
            },
            missing_scopes: grant
                .scopes
                .as_ref()
                .map(|granted| crate::scopes::missing(&policy.publish_scopes, granted)),
            granted_scopes: grant.scopes.clone(),
            next_attempt_at: Some(policy.plan(&leased.id, now, Some(expires_at)).at()),
            // Follows the row's key id, which moves to the primary key here.
            dpop_key_ciphertext: old.dpop.as_ref().map(|key| {
                keyring.encrypt(
                    &leased.id,
                    Field::DpopKey,
                    key.to_private_jwk().expose_secret(),
                )
            }),
            account: grant.account.clone(),
        };
        // A change of the account's own state needs its event: the general
        // path writes both in one transaction.
        let account_state_changes = match &grant.account {
            AccountState::Unreported => false,
            AccountState::Active => leased.account_inactive_reason.is_some(),
            AccountState::Inactive(reason) => {
                leased.account_inactive_reason.as_deref() != Some(reason.as_str())
            }
        };
        let mut notes = grant.notes.clone();
        if grant.expires_in.is_none() {
            let stated = notes.iter().any(|n| n.starts_with("expires_in"));
            notes.push(format!(
                "{}; assumed {}",
                if stated {
                    "no usable expires_in"
                } else {
                    "response had no expires_in"
                },
                humantime::format_duration(lifetime)
            ));
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        let attempt = NewAttempt {
            trigger,
            started_at,
            finished_at: now,
            outcome: Outcome::Refreshed,
            http_status: None,
            provider_error_code: None,
            message: note.clone(),
        };
        let committed = self
            .store_grant(leased, &attempt, credentials, !account_state_changes)
            .await;
        self.inner
            .grants_in_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&leased.id);
        let committed = match committed {
            Ok(committed) => committed,
            Err(refused) => {
                self.record_refused_grant(leased, trigger, started_at, old, &refused)
                    .await;
                return Err(refused);
            }
        };
        self.fault(Phase::Written);
        let mut report = self.report(leased, trigger, Outcome::Refreshed, note);
        match committed {
            Committed::Applied { to, .. } => {
                report.status = to;
                report.token_expires_at = Some(expires_at);
                tracing::info!(outcome = "refreshed", rotated, "refreshed");
            }
            Committed::Fenced { status } => {
                report.status = status;
                report.outcome = Outcome::TransientError;
                report.message = Some("refresh result discarded by the fenced write".into());
                tracing::error!(
                    "refresh result discarded: the credentials were replaced meanwhile"
                );
            }
            Committed::Gone => return Err(EngineError::NotFound(leased.id.clone())),
        }
        Ok(report)
    }

    /// Stores new tokens. They exist nowhere else, so a database outage is
    /// waited out for as long as the process lives, past the lease: while
    /// the database is down nobody can take the lease, and once it is back
    /// the fence (the credentials version) decides.
    /// `fast`: the one-statement write may serve (it writes no event of
    /// the account's own state, so a change of that state takes the general
    /// path).
    async fn store_grant(
        &self,
        leased: &AccountRow,
        attempt: &NewAttempt,
        credentials: NewCredentials,
        fast: bool,
    ) -> Result<Committed, EngineError> {
        let (pool, owner) = (&self.inner.pool, &self.inner.config.owner);
        let mut pause = Duration::from_millis(100);
        let mut failures = 0u32;
        loop {
            let write = async {
                let applied = if fast {
                    refresh_store::commit_refreshed(pool, leased, owner, attempt, &credentials)
                        .await?
                } else {
                    None
                };
                match applied {
                    Some(from) => Ok(Committed::Applied {
                        from,
                        to: AccountStatus::Active,
                    }),
                    // The fence did not match: the general path records why.
                    None => {
                        refresh_store::commit(
                            pool,
                            leased,
                            owner,
                            attempt,
                            &Change::Refreshed(credentials.clone()),
                        )
                        .await
                    }
                }
            };
            match write.await {
                Ok(done) => {
                    if failures > 0 {
                        tracing::info!(
                            tries = failures + 1,
                            "new tokens stored after the database came back"
                        );
                    }
                    return Ok(done);
                }
                Err(e) if grant_write_may_land_later(&e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, tries = failures, "storing new tokens failed; retrying until the database answers");
                    }
                    tokio::time::sleep(pause).await;
                    // Short: a process that takes the lease over waits
                    // `takeover_settle` for this write once the database is back.
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    tracing::error!(error = %e, "new tokens could not be stored: the database refused the write");
                    return Err(e.into());
                }
            }
        }
    }

    /// The database refused new tokens for good: the grant is lost. Say so
    /// in the account's record (best effort), and mark the refresh
    /// interrupted so a later rejection names why.
    async fn record_refused_grant(
        &self,
        leased: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        old: &Credentials,
        refused: &EngineError,
    ) {
        let config = &self.inner.config;
        let rotating =
            old.refresh.is_some() && config.policy(leased.provider).rotates_refresh_token;
        let code = match refused {
            EngineError::Database(e) => e
                .as_database_error()
                .and_then(|db| db.code())
                .map(|c| format!(" (SQLSTATE {c})"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let text = format!("the platform answered, but the database refused the new tokens{code}");
        let now = Utc::now();
        let attempt = NewAttempt {
            trigger,
            started_at,
            finished_at: now,
            outcome: Outcome::TransientError,
            http_status: None,
            provider_error_code: None,
            message: Some(text.clone()),
        };
        let change = Change::Failed(FailureChange {
            error: text,
            http_status: None,
            count_failure: true,
            next_attempt_at: Some(after(now, config.retry_base)),
            new_status: None,
            interrupted: rotating.then(|| {
                (
                    started_at,
                    "was answered, but the database refused its new tokens".to_owned(),
                )
            }),
            unrecognised: false,
            account: AccountState::Unreported,
        });
        if let Err(e) = self.commit_with_retry(leased, &attempt, &change).await {
            tracing::error!(error = %e, "recording the refused grant failed too");
        }
    }

    async fn finish_failure(
        &self,
        leased: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        error: ProviderError,
        credentials: Option<&Credentials>,
        sent_rotating_refresh_token: bool,
    ) -> Result<RefreshReport, EngineError> {
        let now = Utc::now();
        let config = &self.inner.config;
        let dpop_scalar = credentials
            .and_then(|c| c.dpop.as_ref())
            .map(DpopKey::private_scalar_b64);
        let mut secrets: Vec<&str> = credentials
            .map(|c| {
                std::iter::once(c.access.expose())
                    .chain(c.refresh.as_ref().map(|r| r.expose()))
                    .chain(dpop_scalar.as_deref())
                    .collect()
            })
            .unwrap_or_default();
        secrets.push(self.inner.providers.client_secret(leased.provider));
        let mut text = scrub(&error.to_string(), &secrets);
        let code = error.code.as_deref().map(|c| scrub(c, &secrets));
        let (new_status, count_failure, retry_in) = match error.kind {
            FailureKind::Transient | FailureKind::RateLimited => {
                let planned = retry_delay(
                    leased.consecutive_failures.max(0) as u32 + 1,
                    config.retry_base,
                    config.retry_cap,
                    rand::random(),
                );
                (
                    None,
                    true,
                    Some(
                        error
                            .retry_after
                            .map(|d| d.min(MAX_RETRY_AFTER))
                            .unwrap_or(planned),
                    ),
                )
            }
            FailureKind::RejectedExpired => (Some(AccountStatus::TokenExpired), true, None),
            FailureKind::RejectedRevoked => (Some(AccountStatus::Revoked), true, None),
            // The app is refused, not the account: no status change, no
            // failure counted; look again after a while.
            FailureKind::Config => (
                None,
                false,
                Some(retry_delay(
                    4,
                    config.retry_base,
                    config.retry_cap,
                    rand::random(),
                )),
            ),
        };
        if new_status.is_some()
            && let Some(at) = leased.interrupted_refresh_at
        {
            let how = leased
                .interrupted_refresh_cause
                .as_deref()
                .unwrap_or("ended without a result");
            text.push_str(&format!(
                "; the refresh token may have been consumed by an interrupted refresh started at {} that {how}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        // A rotating refresh token sent in a request that may have reached
        // the platform may be spent: say so if the platform later refuses
        // the stored one.
        // So may a success the daemon could not read: the platform rotated.
        let unreadable_success = error.kind == FailureKind::Transient
            && error.http_status.is_some_and(|s| (200..300).contains(&s));
        let interrupted = match error.failed_after_sending {
            Some(how) => Some(format!("{how} after the request was sent")),
            None if unreadable_success => {
                Some("answered with a success that could not be read".to_owned())
            }
            None => None,
        }
        .filter(|_| sent_rotating_refresh_token && new_status.is_none())
        .map(|how| (started_at, how));
        let next_attempt_at = retry_in.map(|d| after(now, d));
        let attempt = NewAttempt {
            trigger,
            started_at,
            finished_at: now,
            outcome: error.kind.outcome(),
            http_status: error.http_status,
            provider_error_code: code.clone(),
            message: Some(text.clone()),
        };
        let change = Change::Failed(FailureChange {
            error: text.clone(),
            http_status: error.http_status,
            count_failure,
            next_attempt_at,
            new_status,
            interrupted,
            unrecognised: error.unrecognised,
            account: if error.account_inactive {
                AccountState::Inactive(scrub(&error.message, &secrets))
            } else {
                AccountState::Unreported
            },
        });
        if error.unrecognised {
            crate::metrics::record_unrecognised_answer(leased.provider, error.http_status);
        }
        let committed = self.commit_with_retry(leased, &attempt, &change).await?;
        let mut report = self.report(leased, trigger, error.kind.outcome(), Some(text.clone()));
        report.http_status = error.http_status;
        report.provider_error_code = code;
        report.retry_at = next_attempt_at;
        report.account_only = error.account_only;
        report.unrecognised = error.unrecognised;
        report.status = match committed {
            Committed::Applied { to, .. } => to,
            Committed::Fenced { status } => {
                report.message = Some(format!(
                    "{text} (ignored: the credentials changed meanwhile)"
                ));
                status
            }
            Committed::Gone => return Err(EngineError::NotFound(leased.id.clone())),
        };
        tracing::warn!(outcome = report.outcome.as_str(), status = report.status.as_str(), error = %text, "refresh failed");
        Ok(report)
    }

    /// The flow needs a refresh token and none is stored: nothing to call.
    /// Once the access token has expired no refresh is possible, which is
    /// definitive; before that the account is fine until its expiry.
    async fn no_refresh_token(
        &self,
        leased: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
    ) -> Result<RefreshReport, EngineError> {
        let now = Utc::now();
        match leased.token_expires_at {
            // With no known expiry nothing says the token is dead.
            expiry if expiry.is_none_or(|expires| expires > now) => {
                let message = match expiry {
                    Some(expires) => format!(
                        "no refresh token is stored; the user must reconnect before {}",
                        expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => {
                        "no refresh token is stored and the token's expiry is unknown".to_owned()
                    }
                };
                let attempt = NewAttempt {
                    trigger,
                    started_at,
                    finished_at: now,
                    outcome: Outcome::Skipped,
                    http_status: None,
                    provider_error_code: None,
                    message: Some(message.clone()),
                };
                // Look again at expiry, when the sweep makes it definitive.
                let change = Change::Failed(FailureChange {
                    error: message.clone(),
                    http_status: None,
                    count_failure: false,
                    next_attempt_at: Some(expiry.unwrap_or_else(|| {
                        after(
                            now,
                            self.inner
                                .config
                                .policy(leased.provider)
                                .health_check_interval,
                        )
                    })),
                    new_status: None,
                    interrupted: None,
                    unrecognised: false,
                    account: AccountState::Unreported,
                });
                self.commit_with_retry(leased, &attempt, &change).await?;
                Ok(self.report(leased, trigger, Outcome::Skipped, Some(message)))
            }
            _ => {
                let error = ProviderError::new(
                    FailureKind::RejectedExpired,
                    "the access token expired and no refresh token is stored",
                );
                self.finish_failure(leased, trigger, started_at, error, None, false)
                    .await
            }
        }
    }

    fn request<'a>(
        &self,
        leased: &'a AccountRow,
        credentials: &'a Credentials,
    ) -> RefreshRequest<'a> {
        RefreshRequest {
            account_id: &leased.id,
            provider: leased.provider,
            access_token: &credentials.access,
            refresh_token: credentials.refresh.as_ref(),
            dpop_key: credentials.dpop.as_ref(),
            meta: &leased.meta,
            token_issued_at: leased.token_issued_at,
        }
    }

    /// A health check for a token that never expires. Platforms without a
    /// check of their own are simply looked at again after the interval.
    async fn health_check(
        &self,
        leased: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        flow: &dyn crate::providers::TokenProvider,
        credentials: &Credentials,
    ) -> Result<RefreshReport, EngineError> {
        match flow.health_check(self.request(leased, credentials)) {
            None => {
                let policy = self.inner.config.policy(leased.provider);
                let next = after(Utc::now(), policy.health_check_interval);
                self.skip(
                    leased,
                    trigger,
                    started_at,
                    "no health check for this platform",
                    Some(next),
                    // Rescheduled: whatever job was queued is done with.
                    leased.claim_id,
                )
                .await
            }
            Some(check) => {
                self.checked(leased, trigger, started_at, check, credentials, None)
                    .await
            }
        }
    }

    /// Records a health check's verdict; the next check comes after the
    /// interval, and no later than the token's expiry.
    async fn checked(
        &self,
        leased: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        check: futures::future::BoxFuture<'_, Result<Checked, ProviderError>>,
        credentials: &Credentials,
        note: Option<String>,
    ) -> Result<RefreshReport, EngineError> {
        match check.await {
            Ok(checked) => {
                let note = match (note, checked.note) {
                    (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                    (a, b) => a.or(b),
                };
                let now = Utc::now();
                let policy = self.inner.config.policy(leased.provider);
                let mut next = after(now, policy.health_check_interval);
                if let Some(expiry) = leased.token_expires_at {
                    next = next.min(expiry.max(now));
                }
                let attempt = NewAttempt {
                    trigger,
                    started_at,
                    finished_at: now,
                    outcome: Outcome::Healthy,
                    http_status: None,
                    provider_error_code: None,
                    message: note.clone(),
                };
                self.commit_with_retry(
                    leased,
                    &attempt,
                    &Change::Healthy {
                        next_attempt_at: next,
                        account: checked.account,
                    },
                )
                .await?;
                Ok(self.report(leased, trigger, Outcome::Healthy, note))
            }
            Err(error) => {
                self.finish_failure(leased, trigger, started_at, error, Some(credentials), false)
                    .await
            }
        }
    }

    async fn skip(
        &self,
        row: &AccountRow,
        trigger: Trigger,
        started_at: DateTime<Utc>,
        why: &str,
        next_attempt_at: Option<DateTime<Utc>>,
        claim: Option<uuid::Uuid>,
    ) -> Result<RefreshReport, EngineError> {
        let attempt = NewAttempt {
            trigger,
            started_at,
            finished_at: Utc::now(),
            outcome: Outcome::Skipped,
            http_status: None,
            provider_error_code: None,
            message: Some(why.to_owned()),
        };
        self.commit_with_retry(
            row,
            &attempt,
            &Change::Skipped {
                next_attempt_at,
                claim,
            },
        )
        .await?;
        tracing::debug!(outcome = "skipped", why, "refresh skipped");
        crate::metrics::record_attempt(row.provider, trigger, Outcome::Skipped, Duration::ZERO);
        Ok(self.report(row, trigger, Outcome::Skipped, Some(why.to_owned())))
    }

    async fn commit_with_retry(
        &self,
        leased: &AccountRow,
        attempt: &NewAttempt,
        change: &Change,
    ) -> Result<Committed, EngineError> {
        let (pool, owner) = (&self.inner.pool, &self.inner.config.owner);
        self.retry_write(|| refresh_store::commit(pool, leased, owner, attempt, change))
            .await
    }

    /// Outcomes other than new tokens are retried while the lease still
    /// protects the write; after that, the lease's expiry tells the next
    /// attempt that this one was interrupted.
    async fn retry_write<T, F, Fut>(&self, mut write: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let give_up = Instant::now()
            + self
                .inner
                .config
                .lease_duration
                .saturating_sub(Duration::from_secs(1));
        let mut pause = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(done) => return Ok(done),
                Err(e) if is_retryable(&e) && Instant::now() + pause < give_up => {
                    tracing::warn!(error = %e, "writing the refresh result failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn report(
        &self,
        row: &AccountRow,
        trigger: Trigger,
        outcome: Outcome,
        message: Option<String>,
    ) -> RefreshReport {
        RefreshReport {
            account_id: row.id.clone(),
            provider: row.provider,
            trigger,
            outcome,
            status: row.status,
            http_status: None,
            provider_error_code: None,
            message,
            retry_at: None,
            token_expires_at: row.token_expires_at,
            joined: false,
            account_only: false,
            unrecognised: false,
        }
    }
}

fn is_due(row: &AccountRow, now: DateTime<Utc>) -> bool {
    row.status == AccountStatus::Active && row.next_attempt_at.is_some_and(|at| at <= now)
}

/// Errors the same write may not meet again: the connection or the pool,
/// and the server's passing states (SQLSTATE 08 connection, 40 conflicts,
/// 53 resources such as a full disk, 55P03 lock timeout, 57 shutdown and
/// recovery, 57014 statement timeout, 58 system errors, 25006 a read-only
/// standby after a failover).
fn is_retryable(e: &sqlx::Error) -> bool {
    const PASSING: [&str; 6] = ["08", "40", "53", "57", "58", "25006"];
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
        PASSING.iter().any(|p| c.starts_with(p)) || c == "55P03"
    }))
}

/// New tokens are the only copy of a grant: every database error is
/// waited out except one that says the database will never take this row
/// (SQLSTATE 22 data exceptions, 23 integrity violations).
fn grant_write_may_land_later(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => !db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::TypeNotFound { .. } => false,
        _ => true,
    }
}

fn joined_report(current: &AccountRow, attempt: AttemptRow) -> RefreshReport {
    RefreshReport {
        account_id: current.id.clone(),
        provider: current.provider,
        trigger: attempt.trigger,
        outcome: attempt.outcome,
        status: current.status,
        http_status: attempt.http_status.and_then(|s| u16::try_from(s).ok()),
        provider_error_code: attempt.provider_error_code,
        message: attempt.message,
        retry_at: (current.consecutive_failures > 0)
            .then_some(current.next_attempt_at)
            .flatten(),
        token_expires_at: current.token_expires_at,
        joined: true,
        account_only: false,
        unrecognised: false,
    }
}
