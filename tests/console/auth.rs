//! Nothing before sign-in; sign-in only with an operator key; the session
//! cookie's attributes; CSRF on every form; the security headers.

use reqwest::StatusCode;

use crate::common::rotating;
use crate::support::{ALICE_KEY, API_KEY, Console, Session, cookie_value, csrf_of, set_cookie};
use tokenwarden::domain::Provider;

#[tokio::test]
async fn nothing_is_shown_before_sign_in() {
    let console = Console::start().await;
    let (id, _) = console.env.connect(Provider::X, rotating()).await;
    for path in [
        "".to_owned(),
        "/".to_owned(),
        "/accounts".to_owned(),
        "/accounts?q=tester".to_owned(),
        format!("/accounts/{id}"),
        "/platforms/x".to_owned(),
        "/no-such-page".to_owned(),
    ] {
        let page = console.get(None, &path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            page.location().starts_with("/console/sign-in?next="),
            "{path}: {}",
            page.location()
        );
        assert!(
            !page.body.contains("tester") && !page.body.contains(id.as_str()),
            "{path}"
        );
    }
    for path in [
        format!("/accounts/{id}/refresh"),
        format!("/accounts/{id}/health-check"),
        format!("/accounts/{id}/disconnect"),
        "/platforms/x/resume".to_owned(),
        "/sign-out".to_owned(),
    ] {
        let page = console.post(None, &path, &[("confirm", "yes")]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
    }
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_attempts")
        .fetch_one(console.env.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 0, "an unauthenticated POST reached the engine");
    assert_eq!(console.env.row(&id).await.status.as_str(), "ACTIVE");
}

#[tokio::test]
async fn only_operator_keys_sign_in_and_the_cookie_is_strict() {
    let console = Console::start().await;
    for wrong in ["", "not-a-key-at-all-0000", API_KEY] {
        let answer = console.try_sign_in(wrong).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(set_cookie(&answer.headers, "tw_console").is_none());
        assert!(answer.body.contains("not an operator key"));
        assert!(!answer.body.contains(API_KEY) || wrong != API_KEY);
    }
    let answer = console.try_sign_in(ALICE_KEY).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/console/");
    let cookie = set_cookie(&answer.headers, "tw_console").unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains(ALICE_KEY));
    // The session names the operator.
    let session = console.sign_in(ALICE_KEY).await;
    let overview = console.get(Some(&session), "/").await;
    assert!(
        overview
            .body
            .contains("Signed in as <strong>alice</strong>")
    );
}

#[tokio::test]
async fn sign_in_needs_the_forms_token() {
    let console = Console::start().await;
    let (cookie, csrf) = console.sign_in_form().await;
    // No nonce cookie, or a token of another form: refused before the key
    // is even looked at.
    for (cookie, csrf) in [
        ("", csrf.as_str()),
        (cookie.as_str(), ""),
        (cookie.as_str(), "forged"),
    ] {
        let answer = console
            .http
            .post(console.url("/sign-in"))
            .header("cookie", cookie)
            .form(&[("csrf", csrf), ("key", ALICE_KEY)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(
            answer
                .headers()
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("tw_console="))
        );
    }
}

#[tokio::test]
async fn a_forged_session_or_another_deployments_is_no_session() {
    let console = Console::with(|s| s.console.cookie_secure = false).await;
    let session = console.sign_in(ALICE_KEY).await;
    let value = session.cookie.trim_start_matches("tw_console=");
    let (payload, signature) = value.split_once('.').unwrap();
    for cookie in [
        format!("tw_console={payload}"),
        format!("tw_console={payload}.{payload}"),
        format!("tw_console=x{value}"),
        // The payload changed in its first character, the signature kept.
        format!(
            "tw_console={}{}.{signature}",
            if payload.starts_with('A') { 'B' } else { 'A' },
            &payload[1..]
        ),
    ] {
        let forged = Session {
            cookie,
            csrf: session.csrf.clone(),
        };
        let page = console.get(Some(&forged), "/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
    }
    // Another deployment (other operator keys) does not take this one's
    // sessions.
    let other = Console::with(|s| {
        s.console.operator_keys = Some(secrecy::SecretString::from(format!(
            "alice:{}",
            "z".repeat(20)
        )));
    })
    .await;
    assert_eq!(
        other.get(Some(&session), "/").await.status,
        StatusCode::SEE_OTHER
    );
    // Loopback without Secure, when configured so.
    let answer = console.try_sign_in(ALICE_KEY).await;
    assert!(
        !set_cookie(&answer.headers, "tw_console")
            .unwrap()
            .contains("Secure")
    );
}

#[tokio::test]
async fn sign_out_clears_the_cookie_and_needs_the_token() {
    let console = Console::start().await;
    let session = console.sign_in(ALICE_KEY).await;
    let refused = console
        .post(Some(&session), "/sign-out", &[("csrf", "forged")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = console.post(Some(&session), "/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/console/sign-in");
    let cleared = set_cookie(&out.headers, "tw_console").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(cookie_value(cleared), "");
}

#[tokio::test]
async fn a_cookie_copied_before_sign_out_is_refused_after_it() {
    let console = Console::start().await;
    let session = console.sign_in(ALICE_KEY).await;
    let other = console.sign_in(ALICE_KEY).await;
    let copied = session.clone();
    let out = console.post(Some(&session), "/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    for path in ["/", "/accounts"] {
        let page = console.get(Some(&copied), path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            page.location().starts_with("/console/sign-in?next="),
            "{path}: {}",
            page.location()
        );
    }
    // Nor does the copy act or sign out again.
    let again = console.post(Some(&copied), "/sign-out", &[]).await;
    assert!(again.location().starts_with("/console/sign-in?next="));
    // Only that session ended: another sign-in of the same key goes on.
    assert_eq!(console.get(Some(&other), "/").await.status, StatusCode::OK);
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM console_sessions WHERE revoked_at IS NOT NULL")
            .fetch_one(console.env.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 1);
}

#[tokio::test]
async fn expired_session_rows_are_refused_and_pruned_at_the_next_sign_in() {
    let console = Console::start().await;
    let session = console.sign_in(ALICE_KEY).await;
    // The cookie still claims hours; the row says it is over.
    sqlx::query("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .execute(console.env.pool())
        .await
        .unwrap();
    assert_eq!(
        console.get(Some(&session), "/").await.status,
        StatusCode::SEE_OTHER
    );
    console.sign_in(ALICE_KEY).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM console_sessions")
        .fetch_one(console.env.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "the expired row was not pruned");
}

/// Posts `key` to the sign-in form from loopback address `127.0.0.{last}`.
async fn sign_in_from(console: &Console, last: u8, key: &str) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .build()
        .unwrap();
    let form = http.get(console.url("/sign-in")).send().await.unwrap();
    let nonce = cookie_value(set_cookie(form.headers(), "tw_console_signin").unwrap()).to_owned();
    let csrf = csrf_of(&form.text().await.unwrap()).unwrap();
    http.post(console.url("/sign-in"))
        .header("cookie", format!("tw_console_signin={nonce}"))
        .form(&[("csrf", csrf.as_str()), ("key", key)])
        .send()
        .await
        .unwrap()
}

fn retry_after(answer: &reqwest::Response) -> u64 {
    answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn failed_sign_ins_lock_an_address_out_even_for_the_right_key() {
    let console = Console::start().await;
    let session = console.sign_in(ALICE_KEY).await;
    for n in 0..5 {
        let answer = sign_in_from(&console, 1, "not-a-key-at-all-0000").await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    for key in ["not-a-key-at-all-0000", ALICE_KEY] {
        let answer = sign_in_from(&console, 1, key).await;
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS, "{key}");
        let wait = retry_after(&answer);
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
        assert!(
            answer
                .headers()
                .get_all("set-cookie")
                .iter()
                .all(|c| !c.to_str().unwrap().starts_with("tw_console="))
        );
        let body = answer.text().await.unwrap();
        assert!(body.contains("Too many failed sign-ins"), "{body}");
        assert!(!body.contains("not an operator key"));
    }
    // Another address still signs in; a session already open goes on.
    let other = sign_in_from(&console, 2, ALICE_KEY).await;
    assert_eq!(other.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        console.get(Some(&session), "/").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn failed_sign_ins_from_everywhere_lock_out_the_whole_console() {
    let console = Console::start().await;
    // 30 failures from six addresses, none past its own limit of 5.
    for last in 10..16 {
        for _ in 0..5 {
            let answer = sign_in_from(&console, last, "not-a-key-at-all-0000").await;
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let fresh = sign_in_from(&console, 20, ALICE_KEY).await;
    assert_eq!(fresh.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((1..=60).contains(&retry_after(&fresh)));
}

#[tokio::test]
async fn every_page_is_served_under_a_strict_policy() {
    let console = Console::start().await;
    let (id, _) = console.env.connect(Provider::X, rotating()).await;
    let session = console.sign_in(ALICE_KEY).await;
    let mut pages = vec![console.get(None, "/sign-in").await];
    for path in [
        "/".to_owned(),
        "/accounts".to_owned(),
        format!("/accounts/{id}"),
        "/platforms/x".to_owned(),
        "/platforms/nope".to_owned(),
        "/accounts/acc_nope".to_owned(),
    ] {
        pages.push(console.get(Some(&session), &path).await);
    }
    pages.push(
        console
            .post(Some(&session), &format!("/accounts/{id}/disconnect"), &[])
            .await,
    );
    for page in &pages {
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
        );
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["cache-control"], "no-store");
        // No inline script or style for the policy to refuse.
        assert!(!page.body.contains("style="), "{}", page.body);
        for script in page.body.split("<script").skip(1) {
            assert!(
                script.trim_start().starts_with("src="),
                "inline script: {script}"
            );
        }
        if page.status == StatusCode::OK {
            assert!(page.body.contains("<h1>"), "a page without a heading");
            // Every field has a label.
            for input in page
                .body
                .split("<input")
                .skip(1)
                .chain(page.body.split("<select").skip(1))
            {
                let tag = input.split('>').next().unwrap();
                if tag.contains("type=\"hidden\"") {
                    continue;
                }
                let id = tag.split("id=\"").nth(1).and_then(|r| r.split('"').next());
                let id = id.unwrap_or_else(|| panic!("a field without an id: {tag}"));
                assert!(
                    page.body.contains(&format!("for=\"{id}\"")),
                    "no label for {id}"
                );
            }
        }
    }
    assert_eq!(pages[5].status, StatusCode::NOT_FOUND);
    assert_eq!(pages[6].status, StatusCode::NOT_FOUND);
    let css = console.get(None, "/static/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let js = console.get(None, "/static/console.js").await;
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(csrf_of(&pages[1].body).is_some());
}

#[tokio::test]
async fn the_console_can_be_moved_or_turned_off_and_is_not_in_the_api_document() {
    let moved = Console::with(|s| s.console.path = "/ops".into()).await;
    let sign_in = moved
        .http
        .get(format!("{}/ops/sign-in", moved.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), StatusCode::OK);
    let old = moved
        .http
        .get(format!("{}/console/sign-in", moved.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND);

    for off in [
        Console::with(|s| s.console.enabled = false).await,
        Console::with(|s| s.console.operator_keys = None).await,
    ] {
        let page = off.get(None, "/sign-in").await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
    }
    let document = serde_json::to_string(&tokenwarden::api::document_json()).unwrap();
    assert!(!document.contains("/console"));
    assert!(!document.contains("/sign-in"));
}
