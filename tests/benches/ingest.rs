//! Where a webhook's time goes: each step of the ingest path alone, then the whole path in
//! process (the axum router, no sockets), in both acknowledge modes and with a random delivery
//! id per webhook (as providers send), against a bare axum handler called the same way in the
//! same run. Every figure is per request with 64 requests in flight (as the load test's 64
//! connections), so that the store's group commit batches as it does under load.
//! `tests/load/run.sh` measures the same path over loopback with wrk.
//!
//! Steps: verifying the Shopify signature; a fresh instance of the echo connector running
//! `on-webhook`; appending one event durably (SQLite, synchronous=FULL, group commit); and the
//! whole request through the router, after processing and on receipt; and the whole path again
//! with the instance recording every invocation (`record = "all"`), for recording's cost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use plugboard::api::{AppState, router};
use plugboard::ingress::Endpoint;
use plugboard::ingress::verify::{Scheme, Verifier};
use plugboard::manifest::webhook::Acknowledge;
use plugboard::runtime::recording::Record;
use plugboard::store::{Append, EventStore, SqliteRecordingLog, SqliteStore};
use plugboard::types::WebhookRequest;
use plugboard::{Event, Host, PluginSpec};
use plugboard_tests::ECHO;
use tower::ServiceExt;

const SECRET: &str = "shpss_bench";
const BODY: &[u8] =
    br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"EUR"}"#;
const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 7;

fn signature() -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(BODY);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Runs `op` `n` times with [`IN_FLIGHT`] at once; answers µs per op (wall clock / n).
async fn per_op<F, Fut>(n: usize, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|lane| {
            let op = op.clone();
            tokio::spawn(async move {
                for _ in (lane..n).step_by(IN_FLIGHT) {
                    op().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// The median of [`ROUNDS`] runs of `per_op`.
async fn median<F, Fut>(n: usize, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut runs = Vec::new();
    for _ in 0..ROUNDS {
        runs.push(per_op(n, op.clone()).await);
    }
    runs.sort_by(f64::total_cmp);
    runs[ROUNDS / 2]
}

fn webhook_request() -> http::Request<Body> {
    http::Request::post("/hooks/shop/orders")
        .header("content-type", "application/json")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-hmac-sha256", signature())
        .body(Body::from(BODY))
        .unwrap()
}

/// The same webhook with a delivery id of its own, random as Shopify's are: the path then looks
/// it up among the stored ids before the connector runs, and stores it.
fn webhook_request_with_delivery_id() -> http::Request<Body> {
    let mut request = webhook_request();
    let id = format!("{:032x}", fastrand::u128(..));
    request.headers_mut().insert("x-shopify-webhook-id", http::HeaderValue::from_str(&id).unwrap());
    request
}

async fn app(host: &Host, acknowledge: Acknowledge, dir: &std::path::Path) -> axum::Router {
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&dir.join("events.db")).unwrap());
    let verifier = Verifier::new(Scheme::Shopify, vec![SECRET.as_bytes().to_vec()]).unwrap();
    let endpoint = Endpoint {
        verifier: Some(verifier),
        allow_ips: vec![],
        rate: None,
        delivery_id_header: None,
        acknowledge,
    };
    let state = AppState::builder(host.clone(), store)
        .endpoints(BTreeMap::from([("shop".to_owned(), endpoint)]))
        .request_timeout(Duration::from_secs(10))
        .build();
    let peer =
        axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)));
    router(state).layer(peer)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let host = Host::builder().build().unwrap();
        host.load(PluginSpec::new("shop", ECHO)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let n = 20_000;

        let bare = axum::Router::new().route(
            "/hooks/{instance}/{*rest}",
            axum::routing::post(|body: Bytes| async move { body.len().to_string() }),
        );
        let bare_us = median(n, move || {
            let bare = bare.clone();
            async move {
                let response = bare.oneshot(webhook_request()).await.unwrap();
                assert_eq!(response.status(), 200);
                axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            }
        })
        .await;

        let verifier = Arc::new(Verifier::new(Scheme::Shopify, vec![SECRET.as_bytes().to_vec()]).unwrap());
        let headers = webhook_request().headers().clone();
        let verify_us = median(n, move || {
            let (verifier, headers) = (verifier.clone(), headers.clone());
            async move {
                verifier.verify(&headers, BODY, SystemTime::now()).unwrap();
            }
        })
        .await;

        let runner = host.clone();
        let plugin_us = median(n, move || {
            let host = runner.clone();
            async move {
                let request = WebhookRequest {
                    method: "POST".into(),
                    path: "/orders".into(),
                    query: String::new(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: BODY.to_vec(),
                };
                host.on_webhook("shop", request).await.unwrap();
            }
        })
        .await;

        let store = Arc::new(SqliteStore::open(&dir.path().join("append.db")).unwrap());
        let append_us = median(n, move || {
            let store = store.clone();
            async move {
                let event = Event::json("orders/create", "shop", &serde_json::json!({ "id": 1 })).unwrap();
                let append =
                    Append { instance: "shop".into(), delivery_id: None, dedup_window_ms: 0, events: vec![event], deliveries: vec![] };
                store.append(append).await.unwrap();
            }
        })
        .await;

        let mut whole = Vec::new();
        // (row, acknowledge mode, whether each webhook carries a delivery id)
        let modes = [
            ("acknowledged after processing", Acknowledge::AfterProcessing, false),
            ("acknowledged on receipt", Acknowledge::OnReceipt, false),
            ("after processing, random ids", Acknowledge::AfterProcessing, true),
        ];
        for (mode, acknowledge, with_id) in modes {
            let sub = dir.path().join(mode.replace([' ', ','], "-"));
            std::fs::create_dir_all(&sub).unwrap();
            let app = app(&host, acknowledge, &sub).await;
            let us = median(n, move || {
                let app = app.clone();
                async move {
                    let request = if with_id { webhook_request_with_delivery_id() } else { webhook_request() };
                    let response = app.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                }
            })
            .await;
            whole.push((mode, acknowledge, with_id, us));
        }

        // Recording: the whole path (after processing) on two fresh hosts, one whose instance
        // records every invocation (into a file of its own, as the server keeps them), their
        // rounds interleaved so that the machine's drift falls on both alike.
        let mut pair = Vec::new();
        for recorded in [false, true] {
            let sub = dir.path().join(if recorded { "recorded" } else { "unrecorded" });
            std::fs::create_dir_all(&sub).unwrap();
            let log = Arc::new(SqliteRecordingLog::open(&sub.join("events.recordings.db"), 100_000).unwrap());
            let fresh = Host::builder().recording_log(log).build().unwrap();
            let spec = PluginSpec::new("shop", ECHO);
            fresh.load(if recorded { spec.with_record(Record::All) } else { spec }).await.unwrap();
            pair.push(app(&fresh, Acknowledge::AfterProcessing, &sub).await);
        }
        let (mut unrecorded_runs, mut recorded_runs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            for (app, runs) in [(&pair[0], &mut unrecorded_runs), (&pair[1], &mut recorded_runs)] {
                let app = app.clone();
                runs.push(
                    per_op(n, move || {
                        let app = app.clone();
                        async move {
                            let response = app.oneshot(webhook_request()).await.unwrap();
                            assert_eq!(response.status(), 200);
                            axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                        }
                    })
                    .await,
                );
            }
        }
        for runs in [&mut unrecorded_runs, &mut recorded_runs] {
            runs.sort_by(f64::total_cmp);
        }
        let (unrecorded_us, recorded_us) = (unrecorded_runs[ROUNDS / 2], recorded_runs[ROUNDS / 2]);

        println!("ingest breakdown, µs per request with {IN_FLIGHT} in flight (median of {ROUNDS} runs of {n}):");
        println!("  bare axum handler, in process (the baseline)     {bare_us:>8.2}");
        println!("  verify the Shopify signature                      {verify_us:>8.2}");
        println!("  fresh echo instance runs on-webhook              {plugin_us:>8.2}");
        println!("  append one event durably (group commit)          {append_us:>8.2}");
        // The whole path against the sum of its steps: what is left is the handler's own work
        // (extracting, copying the request for the plugin, metrics, the answer) and hand-offs.
        for (mode, acknowledge, with_id, us) in whole {
            let steps = match acknowledge {
                Acknowledge::OnReceipt => bare_us + verify_us + append_us,
                Acknowledge::AfterProcessing => bare_us + verify_us + plugin_us + append_us,
            };
            // The steps above have no delivery id: its lookup and its row are not among them.
            let without = if with_id { ", without the id's lookup and row" } else { "" };
            println!(
                "  whole webhook path, {mode:<30}{us:>8.2}  ({:.0}/s; its steps{without} add up to {steps:.2})",
                1e6 / us
            );
        }
        println!(
            "  the same on a fresh host, not recording           {unrecorded_us:>8.2}  ({:.0}/s)",
            1e6 / unrecorded_us
        );
        println!(
            "  the same on a fresh host, recording every call    {recorded_us:>8.2}  ({:.0}/s; recording costs {:.1}%)",
            1e6 / recorded_us,
            100.0 * (recorded_us / unrecorded_us - 1.0)
        );
    });
}
