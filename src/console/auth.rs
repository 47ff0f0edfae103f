//! Sign-in with an operator key, sign-out, and the gate in front of every
//! other page: no valid session, no page (a redirect to the sign-in form,
//! which shows nothing about accounts).

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::html;
use serde::Deserialize;

use super::layout::{Shell, csrf_field, page};
use super::session::{self, SESSION_COOKIE, SIGN_IN_COOKIE};
use super::{ConsoleError, ConsoleState, Operator, parse_query};

/// Lets a request with a valid session through, with the [`Operator`] in
/// its extensions; sends anything else to the sign-in form.
pub async fn require_operator(
    State(state): State<ConsoleState>,
    mut request: Request,
    next: Next,
) -> Response {
    let session = cookie_of(request.headers(), SESSION_COOKIE)
        .and_then(|value| state.inner.keys.verify(value, Utc::now().timestamp()));
    // A well-signed cookie is a session only while its row is live: signed
    // out (revoked) or expired rows end it whatever the cookie says.
    let session = match session {
        Some(session) => match session_is_live(&state, &session.nonce).await {
            Ok(true) => Some(session),
            Ok(false) => None,
            Err(error) => return ConsoleError::from(error).into_response(),
        },
        None => None,
    };
    let Some(session) = session else {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let next = form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>();
        return Redirect::to(&format!("{}/sign-in?next={next}", state.base())).into_response();
    };
    let operator = Operator {
        csrf: state.inner.keys.csrf_token(&session),
        key_id: session.key_id,
        session_id: session.nonce,
    };
    request.extensions_mut().insert(operator);
    next.run(request).await
}

async fn session_is_live(state: &ConsoleState, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM console_sessions \
         WHERE id = $1 AND revoked_at IS NULL AND expires_at > now())",
    )
    .bind(id)
    .fetch_one(&state.inner.pool)
    .await
}

fn cookie_of<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| session::cookie(v, name))
}

#[derive(Deserialize, Default)]
struct Next_ {
    next: Option<String>,
}

/// Where to go after sign-in: a console page, or the overview. Anything
/// else (another site, `//host`, a backslash trick) is ignored.
fn safe_next(base: &str, next: Option<&str>) -> String {
    let overview = format!("{base}/");
    let Some(next) = next else { return overview };
    let inside = next == base
        || next.starts_with(&format!("{base}/"))
        || next.starts_with(&format!("{base}?"));
    let plain = !next.contains("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if inside && plain && !next.starts_with(&format!("{base}/sign-")) {
        next.to_owned()
    } else {
        overview
    }
}

fn cookie_header(state: &ConsoleState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.inner.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        state.base()
    );
    HeaderValue::from_str(&text).expect("cookie values are base64url")
}

/// The sign-in form, with a fresh nonce cookie its CSRF token is bound to.
pub async fn form(State(state): State<ConsoleState>, RawQuery(query): RawQuery) -> Response {
    let next: Next_ = parse_query(query.as_deref()).unwrap_or_default();
    sign_in_page(&state, next.next.as_deref(), None, StatusCode::OK)
}

fn sign_in_page(
    state: &ConsoleState,
    next: Option<&str>,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let nonce = session::random_nonce();
    let token = state.inner.keys.sign_in_token(&nonce);
    let base = state.base();
    let next = safe_next(base, next);
    let body = html! {
        section.card {
            @if let Some(problem) = problem {
                p.notice.bad role="alert" { (problem) }
            }
            p { "Sign in with an operator key (" code { "console.operator_keys" } "). "
                "API keys are not accepted here." }
            form.stack method="post" action={ (base) "/sign-in" } {
                (csrf_field(&token))
                input type="hidden" name="next" value=(next);
                label for="key" {
                    "Operator key"
                    input #key type="password" name="key" autocomplete="current-password" required autofocus;
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    let shell = Shell {
        base,
        operator: None,
    };
    let mut response = (status, Html(page(&shell, "Sign in", body).into_string())).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(state, SIGN_IN_COOKIE, &nonce, 3600),
    );
    response
}

#[derive(Deserialize)]
struct SignInForm {
    key: Option<String>,
    next: Option<String>,
}

pub async fn sign_in(
    State(state): State<ConsoleState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let nonce = cookie_of(&headers, SIGN_IN_COOKIE).unwrap_or("");
    let expected = if nonce.is_empty() {
        String::new()
    } else {
        state.inner.keys.sign_in_token(nonce)
    };
    let form: SignInForm = match super::parse_form(&body, &expected) {
        Ok(form) => form,
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            return Ok(sign_in_page(
                &state,
                None,
                Some("The form expired; sign in again."),
                StatusCode::FORBIDDEN,
            ));
        }
        Err(e) => return Err(e),
    };
    // Checked before the key, so that a right key during a lockout is
    // refused like any other.
    if let Some(wait) = state.inner.sign_ins.wait(address, Instant::now()) {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        tracing::warn!(
            retry_after_secs = seconds,
            "console sign-in refused: too many failed sign-ins"
        );
        let mut page = sign_in_page(
            &state,
            form.next.as_deref(),
            Some(&format!(
                "Too many failed sign-ins; try again in {seconds} s."
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
        page.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        return Ok(page);
    }
    let presented = form.key.unwrap_or_default();
    let Some(key_id) = state.inner.keys.check(&presented).map(str::to_owned) else {
        state.inner.sign_ins.failed(address, Instant::now());
        tracing::warn!("console sign-in refused: unknown operator key");
        return Ok(sign_in_page(
            &state,
            form.next.as_deref(),
            Some("That key is not an operator key."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    let ttl = state.inner.session_ttl.as_secs() as i64;
    let expires_at = Utc::now().timestamp() + ttl;
    let (value, session) = state.inner.keys.issue(&key_id, expires_at);
    // Opportunistic pruning: sign-ins are rare, so the table stays small
    // without a sweeper.
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < now()")
        .execute(&state.inner.pool)
        .await?;
    sqlx::query(
        "INSERT INTO console_sessions (id, operator_key_id, expires_at) \
         VALUES ($1, $2, to_timestamp($3))",
    )
    .bind(&session.nonce)
    .bind(&key_id)
    .bind(expires_at as f64)
    .execute(&state.inner.pool)
    .await?;
    tracing::info!(operator_key_id = %key_id, "console sign-in");
    let target = safe_next(state.base(), form.next.as_deref());
    let mut response = Redirect::to(&target).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, &value, ttl),
    );
    headers.append(
        header::SET_COOKIE,
        cookie_header(&state, SIGN_IN_COOKIE, "", 0),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct Empty {}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let _: Empty = super::parse_form(&body, &operator.csrf)?;
    sqlx::query("UPDATE console_sessions SET revoked_at = now() WHERE id = $1")
        .bind(&operator.session_id)
        .execute(&state.inner.pool)
        .await?;
    tracing::info!(operator_key_id = %operator.key_id, "console sign-out");
    let mut response = Redirect::to(&format!("{}/sign-in", state.base())).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, "", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;
    use proptest::prelude::*;

    #[test]
    fn only_console_pages_are_followed() {
        let base = "/console";
        for ok in [
            "/console",
            "/console/",
            "/console/accounts?q=x",
            "/console/accounts/acc_1",
        ] {
            assert_eq!(safe_next(base, Some(ok)), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/console//evil.example",
            "/consolex",
            "/console/\\evil",
            "/console/sign-in",
            "/v1/accounts",
            "",
        ] {
            assert_eq!(safe_next(base, Some(bad)), "/console/", "{bad}");
        }
        assert_eq!(safe_next(base, None), "/console/");
    }

    proptest! {
        #[test]
        fn a_followed_next_stays_in_the_console(next in ".{0,80}") {
            let target = safe_next("/console", Some(&next));
            prop_assert!(target == "/console" || target.starts_with("/console/") || target.starts_with("/console?"));
            prop_assert!(!target.contains("//"));
        }
    }
}
