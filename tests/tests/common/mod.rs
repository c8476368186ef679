//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use plugboard::{Grants, Host, Limits, PluginSpec};

/// A host with a short epoch tick, so deadline tests finish quickly.
pub fn host() -> Host {
    Host::builder().epoch_tick(Duration::from_millis(2)).build().expect("host builds")
}

/// Loads `wasm` as `id` with `grants` and `limits`.
pub async fn load(
    host: &Host,
    id: &str,
    wasm: &str,
    grants: Grants,
    limits: Limits,
) -> plugboard::PluginInfo {
    host.load(PluginSpec::new(id, wasm).with_grants(grants).with_limits(limits))
        .await
        .unwrap_or_else(|e| panic!("loading {id}: {e}"))
}

/// Starts a real HTTP server on loopback that answers `GET /hello` with `hi`,
/// `GET /redirect` with a redirect to `/hello`, and any request under `/echo` with its own
/// headers and body (as a misbehaving API may).
pub async fn http_server() -> SocketAddr {
    use axum::routing::{any, get};
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hi" }))
        .route(
            "/redirect",
            get(|| async { (axum::http::StatusCode::FOUND, [("location", "http://example.com/")], "") }),
        )
        .route("/big", get(|| async { vec![b'x'; 64 << 10] }))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        // Says whether the caller sent the test secret, without echoing it.
        .route(
            "/auth",
            get(|headers: axum::http::HeaderMap| async move {
                let sent =
                    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer s3cr3t-value");
                if sent { "authorized" } else { "anonymous" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn echo(headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Vec<u8> {
    let mut echoed = Vec::new();
    for (name, value) in &headers {
        echoed.extend_from_slice(format!("{name}: ").as_bytes());
        echoed.extend_from_slice(value.as_bytes());
        echoed.push(b'\n');
    }
    echoed.extend_from_slice(&body);
    echoed
}
