//! The admin API's and the dispatcher's queries on a long history: a store with a million events
//! (each with a delivery and an attempt; 1 in 100 a dead letter, the newest few still pending),
//! written through the store's own API, against the same queries on a store of ten thousand
//! events built the same way in the same run (the baseline: what they cost without history).
//!
//! `PLUGBOARD_BENCH_EVENTS` sets the large store's size (default 1,000,000). Each figure is the
//! median of 21 runs of the query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::Event;
use plugboard::store::{Append, Attempt, EventFilter, Outcome, QueuedDelivery, SqliteStore};
use plugboard_tests::median;
use serde_json::json;

const BATCH: usize = 1_000;

/// Builds a store of `events` events at `path`: every delivery delivered (1 in 100 dead), but the
/// last batch's, which stay pending.
async fn build(path: &std::path::Path, events: usize) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    let batches = events.div_ceil(BATCH);
    for b in 0..batches {
        let mut batch = Vec::with_capacity(BATCH);
        let mut deliveries = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let n = b * BATCH + i;
            let mut event =
                Event::json("orders/create", "shopify", &json!({ "id": n, "total": "19.99" })).unwrap();
            event.attributes.push(("order_id".into(), n.to_string()));
            deliveries.push(QueuedDelivery {
                event_id: event.id.clone(),
                route: "new-orders".into(),
                target: "order-risk".into(),
                action: None,
                order_key: None,
            });
            batch.push(event);
        }
        let delivery_id = Some(format!("webhook-{b}"));
        let append = Append {
            instance: "shopify".into(),
            delivery_id,
            dedup_window_ms: 86_400_000,
            events: batch,
            deliveries,
        };
        store.append(append).await.unwrap();
        if b + 1 == batches {
            break;
        }
        // Outcomes are written concurrently, as the dispatcher writes them: the writer thread
        // commits whatever is waiting in one transaction.
        let now = plugboard_now_ms() + 1_000;
        let claimed = store.claim(now, BATCH, Duration::from_secs(600), &mut |_| true).unwrap();
        let recorded: Vec<_> = claimed
            .into_iter()
            .map(|claimed| {
                let store = store.clone();
                let id: i64 = claimed.id.as_str().parse().unwrap();
                tokio::spawn(async move {
                    let attempt =
                        Attempt { number: 1, duration_us: 120, handler: Some("order-risk@0.1.0".into()) };
                    let outcome = if id % 100 == 0 {
                        Outcome::Dead {
                            error: "invalid-input: no such order".into(),
                            events: vec![],
                            deliveries: vec![],
                        }
                    } else {
                        Outcome::Delivered { events: vec![], deliveries: vec![], output: None }
                    };
                    store.settle(&claimed.claim_id(), attempt, outcome).await.unwrap();
                })
            })
            .collect();
        for r in recorded {
            r.await.unwrap();
        }
    }
    store
}

fn time<T>(mut query: impl FnMut() -> T) -> Duration {
    median(
        (0..21)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(query());
                started.elapsed()
            })
            .collect(),
    )
}

/// Each query's median time on `store`.
fn measure(store: &SqliteStore, events: usize) -> Vec<(&'static str, Duration)> {
    let now = plugboard_now_ms();
    let newest = store.recent(1).unwrap()[0].id.clone();
    let oldest_page_cursor = Some(((events as i64) / 2).max(2));
    vec![
        (
            "GET /v1/stats (per minute, last hour)",
            time(|| store.stats(now.saturating_sub(3_600_000)).unwrap()),
        ),
        ("/metrics queue depth, lag, dead letters", time(|| store.queue_stats(now).unwrap())),
        ("GET /v1/events (newest 100)", time(|| store.events(EventFilter::default(), 100).unwrap())),
        (
            "GET /v1/events?before= (a page half-way back)",
            time(|| {
                store.events(EventFilter { before: oldest_page_cursor, ..Default::default() }, 100).unwrap()
            }),
        ),
        (
            "GET /v1/events?kind=orders/*&source=shopify",
            time(|| {
                let filter = EventFilter { kind: Some("orders/*"), source: Some("shopify"), before: None };
                store.events(filter, 100).unwrap()
            }),
        ),
        ("GET /v1/events/{id} (trace)", time(|| store.trace(&newest).unwrap())),
        (
            "GET /v1/dlq (100 dead letters)",
            time(|| store.deliveries(plugboard::store::DeliveryStatus::Dead, 100).unwrap()),
        ),
        ("dispatcher: due deliveries (64, a claim's first page)", time(|| store.due(now, 64).unwrap())),
        ("webhook: duplicate delivery id?", time(|| store.is_duplicate("shopify", "webhook-7").unwrap())),
    ]
}

fn plugboard_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let large: usize =
        std::env::var("PLUGBOARD_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let small = 10_000;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let baseline = build(&dir.path().join("small.db"), small).await;
        let history = build(&dir.path().join("large.db"), large).await;
        eprintln!("built {small} and {large} events in {:.0?}", started.elapsed());
        let (base, long) = (measure(&baseline, small), measure(&history, large));
        println!("| query | {large} events | {small} events (baseline) |");
        println!("|---|---|---|");
        for ((name, l), (_, s)) in long.iter().zip(&base) {
            println!("| {name} | {l:.2?} | {s:.2?} |");
        }
        let bytes = std::fs::metadata(dir.path().join("large.db")).map(|m| m.len()).unwrap_or(0);
        println!("store file: {:.0} MiB for {large} events", bytes as f64 / (1 << 20) as f64);
    });
}
