//! The import: lines read one at a time, judged, gathered into batches,
//! each batch written in one transaction. Pull-driven: each call to
//! [`Import::next_batch`] reads and writes one batch and returns its
//! lines' results, so the caller (a terminal, an HTTP response) shows
//! them as they come and memory stays that of one batch.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::PgPool;
use tokio::io::AsyncBufRead;

use super::lines::Lines;
use super::record::{Item, LineError, parse_line};
use super::seal::Identities;
use crate::crypto::{Field, Keyring};
use crate::domain::{AccountId, AccountStatus, Provider};
use crate::policy::RefreshPolicy;
use crate::providers::{DpopKey, needs_dpop_key};
use crate::store::accounts::{AccountRow, NewAccount};
use crate::store::bulk::{self, BulkAccount, History, Identity};

/// Accounts written by one import past which it refreshes the planner's
/// statistics.
const ANALYZE_AFTER: u64 = 1000;

/// What the import needs from the daemon.
pub struct ImportContext<'a> {
    pub pool: &'a PgPool,
    pub keyring: &'a Keyring,
    pub policies: &'a HashMap<Provider, RefreshPolicy>,
}

#[derive(Debug)]
pub struct ImportOptions {
    /// Accounts per transaction.
    pub batch_size: usize,
    /// Longer lines are refused (and skipped) unread.
    pub max_line_bytes: usize,
    /// Judge and look up every line; write nothing.
    pub dry_run: bool,
    /// Accept lines written by `accounts export` (Some), opening sealed
    /// credentials with these identities; None: registration bodies only.
    pub exports: Option<Option<Identities>>,
}

/// What became of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// A new account (in a dry run: would be).
    Created { id: String },
    /// An existing account took the line's credentials and profile.
    Reconnected { id: String },
    /// The account already holds exactly this line: left as it is.
    Unchanged { id: String },
    /// The line was refused; nothing was written for it.
    Invalid {
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        message: String,
    },
    /// The batch holding the line failed in the database; nothing of that
    /// batch was written (the other batches were).
    Failed { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineResult {
    pub line: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl std::fmt::Display for LineResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = self.line;
        match &self.outcome {
            Outcome::Created { id } => write!(f, "line {line}: created {id}"),
            Outcome::Reconnected { id } => write!(f, "line {line}: reconnected {id}"),
            Outcome::Unchanged { id } => write!(f, "line {line}: unchanged {id}"),
            Outcome::Invalid {
                field: Some(field),
                message,
            } => write!(f, "line {line}: {field}: {message}"),
            Outcome::Invalid {
                field: None,
                message,
            } => write!(f, "line {line}: {message}"),
            Outcome::Failed { message } => write!(f, "line {line}: {message}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub lines: u64,
    pub created: u64,
    pub reconnected: u64,
    pub unchanged: u64,
    pub invalid: u64,
    pub failed: u64,
    pub dry_run: bool,
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Created { .. } => self.created += 1,
            Outcome::Reconnected { .. } => self.reconnected += 1,
            Outcome::Unchanged { .. } => self.unchanged += 1,
            Outcome::Invalid { .. } => self.invalid += 1,
            Outcome::Failed { .. } => self.failed += 1,
        }
    }

    /// Every line was imported (or, in a dry run, would be).
    pub fn is_clean(&self) -> bool {
        self.invalid == 0 && self.failed == 0
    }
}

/// Reading the input failed (the file, or the request body): the import
/// stops; what was committed stays.
#[derive(Debug, thiserror::Error)]
#[error("reading the input after line {after_line} failed: {source}")]
pub struct ReadError {
    pub after_line: u64,
    #[source]
    pub source: io::Error,
}

/// A valid line waiting for its batch.
struct Pending {
    line: u64,
    item: Item,
}

impl Pending {
    fn identity(&self) -> Identity {
        let new = self.item.new_account();
        Identity {
            workspace_id: new.workspace_id.clone(),
            provider: new.provider,
            external_id: new.external_id.clone(),
        }
    }

    fn restored_id(&self) -> Option<&str> {
        match &self.item {
            Item::Restore(r) => Some(r.id.as_str()),
            Item::Register(_) => None,
        }
    }
}

pub struct Import<'a, R> {
    writer: Writer<'a>,
    lines: Lines<R>,
    /// A line held over to the next batch: its account was already in the
    /// current one (one statement writes an account once; the later line
    /// wins, as it would through the API).
    held: Option<Pending>,
    finished: bool,
    /// Reading failed: told after the lines read before it are written.
    read_error: Option<ReadError>,
    summary: Summary,
    started: Instant,
}

impl<'a, R: AsyncBufRead + Unpin> Import<'a, R> {
    pub fn new(context: ImportContext<'a>, options: ImportOptions, input: R) -> Self {
        let lines = Lines::new(input, options.max_line_bytes);
        let summary = Summary {
            dry_run: options.dry_run,
            ..Summary::default()
        };
        Self {
            writer: Writer { context, options },
            lines,
            held: None,
            finished: false,
            read_error: None,
            summary,
            started: Instant::now(),
        }
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn bytes_read(&self) -> u64 {
        self.lines.bytes_read()
    }

    /// Ends the import: after a large write, fresh planner statistics (the
    /// due-account scan's plan depends on them, and autovacuum may be off).
    pub async fn finish(self) -> Result<Summary, sqlx::Error> {
        let written = self.summary.created + self.summary.reconnected;
        if !self.writer.options.dry_run && written >= ANALYZE_AFTER {
            bulk::analyze(self.writer.context.pool).await?;
        }
        Ok(self.summary)
    }

    /// Reads up to one batch of lines and writes it; the results of every
    /// line read, in line order. None once the input is exhausted; an error
    /// when reading failed, after the lines read before were written.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<LineResult>>, ReadError> {
        if self.finished && self.held.is_none() {
            return match self.read_error.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let mut results = Vec::new();
        let mut batch: Vec<Pending> = Vec::new();
        let mut identities: HashSet<Identity> = HashSet::new();
        let mut ids: HashSet<String> = HashSet::new();
        let mut admit = |pending: Pending, batch: &mut Vec<Pending>| -> Option<Pending> {
            let fresh_id = pending.restored_id().is_none_or(|id| !ids.contains(id));
            if !identities.contains(&pending.identity()) && fresh_id {
                identities.insert(pending.identity());
                if let Some(id) = pending.restored_id() {
                    ids.insert(id.to_owned());
                }
                batch.push(pending);
                None
            } else {
                Some(pending)
            }
        };
        if let Some(held) = self.held.take() {
            admit(held, &mut batch);
        }
        let identities_arg = self.writer.options.exports.as_ref();
        while !self.finished && batch.len() < self.writer.options.batch_size.max(1) {
            let now = Utc::now();
            let read = match self.lines.next_line().await {
                Ok(read) => read,
                Err(source) => {
                    self.finished = true;
                    self.read_error = Some(ReadError {
                        after_line: self.summary.lines,
                        source,
                    });
                    break;
                }
            };
            let Some(line) = read else {
                self.finished = true;
                break;
            };
            self.summary.lines = line.number;
            let number = line.number;
            let judged = match line.bytes {
                None => Err(LineError {
                    field: None,
                    problem: format!(
                        "longer than {} bytes; skipped",
                        self.writer.options.max_line_bytes
                    ),
                }),
                // Blank lines separate nothing in NDJSON; they are skipped.
                Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
                Some(bytes) => parse_line(bytes, now, identities_arg),
            };
            match judged {
                Ok(item) => {
                    if let Some(held) = admit(Pending { line: number, item }, &mut batch) {
                        self.held = Some(held);
                        break;
                    }
                }
                Err(e) => results.push(LineResult {
                    line: number,
                    outcome: Outcome::Invalid {
                        field: e.field,
                        message: e.problem,
                    },
                }),
            }
        }
        if batch.is_empty() && results.is_empty() && self.finished && self.held.is_none() {
            return match self.read_error.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        results.extend(self.writer.write(batch).await);
        results.sort_by_key(|r| r.line);
        for result in &results {
            self.summary.count(&result.outcome);
        }
        Ok(Some(results))
    }
}

/// The writing half of an import (kept apart from the input, which need
/// not be shareable between threads).
struct Writer<'a> {
    context: ImportContext<'a>,
    options: ImportOptions,
}

impl Writer<'_> {
    /// Writes one batch in one transaction; a concurrent registration of
    /// one of its new accounts is met by trying the batch once more. A
    /// batch the database refuses is reported line by line.
    async fn write(&self, batch: Vec<Pending>) -> Vec<LineResult> {
        if batch.is_empty() {
            return Vec::new();
        }
        let mut outcome = self.write_once(&batch).await;
        if let Err(sqlx::Error::Database(e)) = &outcome
            && e.is_unique_violation()
        {
            outcome = self.write_once(&batch).await;
        }
        match outcome {
            Ok(results) => results,
            Err(error) => {
                let first = batch.first().map_or(0, |p| p.line);
                let last = batch.last().map_or(0, |p| p.line);
                let message = format!(
                    "the database refused the batch of lines {first}-{last}, none of which was \
                     written: {}",
                    crate::registration::redact_values(&database_message(&error))
                );
                tracing::warn!(first, last, error = %message, "an import batch failed");
                batch
                    .iter()
                    .map(|p| LineResult {
                        line: p.line,
                        outcome: Outcome::Failed {
                            message: message.clone(),
                        },
                    })
                    .collect()
            }
        }
    }

    async fn write_once(&self, batch: &[Pending]) -> Result<Vec<LineResult>, sqlx::Error> {
        let mut tx = self.context.pool.begin().await?;
        let identities: Vec<Identity> = batch.iter().map(Pending::identity).collect();
        let identity_refs: Vec<&Identity> = identities.iter().collect();
        let restored_ids: Vec<&str> = batch.iter().filter_map(Pending::restored_id).collect();
        let existing = bulk::lock_existing(&mut tx, &identity_refs, &restored_ids).await?;
        let by_identity: HashMap<Identity, &AccountRow> = existing
            .iter()
            .map(|row| {
                (
                    Identity {
                        workspace_id: row.workspace_id.clone(),
                        provider: row.provider,
                        external_id: row.external_id.clone(),
                    },
                    row,
                )
            })
            .collect();
        let by_id: HashMap<&str, &AccountRow> =
            existing.iter().map(|row| (row.id.as_str(), row)).collect();
        let mut rows = Vec::with_capacity(batch.len());
        let mut results = Vec::with_capacity(batch.len());
        for (pending, identity) in batch.iter().zip(identities) {
            let current = by_identity.get(&identity).copied();
            let planned = self.plan(pending, identity, current, &by_id);
            let outcome = match planned {
                Plan::Write(row, outcome) => {
                    rows.push(*row);
                    outcome
                }
                Plan::Skip(outcome) => outcome,
            };
            results.push(LineResult {
                line: pending.line,
                outcome,
            });
        }
        if self.options.dry_run {
            tx.rollback().await?;
        } else {
            bulk::upsert(&mut tx, self.context.keyring.primary_key_id(), &rows).await?;
            tx.commit().await?;
            // Counted as POST /v1/accounts counts its status changes.
            for row in rows.iter().filter(|row| row.event.is_some()) {
                crate::metrics::record_status_change(row.identity.provider, row.status);
            }
        }
        Ok(results)
    }

    /// What one line does to the account it names (`current`, if any).
    fn plan(
        &self,
        pending: &Pending,
        identity: Identity,
        current: Option<&AccountRow>,
        by_id: &HashMap<&str, &AccountRow>,
    ) -> Plan {
        let keyring = self.context.keyring;
        let new = pending.item.new_account();
        let policy = &self.context.policies[&new.provider];
        let (id, status, has_credentials) = match (&pending.item, current) {
            (Item::Register(_), Some(row)) => (row.id.clone(), AccountStatus::Active, true),
            (Item::Register(_), None) => (AccountId::generate(), AccountStatus::Active, true),
            (Item::Restore(r), Some(row)) => (row.id.clone(), r.status, r.has_credentials),
            (Item::Restore(r), None) => {
                if by_id.contains_key(r.id.as_str()) {
                    return Plan::Skip(Outcome::Invalid {
                        field: Some("id".to_owned()),
                        message: "is the id of another account in this database".to_owned(),
                    });
                }
                (r.id.clone(), r.status, r.has_credentials)
            }
        };
        if let Some(row) = current
            && row.status == status
            && same_profile(row, new, &policy.publish_scopes)
            && same_history(row, &pending.item)
            && same_credentials(keyring, row, new, has_credentials)
        {
            return Plan::Skip(Outcome::Unchanged {
                id: id.as_str().to_owned(),
            });
        }
        let encrypt = |field: Field, text: &str| keyring.encrypt(&id, field, text);
        let (access, refresh, dpop) = if has_credentials {
            let dpop = new
                .dpop_key
                .clone()
                .or_else(|| needs_dpop_key(new.provider, &new.meta).then(DpopKey::generate))
                .map(|key| encrypt(Field::DpopKey, key.to_private_jwk().expose_secret()));
            (
                Some(encrypt(Field::AccessToken, new.access_token.expose())),
                new.refresh_token
                    .as_ref()
                    .map(|rt| encrypt(Field::RefreshToken, rt.expose())),
                dpop,
            )
        } else {
            (None, None, None)
        };
        let previous = current.map(|row| row.status);
        let (status_reason, next_attempt_at, history, reason) = match &pending.item {
            Item::Register(_) => (
                None,
                Some(
                    policy
                        .plan(&id, new.token_issued_at, new.token_expires_at)
                        .at(),
                ),
                // As `register`: the refresh times stay, the rest clears.
                History {
                    last_refreshed_at: current.and_then(|r| r.last_refreshed_at),
                    last_refresh_attempt_at: current.and_then(|r| r.last_refresh_attempt_at),
                    ..History::default()
                },
                if current.is_some() {
                    "reconnected"
                } else {
                    "connected"
                },
            ),
            Item::Restore(r) => (
                r.status_reason.clone(),
                // An ACTIVE account is always planned.
                r.next_attempt_at.or_else(|| {
                    (status == AccountStatus::Active).then(|| {
                        policy
                            .plan(&id, new.token_issued_at, new.token_expires_at)
                            .at()
                    })
                }),
                r.history.clone(),
                "imported",
            ),
        };
        // Where the platform gave no refresh-token expiry, the configured
        // lifetime (if known) counts from this connection.
        let refresh_token_expires_at = new.refresh_token_expires_at.or_else(|| {
            new.refresh_token.as_ref()?;
            policy
                .refresh_token_lifetime
                .map(|l| new.token_issued_at + crate::policy::delta(l))
        });
        let row = BulkAccount {
            id: id.clone(),
            identity,
            handle: new.handle.clone(),
            display_name: new.display_name.clone(),
            avatar_url: new.avatar_url.clone(),
            status,
            status_reason,
            connection_type: new.connection_type,
            granted_scopes: new.granted_scopes.clone(),
            missing_scopes: crate::scopes::missing(&policy.publish_scopes, &new.granted_scopes),
            meta: new.meta.clone(),
            default_board_id: new.default_board_id.clone(),
            token_issued_at: Some(new.token_issued_at),
            token_expires_at: new.token_expires_at,
            refresh_token_expires_at,
            next_attempt_at,
            dead_at: policy.dead_at(
                new.token_expires_at,
                refresh.is_some(),
                refresh_token_expires_at,
            ),
            access_token_ciphertext: access,
            refresh_token_ciphertext: refresh,
            dpop_key_ciphertext: dpop,
            history,
            event: (previous != Some(status)).then_some((previous, reason)),
        };
        let id = id.as_str().to_owned();
        let outcome = if current.is_some() {
            Outcome::Reconnected { id }
        } else {
            Outcome::Created { id }
        };
        Plan::Write(Box::new(row), outcome)
    }
}

enum Plan {
    Write(Box<BulkAccount>, Outcome),
    Skip(Outcome),
}

fn same_profile(row: &AccountRow, new: &NewAccount, publish_scopes: &[String]) -> bool {
    row.handle == new.handle
        && row.display_name == new.display_name
        && row.avatar_url == new.avatar_url
        && row.connection_type == new.connection_type
        && row.granted_scopes == new.granted_scopes
        && row.missing_scopes == crate::scopes::missing(publish_scopes, &new.granted_scopes)
        && row.meta == new.meta
        && row.default_board_id == new.default_board_id
}

/// For a restored account, whether the row already holds the export's
/// status details and refresh fields (a registration brings none).
fn same_history(row: &AccountRow, item: &Item) -> bool {
    let Item::Restore(r) = item else {
        return true;
    };
    let h = &r.history;
    row.status_reason == r.status_reason
        && row.consecutive_failures == h.consecutive_failures
        && row.last_refresh_error == h.last_refresh_error
        && row.last_refresh_error_status == h.last_refresh_error_status
        && row.last_refreshed_at == h.last_refreshed_at
        && row.account_inactive_reason == h.account_inactive_reason
        && row.token_expires_at == r.new.token_expires_at
        && r.next_attempt_at
            .is_none_or(|at| row.next_attempt_at == Some(at))
}

/// Whether the stored credentials are the line's (a DPoP key the line does
/// not give is whatever was stored or generated before).
fn same_credentials(
    keyring: &Keyring,
    row: &AccountRow,
    new: &NewAccount,
    has_credentials: bool,
) -> bool {
    let Some(key_id) = row.credentials_key_id.as_deref() else {
        return !has_credentials && row.access_token_ciphertext.is_none();
    };
    if !has_credentials {
        return false;
    }
    let stored = |field: Field, ciphertext: &Option<Vec<u8>>| {
        ciphertext
            .as_deref()
            .map(|c| keyring.decrypt(&row.id, field, key_id, c))
            .transpose()
    };
    let (Ok(Some(access)), Ok(refresh), Ok(dpop)) = (
        stored(Field::AccessToken, &row.access_token_ciphertext),
        stored(Field::RefreshToken, &row.refresh_token_ciphertext),
        stored(Field::DpopKey, &row.dpop_key_ciphertext),
    ) else {
        return false;
    };
    let same_dpop = match (&new.dpop_key, dpop) {
        (None, _) => true,
        (Some(given), Some(stored)) => DpopKey::from_jwk(stored.expose_secret()).is_ok_and(|k| {
            k.to_private_jwk().expose_secret() == given.to_private_jwk().expose_secret()
        }),
        (Some(_), None) => false,
    };
    access.expose_secret() == new.access_token.expose()
        && refresh.as_ref().map(|r| r.expose_secret())
            == new.refresh_token.as_ref().map(|r| r.expose())
        && same_dpop
}

/// The database's own words, without the statement or the values.
fn database_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => e.message().to_owned(),
        sqlx::Error::PoolTimedOut => "no database connection was free in time".to_owned(),
        other => other.to_string(),
    }
}
