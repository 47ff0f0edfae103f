//! The export: every account (or a workspace's, or a platform's) as one
//! NDJSON line of profile, status and refresh fields, read a page at a time
//! in id order. Credentials are written only sealed to a recipient.

use sqlx::PgPool;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::record::ExportRecord;
use super::seal::{self, Credentials, Recipient};
use crate::crypto::{Field, Keyring};
use crate::domain::Provider;
use crate::store::accounts::AccountRow;
use crate::store::bulk;

pub struct ExportOptions {
    /// Seal each account's credentials to this key; None: no credentials.
    pub recipient: Option<Recipient>,
    pub workspace_id: Option<String>,
    pub provider: Option<Provider>,
    /// Accounts read per query.
    pub page_size: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading accounts: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("account {id}: its stored credentials cannot be read for sealing: {source}")]
    Credentials {
        id: String,
        #[source]
        source: crate::crypto::CryptoError,
    },
}

/// Writes the export to `out`; `progress` hears the number of accounts
/// written so far after each page. Returns how many were written.
pub async fn export<W: AsyncWrite + Unpin>(
    pool: &PgPool,
    keyring: &Keyring,
    options: &ExportOptions,
    out: &mut W,
    mut progress: impl FnMut(u64),
) -> Result<u64, ExportError> {
    let mut after: Option<String> = None;
    let mut written = 0u64;
    let mut buffer = Vec::new();
    loop {
        let page = bulk::page_after(
            pool,
            after.as_deref(),
            options.workspace_id.as_deref(),
            options.provider,
            options.page_size.max(1),
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.as_str().to_owned());
        buffer.clear();
        for row in &page {
            let mut record = ExportRecord::of(row);
            if let Some(recipient) = &options.recipient {
                record.sealed_credentials = sealed(keyring, recipient, row)?;
            }
            serde_json::to_writer(&mut buffer, &record).expect("records serialize");
            buffer.push(b'\n');
        }
        out.write_all(&buffer).await?;
        written += page.len() as u64;
        progress(written);
    }
    out.flush().await?;
    Ok(written)
}

/// The row's credentials sealed to `recipient`; None when it holds none
/// (a DISCONNECTED account).
fn sealed(
    keyring: &Keyring,
    recipient: &Recipient,
    row: &AccountRow,
) -> Result<Option<String>, ExportError> {
    let (Some(key_id), Some(access)) = (
        row.credentials_key_id.as_deref(),
        row.access_token_ciphertext.as_deref(),
    ) else {
        return Ok(None);
    };
    let open = |field: Field, ciphertext: &[u8]| {
        keyring
            .decrypt(&row.id, field, key_id, ciphertext)
            .map_err(|source| ExportError::Credentials {
                id: row.id.as_str().to_owned(),
                source,
            })
    };
    use secrecy::ExposeSecret;
    let credentials = Credentials {
        access_token: open(Field::AccessToken, access)?.expose_secret().to_owned(),
        refresh_token: row
            .refresh_token_ciphertext
            .as_deref()
            .map(|c| open(Field::RefreshToken, c).map(|s| s.expose_secret().to_owned()))
            .transpose()?,
        dpop_private_jwk: row
            .dpop_key_ciphertext
            .as_deref()
            .map(|c| open(Field::DpopKey, c).map(|s| s.expose_secret().to_owned()))
            .transpose()?,
    };
    Ok(Some(seal::seal(recipient, &credentials)))
}
