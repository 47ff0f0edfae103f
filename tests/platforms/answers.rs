//! The answers table, `docs/platform-answers.md`: one row, one case. Each
//! row's answer is scripted on its platform's fake, the row's refresh or
//! health check runs through the engine, and the row's outcome, status,
//! code and whose answer it is are checked, with what holds for every
//! answer (one request sent, nothing stored overwritten, no secret in the
//! error, the platform's words kept).

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tokenwarden::config::Flow;
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::providers::DpopKey;
use tokenwarden::store::accounts;
use tokenwarden_fakes::{
    FakeBluesky, FakeGoogle, FakeGraph, FakeLinkedin, FakeMastodon, FakePinterest, FakeTiktok,
    FakeX, IssuedTokens, OAuthSessionSpec, ScriptedResponse,
};

use crate::common::{self, CLIENT_SECRET, TestEnv};
use crate::support::{
    Account, facebook_env, graph_env, linkedin_env, linkedin_introspecting_env, long_lived,
    mastodon_env, pinterest_env_with, register, tiktok_env, x_env, youtube_env,
};

/// One row of the table.
#[derive(Debug)]
struct AnswerRow {
    flow: String,
    http: u16,
    body: String,
    outcome: Outcome,
    status: AccountStatus,
    whose: String,
    code: Option<String>,
}

fn answer_rows() -> Vec<AnswerRow> {
    let table = include_str!("../../docs/platform-answers.md");
    table
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            if cells.len() != 8 {
                return None;
            }
            let http = cells[1].trim().parse::<u16>().ok()?;
            let body = cells[2].trim().strip_prefix('`')?.strip_suffix('`')?;
            let code = cells[6].trim();
            Some(AnswerRow {
                flow: cells[0].trim().to_owned(),
                http,
                body: body.to_owned(),
                outcome: cells[3].trim().parse().expect("an outcome"),
                status: cells[4].trim().parse().expect("a status"),
                whose: cells[5].trim().to_owned(),
                code: (code != "-").then(|| code.to_owned()),
            })
        })
        .collect()
}

fn jwt_expiring_in(seconds: i64) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        r#"{{"exp":{},"sub":"did:plc:placeholder"}}"#,
        Utc::now().timestamp() + seconds
    ));
    format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln")
}

/// The platform's own words in an answer, where it has any: a status or an
/// inactive flag it causes keeps them.
fn platform_text(body: &str) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    [
        "/error_description",
        "/message",
        "/error/message",
        "/data/error/message",
        "/error",
        "/status",
    ]
    .iter()
    .find_map(|path| answer.pointer(path)?.as_str().map(str::to_owned))
}

/// A platform's fake, scripted to answer the next call with a row's answer.
enum RowFake {
    X(FakeX),
    Tiktok(FakeTiktok),
    Graph(FakeGraph),
    Linkedin(FakeLinkedin),
    Google(FakeGoogle),
    Pinterest(FakePinterest),
    Mastodon(FakeMastodon),
    Bluesky(FakeBluesky),
}

impl RowFake {
    fn script(&self, answer: ScriptedResponse) {
        match self {
            RowFake::X(f) => f.script_next(answer),
            RowFake::Tiktok(f) => f.script_next(answer),
            RowFake::Graph(f) => f.script_next(answer),
            RowFake::Linkedin(f) => f.script_next(answer),
            RowFake::Google(f) => f.script_next(answer),
            RowFake::Pinterest(f) => f.script_next(answer),
            RowFake::Mastodon(f) => f.script_next(answer),
            RowFake::Bluesky(f) => f.script_next(answer),
        }
    }

    fn requests(&self) -> u64 {
        match self {
            RowFake::X(f) => f.requests(),
            RowFake::Tiktok(f) => f.requests(),
            RowFake::Graph(f) => f.requests(),
            RowFake::Linkedin(f) => f.requests(),
            RowFake::Google(f) => f.requests(),
            RowFake::Pinterest(f) => f.requests(),
            RowFake::Mastodon(f) => f.requests(),
            RowFake::Bluesky(f) => f.requests(),
        }
    }
}

/// The environment of a row's flow: its fake, its settings, and an account
/// whose refresh or check is due; `check` says which call the row is about,
/// `meta` what each account of the flow is registered with.
struct RowFlow {
    env: TestEnv,
    fake: RowFake,
    provider: Provider,
    check: bool,
    meta: serde_json::Value,
}

/// The client-metadata URL of the atproto OAuth rows' client.
const BLUESKY_CLIENT_ID: &str = "https://app.example/client-metadata.json";

/// An atproto OAuth refresh first reads the server's metadata and is asked
/// for a DPoP nonce; the engine keeps both per server. One refresh here does
/// both, so each row's refresh is a single token request.
async fn warm_up_oauth(env: &TestEnv, fake: &FakeBluesky) {
    let key = DpopKey::generate();
    let issued = fake.issue_oauth(OAuthSessionSpec::default(), &key.public_jwk());
    let tokens = IssuedTokens {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        expires_in: 0,
    };
    let mut new = common::new_account(Provider::Bluesky, "warm-up", &tokens, Utc::now(), None);
    new.meta = json!({"auth_server": fake.origin()});
    new.dpop_key = Some(key);
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::Bluesky));
    let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;
    let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
}

async fn row_flow(flow: &str) -> RowFlow {
    let (fake, env, provider, check) = match flow {
        "x" => {
            let (env, fake) = x_env().await;
            (RowFake::X(fake), env, Provider::X, false)
        }
        "tiktok" => {
            let (env, fake) = tiktok_env().await;
            (RowFake::Tiktok(fake), env, Provider::TiktokBusiness, false)
        }
        "instagram" | "threads" => {
            let provider = if flow == "threads" {
                Provider::Threads
            } else {
                Provider::InstagramLogin
            };
            let fake = if flow == "threads" {
                FakeGraph::threads().await.unwrap()
            } else {
                FakeGraph::instagram().await.unwrap()
            };
            let env = graph_env(provider, &fake).await;
            (RowFake::Graph(fake), env, provider, false)
        }
        "linkedin" => {
            let (env, fake) = linkedin_env().await;
            (
                RowFake::Linkedin(fake),
                env,
                Provider::LinkedinPerson,
                false,
            )
        }
        "linkedin_check" => {
            let (env, fake) = linkedin_introspecting_env().await;
            (RowFake::Linkedin(fake), env, Provider::LinkedinPerson, true)
        }
        "youtube" => {
            let (env, fake) = youtube_env().await;
            (RowFake::Google(fake), env, Provider::Youtube, false)
        }
        "pinterest" => {
            let (env, fake) = pinterest_env_with(|_| {}).await;
            (RowFake::Pinterest(fake), env, Provider::Pinterest, false)
        }
        "facebook" | "facebook_check" => {
            let (env, fake) = facebook_env().await;
            let check = flow == "facebook_check";
            (RowFake::Graph(fake), env, Provider::FacebookPage, check)
        }
        "mastodon_check" => {
            let fake = FakeMastodon::start().await.unwrap();
            let env = mastodon_env(&fake, true).await;
            (RowFake::Mastodon(fake), env, Provider::Mastodon, true)
        }
        "bluesky" | "bluesky_check" | "bluesky_oauth" => {
            let fake = FakeBluesky::start(BLUESKY_CLIENT_ID).await.unwrap();
            let origin: url::Url = fake.origin().parse().unwrap();
            let env = TestEnv::with(move |s| {
                let section = s.providers.get_mut(Provider::Bluesky);
                section.flow = Flow::Bluesky;
                section.client_id = Some(BLUESKY_CLIENT_ID.into());
                section.allowed_origins = vec![origin];
            })
            .await;
            if flow == "bluesky_oauth" {
                warm_up_oauth(&env, &fake).await;
            }
            (
                RowFake::Bluesky(fake),
                env,
                Provider::Bluesky,
                flow == "bluesky_check",
            )
        }
        other => panic!("docs/platform-answers.md names an unknown flow {other:?}"),
    };
    let meta = match (flow, &fake) {
        (_, RowFake::Mastodon(f)) => json!({"instance_host": f.origin()}),
        // An atproto OAuth session names its authorization server.
        ("bluesky_oauth", RowFake::Bluesky(f)) => {
            json!({"auth_server": f.origin(), "pds_host": f.origin()})
        }
        (_, RowFake::Bluesky(f)) => json!({"pds_host": f.origin()}),
        _ => json!({}),
    };
    RowFlow {
        env,
        fake,
        provider,
        check,
        meta,
    }
}

/// Registers an account of the row's flow, as a connected user's would be.
async fn row_account(flow: &RowFlow, name: &str, access: &str, refresh: &str) -> AccountId {
    let mut account = Account::new(flow.provider, access, Some(refresh));
    account.meta = flow.meta.clone();
    match flow.provider {
        Provider::InstagramLogin | Provider::Threads => {
            account = long_lived(flow.provider, access);
        }
        Provider::LinkedinPerson if flow.check => {
            account.refresh = None;
            account.expires_at = Some(Utc::now() + TimeDelta::days(30));
        }
        Provider::FacebookPage => {
            account.refresh = None;
            if flow.check {
                account.expires_at = None;
            } else {
                account.issued_at = Utc::now() - TimeDelta::days(45);
                account.expires_at = Some(Utc::now() + TimeDelta::days(15));
            }
        }
        Provider::Mastodon => {
            account.refresh = None;
            account.expires_at = None;
        }
        _ => {}
    }
    let id = register(&flow.env, account).await;
    // Each row's account is an account of its own, and due now.
    sqlx::query(
        "WITH a AS (UPDATE social_accounts SET external_id = $2 WHERE id = $1 RETURNING id)
         UPDATE account_schedule SET next_attempt_at = now() - interval '1 second'
         FROM a WHERE account_id = a.id",
    )
    .bind(id.as_str())
    .bind(name)
    .execute(flow.env.pool())
    .await
    .unwrap();
    id
}

async fn run_row(flow: &RowFlow, row: &AnswerRow, index: usize) {
    let env = &flow.env;
    let what = format!("{} {} {}", row.flow, row.http, row.body);
    let access = format!("row-access-{index}-{}", rand::random::<u64>());
    let refresh = format!("row-refresh-{index}-{}", rand::random::<u64>());
    let id = row_account(flow, &format!("row-{index}"), &access, &refresh).await;
    let refresh_before = env.stored_refresh_token(&id).await;
    let version_before = env.row(&id).await.credentials_version;
    let body = row
        .body
        .replace("$JWT", &jwt_expiring_in(7200))
        .replace("$TOKEN", &format!("tok-{}", rand::random::<u64>()));
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/html"
    };
    flow.fake
        .script(ScriptedResponse::raw(row.http, content_type, body.clone()));
    let trigger = if flow.check {
        Trigger::HealthCheck
    } else {
        Trigger::Forced
    };
    let requests_before = flow.fake.requests();
    let report = env.engine.refresh(&id, trigger).await.unwrap();
    let stored = env.row(&id).await;
    assert_eq!(report.outcome, row.outcome, "{what}: {:?}", report.message);
    assert_eq!(report.status, row.status, "{what}");
    assert_eq!(stored.status, row.status, "{what}");
    assert_eq!(report.provider_error_code, row.code, "{what}");
    // One answer, one request: nothing retried, nothing else consumed.
    assert_eq!(
        flow.fake.requests() - requests_before,
        1,
        "{what}: requests sent"
    );

    let words: Vec<&str> = row.whose.split_whitespace().collect();
    let failed = !report.outcome.is_success();
    match words[0] {
        "app" => assert!(
            report.outcome == Outcome::ConfigError && !report.account_only && !report.unrecognised,
            "{what}: {report:?}"
        ),
        "platform" => assert!(
            failed && !report.account_only && !report.unrecognised,
            "{what}: {report:?}"
        ),
        "account" => assert!(
            !failed
                || report.account_only
                || matches!(
                    report.outcome,
                    Outcome::RejectedExpired | Outcome::RejectedRevoked
                ),
            "{what}: {report:?}"
        ),
        other => panic!("{what}: unknown whose {other:?}"),
    }
    let health = tokenwarden::api::views::health(&stored, Utc::now());
    let unrecognised = words.contains(&"unrecognised");
    assert_eq!(report.unrecognised, unrecognised, "{what}");
    assert_eq!(stored.unrecognised_answer, unrecognised, "{what}");
    assert_eq!(
        health.flags.contains(&"unrecognised_answer"),
        unrecognised,
        "{what}"
    );
    if unrecognised {
        // Kept verbatim, as far as the stored text goes.
        let error = stored.last_refresh_error.clone().unwrap_or_default();
        let start: String = body.chars().take(40).collect();
        assert!(error.contains(start.trim()), "{what}: {error}");
    }
    let inactive = words.contains(&"inactive");
    assert_eq!(stored.account_inactive_reason.is_some(), inactive, "{what}");
    if inactive {
        assert!(!health.can_post, "{what}");
        assert!(health.flags.contains(&"account_inactive"), "{what}");
    }
    for missing in words.iter().filter_map(|w| w.strip_prefix("missing:")) {
        assert!(
            stored.missing_scopes.contains(&missing.to_owned()),
            "{what}"
        );
        assert!(!health.can_post, "{what}");
        assert!(
            health.reason.as_deref().unwrap_or("").contains(missing),
            "{what}"
        );
    }
    let events = env.events(&id).await;
    if row.status == AccountStatus::Active {
        // No status event: only the connection, and an inactive flag's own.
        assert_eq!(
            events.len(),
            1 + usize::from(inactive),
            "{what}: {events:?}"
        );
        for (from, to, _) in &events[1..] {
            let change = (from.as_deref(), to.as_str());
            assert_eq!(change, (Some("ACTIVE"), "ACTIVE"), "{what}: {events:?}");
        }
    } else {
        assert_eq!(events.last().unwrap().1, row.status.as_str(), "{what}");
    }
    // A status or flag the answer causes keeps the platform's own words.
    if let Some(text) = platform_text(&body) {
        let kept = |place: &str, stored: Option<&str>| {
            let stored = stored.unwrap_or_default();
            assert!(stored.contains(&text), "{what}: {place} {stored:?}");
        };
        if row.status != AccountStatus::Active {
            kept("message", report.message.as_deref());
            kept("last_refresh_error", stored.last_refresh_error.as_deref());
            kept("status reason", stored.status_reason.as_deref());
            kept("status event", events.last().map(|e| e.2.as_str()));
        }
        if inactive {
            kept("inactive reason", stored.account_inactive_reason.as_deref());
            kept("health reason", health.reason.as_deref());
            if failed {
                kept("last_refresh_error", stored.last_refresh_error.as_deref());
            }
        }
    }
    if failed {
        assert_eq!(report.http_status, Some(row.http), "{what}");
        assert_eq!(
            stored.last_refresh_error_status,
            Some(i32::from(row.http)),
            "{what}"
        );
        assert_eq!(
            env.stored_refresh_token(&id).await,
            refresh_before,
            "{what}: nothing overwritten"
        );
        assert_eq!(
            env.stored_access_token(&id).await,
            access,
            "{what}: nothing overwritten"
        );
        assert_eq!(
            stored.credentials_version, version_before,
            "{what}: credentials rewritten"
        );
        let error = format!("{:?} {:?}", stored.last_refresh_error, report.message);
        for secret in [access.as_str(), refresh.as_str(), CLIENT_SECRET] {
            assert!(!error.contains(secret), "{what}: a secret leaked");
        }
        if report.outcome == Outcome::ConfigError {
            assert_eq!(
                stored.consecutive_failures, 0,
                "{what}: not the account's failure"
            );
        }
    }
}

#[tokio::test]
async fn every_row_of_docs_platform_answers() {
    let rows = answer_rows();
    assert!(rows.len() >= 109, "the table parsed: {} rows", rows.len());
    let mut flows: Vec<&str> = rows.iter().map(|r| r.flow.as_str()).collect();
    flows.dedup();
    for name in flows {
        let flow = row_flow(name).await;
        for (index, row) in rows.iter().enumerate().filter(|(_, r)| r.flow == name) {
            run_row(&flow, row, index).await;
        }
    }
}
