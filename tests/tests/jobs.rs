//! Async jobs: `POST /v1/jobs` answers 202 at once, `GET /v1/jobs/{id}` shows the outcome, and a
//! completion callback signed per Standard Webhooks reaches the caller, retried like any delivery.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use plugboard::api::{AppState, serve};
use plugboard::ingress::verify::{Scheme, Verifier};
use plugboard::pipeline::{Callbacks, Dispatcher, RetryPolicy, Routes};
use plugboard::store::SqliteStore;
use plugboard::{Grants, Limits};
use plugboard_tests::{ECHO, LOOPER};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const KEY: &[u8] = b"job-callback-signing-key-32bytes";
const TOKEN: &str = "jobs-token";

/// A callback receiver on loopback that hands each request's headers and body to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(http::HeaderMap, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/done",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body.to_vec()));
                "thanks"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/done", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

/// GETs `url` with a bearer token and parses the JSON answer.
async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_in_the_background_and_call_back_signed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
    let host = common::host();
    common::load(&host, "echo", ECHO, Grants::all(), Limits::default()).await;
    common::load(
        &host,
        "slow",
        LOOPER,
        Grants::none(),
        Limits::default().with_timeout(Duration::from_millis(50)),
    )
    .await;
    let (callback_url, mut received) = receiver().await;
    let callback_origin = callback_url.trim_end_matches("/done").to_owned();
    let destinations = plugboard::HttpGrant {
        allow: vec![callback_origin.clone(), callback_origin.replace("127.0.0.1", "localhost")],
        allow_internal: vec!["127.0.0.1".into()],
        ..plugboard::HttpGrant::default()
    };
    let callbacks = Callbacks::new(KEY.to_vec(), destinations).unwrap();
    let routes = Arc::new(Routes::default());
    let policy = RetryPolicy { schedule_ms: vec![5] };
    let dispatcher = Dispatcher::spawn_with_callbacks(
        host.clone(),
        store.clone(),
        routes.clone(),
        policy,
        8,
        Some(callbacks),
    );
    let state = AppState::builder(host, store.clone())
        .dedup_window_ms(0)
        .routes(routes)
        .dispatcher(dispatcher.notifier())
        .jobs_token(Some(TOKEN.as_bytes().to_vec()))
        .admin_token(Some(b"admin-token".to_vec()))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, state, std::future::pending()));
    let client = reqwest::Client::new();
    let submit = |body: Value, token: &str| {
        client.post(format!("{base}/v1/jobs")).bearer_auth(token).json(&body).send()
    };

    let job = json!({"instance": "echo", "action": "kv-roundtrip", "input": {"x": 1}, "callback_url": callback_url});
    assert_eq!(submit(job.clone(), "wrong").await.unwrap().status(), 401);
    let unknown = submit(json!({"instance": "echo", "action": "nope"}), TOKEN).await.unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("no action `nope`"));

    let accepted = submit(job, TOKEN).await.unwrap();
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mut status = Value::Null;
    for _ in 0..200 {
        status = get_json(&client, &format!("{base}/v1/jobs/{id}"), TOKEN).await;
        if status["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status["status"], "succeeded", "{status}");
    assert_eq!(status["output"], json!({"read": {"x": 1}, "deleted": true}));

    // The callback is signed per Standard Webhooks with the configured secret.
    let (headers, body) =
        tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(KEY));
    let verifier = Verifier::new(Scheme::StandardWebhooks, vec![secret.into_bytes()]).unwrap();
    verifier.verify(&headers, &body, std::time::SystemTime::now()).expect("a valid signature");
    let notice: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notice["id"], id.as_str());
    assert_eq!(notice["status"], "succeeded");
    assert_eq!(notice["output"]["read"], json!({"x": 1}));
    // The job's trace leads to its completion notice, and that to the callback's delivery.
    let mut callback_status = plugboard::store::DeliveryStatus::Pending;
    for _ in 0..200 {
        let trace = store.trace(&id).unwrap().unwrap();
        let notice = &trace.deliveries[0].produced;
        assert_eq!(notice.len(), 1, "{trace:?}");
        assert_eq!(notice[0].event.kind, "job/completed");
        assert_eq!(notice[0].deliveries[0].route, "job-callback");
        callback_status = notice[0].deliveries[0].status;
        if callback_status == plugboard::store::DeliveryStatus::Delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(callback_status, plugboard::store::DeliveryStatus::Delivered);

    // A job that keeps failing ends as failed, and says so in its callback too.
    let failing = json!({"instance": "slow", "action": "spin", "callback_url": callback_url});
    let id = submit(failing, TOKEN).await.unwrap().json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    let notice: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(notice["id"], id.as_str());
    assert_eq!(notice["status"], "failed");
    assert!(notice["error"].as_str().unwrap().contains("gave up after 2 attempts"), "{notice}");
    let status: Value = get_json(&client, &format!("{base}/v1/jobs/{id}"), TOKEN).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(
        client.get(format!("{base}/v1/jobs/missing")).bearer_auth(TOKEN).send().await.unwrap().status(),
        404
    );

    // Whoever holds the jobs token picks the callback URL: it goes only where the operator
    // allows, through the address policy, after DNS.
    let refused_urls = [
        "http://127.0.0.1:1/elsewhere".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("{}/done", callback_origin.replace("127.0.0.1", "localhost")),
    ];
    for url in &refused_urls {
        let job = json!({"instance": "echo", "action": "ping", "callback_url": url});
        assert_eq!(submit(job, TOKEN).await.unwrap().status(), 202);
    }
    let mut dead = Vec::new();
    for _ in 0..400 {
        dead = store
            .deliveries(plugboard::store::DeliveryStatus::Dead, 100)
            .unwrap()
            .into_iter()
            .filter(|d| d.route == "job-callback")
            .collect();
        if dead.len() == refused_urls.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let errors: Vec<String> = dead.iter().map(|d| d.last_error.clone().unwrap_or_default()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors.iter().filter(|e| e.contains("jobs.callback_allow")).count(), 2, "{errors:?}");
    // No plugin is involved in a callback, and the error does not say one is.
    assert!(errors.iter().all(|e| e.starts_with("job callback refused: ")), "{errors:?}");
    assert_eq!(errors.iter().filter(|e| e.contains("internal address")).count(), 1, "{errors:?}");
    assert!(received.try_recv().is_err(), "no refused callback reached the receiver");
}
