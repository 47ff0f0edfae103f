//! The refresh lease and the one transaction that records a refresh's result.
//!
//! Here: what a result may change, and the general commit. `lease` takes
//! and gives back the lease, `grant` writes new credentials (and the one-
//! statement fast path, for one refresh or many), `outcome` writes every
//! result without new tokens, `group` gathers the leases and fast-path
//! writes of concurrent refreshes into shared statements.

mod grant;
mod group;
mod lease;
mod outcome;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::AccountStatus;
use crate::providers::AccountState;
use crate::store::accounts::AccountRow;
use crate::store::attempts::{self, NewAttempt};
use crate::store::events;

pub(crate) use grant::COMMIT_REFRESHED;
pub use group::{GroupCommit, GroupLease};
pub(crate) use lease::ACQUIRE_LEASES;
pub use lease::{Leased, acquire_lease, release_lease};
pub use outcome::abandon;

use grant::write_credentials;
use lease::release;
use outcome::{record_attempt_only, write_failure, write_healthy};

/// New credentials, encrypted under `key_id`. Both values are always written,
/// so a kept refresh token moves to the newest key with its access token.
#[derive(Debug, Clone)]
pub struct NewCredentials {
    pub access_token_ciphertext: Vec<u8>,
    pub refresh_token_ciphertext: Option<Vec<u8>>,
    pub key_id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The refresh token's expiry as it now stands (None: unknown).
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub granted_scopes: Option<Vec<String>>,
    /// Recomputed with `granted_scopes`; None keeps the stored list.
    pub missing_scopes: Option<Vec<String>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When these credentials die by time (`RefreshPolicy::dead_at`).
    pub dead_at: Option<DateTime<Utc>>,
    /// The account's DPoP key re-encrypted under `key_id` (it must follow
    /// the key id of the row); None where the account has none.
    pub dpop_key_ciphertext: Option<Vec<u8>>,
    /// What the platform's answer said about the account itself.
    pub account: AccountState,
}

/// What a failed attempt does to the account.
#[derive(Debug, Clone)]
pub struct FailureChange {
    pub error: String,
    pub http_status: Option<u16>,
    /// Transient failures count towards backoff; configuration errors do not.
    pub count_failure: bool,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// A definitive rejection: the status it moves the account to.
    pub new_status: Option<AccountStatus>,
    /// The request may have reached the platform and consumed a rotating
    /// refresh token (it timed out or lost its connection after it was
    /// sent): when it started and how it ended, shown with a later rejection.
    pub interrupted: Option<(DateTime<Utc>, String)>,
    /// The answer was unrecognised (flagged in health until the next answer).
    pub unrecognised: bool,
    /// What the answer said about the account itself.
    pub account: AccountState,
}

#[derive(Debug, Clone)]
pub enum Change {
    Refreshed(NewCredentials),
    Failed(FailureChange),
    /// Nothing happened at the provider; the lease and the claim are
    /// released and, when given, the next attempt is moved.
    Skipped {
        next_attempt_at: Option<DateTime<Utc>>,
        /// The caller's own claim, released with it; other claims stay.
        claim: Option<uuid::Uuid>,
    },
    /// A health check passed: errors cleared, next check planned.
    Healthy {
        next_attempt_at: DateTime<Utc>,
        account: AccountState,
    },
}

/// What the commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Applied {
        from: AccountStatus,
        to: AccountStatus,
    },
    /// The lease was lost or the credentials changed meanwhile: new tokens or
    /// a rejection were not applied (the attempt is still recorded).
    Fenced { status: AccountStatus },
    /// The account no longer exists.
    Gone,
}

/// Writes a refresh's result in one transaction: the account row fenced by
/// lease owner and credentials version, the attempt row, and the status
/// event. Releases the lease if this owner still holds it.
pub async fn commit(
    pool: &PgPool,
    leased: &AccountRow,
    owner: &str,
    attempt: &NewAttempt,
    change: &Change,
) -> Result<Committed, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let current: Option<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT status, credentials_version, lease_owner FROM social_accounts WHERE id = $1 FOR UPDATE",
    )
    .bind(leased.id.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, version, lease_owner)) = current else {
        return Ok(Committed::Gone);
    };
    let from: AccountStatus = status
        .parse()
        .map_err(|e: crate::domain::UnknownVariant| sqlx::Error::Decode(e.into()))?;
    let holds_lease = lease_owner.as_deref() == Some(owner);
    // A disconnected account is never brought back by a refresh in flight.
    let unchanged = version == leased.credentials_version && from != AccountStatus::Disconnected;
    let fenced_ok = match change {
        // New tokens are the only copy of the grant: they land unless newer
        // credentials were written, even when the lease expired meanwhile.
        Change::Refreshed(_) => unchanged,
        _ => holds_lease && unchanged,
    };

    let mut to = from;
    let mut recorded = attempt.clone();
    match change {
        Change::Refreshed(creds) if fenced_ok => {
            to = AccountStatus::Active;
            write_credentials(&mut tx, &leased.id, owner, creds, attempt.finished_at).await?;
            record_account_state(&mut tx, leased, to, &creds.account).await?;
        }
        Change::Refreshed(_) => {
            recorded.outcome = crate::domain::Outcome::TransientError;
            recorded.message = Some(fenced_message(holds_lease));
            record_attempt_only(&mut tx, &leased.id, holds_lease, attempt.finished_at).await?;
        }
        Change::Failed(failure) => {
            let mut failure = failure.clone();
            if failure.new_status.is_some() && !fenced_ok {
                // Rule: a rejection of credentials that have since changed is
                // stale and must not change the status.
                failure.new_status = None;
                failure.count_failure = false;
                recorded.message = Some(format!(
                    "{} (ignored: {})",
                    attempt.message.as_deref().unwrap_or("rejected"),
                    if holds_lease {
                        "credentials changed meanwhile"
                    } else {
                        "lease lost"
                    }
                ));
            }
            if let Some(new_status) = failure.new_status {
                to = new_status;
            }
            write_failure(
                &mut tx,
                &leased.id,
                &failure,
                holds_lease,
                attempt.finished_at,
            )
            .await?;
            if fenced_ok {
                record_account_state(&mut tx, leased, to, &failure.account).await?;
            }
        }
        Change::Skipped {
            next_attempt_at,
            claim,
        } => {
            release(&mut tx, &leased.id, holds_lease, *next_attempt_at, *claim).await?;
        }
        Change::Healthy {
            next_attempt_at,
            account,
        } => {
            write_healthy(
                &mut tx,
                &leased.id,
                holds_lease,
                *next_attempt_at,
                attempt.finished_at,
            )
            .await?;
            if fenced_ok {
                record_account_state(&mut tx, leased, to, account).await?;
            }
        }
    }
    attempts::insert(&mut tx, &leased.id, leased.provider, &recorded).await?;
    if to != from {
        let reason = match change {
            Change::Refreshed(_) => "refreshed".to_owned(),
            Change::Failed(f) => f.error.clone(),
            Change::Skipped { .. } | Change::Healthy { .. } => unreachable!("never changes status"),
        };
        events::insert(&mut tx, leased, Some(from), to, &reason).await?;
    }
    tx.commit().await?;

    let applied = match change {
        Change::Refreshed(_) => fenced_ok,
        Change::Failed(f) => f.new_status.is_none() || fenced_ok,
        Change::Skipped { .. } | Change::Healthy { .. } => true,
    };
    Ok(if applied {
        Committed::Applied { from, to }
    } else {
        Committed::Fenced { status: from }
    })
}

/// Records what the platform said about the account itself; a change (and
/// only a change) writes an event of its own, the status unchanged.
async fn record_account_state(
    tx: &mut sqlx::PgConnection,
    leased: &AccountRow,
    status: AccountStatus,
    state: &AccountState,
) -> Result<(), sqlx::Error> {
    let reason = match state {
        AccountState::Unreported => return Ok(()),
        AccountState::Active => None,
        AccountState::Inactive(reason) => Some(reason.as_str()),
    };
    // Reads the row under the commit's lock: the flag as it stands now.
    let changed: Option<(String,)> = sqlx::query_as(
        "UPDATE social_accounts SET
             account_inactive_reason = $2,
             account_inactive_since = CASE WHEN $2 IS NULL THEN NULL
                                           ELSE COALESCE(account_inactive_since, now()) END
         WHERE id = $1 AND account_inactive_reason IS DISTINCT FROM $2
         RETURNING id",
    )
    .bind(leased.id.as_str())
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?;
    if changed.is_some() {
        let (kind, text) = match reason {
            Some(reason) => ("account_inactive", format!("account inactive: {reason}")),
            None => ("account_active", "account active again".to_owned()),
        };
        events::insert_kind(tx, leased, kind, Some(status), status, &text).await?;
    }
    Ok(())
}

fn fenced_message(holds_lease: bool) -> String {
    if holds_lease {
        "refresh result discarded: the credentials were replaced while the provider call ran".into()
    } else {
        "refresh result discarded: the refresh lease expired before the result could be written; \
         the provider may have consumed the stored refresh token"
            .into()
    }
}
