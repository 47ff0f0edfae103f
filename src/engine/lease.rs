//! Taking the account's refresh lease: waiting for a holder elsewhere,
//! joining a refresh that finished meanwhile, and giving a taken-over
//! holder's pending write its moment.

use super::*;

impl Engine {
    pub(super) async fn take_lease(
        &self,
        row: &AccountRow,
        requested_at: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Lease, EngineError> {
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(leased) = self.inner.group_lease.acquire(&row.id, None).await? {
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
    pub(super) async fn settle_takeover(
        &self,
        leased: refresh_store::Leased,
    ) -> Result<Lease, EngineError> {
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
}

pub(super) fn is_due(row: &AccountRow, now: DateTime<Utc>) -> bool {
    row.status == AccountStatus::Active && row.next_attempt_at.is_some_and(|at| at <= now)
}

pub(super) fn joined_report(current: &AccountRow, attempt: AttemptRow) -> RefreshReport {
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
