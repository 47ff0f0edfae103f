//! Group commit of successful refreshes and group leasing (see
//! `store::batch`): one fenced multi-row UPDATE with its attempt rows and
//! events for the writes, one multi-row UPDATE for the leases.
//!
//! Each request keeps its own answer: the rows the fence (or the lease's
//! conditions) matched are named in the statement's result, so a fenced-out
//! account is told apart from its neighbours; and a batch the database
//! refuses as a whole is run again one request at a time, so one account's
//! bad row never fails another's.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;

use super::NewCredentials;
use super::grant::{Refreshed, commit_refreshed, commit_refreshed_many};
use super::lease::{Leased, acquire_lease, acquire_leases};
use crate::domain::{AccountId, AccountStatus};
use crate::store::accounts::AccountRow;
use crate::store::attempts::NewAttempt;
use crate::store::batch::{Batcher, Keyed};

/// Most requests in one flush: bounds the statement's size and the time its
/// rows stay locked.
const MAX_BATCH: usize = 128;

/// Flushes at the database at once: one forms while another is out.
const FLUSHERS: usize = 2;

/// One successful refresh waiting to be stored: only what the write reads
/// of the leased row (its id and the fence), not the row.
struct Write {
    id: AccountId,
    version: i64,
    attempt: NewAttempt,
    credentials: NewCredentials,
}

impl Write {
    fn as_refreshed(&self) -> Refreshed<'_> {
        Refreshed {
            id: &self.id,
            version: self.version,
            attempt: &self.attempt,
            credentials: &self.credentials,
        }
    }
}

impl Keyed for Write {
    fn account(&self) -> &str {
        self.id.as_str()
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

    /// Some(the status the account had) when the write landed, None when
    /// the fence did not match.
    pub async fn commit_refreshed(
        &self,
        leased: &AccountRow,
        attempt: &NewAttempt,
        credentials: &NewCredentials,
    ) -> Stored {
        let write = Write {
            id: leased.id.clone(),
            version: leased.credentials_version,
            attempt: attempt.clone(),
            credentials: credentials.clone(),
        };
        match self.batcher.submit(write).await {
            Ok(stored) => stored,
            Err(()) => {
                let write = Refreshed {
                    id: &leased.id,
                    version: leased.credentials_version,
                    attempt,
                    credentials,
                };
                commit_refreshed(&self.pool, &self.owner, write).await
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
    let batch: Vec<Refreshed<'_>> = writes.iter().map(Write::as_refreshed).collect();
    if batch.len() > 1
        && let Ok(applied) = commit_refreshed_many(pool, owner, &batch).await
    {
        let applied: HashMap<String, AccountStatus> = applied.into_iter().collect();
        return batch
            .iter()
            .map(|w| Ok(applied.get(w.id.as_str()).copied()))
            .collect();
    }
    let mut stored = Vec::with_capacity(batch.len());
    for w in batch {
        stored.push(commit_refreshed(pool, owner, w).await);
    }
    stored
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
        let asks: Vec<_> = requests.iter().map(|r| (&r.id, r.claim)).collect();
        if let Ok(mut taken) = acquire_leases(pool, owner, lease_for, &asks).await {
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
