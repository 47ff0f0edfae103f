//! `POST /v1/accounts:import`: NDJSON in, one result per line streamed
//! out; a body that is not NDJSON is a 4xx before any stream; long lines,
//! stalled bodies and concurrent imports are bounded.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Api, KEY};

fn body_line(external_id: &str, access: &str) -> String {
    json!({
        "workspace_id": "ws_import", "provider": "X", "external_id": external_id,
        "credentials": {"access_token": access, "refresh_token": format!("rt-{access}"), "expires_in": 3600}
    })
    .to_string()
}

async fn import(api: &Api, body: impl Into<reqwest::Body>, query: &str) -> reqwest::Response {
    api.post(&format!("/v1/accounts:import{query}"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn ndjson(reply: reqwest::Response) -> Vec<Value> {
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(
        reply.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    reply
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn lines_are_imported_and_answered_one_by_one_then_summarised() {
    let api = Api::start().await;
    let body = format!(
        "{}\n{{\"workspace_id\": \"w\"}}\n\n{}\n",
        body_line("imp-1", "at-imp-1"),
        body_line("imp-2", "at-imp-2")
    );
    let lines = ndjson(import(&api, body.clone(), "").await).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["result"], "created");
    let id = lines[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["result"], "invalid");
    assert_eq!(lines[1]["field"], "provider");
    assert_eq!(lines[2]["line"], 4);
    assert_eq!(lines[2]["result"], "created");
    assert_eq!(lines[3]["summary"]["created"], 2);
    assert_eq!(lines[3]["summary"]["invalid"], 1);
    // The account is there, as POST /v1/accounts would have made it.
    let view = api.get_json(&format!("/v1/accounts/{id}")).await;
    assert_eq!(view["external_id"], "imp-1");
    assert_eq!(view["status"], "ACTIVE");

    // Idempotent, and a dry run writes nothing.
    let again = ndjson(import(&api, body.clone(), "").await).await;
    assert_eq!(again[0]["result"], "unchanged");
    assert_eq!(again[3]["summary"]["unchanged"], 2);
    let dry = format!("{}\n", body_line("imp-3", "at-imp-3"));
    let lines = ndjson(import(&api, dry, "?dry_run=true").await).await;
    assert_eq!(lines[0]["result"], "created");
    assert_eq!(lines[1]["summary"]["dry_run"], true);
    let page = api.get_json("/v1/accounts?workspace_id=ws_import").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_body_that_is_not_ndjson_is_a_client_error() {
    let api = Api::with(|s| s.api.max_body_bytes = 2048).await;
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "application/x-ndjson",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_ndjson",
        ),
        (
            "application/x-ndjson",
            "\n \n".into(),
            StatusCode::BAD_REQUEST,
            "invalid_ndjson",
        ),
        (
            "application/x-ndjson",
            "not json\n".into(),
            StatusCode::BAD_REQUEST,
            "invalid_ndjson",
        ),
        (
            "application/x-ndjson",
            "[1, 2]\n".into(),
            StatusCode::BAD_REQUEST,
            "invalid_ndjson",
        ),
        (
            "application/x-ndjson",
            "\u{0}\u{1}\u{2}".into(),
            StatusCode::BAD_REQUEST,
            "invalid_ndjson",
        ),
        (
            "application/x-ndjson",
            format!("{{\"x\": \"{}\"}}\n", "a".repeat(4096)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "application/json",
            body_line("e", "t"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let reply = api
            .post("/v1/accounts:import")
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), status, "{body:?}");
        let error: Value = reply.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body:?}");
    }
    // A first line that is JSON but not a valid registration: 422 naming
    // the field, as POST /v1/accounts answers; nothing is written.
    let reply = import(
        &api,
        "{\"workspace_id\": \"w\"}\n".to_owned() + &body_line("after", "t") + "\n",
        "",
    )
    .await;
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = reply.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_field");
    assert_eq!(error["error"]["field"], "provider");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 1: provider")
    );
    assert_eq!(api.get_json("/v1/accounts").await["items"], json!([]));
    // A later long line is refused alone.
    let body = format!(
        "{}\n{{\"x\": \"{}\"}}\n{}\n",
        body_line("long-1", "t1"),
        "a".repeat(4096),
        body_line("long-3", "t3")
    );
    let lines = ndjson(import(&api, body, "").await).await;
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["result"], "invalid");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("longer than 2048 bytes")
    );
    assert_eq!(lines[2]["result"], "created");
    // No key: 401, as every /v1 route.
    let reply = api
        .http
        .post(api.url("/v1/accounts:import"))
        .header("content-type", "application/x-ndjson")
        .body(body_line("e", "t"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    // A compressed body: 415 naming the encoding, not "line 1 is not a JSON
    // object".
    let reply = api
        .post("/v1/accounts:import")
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let error: Value = reply.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding"),
        "{error}"
    );
}

/// A body saved with a byte order mark and CRLF endings imports every line.
#[tokio::test]
async fn a_byte_order_mark_and_crlf_endings_are_accepted() {
    let api = Api::start().await;
    let body = format!(
        "\u{FEFF}{}\r\n{}\r\n",
        body_line("bom-1", "t1"),
        body_line("bom-2", "t2")
    );
    let lines = ndjson(import(&api, body, "").await).await;
    assert_eq!(lines[0]["result"], "created", "{lines:?}");
    assert_eq!(lines[1]["result"], "created", "{lines:?}");
    assert_eq!(lines[2]["summary"]["created"], 2, "{lines:?}");
}

/// Opens an import over a raw connection, sends `line` as the first
/// chunk of a chunked body, and then nothing more.
async fn stalled_import(api: &Api, line: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(api.address()).await.unwrap();
    let chunk = format!("{line}\n");
    let head = format!(
        "POST /v1/accounts:import HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A client that stops sending mid-body does not hold the import: it
/// ends with an error line and the summary of what was committed; while
/// imports run, more are answered 429.
#[tokio::test]
async fn a_stalled_body_ends_the_import_and_concurrent_imports_are_bounded() {
    use tokio::io::AsyncReadExt;
    let api = Api::with(|s| s.api.idle_timeout = Duration::from_millis(800)).await;
    let mut first = stalled_import(&api, &body_line("stall-1", "t-stall-1")).await;
    let _second = stalled_import(&api, &body_line("stall-2", "t-stall-2")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = import(&api, body_line("stall-3", "t-stall-3"), "").await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));

    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\r\n0\r\n\r\n") {
            let n = first.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("the stalled import ended by itself");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""result":"created""#), "{text}");
    assert!(text.contains(r#""code":"body_read_failed""#), "{text}");
    assert!(text.contains(r#""after_line":1"#), "{text}");
    assert!(text.contains(r#""created":1"#), "{text}");
    // Its permit is back: another import runs.
    let lines = ndjson(import(&api, body_line("stall-4", "t-stall-4"), "").await).await;
    assert_eq!(lines[0]["result"], "created");
}

/// An import longer than the idle timeout is not cut while its client
/// keeps sending: the stall limit is per read, and the connection counts
/// as busy until the streamed answer is sent.
#[tokio::test]
async fn a_slow_but_steady_import_outlasts_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = Api::with(|s| s.api.idle_timeout = Duration::from_millis(400)).await;
    let mut stream = stalled_import(&api, &body_line("steady-1", "t-steady-1")).await;
    for i in 2..=5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let chunk = format!(
            "{}\n",
            body_line(&format!("steady-{i}"), &format!("t-steady-{i}"))
        );
        stream
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\r\n0\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains(r#""created":5"#), "{text}");
    assert!(!text.contains("body_read_failed"), "{text}");
}
