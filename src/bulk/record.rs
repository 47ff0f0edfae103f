//! What one import line may be, and how it is judged: a registration body
//! (judged exactly as `POST /v1/accounts` judges its body), or an account
//! as `accounts export` wrote it (its `format` names it), restored with
//! its status and refresh history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::seal::{self, Identities};
use crate::domain::{AccountId, AccountStatus, ConnectionType, Provider};
use crate::registration::{self, AccountSpec, CredentialsSpec, InvalidField, SpecError};
use crate::store::accounts::{AccountRow, NewAccount};
use crate::store::bulk::History;

/// The `format` of an exported account.
pub const EXPORT_FORMAT: &str = "tokenwarden.account.v1";

/// Free text carried over from an export (reasons, errors) is bounded.
const MAX_NOTE_CHARS: usize = 4096;

/// One exported account: profile, status and refresh fields; its
/// credentials only sealed to a recipient (`sealed_credentials`), never in
/// clear.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRecord {
    pub format: String,
    pub id: String,
    pub workspace_id: String,
    pub provider: Provider,
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    pub connection_type: ConnectionType,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Publishing scopes the account lacks; recomputed on import.
    #[serde(default)]
    pub missing_scopes: Vec<String>,
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_board_id: Option<String>,
    pub status: AccountStatus,
    #[serde(default)]
    pub status_reason: Option<String>,
    pub connected_at: DateTime<Utc>,
    pub refresh: RefreshFields,
    /// base64 of an age file holding the credentials; absent unless the
    /// export was made `--with-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_credentials: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshFields {
    #[serde(default)]
    pub token_issued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub token_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub has_refresh_token: bool,
    #[serde(default)]
    pub last_refreshed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_refresh_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_refresh_error: Option<String>,
    #[serde(default)]
    pub last_refresh_error_status: Option<i32>,
    #[serde(default)]
    pub consecutive_failures: i32,
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub account_inactive_reason: Option<String>,
    #[serde(default)]
    pub account_inactive_since: Option<DateTime<Utc>>,
}

impl ExportRecord {
    /// The record of a stored account, without credentials.
    pub fn of(row: &AccountRow) -> Self {
        Self {
            format: EXPORT_FORMAT.to_owned(),
            id: row.id.as_str().to_owned(),
            workspace_id: row.workspace_id.clone(),
            provider: row.provider,
            external_id: row.external_id.clone(),
            handle: row.handle.clone(),
            display_name: row.display_name.clone(),
            avatar_url: row.avatar_url.clone(),
            connection_type: row.connection_type,
            scopes: row.granted_scopes.clone(),
            missing_scopes: row.missing_scopes.clone(),
            meta: Some(row.meta.clone()),
            default_board_id: row.default_board_id.clone(),
            status: row.status,
            status_reason: row.status_reason.clone(),
            connected_at: row.connected_at,
            refresh: RefreshFields {
                token_issued_at: row.token_issued_at,
                token_expires_at: row.token_expires_at,
                refresh_token_expires_at: row.refresh_token_expires_at,
                has_refresh_token: row.has_refresh_token(),
                last_refreshed_at: row.last_refreshed_at,
                last_refresh_attempt_at: row.last_refresh_attempt_at,
                last_refresh_error: row.last_refresh_error.clone(),
                last_refresh_error_status: row.last_refresh_error_status,
                consecutive_failures: row.consecutive_failures,
                next_attempt_at: row.next_attempt_at,
                account_inactive_reason: row.account_inactive_reason.clone(),
                account_inactive_since: row.account_inactive_since,
            },
            sealed_credentials: None,
        }
    }
}

/// Why a line was refused: the field (a JSON path) when one is to blame,
/// and the problem. Never repeats a value from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub field: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl LineError {
    fn field(field: &str, problem: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            problem: problem.into(),
        }
    }

    fn general(problem: impl Into<String>) -> Self {
        Self {
            field: None,
            problem: problem.into(),
        }
    }
}

impl From<InvalidField> for LineError {
    fn from(e: InvalidField) -> Self {
        Self {
            field: Some(e.field),
            problem: e.problem,
        }
    }
}

impl From<SpecError> for LineError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Syntax(message) => Self::general(format!("not valid JSON: {message}")),
            SpecError::Field(e) => e.into(),
        }
    }
}

/// An exported account, validated, to restore.
#[derive(Debug)]
pub struct Restored {
    /// The id it had; kept when the database has no account of this
    /// identity (an account that exists keeps its own).
    pub id: AccountId,
    /// Profile and, when `has_credentials`, the tokens.
    pub new: NewAccount,
    /// False only for a DISCONNECTED account exported without credentials:
    /// `new`'s tokens are then placeholders, never written.
    pub has_credentials: bool,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub history: History,
}

/// What a valid line asks for.
#[derive(Debug)]
pub enum Item {
    Register(NewAccount),
    Restore(Restored),
}

impl Item {
    pub fn new_account(&self) -> &NewAccount {
        match self {
            Item::Register(new) => new,
            Item::Restore(restored) => &restored.new,
        }
    }
}

/// Judges one line. Exported accounts are accepted only when `identities`
/// is `Some` (the CLI; its identities may be empty when none was given);
/// otherwise every line is a registration body.
pub fn parse_line(
    bytes: &[u8],
    now: DateTime<Utc>,
    identities: Option<&Option<Identities>>,
) -> Result<Item, LineError> {
    // A JSON array would otherwise be judged as a registration and refused
    // with serde's `[0]: invalid type: map, expected a string`.
    if bytes.trim_ascii_start().starts_with(b"[") {
        return Err(LineError::general(
            "a JSON array: write one JSON object per line (NDJSON), not an array",
        ));
    }
    if let Some(identities) = identities
        && is_export(bytes)
    {
        return restore(bytes, now, identities.as_ref()).map(Item::Restore);
    }
    let spec = registration::parse_spec(bytes)?;
    Ok(Item::Register(spec.into_new_account(now)?))
}

/// Whether a line is an object with a `format` member (cheap: every other
/// member is skipped unread).
fn is_export(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Peek {
        format: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Peek>(bytes).is_ok_and(|p| p.format.is_some())
}

fn restore(
    bytes: &[u8],
    now: DateTime<Utc>,
    identities: Option<&Identities>,
) -> Result<Restored, LineError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let record: ExportRecord =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = registration::safe_path(error.path());
            let inner = error.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    registration::field_error(&path, &inner.to_string()).into()
                }
                _ => syntax(&inner),
            }
        })?;
    // Trailing garbage after the object.
    deserializer.end().map_err(|e| syntax(&e))?;
    if record.format != EXPORT_FORMAT {
        return Err(LineError::field(
            "format",
            format!("unknown export format (this version reads {EXPORT_FORMAT})"),
        ));
    }
    let id: AccountId = record
        .id
        .parse()
        .map_err(|_| LineError::field("id", "is not an account id (acc_ and 32 hex digits)"))?;
    let credentials = match (&record.sealed_credentials, identities) {
        (Some(sealed), Some(identities)) => Some(
            seal::open(identities, sealed)
                .map_err(|problem| LineError::field("sealed_credentials", problem))?,
        ),
        (Some(_), None) => {
            return Err(LineError::field(
                "sealed_credentials",
                "give the age identity these credentials were sealed to (--identity FILE)",
            ));
        }
        (None, _) if record.status == AccountStatus::Disconnected => None,
        (None, _) => {
            return Err(LineError::field(
                "sealed_credentials",
                "missing: this account was exported without credentials (export with \
                 --with-credentials to move accounts; only DISCONNECTED accounts need none)",
            ));
        }
    };
    let has_credentials = credentials.is_some();
    let refresh = &record.refresh;
    for (field, text) in [
        ("status_reason", &record.status_reason),
        ("refresh.last_refresh_error", &refresh.last_refresh_error),
        (
            "refresh.account_inactive_reason",
            &refresh.account_inactive_reason,
        ),
    ] {
        if let Some(text) = text {
            note(field, text)?;
        }
    }
    if refresh.consecutive_failures < 0 {
        return Err(LineError::field(
            "refresh.consecutive_failures",
            "must not be negative",
        ));
    }
    if let Some(status) = refresh.last_refresh_error_status
        && !(100..=599).contains(&status)
    {
        return Err(LineError::field(
            "refresh.last_refresh_error_status",
            "must be an HTTP status (100 to 599)",
        ));
    }
    // The profile and tokens are judged by the registration rules
    // themselves. A DISCONNECTED account has no tokens; a placeholder
    // stands in for them so that the rest is judged alike.
    let (access_token, refresh_token, dpop_private_jwk) = match credentials {
        Some(c) => (c.access_token, c.refresh_token, c.dpop_private_jwk),
        None => ("none".to_owned(), None, None),
    };
    let spec = AccountSpec {
        workspace_id: record.workspace_id,
        provider: record.provider,
        external_id: record.external_id,
        handle: record.handle,
        display_name: record.display_name,
        avatar_url: record.avatar_url,
        connection_type: Some(record.connection_type),
        scopes: record.scopes,
        meta: record.meta,
        default_board_id: record.default_board_id,
        credentials: CredentialsSpec {
            access_token,
            refresh_token,
            expires_in: None,
            token_expires_at: record.refresh.token_expires_at,
            refresh_token_expires_at: record.refresh.refresh_token_expires_at,
            dpop_private_jwk,
        },
    };
    let mut new = spec.into_new_account(now).map_err(|e| {
        // Name the field as the export spells it.
        let field = match e.field.as_str() {
            "credentials.expires_in" | "credentials.token_expires_at" => {
                "refresh.token_expires_at".to_owned()
            }
            "credentials.refresh_token_expires_at" => "refresh.refresh_token_expires_at".to_owned(),
            other => match other.strip_prefix("credentials.") {
                Some(inner) => format!("sealed_credentials.{inner}"),
                None => other.to_owned(),
            },
        };
        LineError::field(&field, e.problem)
    })?;
    if let Some(issued) = record.refresh.token_issued_at {
        new.token_issued_at = issued;
    }
    Ok(Restored {
        id,
        new,
        has_credentials,
        status: record.status,
        status_reason: record.status_reason,
        next_attempt_at: record.refresh.next_attempt_at,
        history: History {
            connected_at: Some(record.connected_at),
            last_refreshed_at: record.refresh.last_refreshed_at,
            last_refresh_attempt_at: record.refresh.last_refresh_attempt_at,
            last_refresh_error: record.refresh.last_refresh_error,
            last_refresh_error_status: record.refresh.last_refresh_error_status,
            consecutive_failures: record.refresh.consecutive_failures,
            account_inactive_reason: record.refresh.account_inactive_reason,
            account_inactive_since: record.refresh.account_inactive_since,
        },
    })
}

fn syntax(e: &serde_json::Error) -> LineError {
    LineError::general(format!(
        "not valid JSON: {}",
        registration::redact_values(&e.to_string())
    ))
}

/// Carried-over text: bounded, no NUL (PostgreSQL text cannot hold one).
fn note(field: &str, text: &str) -> Result<(), LineError> {
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(LineError::field(
            field,
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    if text.contains('\0') {
        return Err(LineError::field(field, "must not contain a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn judge(bytes: &[u8], exports: bool) -> Result<Item, LineError> {
        let none = None;
        parse_line(bytes, Utc::now(), exports.then_some(&none))
    }

    #[test]
    fn a_registration_line_is_judged_as_the_api_judges_a_body() {
        let line = br#"{"workspace_id":"w","provider":"X","external_id":"e","credentials":{"access_token":"at","expires_in":0}}"#;
        for exports in [false, true] {
            let err = judge(line, exports).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("credentials.expires_in"));
            let api = match registration::parse_spec(line)
                .unwrap()
                .into_new_account(Utc::now())
            {
                Err(e) => e.problem,
                Ok(_) => unreachable!(),
            };
            assert_eq!(err.problem, api);
        }
        let err = judge(b"{not json", false).unwrap_err();
        assert!(err.field.is_none() && err.problem.starts_with("not valid JSON"));
    }

    #[test]
    fn an_export_line_needs_its_credentials_unless_disconnected() {
        let mut record = serde_json::json!({
            "format": EXPORT_FORMAT, "id": format!("acc_{}", "0".repeat(32)),
            "workspace_id": "w", "provider": "X", "external_id": "e",
            "connection_type": "oauth", "status": "REVOKED",
            "connected_at": "2026-01-01T00:00:00Z", "refresh": {}
        });
        let err = judge(record.to_string().as_bytes(), true).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("sealed_credentials"));
        // The API tier reads registration bodies only.
        let err = judge(record.to_string().as_bytes(), false).unwrap_err();
        assert!(err.problem.starts_with("unknown field"), "{err}");
        record["status"] = "DISCONNECTED".into();
        let Item::Restore(restored) = judge(record.to_string().as_bytes(), true).unwrap() else {
            panic!("an export line");
        };
        assert!(!restored.has_credentials);
        record["sealed_credentials"] = "AAAA".into();
        let err = judge(record.to_string().as_bytes(), true).unwrap_err();
        assert!(err.problem.contains("--identity"), "{err}");
        record.as_object_mut().unwrap().remove("sealed_credentials");
        record["refresh"]["consecutive_failures"] = (-1).into();
        let err = judge(record.to_string().as_bytes(), true).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("refresh.consecutive_failures"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any bytes as a line: an item or an error, never a panic.
        #[test]
        fn any_line(bytes in proptest::collection::vec(any::<u8>(), 0..400), exports in any::<bool>()) {
            let _ = judge(&bytes, exports);
        }

        /// Any JSON in any member of an export line: an item or an error
        /// naming a field of it (or the line), never a panic.
        #[test]
        fn any_json_in_an_export_line(
            field in prop::sample::select(vec![
                "format", "id", "workspace_id", "provider", "external_id", "handle",
                "connection_type", "scopes", "meta", "status", "status_reason",
                "connected_at", "refresh", "sealed_credentials", "missing_scopes",
            ]),
            value in crate::json_strategy::any_json(crate::json_strategy::scalar(), "[a-z_]{1,20}|.{0,20}"),
        ) {
            let mut record = serde_json::json!({
                "format": EXPORT_FORMAT, "id": format!("acc_{}", "0".repeat(32)),
                "workspace_id": "w", "provider": "X", "external_id": "e",
                "connection_type": "oauth", "status": "DISCONNECTED",
                "connected_at": "2026-01-01T00:00:00Z", "refresh": {}
            });
            record[field] = value;
            if let Err(e) = judge(record.to_string().as_bytes(), true) {
                prop_assert!(!e.problem.is_empty());
            }
        }
    }
}
