//! Connection handling (defect 4), over raw TCP: half-sent heads and idle
//! keep-alive connections are closed after their timeouts, connections over
//! the cap wait their turn, and shutdown closes idle connections.

use std::time::Duration;

use tokenwarden::api::{self, ApiState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::common::TestEnv;
use crate::support::{Api, api_settings};

async fn raw_request(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = String::new();
    // Probe answers are small: one read of head and body, then the rest.
    while !text.contains("\r\n\r\n") || !text.ends_with('}') {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed while waiting for a response: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text
}

/// Whether `GET /healthz` on this connection is answered 200.
async fn healthz_ok(stream: &mut TcpStream) -> bool {
    raw_request(stream, "/healthz")
        .await
        .starts_with("HTTP/1.1 200")
}

/// Resolves with how long it took the server to close the connection.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    let api = Api::with(|s| {
        s.api.header_read_timeout = Duration::from_millis(500);
        s.api.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let address = api.address();
    // Nothing sent at all, and half a head.
    let opened = std::time::Instant::now();
    let mut silent = TcpStream::connect(&address).await.unwrap();
    let mut half = TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        closed_after(stream, Duration::from_secs(5)).await;
    }
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    // A kept-alive connection that then trickles half a head is closed too.
    let mut kept = TcpStream::connect(&address).await.unwrap();
    assert!(healthz_ok(&mut kept).await);
    kept.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    closed_after(&mut kept, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let api = Api::with(|s| {
        s.api.header_read_timeout = Duration::from_millis(300);
        s.api.idle_timeout = Duration::from_millis(1500);
    })
    .await;
    let mut stream = TcpStream::connect(api.address()).await.unwrap();
    assert!(healthz_ok(&mut stream).await);
    // Idle longer than the header timeout, shorter than the idle timeout:
    // still open, and it serves the next request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(healthz_ok(&mut stream).await);
    let waited = closed_after(&mut stream, Duration::from_secs(6)).await;
    assert!(waited >= Duration::from_millis(1200), "{waited:?}");
}

/// Connections over `api.max_connections` wait to be accepted (they are
/// not refused) and are served once a slot frees.
#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let api = Api::with(|s| {
        s.api.max_connections = 2;
        s.api.header_read_timeout = Duration::from_secs(10);
        s.api.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let address = api.address();
    let mut first = TcpStream::connect(&address).await.unwrap();
    let mut second = TcpStream::connect(&address).await.unwrap();
    assert!(healthz_ok(&mut first).await);
    assert!(healthz_ok(&mut second).await);
    let mut third = TcpStream::connect(&address).await.unwrap();
    let waiting = tokio::spawn(async move { raw_request(&mut third, "/healthz").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection is served over a cap of two"
    );
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"));
    assert!(healthz_ok(&mut second).await);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_returns() {
    let env = TestEnv::with(api_settings).await;
    let state = ApiState::new(&env.settings, env.engine.clone()).unwrap();
    let app = api::router(state, 65536, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let limits = api::server::ConnectionLimits::from(&env.settings.api);
    let server = tokio::spawn(api::server::serve(listener, app, limits, stop.clone()));
    let mut idle = TcpStream::connect(address).await.unwrap();
    assert!(healthz_ok(&mut idle).await);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("serve returns with an idle connection open")
        .unwrap()
        .unwrap();
    closed_after(&mut idle, Duration::from_secs(1)).await;
    assert!(
        TcpStream::connect(address).await.is_err(),
        "no longer listening"
    );
}
