//! A failed call: the status it may change (only on a definitive answer),
//! the retry it plans, and what a later rejection must be told.

use super::*;

impl Engine {
    pub(super) async fn finish_failure(
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
        secrets.extend(self.inner.providers.client_secrets(leased.provider));
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
    pub(super) async fn no_refresh_token(
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
}
