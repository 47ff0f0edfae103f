//! Health checks of tokens that do not expire (or cannot be refreshed).

use super::*;

impl Engine {
    /// A health check for a token that never expires. Platforms without a
    /// check of their own are simply looked at again after the interval.
    pub(super) async fn health_check(
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
    pub(super) async fn checked(
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
}
