//! `kill -9` under load loses no acknowledged webhook, and deliveries that were in flight resume
//! after a restart: the real `plugboard up` process, real HTTP on loopback, a real SQLite file.

mod common;

use common::{Senders, shopify_signature, wait_healthy};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plugboard::store::SqliteStore;
use plugboard_tests::ECHO;
// Restarted servers take their port again: one outside the ephemeral range.
use plugboard_tests::nats::free_port;

const SECRET: &str = "shpss_crash_test";

fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let path = dir.join("plugboard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[store]
path = "events.db"

[retry]
schedule_ms = [10, 10, 10]

[[plugin]]
id = "shop"
wasm = {ECHO:?}
[plugin.webhook]
verify = {{ scheme = "shopify" }}
secrets = ["file:secret"]

[[plugin]]
id = "sink"
wasm = {ECHO:?}
grants = {{ capabilities = ["kv", "emit", "config", "log"] }}

[[route]]
name = "received-to-sink"
from = "shop"
kind = "echo/received"
to = "sink"
"#
        ),
    )
    .unwrap();
    path
}

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["up", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plugboard starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let mut server = start(&config);
    wait_healthy(&client, &base).await;

    // Eight senders post signed webhooks until the server dies under them.
    let send = {
        let (client, base) = (client.clone(), base.clone());
        move |n: u32| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let body = format!(r#"{{"n":{n}}}"#);
                let sent = client
                    .post(format!("{base}/hooks/shop"))
                    .header("x-shopify-hmac-sha256", shopify_signature(SECRET, body.as_bytes()))
                    .header("x-shopify-webhook-id", format!("d-{n}"))
                    .body(body)
                    .send()
                    .await;
                sent.is_ok_and(|r| r.status() == 200)
            }
        }
    };
    let senders = Senders::start(8, send);
    senders.reach(300).await;
    server.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    server.wait().unwrap();
    let acked = senders.stop().await;

    // Restart: in-flight deliveries resume.
    let mut server = start(&config);
    wait_healthy(&client, &base).await;
    let store = SqliteStore::open_read_only(&dir.path().join("events.db")).unwrap();
    let mut settled = false;
    for _ in 0..600 {
        if store.deliveries(plugboard::store::DeliveryStatus::Pending, 1).unwrap().is_empty() {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(settled, "deliveries still pending after the restart");

    let events = store.recent(1_000_000).unwrap();
    let received: std::collections::HashSet<u32> = events
        .iter()
        .filter(|e| e.kind == "echo/received")
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&e.payload).ok()?["n"].as_u64())
        .map(|n| n as u32)
        .collect();
    let lost: Vec<u32> = acked.iter().copied().filter(|n| !received.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let delivered = store.deliveries(plugboard::store::DeliveryStatus::Delivered, 1_000_000).unwrap();
    let dead = store.deliveries(plugboard::store::DeliveryStatus::Dead, 10).unwrap();
    assert!(dead.is_empty(), "dead letters after the restart: {dead:?}");
    assert_eq!(delivered.len(), received.len(), "every stored webhook event was delivered to the sink");
    eprintln!(
        "acknowledged {} before kill -9; {} stored (some stored but unacknowledged); {} delivered after restart",
        acked.len(),
        received.len(),
        delivered.len()
    );
}

/// SIGTERM (what systemd and container runtimes send) stops the server cleanly: it stops
/// accepting, finishes what is in flight, says so and exits 0. Its log, written to a file, has
/// no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_server_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["up", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("plugboard starts");
    wait_healthy(&client, &base).await;
    let body = br#"{"n":1}"#;
    let sent = client
        .post(format!("{base}/hooks/shop"))
        .header("x-shopify-hmac-sha256", shopify_signature(SECRET, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);

    plugboard_tests::terminate(&server);
    let mut exited = None;
    for _ in 0..800 {
        if let Some(status) = server.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = exited else {
        server.kill().unwrap();
        panic!("plugboard did not exit within 40 s of SIGTERM");
    };
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status:?}: {logs}");
    assert!(logs.contains("shutting down") && logs.contains("plugboard stopped"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in a log file: {logs:?}");
}
