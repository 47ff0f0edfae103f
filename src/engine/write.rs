//! Writing an outcome that is not new tokens, and the report callers get.

use super::*;

impl Engine {
    pub(super) async fn skip(
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

    pub(super) async fn commit_with_retry(
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
    pub(super) async fn retry_write<T, F, Fut>(&self, mut write: F) -> Result<T, EngineError>
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

    pub(super) fn report(
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

/// Errors the same write may not meet again: the connection or the pool,
/// and the server's passing states (SQLSTATE 08 connection, 40 conflicts,
/// 53 resources such as a full disk, 55P03 lock timeout, 57 shutdown and
/// recovery, 57014 statement timeout, 58 system errors, 25006 a read-only
/// standby after a failover).
pub(super) fn is_retryable(e: &sqlx::Error) -> bool {
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
