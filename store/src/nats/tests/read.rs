//! The read model on NATS: every node, and a node started later, shows the whole cluster's
//! events, traces, dead letters, jobs and stats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Connect as _, Servers, event};
use crate::log::{Append, EventLog, QueuedDelivery};
use crate::nats::{NatsStore, QueueRoute, QueueSettings};
use crate::queue::{Attempt, Claimed, DeliveryQueue, DeliveryStatus, Outcome};
use crate::read::{EventFilter, JobStatus, ReadModel};
use crate::{AttemptOutcome, JOB_ROUTE, Retention};
use plugboard_runtime::clock::now_ms;
use plugboard_runtime::types::Event;

const LEASE: Duration = Duration::from_secs(5);

async fn node(servers: &Servers) -> Arc<NatsStore> {
    node_queueing(servers, true).await
}

/// A node that runs the fan-out (`fan_out`) or only reads and claims.
async fn node_queueing(servers: &Servers, fan_out: bool) -> Arc<NatsStore> {
    let _ready = servers.connect(0, 1).await;
    let routes =
        ["orders", JOB_ROUTE].iter().map(|r| QueueRoute { name: (*r).into(), concurrency: None }).collect();
    NatsStore::connect(&servers.settings(0, 1), QueueSettings { lease: LEASE, routes, fan_out })
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

/// The ids of the events every node lists, newest first.
async fn listed(store: &NatsStore) -> Vec<String> {
    let events = store.events(EventFilter::default(), 100).await.unwrap();
    events.into_iter().map(|(_, e)| e.id).collect()
}

/// A retention pass deletes the history past its limits from the log, the dead letters and
/// every node's read model; a delivery still pending stays listed and runs after it; and an
/// append goes only once the fan-out queued its deliveries.
#[tokio::test]
async fn history_past_retention_goes_from_the_log_the_dead_letters_and_every_node() {
    let servers = Servers::start(1, true);
    let reader = node_queueing(&servers, false).await;
    let orders: Vec<Event> = (0..4)
        .map(|n| Event::json("orders/create", "shop", &serde_json::json!({ "n": n })).unwrap())
        .collect();
    for order in &orders {
        append(&reader, vec![order.clone()], vec![to(order, "orders", None)]).await;
    }
    let keep_one = Retention { max_age_ms: 0, max_events: 1, chunk: 1000, min_age_ms: 0 };
    // No node has queued their deliveries yet: nothing goes.
    reader.sweep(keep_one).await.unwrap();
    assert_eq!(listed(&reader).await.len(), 4);
    assert!(reader.payload(&orders[0].id).await.unwrap().is_some());

    // Order 0 and 3 delivered, 1 dead, 2 still running.
    let runner = node(&servers).await;
    let mut running = None;
    for claimed in claim_until(&runner, 4).await {
        let n = orders.iter().position(|o| o.id == claimed.event.id).unwrap();
        let outcome = match n {
            1 => Outcome::Dead { error: "400".into(), events: vec![], deliveries: vec![] },
            2 => {
                running = Some(claimed);
                continue;
            }
            _ => Outcome::Delivered { events: vec![], deliveries: vec![], output: None },
        };
        runner.settle(claimed.claim_id(), attempt(), outcome).await.unwrap();
    }
    assert_eq!(runner.queue().dead_letters().await.unwrap().len(), 1);

    // Only the newest event is kept, and the one whose delivery still runs.
    let swept = runner.sweep(keep_one).await.unwrap();
    assert_eq!((swept.events, swept.deliveries, swept.attempts), (2, 2, 2), "{swept:?}");
    let kept = vec![orders[3].id.clone(), orders[2].id.clone()];
    assert_eq!(listed(&runner).await, kept);
    assert!(runner.payload(&orders[0].id).await.unwrap().is_none(), "gone from the log");
    assert!(runner.queue().dead_letters().await.unwrap().is_empty());
    assert!(runner.deliveries(DeliveryStatus::Dead, None, 10).await.unwrap().is_empty());
    assert_eq!(runner.queue_stats(now_ms()).await.unwrap().dead, 0);
    // The other node forgets it too (at its own pass, or within a minute).
    reader.sweep(keep_one).await.unwrap();
    assert_eq!(listed(&reader).await, kept);

    // The running delivery ends after the sweep, and goes at the next pass.
    let running = running.unwrap();
    let delivered = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
    runner.settle(running.claim_id(), attempt(), delivered).await.unwrap();
    let pending = runner.deliveries(DeliveryStatus::Pending, None, 10).await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    runner.sweep(keep_one).await.unwrap();
    assert_eq!(listed(&runner).await, [orders[3].id.clone()]);

    // Nothing younger than `min_age_ms` goes (it still records its webhook's delivery id).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let by_age = Retention { max_age_ms: 1, max_events: 0, chunk: 1000, min_age_ms: 0 };
    runner.sweep(Retention { min_age_ms: 3_600_000, ..by_age }).await.unwrap();
    runner.sweep(Retention { max_events: 1, min_age_ms: 3_600_000, ..by_age }).await.unwrap();
    assert_eq!(listed(&runner).await, [orders[3].id.clone()]);
    // By age: everything stored before now. A node started on the emptied log reads it.
    runner.sweep(by_age).await.unwrap();
    assert!(listed(&runner).await.is_empty());
    let fresh = node_queueing(&servers, false).await;
    assert!(listed(&fresh).await.is_empty());

    // What is stored after a sweep is kept and shown as before; a node whose own limits are
    // off forgets what another swept.
    let later = event("orders/create");
    append(&runner, vec![later.clone()], vec![]).await;
    let no_limits = Retention { max_age_ms: 0, max_events: 0, chunk: 1000, min_age_ms: 0 };
    reader.sweep(no_limits).await.unwrap();
    assert_eq!(listed(&reader).await, std::slice::from_ref(&later.id));
    assert!(reader.payload(&later.id).await.unwrap().is_some());

    // One append of two events, the newer kept by the count: the older one, stored with it,
    // stays with it.
    let (first_of_two, second_of_two) = (event("orders/a"), event("orders/b"));
    append(&runner, vec![first_of_two.clone(), second_of_two.clone()], vec![]).await;
    runner.sweep(keep_one).await.unwrap();
    assert_eq!(listed(&runner).await, [second_of_two.id.clone(), first_of_two.id.clone()]);

    // An event with a dead delivery and a running one stays whole, its dead letter too, until
    // the running one ends.
    let both = event("orders/both");
    let mut to_other = to(&both, "orders", None);
    to_other.target = "other".into();
    append(&runner, vec![both.clone()], vec![to(&both, "orders", None), to_other]).await;
    append(&runner, vec![event("orders/newer")], vec![]).await;
    let (mut dead, mut running) = (None, None);
    for claimed in claim_until(&runner, 2).await {
        if claimed.target == "other" { running = Some(claimed) } else { dead = Some(claimed) }
    }
    let died = Outcome::Dead { error: "400".into(), events: vec![], deliveries: vec![] };
    runner.settle(dead.unwrap().claim_id(), attempt(), died).await.unwrap();
    runner.sweep(keep_one).await.unwrap();
    assert!(listed(&runner).await.contains(&both.id));
    assert_eq!(runner.queue().dead_letters().await.unwrap().len(), 1);
    let delivered = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
    runner.settle(running.unwrap().claim_id(), attempt(), delivered).await.unwrap();
    runner.sweep(keep_one).await.unwrap();
    assert!(!listed(&runner).await.contains(&both.id));
    assert!(runner.queue().dead_letters().await.unwrap().is_empty());
}
