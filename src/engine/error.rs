use std::sync::Arc;

use crate::crypto::CryptoError;
use crate::domain::AccountId;

#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown account {0}")]
    NotFound(AccountId),
    #[error("account {0} is disconnected")]
    Disconnected(AccountId),
    #[error("account {account}: {source}")]
    Credentials {
        account: AccountId,
        #[source]
        source: Arc<CryptoError>,
    },
    #[error(
        "account {account}: a refresh is still in flight elsewhere after waiting {waited_secs}s"
    )]
    InFlightTimeout {
        account: AccountId,
        waited_secs: u64,
    },
    #[error("database: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for EngineError {
    fn from(e: sqlx::Error) -> Self {
        EngineError::Database(Arc::new(e))
    }
}
