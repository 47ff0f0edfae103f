//! The figures on the pages for a seeded set of accounts, search, filters
//! and keyset pagination, and that no page holds a token or a key.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use tokenwarden::api::views::account_view;
use tokenwarden::domain::{AccountId, Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts::{self, HealthFilter, ListFilter};
use tokenwarden::store::attempts::{self, NewAttempt};

use crate::common::{new_account, rotating};
use crate::support::{ALICE_KEY, API_KEY, BOB_KEY, Console};

/// Registers an account with its own handle, external id and workspace,
/// then applies `set` (an SQL SET list) when given.
pub async fn seed(
    console: &Console,
    provider: Provider,
    name: &str,
    expires_at: DateTime<Utc>,
    set: Option<&str>,
) -> AccountId {
    let tokens = console.env.fake.issue(rotating());
    let mut new = new_account(
        provider,
        &format!("ext-{name}"),
        &tokens,
        Utc::now(),
        Some(expires_at),
    );
    new.handle = Some(format!("@{name}"));
    new.workspace_id = format!("ws-{name}");
    let policy = RefreshPolicy::from(console.env.settings.providers.get(provider));
    let id = accounts::register(console.env.pool(), &console.env.keyring, &policy, &new)
        .await
        .unwrap()
        .account
        .id;
    // The platform's publish scopes are all granted unless `set` says not.
    console
        .env
        .update_account(&id, "missing_scopes = '{}'")
        .await;
    if let Some(set) = set {
        console.env.update_account(&id, set).await;
    }
    id
}

struct Seeded {
    degraded: AccountId,
    revoked: AccountId,
    odd: AccountId,
}

async fn seed_set(console: &Console) -> Seeded {
    let in_2h = Utc::now() + TimeDelta::hours(2);
    seed(console, Provider::X, "healthy", in_2h, None).await;
    let degraded = seed(
        console,
        Provider::X,
        "degraded",
        in_2h,
        Some("consecutive_failures = 2, last_refresh_error = 'platform unavailable (HTTP 503)'"),
    )
    .await;
    seed(
        console,
        Provider::X,
        "soon",
        Utc::now() + TimeDelta::minutes(30),
        None,
    )
    .await;
    let revoked = seed(
        console,
        Provider::X,
        "revoked",
        in_2h,
        Some("status = 'REVOKED', status_reason = 'invalid_grant'"),
    )
    .await;
    seed(
        console,
        Provider::X,
        "noscope",
        in_2h,
        Some("missing_scopes = '{tweet.write}'"),
    )
    .await;
    seed(
        console,
        Provider::X,
        "inactive",
        in_2h,
        Some("account_inactive_reason = 'suspended'"),
    )
    .await;
    let odd = seed(
        console,
        Provider::X,
        "odd",
        in_2h,
        Some("unrecognised_answer = true"),
    )
    .await;
    seed(
        console,
        Provider::LinkedinPerson,
        "gone",
        in_2h,
        Some("status = 'TOKEN_EXPIRED'"),
    )
    .await;
    seed(
        console,
        Provider::X,
        "rtsoon",
        Utc::now() + TimeDelta::hours(3),
        Some("refresh_token_expires_at = now() + interval '5 days'"),
    )
    .await;
    Seeded {
        degraded,
        revoked,
        odd,
    }
}

/// The link the overview puts on a count.
fn count_link(filter: &str, platform: Option<&str>, n: i64) -> String {
    let platform = platform
        .map(|p| format!("&amp;platform={p}"))
        .unwrap_or_default();
    format!("href=\"/console/accounts?{filter}{platform}\">{n}</a>")
}

#[tokio::test]
async fn the_overview_counts_the_seeded_accounts() {
    let console = Console::start().await;
    let seeded = seed_set(&console).await;
    // Attempts over the last hour: 3 refreshed, 2 transient errors; one
    // older than the hour, not counted.
    let mut conn = console.env.pool().acquire().await.unwrap();
    for (minutes_ago, outcome) in [
        (1, Outcome::Refreshed),
        (2, Outcome::Refreshed),
        (30, Outcome::Refreshed),
        (5, Outcome::TransientError),
        (50, Outcome::TransientError),
        (90, Outcome::TransientError),
    ] {
        let at = Utc::now() - TimeDelta::minutes(minutes_ago);
        let attempt = NewAttempt {
            trigger: Trigger::Scheduled,
            started_at: at,
            finished_at: at,
            outcome,
            http_status: Some(if outcome == Outcome::Refreshed {
                200
            } else {
                503
            }),
            provider_error_code: None,
            message: None,
        };
        attempts::insert(&mut conn, &seeded.degraded, Provider::X, &attempt)
            .await
            .unwrap();
    }
    drop(conn);
    let session = console.sign_in(ALICE_KEY).await;
    let page = console.get(Some(&session), "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    for (filter, platform, n) in [
        ("status=ACTIVE", Some("X"), 7),
        ("status=REVOKED", Some("X"), 1),
        ("health=healthy", Some("X"), 5),
        ("health=degraded", Some("X"), 1),
        ("health=inactive", Some("X"), 1),
        ("health=revoked", Some("X"), 1),
        ("health=missing_scopes", Some("X"), 1),
        ("failing=1", Some("X"), 1),
        ("status=TOKEN_EXPIRED", Some("LINKEDIN_PERSON"), 1),
        ("health=expired", Some("LINKEDIN_PERSON"), 1),
        ("status=ACTIVE", None, 7),
        ("health=healthy", None, 5),
        ("health=expired", None, 1),
    ] {
        assert!(
            body.contains(&count_link(filter, platform, n)),
            "{filter} {platform:?} {n}:\n{body}"
        );
    }
    for figure in [
        "<dt>Access token within 1 h</dt><dd>1</dd>",
        "<dt>Access token within 24 h</dt><dd>7</dd>",
        "<dt>Refresh token ends within 7 days</dt><dd>1</dd>",
        "<dt>Refresh token ends within 30 days</dt><dd>1</dd>",
        "<strong>5</strong> attempts",
        "<dt>Claimed, not finished</dt><dd>0</dd>",
    ] {
        assert!(body.contains(figure), "{figure}:\n{body}");
    }
    // The failures table: transient errors, two within the hour.
    let failures = body.split("Failures by outcome").nth(1).unwrap();
    assert!(
        failures.contains("transient error") && failures.contains("<td class=\"num\">2</td>"),
        "{failures}"
    );
    assert!(body.contains("<svg class=\"spark\""));
    // The soonest-expiring list names the account expiring in 30 minutes,
    // and the reconnect list the one whose refresh token ends in 5 days.
    let soon = body
        .split("Soonest within 1 h")
        .nth(1)
        .unwrap()
        .split("</ul>")
        .next()
        .unwrap();
    assert!(
        soon.contains("@soon") && !soon.contains("@healthy"),
        "{soon}"
    );
    let reconnect = body
        .split("Reconnect deadlines")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert!(reconnect.contains("@rtsoon"), "{reconnect}");
}

/// The health filter in SQL and the API's view of an account agree.
#[tokio::test]
async fn the_health_filter_agrees_with_the_api_view() {
    let console = Console::start().await;
    seed_set(&console).await;
    let all = accounts::list(
        console.env.pool(),
        &ListFilter {
            include_disconnected: true,
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 9);
    for health in HealthFilter::ALL {
        let listed = accounts::list(
            console.env.pool(),
            &ListFilter {
                health: Some(health),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let expected: Vec<_> = all
            .iter()
            .filter(|row| {
                let view = account_view(&console.env.engine, row);
                let word = serde_json::to_value(view.health.status).unwrap();
                match health {
                    HealthFilter::MissingScopes => {
                        !view.missing_scopes.is_empty() && row.status.as_str() == "ACTIVE"
                    }
                    other => word == other.as_str(),
                }
            })
            .map(|r| r.id.clone())
            .collect();
        let got: Vec<_> = listed.iter().map(|r| r.id.clone()).collect();
        assert_eq!(got, expected, "{}", health.as_str());
    }
}

fn listed(body: &str) -> Vec<String> {
    body.split("href=\"/console/accounts/acc_")
        .skip(1)
        .map(|rest| format!("acc_{}", &rest[..32]))
        .collect()
}

#[tokio::test]
async fn accounts_are_found_by_search_and_filters() {
    let console = Console::start().await;
    let seeded = seed_set(&console).await;
    let session = console.sign_in(ALICE_KEY).await;
    let degraded = seeded.degraded.to_string();
    for (query, expected) in [
        ("q=degr".to_owned(), vec![degraded.clone()]),
        ("q=DEGRADED".to_owned(), vec![degraded.clone()]),
        ("q=ext-degraded".to_owned(), vec![degraded.clone()]),
        ("q=ws-degraded".to_owned(), vec![degraded.clone()]),
        (format!("q={degraded}"), vec![degraded.clone()]),
        ("health=degraded".to_owned(), vec![degraded.clone()]),
        // The degraded account and the one whose answer was not
        // recognised, newest connected first.
        (
            "failing=1&platform=X".to_owned(),
            vec![seeded.odd.to_string(), degraded.clone()],
        ),
        (
            "status=REVOKED".to_owned(),
            vec![seeded.revoked.to_string()],
        ),
        ("q=nobody-at-all".to_owned(), vec![]),
    ] {
        let page = console
            .get(Some(&session), &format!("/accounts?{query}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{query}");
        assert_eq!(listed(&page.body), expected, "{query}");
    }
    let platform = console
        .get(
            Some(&session),
            "/accounts?platform=LINKEDIN_PERSON&status=TOKEN_EXPIRED",
        )
        .await;
    assert_eq!(listed(&platform.body).len(), 1);
    for bad in [
        "platform=MYSPACE",
        "status=sleepy",
        "health=meh",
        "cursor=nope",
        "q=%00",
    ] {
        let page = console
            .get(Some(&session), &format!("/accounts?{bad}"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            !page.body.contains("MYSPACE") && !page.body.contains("sleepy"),
            "{bad} echoed"
        );
    }
}

#[tokio::test]
async fn the_account_list_pages_by_keyset() {
    let console = Console::start().await;
    for n in 0..57 {
        seed(
            &console,
            Provider::X,
            &format!("user{n:02}"),
            Utc::now() + TimeDelta::hours(2),
            None,
        )
        .await;
    }
    let session = console.sign_in(ALICE_KEY).await;
    let first = console.get(Some(&session), "/accounts?platform=X").await;
    let first_ids = listed(&first.body);
    assert_eq!(first_ids.len(), 50);
    let next = first.body.split("rel=\"next\"").next().unwrap();
    let href = next
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        href.contains("platform=X") && href.contains("cursor="),
        "{href}"
    );
    let second = console
        .get(Some(&session), href.trim_start_matches("/console"))
        .await;
    let second_ids = listed(&second.body);
    assert_eq!(second_ids.len(), 7);
    assert!(second_ids.iter().all(|id| !first_ids.contains(id)));
    assert!(!second.body.contains("rel=\"next\""));
}

#[tokio::test]
async fn no_page_holds_a_token_or_a_key() {
    let console = Console::start().await;
    let (id, tokens) = console.env.connect(Provider::X, rotating()).await;
    console
        .env
        .update_account(
            &id,
            "consecutive_failures = 1, last_refresh_error = 'HTTP 503'",
        )
        .await;
    let session = console.sign_in(ALICE_KEY).await;
    // A refresh puts new tokens in place; neither old nor new may show.
    console
        .post(Some(&session), &format!("/accounts/{id}/refresh"), &[])
        .await;
    let new_access = console.env.stored_access_token(&id).await;
    let new_refresh = console.env.stored_refresh_token(&id).await.unwrap();
    let mut bodies = vec![
        console.get(None, "/sign-in").await.body,
        console.try_sign_in("wrong-key-000000000000").await.body,
    ];
    for path in [
        "/".to_owned(),
        "/accounts".to_owned(),
        "/accounts?q=tester".to_owned(),
        format!("/accounts/{id}"),
        format!("/accounts/{id}?action=refresh"),
        "/platforms/x".to_owned(),
    ] {
        bodies.push(console.get(Some(&session), &path).await.body);
    }
    bodies.push(
        console
            .post(Some(&session), &format!("/accounts/{id}/disconnect"), &[])
            .await
            .body,
    );
    for body in &bodies {
        for secret in [
            tokens.access_token.as_str(),
            tokens.refresh_token.as_str(),
            new_access.as_str(),
            new_refresh.as_str(),
            ALICE_KEY,
            BOB_KEY,
            API_KEY,
            crate::common::CLIENT_SECRET,
        ] {
            assert!(!body.contains(secret), "a page holds a secret:\n{body}");
        }
    }
}
