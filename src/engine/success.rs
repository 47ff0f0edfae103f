//! The platform answered with new tokens: write them first, and keep
//! trying for as long as the process lives (custody rules 3 and 6).

use super::*;

impl Engine {
    /// The platform answered with new tokens: from here to the write
    /// nothing may panic or give up (ARCHITECTURE.md, refresh safety 3 and
    /// 6). Every number in the answer was clamped by the parser, and the
    /// time arithmetic below saturates.
    pub(super) async fn finish_success(
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
        let refresh_token_expires_at = match grant.refresh_token_expires_in {
            // The platform's word first; a rotated token restarts the
            // configured lifetime; a kept one keeps its expiry.
            Some(d) => Some(after(now, d.min(lifetime::MAX))),
            // A new token: its configured lifetime, or unknown; never the
            // spent token's expiry.
            None if rotated => policy.refresh_token_lifetime.map(|l| after(now, l)),
            None => leased.refresh_token_expires_at,
        };
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
            refresh_token_expires_at,
            missing_scopes: grant
                .scopes
                .as_ref()
                .map(|granted| crate::scopes::missing(&policy.publish_scopes, granted)),
            granted_scopes: grant.scopes.clone(),
            next_attempt_at: Some(policy.plan(&leased.id, now, Some(expires_at)).at()),
            dead_at: policy.dead_at(
                Some(expires_at),
                refresh.is_some(),
                refresh_token_expires_at,
            ),
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
    pub(super) async fn store_grant(
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
                    self.inner
                        .group_commit
                        .commit_refreshed(leased, attempt, &credentials)
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
    pub(super) async fn record_refused_grant(
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
}

/// New tokens are the only copy of a grant: every database error is
/// waited out except one that says the database will never take this row
/// (SQLSTATE 22 data exceptions, 23 integrity violations).
pub(super) fn grant_write_may_land_later(e: &sqlx::Error) -> bool {
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
