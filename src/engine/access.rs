//! What the API asks of the engine besides a refresh: a valid access token
//! (refreshing on demand), and a disconnect that revokes at the platform.

use super::*;

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

impl Engine {
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

    pub(super) async fn current(&self, id: &AccountId) -> Result<AccountRow, EngineError> {
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
                        Err(e) => {
                            let mut secrets = vec![credentials.access.expose(), token];
                            secrets.extend(self.inner.providers.client_secrets(row.provider));
                            Revocation::Failed(scrub(&e.to_string(), &secrets))
                        }
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
}
