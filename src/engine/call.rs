//! Under the lease: decrypt the credentials and call the platform (or its
//! health check), then hand the answer to the commit phases.

use super::*;

impl Engine {
    /// Runs the provider call under the lease and counts what came of it.
    pub(super) async fn run_leased(
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

    pub(super) async fn call_and_commit(
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

        let result = flow.refresh(self.request(&leased, &credentials)).await;
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

    pub(super) fn decrypt(&self, row: &AccountRow) -> Result<Credentials, EngineError> {
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

    pub(super) fn request<'a>(
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
}
