//! Bulk import and export against a real PostgreSQL: malformed lines
//! reported by line and field and nothing else lost, re-runs that change
//! nothing, register's reconnect semantics, a batch the database refuses,
//! dry runs, and the export → import round trip (credentials included,
//! sealed to an age recipient). The command line is driven as a process.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use common::TestDb;
use figment::providers::Format as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokenwarden::bulk::{
    ExportOptions, Identities, Import, ImportContext, ImportOptions, LineResult, Outcome, Summary,
};
use tokenwarden::config::{DEFAULT_TOML, Settings};
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::AccountId;
use tokenwarden::engine::EngineConfig;
use tokenwarden::store::accounts;

const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");

/// A database schema, its keys, and the policies the daemon would use.
struct World {
    db: TestDb,
    key_spec: String,
    keyring: Keyring,
    config: EngineConfig,
    settings: Settings,
}

impl World {
    async fn new() -> Self {
        let key = format!(
            "t1:{}",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        );
        let settings = Settings::from_figment(
            figment::Figment::new().merge(figment::providers::Toml::string(DEFAULT_TOML)),
        )
        .unwrap();
        Self {
            db: TestDb::new().await,
            keyring: Keyring::parse(&SecretString::from(key.clone())).unwrap(),
            key_spec: key,
            config: EngineConfig::from_settings(&settings),
            settings,
        }
    }

    fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    fn options(&self) -> ImportOptions {
        ImportOptions {
            batch_size: 1000,
            max_line_bytes: 64 * 1024,
            dry_run: false,
            exports: Some(None),
        }
    }

    /// Imports `input`; every line's result, and the summary.
    async fn import(&self, input: &[u8], options: ImportOptions) -> (Vec<LineResult>, Summary) {
        let context = ImportContext {
            pool: self.pool(),
            keyring: &self.keyring,
            policies: &self.config.policies,
        };
        let mut import = Import::new(context, options, input);
        let mut results = Vec::new();
        while let Some(batch) = import.next_batch().await.unwrap() {
            results.extend(batch);
        }
        let summary = import.finish().await.unwrap();
        (results, summary)
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    /// Every account by identity: status, reason, failures, version,
    /// updated_at, and its tokens in clear.
    async fn snapshot(&self) -> BTreeMap<String, Value> {
        let rows: Vec<accounts::AccountRow> =
            sqlx::query_as(
                "SELECT a.*, s.next_attempt_at, s.claim_id, s.claimed_at, s.claimed_by
                 FROM social_accounts a JOIN account_schedule s ON s.account_id = a.id ORDER BY a.id",
            )
                .fetch_all(self.pool())
                .await
                .unwrap();
        rows.into_iter()
            .map(|row| {
                let open = |field, ciphertext: &Option<Vec<u8>>| {
                    ciphertext.as_deref().map(|c| {
                        self.keyring
                            .decrypt(
                                &row.id,
                                field,
                                row.credentials_key_id.as_deref().unwrap(),
                                c,
                            )
                            .unwrap()
                            .expose_secret()
                            .to_owned()
                    })
                };
                let key = format!("{}/{}/{}", row.workspace_id, row.provider, row.external_id);
                let value = json!({
                    "id": row.id.as_str(),
                    "status": row.status.as_str(),
                    "status_reason": row.status_reason,
                    "failures": row.consecutive_failures,
                    "last_refresh_error": row.last_refresh_error,
                    "handle": row.handle,
                    "scopes": row.granted_scopes,
                    "meta": row.meta,
                    "token_expires_at": row.token_expires_at,
                    "next_attempt_at": row.next_attempt_at,
                    "access": open(Field::AccessToken, &row.access_token_ciphertext),
                    "refresh": open(Field::RefreshToken, &row.refresh_token_ciphertext),
                    "version": row.credentials_version,
                    "updated_at": row.updated_at,
                });
                (key, value)
            })
            .collect()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TOKENWARDEN")) {
            cmd.env_remove(key);
        }
        cmd.env_remove("RUST_LOG")
            .env("TOKENWARDEN__DATABASE__URL", self.db.url())
            .env("TOKENWARDEN__CRYPTO__KEYS", &self.key_spec)
            .env("TOKENWARDEN__LOG__FILTER", "warn")
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn line(i: usize, access: &str) -> String {
    let provider = ["X", "LINKEDIN_PERSON", "YOUTUBE", "PINTEREST"][i % 4];
    json!({
        "workspace_id": format!("ws-{}", i % 7),
        "provider": provider,
        "external_id": format!("ext-{i}"),
        "handle": format!("@a{i}"),
        "scopes": ["read", "write"],
        "meta": {"n": i},
        "credentials": {"access_token": access, "refresh_token": format!("rt-{i}-{access}"), "expires_in": 3600 + i}
    })
    .to_string()
}

/// The malformed line for `i` and the field its error must name (None: the
/// line as a whole).
fn malformed(i: usize) -> (String, Option<&'static str>) {
    match i % 5 {
        0 => (
            r#"{"workspace_id": "w", "provider": "X", "external_id": "#.to_owned(),
            None,
        ),
        1 => (
            json!({"workspace_id": "w", "provider": "X", "credentials": {"access_token": "t"}})
                .to_string(),
            Some("external_id"),
        ),
        2 => (
            json!({"workspace_id": "w", "provider": "X", "external_id": format!("bad-{i}"),
                   "credentials": {"access_token": "t", "expires_in": -5}})
            .to_string(),
            Some("credentials.expires_in"),
        ),
        3 => (
            json!({"workspace_id": "w", "provider": "MYSPACE", "external_id": "e",
                   "credentials": {"access_token": "t"}})
            .to_string(),
            Some("provider"),
        ),
        _ => (
            json!({"workspace_id": "w", "provider": "X", "external_id": "e",
                   "credentials": {"access_token": "has space"}})
            .to_string(),
            Some("credentials.access_token"),
        ),
    }
}

fn outcomes(results: &[LineResult]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for r in results {
        let name = match r.outcome {
            Outcome::Created { .. } => "created",
            Outcome::Reconnected { .. } => "reconnected",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Invalid { .. } => "invalid",
            Outcome::Failed { .. } => "failed",
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}

/// 5,000 lines, 0.5 % malformed (every kind): exactly those reported, by
/// line and field; the rest registered with their tokens and a
/// `connected` event each; statistics refreshed; a re-run changes nothing
/// (no write, no event, same versions and timestamps).
#[tokio::test]
async fn malformed_lines_are_reported_the_rest_imported_and_a_rerun_changes_nothing() {
    let world = World::new().await;
    let mut input = String::new();
    let mut expected_invalid = BTreeMap::new();
    for i in 1..=5000usize {
        if i % 200 == 0 {
            let (text, field) = malformed(i / 200);
            expected_invalid.insert(i as u64, field);
            input.push_str(&text);
        } else {
            input.push_str(&line(i, &format!("at-{i}")));
        }
        input.push('\n');
    }
    let (results, summary) = world.import(input.as_bytes(), world.options()).await;
    assert_eq!(results.len(), 5000, "one result per line");
    let invalid: BTreeMap<u64, Option<&str>> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Invalid { field, .. } => Some((r.line, field.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(invalid, expected_invalid);
    assert_eq!(summary.created, 4975);
    assert_eq!((summary.invalid, summary.failed), (25, 0));
    assert_eq!(
        world.scalar("SELECT count(*) FROM social_accounts").await,
        4975
    );
    assert_eq!(
        world
            .scalar("SELECT count(*) FROM account_events WHERE reason = 'connected' AND to_status = 'ACTIVE'")
            .await,
        4975
    );
    assert_eq!(
        world
            .scalar(
                "SELECT count(*) FROM social_accounts JOIN account_schedule ON account_id = id
                 WHERE next_attempt_at IS NULL OR status <> 'ACTIVE'"
            )
            .await,
        0,
        "every account is ACTIVE and planned"
    );
    let analyzed = world
        .scalar(
            "SELECT count(*) FROM pg_stat_user_tables
             WHERE relname = 'social_accounts' AND schemaname = current_schema()
               AND last_analyze IS NOT NULL",
        )
        .await;
    assert_eq!(analyzed, 1, "ANALYZE ran after the bulk write");
    let before = world.snapshot().await;
    let sample = &before["ws-3/X/ext-24"];
    assert_eq!(sample["access"], "at-24");
    assert_eq!(sample["refresh"], "rt-24-at-24");

    let (again, summary) = world.import(input.as_bytes(), world.options()).await;
    assert_eq!(outcomes(&again)["unchanged"], 4975, "{summary:?}");
    assert_eq!(summary.invalid, 25);
    assert_eq!(world.snapshot().await, before, "the re-run changed nothing");
    assert_eq!(
        world.scalar("SELECT count(*) FROM account_events").await,
        4975
    );
}

/// A line for an account that exists reconnects it, as POST /v1/accounts
/// does: new credentials, version bumped, ACTIVE again with a `reconnected`
/// event when it was not; within one file the later line wins.
#[tokio::test]
async fn an_existing_account_is_reconnected_and_the_later_line_wins() {
    let world = World::new().await;
    let first = format!("{}\n{}\n", line(1, "old-1"), line(2, "old-2"));
    world.import(first.as_bytes(), world.options()).await;
    sqlx::query("UPDATE social_accounts SET status = 'REVOKED', consecutive_failures = 3 WHERE external_id = 'ext-1'")
        .execute(world.pool())
        .await
        .unwrap();
    let before = world.snapshot().await;
    // ext-1 twice in one batch: both apply, in order.
    let second = format!(
        "{}\n{}\n{}\n",
        line(1, "mid-1"),
        line(2, "new-2"),
        line(1, "new-1")
    );
    let (results, _) = world.import(second.as_bytes(), world.options()).await;
    assert_eq!(outcomes(&results)["reconnected"], 3, "{results:?}");
    let after = world.snapshot().await;
    let one = &after["ws-1/LINKEDIN_PERSON/ext-1"];
    assert_eq!(one["access"], "new-1");
    assert_eq!(one["status"], "ACTIVE");
    assert_eq!(one["failures"], 0);
    assert_eq!(one["id"], before["ws-1/LINKEDIN_PERSON/ext-1"]["id"]);
    assert_eq!(
        one["version"].as_i64().unwrap(),
        before["ws-1/LINKEDIN_PERSON/ext-1"]["version"]
            .as_i64()
            .unwrap()
            + 2
    );
    assert_eq!(after["ws-2/YOUTUBE/ext-2"]["access"], "new-2");
    let events: Vec<(Option<String>, String, String)> = sqlx::query_as(
        "SELECT e.from_status, e.to_status, e.reason FROM account_events e
         JOIN social_accounts a ON a.id = e.account_id
         WHERE a.external_id = 'ext-1' ORDER BY e.id",
    )
    .fetch_all(world.pool())
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            (None, "ACTIVE".into(), "connected".into()),
            (
                Some("REVOKED".into()),
                "ACTIVE".into(),
                "reconnected".into()
            ),
        ]
    );
}

/// A batch the database refuses is reported line by line, naming the lines
/// it held; nothing of it is written and the other batches are.
#[tokio::test]
async fn a_batch_the_database_refuses_loses_nothing_else() {
    let world = World::new().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.external_id = 'ext-15' THEN RAISE EXCEPTION 'poisoned row'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON social_accounts
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(world.pool())
    .await
    .unwrap();
    let input: String = (1..=30)
        .map(|i| line(i, &format!("at-{i}")) + "\n")
        .collect();
    let options = ImportOptions {
        batch_size: 10,
        ..world.options()
    };
    let (results, summary) = world.import(input.as_bytes(), options).await;
    let failed: Vec<u64> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed { message } => {
                assert!(message.contains("lines 11-20"), "{message}");
                assert!(message.contains("poisoned row"), "{message}");
                Some(r.line)
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, (11..=20).collect::<Vec<_>>());
    assert_eq!((summary.created, summary.failed), (20, 10));
    assert_eq!(
        world.scalar("SELECT count(*) FROM social_accounts").await,
        20
    );
    assert_eq!(
        world.scalar("SELECT count(*) FROM account_events").await,
        20
    );
}

/// A dry run judges and looks up every line and writes nothing.
#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let world = World::new().await;
    world
        .import(format!("{}\n", line(1, "at-1")).as_bytes(), world.options())
        .await;
    let input = format!("{}\n{}\nnot json\n", line(1, "at-1b"), line(2, "at-2"));
    let before = world.snapshot().await;
    let options = ImportOptions {
        dry_run: true,
        ..world.options()
    };
    let (results, summary) = world.import(input.as_bytes(), options).await;
    assert!(summary.dry_run);
    assert_eq!(
        outcomes(&results),
        BTreeMap::from([("created", 1), ("invalid", 1), ("reconnected", 1)])
    );
    assert_eq!(world.snapshot().await, before);
    assert_eq!(world.scalar("SELECT count(*) FROM account_events").await, 1);
}

/// A file saved with a byte order mark and CRLF endings (as Windows tools
/// write it) imports every line, the first included.
#[tokio::test]
async fn a_byte_order_mark_and_crlf_endings_are_accepted() {
    let world = World::new().await;
    let input = format!("\u{FEFF}{}\r\n{}\r\n", line(1, "at-1"), line(2, "at-2"));
    let (results, summary) = world.import(input.as_bytes(), world.options()).await;
    assert_eq!(outcomes(&results), BTreeMap::from([("created", 2)]));
    assert_eq!(summary.created, 2);
    assert_eq!(
        world.scalar("SELECT count(*) FROM social_accounts").await,
        2
    );
}

/// A JSON array on a line (a file written as one array, or lines wrapped in
/// one) is refused saying so, not with serde's type error; the next line is
/// imported.
#[tokio::test]
async fn a_json_array_line_is_refused_by_name() {
    let world = World::new().await;
    let input = format!(" [{}]\n{}\n", line(1, "at-1"), line(2, "at-2"));
    let (results, _) = world.import(input.as_bytes(), world.options()).await;
    assert_eq!(
        outcomes(&results),
        BTreeMap::from([("created", 1), ("invalid", 1)])
    );
    match &results[0].outcome {
        Outcome::Invalid { field, message } => {
            assert!(field.is_none(), "{field:?}");
            assert!(message.contains("JSON array"), "{message}");
            assert!(!message.contains("at-1"), "{message}");
        }
        other => panic!("line 1: {other:?}"),
    }
}

fn age_keys() -> (String, SecretString) {
    let identity = age::x25519::Identity::generate();
    (
        identity.to_public().to_string(),
        SecretString::from(identity.to_string().expose_secret().to_owned()),
    )
}

/// Accounts of every status, exported with credentials sealed to an age
/// recipient and imported into a fresh database (other keys) with the
/// identity: same ids, profiles, statuses, refresh fields and tokens. The
/// export holds no token in clear; a second import changes nothing; an
/// export without credentials holds none and is refused line by line
/// (DISCONNECTED accounts aside).
#[tokio::test]
async fn export_and_import_into_a_fresh_database_round_trip() {
    let source = World::new().await;
    let input: String = (1..=12)
        .map(|i| line(i, &format!("secret-access-{i:02}")) + "\n")
        .collect();
    source.import(input.as_bytes(), source.options()).await;
    sqlx::raw_sql(
        "UPDATE social_accounts SET status = 'REVOKED', status_reason = 'revoked by the user',
             consecutive_failures = 2, last_refresh_error = 'invalid_grant'
         WHERE external_id IN ('ext-1', 'ext-2');
         UPDATE social_accounts SET status = 'TOKEN_EXPIRED' WHERE external_id = 'ext-3';
         UPDATE account_schedule SET next_attempt_at = NULL FROM social_accounts
         WHERE id = account_id AND external_id IN ('ext-1', 'ext-2', 'ext-3');",
    )
    .execute(source.pool())
    .await
    .unwrap();
    let disconnected: AccountId = sqlx::query_scalar::<_, String>(
        "SELECT id FROM social_accounts WHERE external_id = 'ext-4'",
    )
    .fetch_one(source.pool())
    .await
    .unwrap()
    .parse()
    .unwrap();
    accounts::disconnect(source.pool(), &disconnected, "user disconnected")
        .await
        .unwrap()
        .unwrap();

    let (recipient, identity) = age_keys();
    let mut sealed = Vec::new();
    let options = ExportOptions {
        recipient: Some(recipient.parse().unwrap()),
        workspace_id: None,
        provider: None,
        page_size: 5,
    };
    let written = tokenwarden::bulk::export(
        source.pool(),
        &source.keyring,
        &options,
        &mut sealed,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(written, 12);
    let text = String::from_utf8(sealed.clone()).unwrap();
    assert!(!text.contains("secret-access"), "no token in clear");
    assert_eq!(text.lines().count(), 12);
    assert_eq!(
        text.matches("sealed_credentials").count(),
        11,
        "all but DISCONNECTED"
    );

    let target = World::new().await;
    let identities = Identities::parse(&identity).unwrap();
    let options = ImportOptions {
        exports: Some(Some(identities)),
        ..target.options()
    };
    let (results, summary) = target.import(&sealed, options).await;
    assert_eq!(summary.created, 12, "{results:?}");
    let strip = |snapshot: BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        snapshot
            .into_iter()
            .map(|(k, mut v)| {
                let v = v.as_object_mut().unwrap();
                v.remove("version");
                v.remove("updated_at");
                (k, Value::Object(v.clone()))
            })
            .collect()
    };
    assert_eq!(
        strip(target.snapshot().await),
        strip(source.snapshot().await)
    );
    common::assert_expiry_copies(target.pool(), &target.settings).await;
    let statuses: BTreeSet<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM social_accounts GROUP BY status")
            .fetch_all(target.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        statuses,
        BTreeSet::from([
            ("ACTIVE".into(), 8),
            ("DISCONNECTED".into(), 1),
            ("REVOKED".into(), 2),
            ("TOKEN_EXPIRED".into(), 1)
        ])
    );
    // Imported again: nothing changes.
    let before = target.snapshot().await;
    let options = ImportOptions {
        exports: Some(Some(Identities::parse(&identity).unwrap())),
        ..target.options()
    };
    let (again, _) = target.import(&sealed, options).await;
    assert_eq!(outcomes(&again), BTreeMap::from([("unchanged", 12)]));
    assert_eq!(target.snapshot().await, before);
    // A newer export of a changed account updates it, and only it.
    sqlx::query("UPDATE social_accounts SET consecutive_failures = 5 WHERE external_id = 'ext-1'")
        .execute(source.pool())
        .await
        .unwrap();
    let mut newer = Vec::new();
    let options = ExportOptions {
        recipient: Some(recipient.parse().unwrap()),
        workspace_id: None,
        provider: None,
        page_size: 100,
    };
    tokenwarden::bulk::export(source.pool(), &source.keyring, &options, &mut newer, |_| {})
        .await
        .unwrap();
    let options = ImportOptions {
        exports: Some(Some(Identities::parse(&identity).unwrap())),
        ..target.options()
    };
    let (again, _) = target.import(&newer, options).await;
    assert_eq!(
        outcomes(&again),
        BTreeMap::from([("reconnected", 1), ("unchanged", 11)])
    );
    common::assert_expiry_copies(target.pool(), &target.settings).await;
    assert_eq!(
        target.snapshot().await["ws-1/LINKEDIN_PERSON/ext-1"]["failures"],
        5
    );

    // Without credentials: profiles and statuses only.
    let mut plain = Vec::new();
    let options = ExportOptions {
        recipient: None,
        workspace_id: None,
        provider: None,
        page_size: 100,
    };
    tokenwarden::bulk::export(source.pool(), &source.keyring, &options, &mut plain, |_| {})
        .await
        .unwrap();
    let text = String::from_utf8(plain.clone()).unwrap();
    assert!(!text.contains("sealed_credentials") && !text.contains("secret-access"));
    let third = World::new().await;
    let (results, summary) = third.import(&plain, third.options()).await;
    assert_eq!((summary.created, summary.invalid), (1, 11), "{results:?}");
    for r in &results {
        if let Outcome::Invalid { field, .. } = &r.outcome {
            assert_eq!(field.as_deref(), Some("sealed_credentials"));
        }
    }
}

/// The command line: a progress-less run (not a terminal) prints the
/// refused lines by number and field and a summary, exits 1 when a line
/// was refused; export writes a file the import reads back.
#[tokio::test]
async fn the_command_line_imports_and_exports() {
    let world = World::new().await;
    let dir = std::env::temp_dir().join(format!("tw-transfer-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("accounts.ndjson");
    let input = format!(
        "{}\n\n{}\n{}\n",
        line(1, "cli-at-1"),
        malformed(2).0,
        line(3, "cli-at-3")
    );
    std::fs::write(&file, &input).unwrap();
    let path = file.to_str().unwrap();

    let dry = world.run(&["accounts", "import", path, "--dry-run"]).await;
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.contains("dry run") && stdout.contains("2 would be created"),
        "{stdout}"
    );
    assert_eq!(
        world.scalar("SELECT count(*) FROM social_accounts").await,
        0
    );

    let out = world.run(&["accounts", "import", path]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("line 3: credentials.expires_in: must be between 1 and"),
        "{stderr}"
    );
    assert!(
        stdout.contains("imported 4 lines") && stdout.contains("2 created"),
        "{stdout}"
    );
    assert!(!stdout.contains("cli-at") && !stderr.contains("cli-at"));

    let clean = dir.join("clean.ndjson");
    std::fs::write(&clean, format!("{}\n", line(1, "cli-at-1"))).unwrap();
    let out = world
        .run(&["accounts", "import", clean.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 unchanged"));

    let (recipient, identity) = age_keys();
    let export = dir.join("export.ndjson");
    let out = world
        .run(&[
            "accounts",
            "export",
            "--output",
            export.to_str().unwrap(),
            "--with-credentials",
            "--recipient",
            &recipient,
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = std::fs::read_to_string(&export).unwrap();
    assert_eq!(exported.lines().count(), 2);
    assert!(!exported.contains("cli-at"));
    let out = world
        .run(&["accounts", "export", "--with-credentials"])
        .await;
    assert_eq!(out.status.code(), Some(2), "a recipient is required");

    let target = World::new().await;
    let identity_file = dir.join("identity.txt");
    std::fs::write(&identity_file, identity.expose_secret()).unwrap();
    let out = target
        .run(&["accounts", "import", export.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "sealed lines need the identity");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity"));
    let out = target
        .run(&[
            "accounts",
            "import",
            export.to_str().unwrap(),
            "--identity",
            identity_file.to_str().unwrap(),
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = target.snapshot().await;
    assert_eq!(restored["ws-1/LINKEDIN_PERSON/ext-1"]["access"], "cli-at-1");
    assert_eq!(restored["ws-3/PINTEREST/ext-3"]["access"], "cli-at-3");
    std::fs::remove_dir_all(&dir).unwrap();
}
