//! Delivery throughput: stored events -> routed -> handled by a trivial plugin (echo's `ping`
//! action) -> outcome stored, through the real dispatcher and SQLite store. Baseline in the same
//! run: the same number of plugin invocations with no store or dispatcher around them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::pipeline::{Dispatcher, RetryPolicy, Route, Routes};
use plugboard::store::{Append, SqliteStore};
use plugboard::{Event, Host, PluginSpec};
use plugboard_tests::ECHO;
use serde_json::json;

const EVENTS: usize = 20_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let host = Host::builder().build().unwrap();
        host.load(PluginSpec::new("target", ECHO)).await.unwrap();

        // Baseline: invocations alone, 64 at a time.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for chunk in 0..64 {
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                for _ in (chunk..EVENTS).step_by(64) {
                    host.invoke("target", "ping", &json!({})).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let baseline = EVENTS as f64 / started.elapsed().as_secs_f64();

        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let routes = Arc::new(Routes::new(vec![Route {
            name: "bench".into(),
            from: "source".into(),
            kind: "*".into(),
            to: "target".into(),
            action: Some("ping".into()),
            filter: None,
            ordering_key: None,
            concurrency: None,
        }]));
        for batch in 0..EVENTS / 500 {
            let events: Vec<Event> =
                (0..500).map(|i| Event::json("bench/tick", "source", &json!({ "n": batch * 500 + i })).unwrap()).collect();
            let deliveries = routes.deliveries(&events);
            store
                .append(Append { instance: "source".into(), delivery_id: None, dedup_window_ms: 0, events, deliveries })
                .await
                .unwrap();
        }
        let started = Instant::now();
        let _dispatcher = Dispatcher::spawn(host.clone(), store.clone(), routes, RetryPolicy::default(), 64);
        loop {
            if store.deliveries(plugboard::store::DeliveryStatus::Pending, 1).unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let delivered = store.deliveries(plugboard::store::DeliveryStatus::Delivered, EVENTS + 1).unwrap().len();
        assert_eq!(delivered, EVENTS);
        let rate = EVENTS as f64 / elapsed.as_secs_f64();
        println!(
            "pipeline: {EVENTS} stored events delivered to a trivial plugin with outcomes stored: {rate:.0} events/s \
             ({elapsed:?}); baseline, the invocations alone: {baseline:.0}/s; ratio {:.2}",
            rate / baseline
        );
    });
}
