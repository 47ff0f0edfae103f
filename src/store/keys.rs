//! Key management over stored credentials: the start-up check that every key
//! id in use is configured, and online re-encryption under the newest key.

use std::time::Duration;

use sqlx::PgPool;

use crate::crypto::{CryptoError, Field, Keyring};
use crate::domain::AccountId;

/// Distinct key ids in use, by a loose index scan (one index probe per
/// distinct id instead of reading every row).
pub async fn key_ids_in_use(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE ids(id) AS (
             (SELECT credentials_key_id FROM social_accounts
              WHERE credentials_key_id IS NOT NULL ORDER BY 1 LIMIT 1)
             UNION ALL
             SELECT (SELECT credentials_key_id FROM social_accounts
                     WHERE credentials_key_id > ids.id ORDER BY 1 LIMIT 1)
             FROM ids WHERE ids.id IS NOT NULL)
         SELECT id FROM ids WHERE id IS NOT NULL",
    )
    .fetch_all(pool)
    .await
}

#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(
        "stored credentials use key id(s) {missing:?} that crypto.keys does not configure \
         (configured: {configured:?}); add the old key(s) to crypto.keys, newest first"
    )]
    MissingKeys {
        missing: Vec<String>,
        configured: Vec<String>,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Refuses to run when a stored value could not be decrypted for want of its key.
pub async fn check_keys(pool: &PgPool, keyring: &Keyring) -> Result<(), KeyCheckError> {
    let missing: Vec<String> = key_ids_in_use(pool)
        .await?
        .into_iter()
        .filter(|id| !keyring.has_key(id))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KeyCheckError::MissingKeys {
            missing,
            configured: keyring.key_ids().map(str::to_owned).collect(),
        })
    }
}

#[derive(Debug, Default)]
pub struct RotationReport {
    pub rotated: u64,
    /// Rows that could not be decrypted (left as they are).
    pub failed: Vec<(String, String)>,
    /// Rows still under an old key (locked by a refresh through every pass).
    pub remaining: i64,
}

type OldRow = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    String,
    Option<Vec<u8>>,
);
/// Re-encrypted access token, refresh token and DPoP key ciphertexts.
type Ciphertexts = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Re-encrypts every row not under the primary key, `batch` rows per
/// transaction. Online: rows locked by a running refresh are skipped and
/// picked up by a later pass (a refresh writes under the primary key anyway).
/// Resumable: progress is the key id column itself.
pub async fn rotate(
    pool: &PgPool,
    keyring: &Keyring,
    batch: i64,
) -> Result<RotationReport, sqlx::Error> {
    let primary = keyring.primary_key_id();
    let mut report = RotationReport::default();
    for pass in 0..5 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut cursor = String::new();
        loop {
            let mut tx = pool.begin().await?;
            let rows: Vec<OldRow> = sqlx::query_as(
                "SELECT id, access_token_ciphertext, refresh_token_ciphertext, credentials_key_id,
                        dpop_key_ciphertext
                 FROM social_accounts
                 WHERE credentials_key_id IS NOT NULL AND credentials_key_id <> $1 AND id > $2
                 ORDER BY id LIMIT $3
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(primary)
            .bind(&cursor)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last() else { break };
            cursor = last.0.clone();

            let mut ids = Vec::with_capacity(rows.len());
            let mut access = Vec::with_capacity(rows.len());
            let mut refresh = Vec::with_capacity(rows.len());
            let mut dpop = Vec::with_capacity(rows.len());
            for (id, at, rt, key_id, dk) in &rows {
                let old = [at.as_deref(), rt.as_deref(), dk.as_deref()];
                match reencrypt(keyring, id, old, key_id) {
                    Ok((at, rt, dk)) => {
                        ids.push(id.clone());
                        access.push(at);
                        refresh.push(rt);
                        dpop.push(dk);
                    }
                    Err(e) => {
                        if !report.failed.iter().any(|(failed, _)| failed == id) {
                            report.failed.push((id.clone(), e.to_string()));
                        }
                    }
                }
            }
            let updated = sqlx::query(
                "UPDATE social_accounts a
                 SET access_token_ciphertext = u.at, refresh_token_ciphertext = u.rt,
                     dpop_key_ciphertext = u.dk, credentials_key_id = $4, updated_at = now()
                 FROM unnest($1::text[], $2::bytea[], $3::bytea[], $5::bytea[]) AS u(id, at, rt, dk)
                 WHERE a.id = u.id",
            )
            .bind(&ids)
            .bind(&access)
            .bind(&refresh)
            .bind(primary)
            .bind(&dpop)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            report.rotated += updated.rows_affected();
            tracing::info!(rotated = report.rotated, "key rotation batch committed");
        }
        report.remaining = sqlx::query_scalar(
            "SELECT count(*) FROM social_accounts WHERE credentials_key_id IS NOT NULL AND credentials_key_id <> $1",
        )
        .bind(primary)
        .fetch_one(pool)
        .await?;
        if report.remaining <= report.failed.len() as i64 {
            break;
        }
    }
    Ok(report)
}

fn reencrypt(
    keyring: &Keyring,
    id: &str,
    [access, refresh, dpop]: [Option<&[u8]>; 3],
    key_id: &str,
) -> Result<Ciphertexts, CryptoError> {
    let account: AccountId = id.parse().map_err(|_| CryptoError::Tampered {
        field: "account id",
        key_id: key_id.to_owned(),
    })?;
    let out = |field: Field, value: Option<&[u8]>| -> Result<Option<Vec<u8>>, CryptoError> {
        value
            .map(|blob| {
                let plain = keyring.decrypt(&account, field, key_id, blob)?;
                Ok(keyring.encrypt(
                    &account,
                    field,
                    secrecy::ExposeSecret::expose_secret(&plain),
                ))
            })
            .transpose()
    };
    Ok((
        out(Field::AccessToken, access)?,
        out(Field::RefreshToken, refresh)?,
        out(Field::DpopKey, dpop)?,
    ))
}
