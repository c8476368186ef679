//! Delivery throughput: stored events -> routed -> handled by a trivial plugin (echo's `ping`
//! action) -> outcome stored, through the real dispatcher and SQLite store. Baseline in the same
//! run: the same number of plugin invocations with no store or dispatcher around them. Then the
//! cost of recording: echo's `handle` delivered the same way, without and with `record = "all"`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::pipeline::{Dispatcher, RetryPolicy, Route, Routes};
use plugboard::runtime::recording::{Record, RecordingLog};
use plugboard::store::{Append, SqliteRecordingLog, SqliteStore};
use plugboard::{Capability, Event, Grants, Host, PluginSpec};
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
        let (rate, elapsed) = deliver(&host, &dir.path().join("ping"), Some("ping")).await;
        println!(
            "pipeline: {EVENTS} stored events delivered to a trivial plugin with outcomes stored: {rate:.0} events/s \
             ({elapsed:?}); baseline, the invocations alone: {baseline:.0}/s; ratio {:.2}",
            rate / baseline
        );

        // Recording overhead: echo's `handle` (kv, config, emit and log calls) delivered by the
        // same pipeline, without and with `record = "all"` (recordings written to the same file).
        let grants = Grants::none()
            .with(Capability::Kv)
            .with(Capability::Config)
            .with(Capability::Emit)
            .with(Capability::Log);
        let plain = Host::builder().build().unwrap();
        plain.load(PluginSpec::new("target", ECHO).with_grants(grants.clone())).await.unwrap();
        let (unrecorded, _) = deliver(&plain, &dir.path().join("handle"), None).await;
        let recorded_dir = dir.path().join("handle-recorded");
        std::fs::create_dir_all(&recorded_dir).unwrap();
        let log = Arc::new(SqliteRecordingLog::open(&recorded_dir.join("events.recordings.db"), 100_000).unwrap());
        let recording = Host::builder().recording_log(log.clone()).build().unwrap();
        recording.load(PluginSpec::new("target", ECHO).with_grants(grants.clone()).with_record(Record::All)).await.unwrap();
        let (recorded, _) = deliver(&recording, &recorded_dir, None).await;
        log.flush(Duration::from_secs(60));
        let kept = log.recent(Some("target"), EVENTS + 1).len();
        // `record = "failures"` records every invocation and keeps none of these (they succeed).
        recording.load(PluginSpec::new("target", ECHO).with_grants(grants).with_record(Record::Failures)).await.unwrap();
        let (failures, _) = deliver(&recording, &dir.path().join("handle-failures"), None).await;
        println!(
            "pipeline with echo's handle (kv, config, emit, log): {unrecorded:.0} events/s; recording every \
             invocation: {recorded:.0} events/s ({kept} recordings kept; costs {:.1}%); record = \"failures\" \
             (all recorded, none kept): {failures:.0} events/s (costs {:.1}%)",
            100.0 * (1.0 - recorded / unrecorded),
            100.0 * (1.0 - failures / unrecorded)
        );
    });
}

/// Stores [`EVENTS`] events routed to `target` (its `action`, or `handle`) in a fresh store in
/// `dir`, delivers them all with the dispatcher, and answers events per second and the time.
async fn deliver(host: &Host, dir: &Path, action: Option<&str>) -> (f64, Duration) {
    std::fs::create_dir_all(dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("events.db")).unwrap());
    let routes = Arc::new(Routes::new(vec![Route {
        name: "bench".into(),
        from: "source".into(),
        kind: "*".into(),
        to: "target".into(),
        action: action.map(str::to_owned),
        filter: None,
        ordering_key: None,
        concurrency: None,
    }]));
    for batch in 0..EVENTS / 500 {
        let events: Vec<Event> = (0..500)
            .map(|i| Event::json("bench/tick", "source", &json!({ "n": batch * 500 + i })).unwrap())
            .collect();
        let deliveries = routes.deliveries(&events);
        store
            .append(Append {
                instance: "source".into(),
                delivery_id: None,
                dedup_window_ms: 0,
                events,
                deliveries,
            })
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
    (EVENTS as f64 / elapsed.as_secs_f64(), elapsed)
}
