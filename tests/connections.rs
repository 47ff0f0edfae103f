//! Pooled connections and servers that close idle ones: a request must not
//! be sent on a connection the server is just closing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestEnv, rotating};
use tokenwarden::domain::{Outcome, Provider, Trigger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A token endpoint that keeps a connection open for one second of
/// idleness, then closes it (as gunicorn's 2 s or shorter keep-alives do).
async fn closes_idle_connections_after_one_second() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // The next request must start within a second of idleness.
                    let mut chunk = [0u8; 4096];
                    let read =
                        tokio::time::timeout(Duration::from_secs(1), socket.read(&mut chunk)).await;
                    let Ok(Ok(n)) = read else { return };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    // Read the whole request: head, then Content-Length bytes.
                    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buffer.len() < head_end + 4 + length {
                        continue;
                    }
                    buffer.drain(..head_end + 4 + length);
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let body = format!(
                        r#"{{"access_token":"at-{n}","refresh_token":"rt-{n}","expires_in":3600,"token_type":"bearer"}}"#
                    );
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, served)
}

/// Refreshes spaced around and beyond the server's one-second keep-alive:
/// none fails on a connection the server closed.
#[tokio::test]
async fn refreshes_never_fail_on_a_connection_the_server_closed_while_idle() {
    let (url, served) = closes_idle_connections_after_one_second().await;
    let env = TestEnv::with(|s| s.providers.x.token_url = Some(url.parse().unwrap())).await;
    let (id, _) = env.connect(Provider::X, rotating()).await;
    let mut failures = Vec::new();
    let spacings_ms = [
        1000, 990, 1010, 1000, 1005, 995, 1500, 1000, 2000, 1002, 998, 3000, 1000, 1001, 999, 1200,
        1000, 2500, 1000, 1003,
    ];
    for spacing in spacings_ms {
        tokio::time::sleep(Duration::from_millis(spacing)).await;
        let report = env.engine.refresh(&id, Trigger::Forced).await.unwrap();
        if report.outcome != Outcome::Refreshed {
            failures.push(report.message);
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(served.load(Ordering::SeqCst), spacings_ms.len());
}
