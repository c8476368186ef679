//! The read model on NATS: every node, and a node started later, shows the whole cluster's
//! events, traces, dead letters, jobs and stats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Connect as _, Servers, event};
use crate::log::{Append, EventLog, QueuedDelivery};
use crate::nats::{NatsStore, QueueRoute, QueueSettings};
use crate::queue::{Attempt, Claimed, DeliveryQueue, DeliveryStatus, Outcome};
use crate::read::{EventFilter, JobStatus, ReadModel};
use crate::{AttemptOutcome, JOB_ROUTE};
use plugboard_runtime::clock::now_ms;
use plugboard_runtime::types::Event;

const LEASE: Duration = Duration::from_secs(5);

async fn node(servers: &Servers) -> Arc<NatsStore> {
    let _ready = servers.connect(0, 1).await;
    let routes =
        ["orders", JOB_ROUTE].iter().map(|r| QueueRoute { name: (*r).into(), concurrency: None }).collect();
    NatsStore::connect(&servers.settings(0, 1), QueueSettings { lease: LEASE, routes, fan_out: true })
        .await
        .unwrap()
}

fn to(e: &Event, route: &str, action: Option<&str>) -> QueuedDelivery {
    QueuedDelivery {
        event_id: e.id.clone(),
        route: route.into(),
        target: "assess".into(),
        action: action.map(Into::into),
        order_key: None,
    }
}

async fn append(store: &NatsStore, events: Vec<Event>, deliveries: Vec<QueuedDelivery>) {
    let append =
        Append { instance: "shop".into(), delivery_id: None, dedup_window_ms: 0, events, deliveries };
    store.append(append).await.unwrap();
}

async fn claim_until(store: &NatsStore, count: usize) -> Vec<Claimed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = Vec::new();
    while taken.len() < count && Instant::now() < deadline {
        taken.extend(store.claim(now_ms(), 10, LEASE, &mut |_| true).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(taken.len(), count, "claimed in time");
    taken
}

fn attempt() -> Attempt {
    Attempt { number: 1, duration_us: 4_000, handler: Some("assess@1.0.0 sha256:ab".into()) }
}

#[tokio::test]
async fn every_node_reads_the_whole_clusters_events_traces_dead_letters_and_jobs() {
    let servers = Servers::start(1, true);
    let (first, second) = (node(&servers).await, node(&servers).await);
    let order = Event::json("orders/create", "shop", &serde_json::json!({ "id": 1 })).unwrap();
    let job = event("jobs/run");
    append(
        &first,
        vec![order.clone(), job.clone()],
        vec![to(&order, "orders", None), to(&job, JOB_ROUTE, Some("run"))],
    )
    .await;

    // The second node runs both; the order's delivery produces an event.
    for claimed in claim_until(&second, 2).await {
        let outcome = if claimed.route == JOB_ROUTE {
            Outcome::Delivered { events: vec![], deliveries: vec![], output: Some(r#"{"ok":true}"#.into()) }
        } else {
            let mut risk = event("orders/risk");
            risk.source = "assess".into();
            risk.attributes.push(("caused_by".into(), claimed.event.id.clone()));
            Outcome::Delivered { events: vec![risk], deliveries: vec![], output: None }
        };
        second.settle(claimed.claim_id(), attempt(), outcome).await.unwrap();
    }

    // The first node shows all of it.
    let listed = first.events(EventFilter::default(), 10).await.unwrap();
    let kinds: Vec<&str> = listed.iter().map(|(_, e)| e.kind.as_str()).collect();
    assert_eq!(kinds, ["orders/risk", "jobs/run", "orders/create"], "newest first");
    let page =
        first.events(EventFilter { before: Some(listed[0].0), ..Default::default() }, 1).await.unwrap();
    assert_eq!(page[0].1.kind, "jobs/run");
    let orders =
        first.events(EventFilter { kind: Some("orders/*"), ..Default::default() }, 10).await.unwrap();
    assert_eq!(orders.len(), 2);
    let trace = first.trace(&order.id).await.unwrap().unwrap();
    assert_eq!(trace.deliveries.len(), 1);
    let delivery = &trace.deliveries[0];
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.attempts.len(), 1);
    assert_eq!(delivery.attempts[0].handler.as_deref(), Some("assess@1.0.0 sha256:ab"));
    assert_eq!(delivery.produced.iter().map(|p| p.event.kind.as_str()).collect::<Vec<_>>(), ["orders/risk"]);
    assert_eq!(trace.payload.as_ref().map(|p| p.text.as_str()), Some(r#"{"id":1}"#));
    assert_eq!(first.payload(&order.id).await.unwrap().unwrap().1, order.payload);
    assert!(first.payload("no-such-event").await.unwrap().is_none());
    let job_record = first.job(&job.id).await.unwrap().unwrap();
    assert_eq!(job_record.status, JobStatus::Succeeded);
    assert_eq!(job_record.output, Some(serde_json::json!({ "ok": true })));
    let minutes = first.stats(0).await.unwrap();
    assert_eq!(minutes.iter().map(|m| m.events).sum::<u64>(), 3);
    assert_eq!(minutes.iter().map(|m| m.attempts).sum::<u64>(), 2);

    // A dead letter settled on the first node is listed, shown and replayed from the second.
    let doomed = Event::json("orders/create", "shop", &serde_json::json!({ "id": 2 })).unwrap();
    append(&first, vec![doomed.clone()], vec![to(&doomed, "orders", None)]).await;
    let claimed = claim_until(&first, 1).await;
    let dead = Outcome::Dead { error: "400 from upstream".into(), events: vec![], deliveries: vec![] };
    first.settle(claimed[0].claim_id(), attempt(), dead).await.unwrap();
    let letters = second.deliveries(DeliveryStatus::Dead, None, 10).await.unwrap();
    assert_eq!(second.queue_stats(now_ms()).await.unwrap().dead, 1, "for /metrics");
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].event_id.as_str(), letters[0].last_error.as_deref()),
        (doomed.id.as_str(), Some("400 from upstream"))
    );
    let detail = second.delivery(letters[0].id.clone()).await.unwrap().unwrap();
    assert_eq!(detail.payload, r#"{"id":2}"#);
    assert_eq!(detail.attempts[0].outcome, AttemptOutcome::Dead);
    assert_eq!(second.replay(Some(letters[0].id.clone())).await.unwrap(), 1);
    assert!(first.deliveries(DeliveryStatus::Dead, None, 10).await.unwrap().is_empty());
    let pending = first.deliveries(DeliveryStatus::Pending, None, 10).await.unwrap();
    assert_eq!(pending.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), [letters[0].id.clone()]);

    // A node started later folds the log from its start.
    let third = node(&servers).await;
    assert_eq!(third.events(EventFilter::default(), 10).await.unwrap().len(), 4);
    assert_eq!(third.trace(&order.id).await.unwrap(), first.trace(&order.id).await.unwrap());
}
