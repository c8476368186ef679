//! The delivery queue on JetStream, used by two plugboard nodes (two connections) at once:
//! leases, retries, FIFO per ordering key and route concurrency across nodes, dead letters and
//! replay, and outcomes stored once when a claimer dies after storing them.

use std::time::{Duration, Instant};

use super::{Connect as _, Servers, event};
use crate::StoreError;
use crate::log::{Append, EventLog, QueuedDelivery};
use crate::nats::queue::settlement;
use crate::nats::{NatsLog, NatsQueue, QueueRoute, QueueSettings};
use crate::queue::{Attempt, AttemptOutcome, Claimed, DeliveryId, DeliveryQueue, Outcome};
use plugboard_runtime::clock::now_ms;
use plugboard_runtime::types::Event;

const LEASE: Duration = Duration::from_secs(2);

/// A plugboard node's queue: its own connection to server `i`.
async fn node(
    servers: &Servers,
    i: usize,
    routes: &[(&str, Option<usize>)],
    lease: Duration,
) -> (std::sync::Arc<NatsLog>, std::sync::Arc<NatsQueue>) {
    let log = servers.connect(i, 1).await;
    let routes = routes
        .iter()
        .map(|(name, concurrency)| QueueRoute { name: (*name).into(), concurrency: *concurrency })
        .collect();
    let queue = NatsQueue::connect(
        log.clone(),
        &servers.settings(i, 1),
        QueueSettings { lease, routes, fan_out: true },
    )
    .await
    .unwrap();
    (log, queue)
}

fn queued(events: &[Event], route: &str, keys: &[Option<&str>]) -> Append {
    let deliveries = events
        .iter()
        .zip(keys)
        .map(|(e, key)| QueuedDelivery {
            event_id: e.id.clone(),
            route: route.into(),
            target: "assess".into(),
            action: None,
            order_key: key.map(Into::into),
        })
        .collect();
    Append {
        instance: "shop".into(),
        delivery_id: None,
        dedup_window_ms: 0,
        events: events.to_vec(),
        deliveries,
    }
}

/// What one claim takes now.
async fn claim(queue: &NatsQueue) -> Vec<Claimed> {
    queue.claim(now_ms(), 10, queue.lease, &mut |_| true).await.unwrap()
}

/// Claims until `count` deliveries are taken, or `patience` passed.
async fn claim_until(queue: &NatsQueue, count: usize, patience: Duration) -> Vec<Claimed> {
    let deadline = Instant::now() + patience;
    let mut taken = Vec::new();
    while taken.len() < count && Instant::now() < deadline {
        taken.extend(claim(queue).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    taken
}

fn kinds(claimed: &[Claimed]) -> Vec<&str> {
    let mut kinds: Vec<&str> = claimed.iter().map(|c| c.event.kind.as_str()).collect();
    kinds.sort();
    kinds
}

fn attempt(number: u32) -> Attempt {
    Attempt { number, duration_us: 1_000, handler: Some("assess@1.0.0 sha256:00".into()) }
}

fn delivered(events: Vec<Event>, deliveries: Vec<QueuedDelivery>) -> Outcome {
    Outcome::Delivered { events, deliveries, output: None }
}

/// Any node runs any delivery, once: a retry comes back when due, on whichever node claims
/// it; a claimer that dies loses its delivery to another node once its lease runs out, that
/// attempt counted, and its late answer is refused; produced events are queued in turn.
#[tokio::test]
async fn any_node_runs_a_delivery_and_a_dead_claimers_lease_passes_to_another() {
    let servers = Servers::start(1, true);
    let (log, first) = node(&servers, 0, &[("orders", None)], LEASE).await;
    let (_, second) = node(&servers, 0, &[("orders", None)], LEASE).await;
    let events = vec![event("ok"), event("flaky"), event("crash")];
    log.append(queued(&events, "orders", &[None, None, None])).await.unwrap();

    let taken = claim_until(&first, 3, Duration::from_secs(10)).await;
    assert_eq!(kinds(&taken), ["crash", "flaky", "ok"]);
    assert!(taken.iter().all(|c| c.attempt == 1 && c.route == "orders" && c.target == "assess"));
    assert!(claim(&second).await.is_empty(), "held by the first node");
    let by_kind = |kind: &str| taken.iter().find(|c| c.event.kind == kind).unwrap().clone();

    // Delivered, producing an event delivered in turn.
    let produced = event("produced");
    let next = queued(std::slice::from_ref(&produced), "orders", &[None]);
    first
        .settle(by_kind("ok").claim_id(), attempt(1), delivered(next.events, next.deliveries))
        .await
        .unwrap();
    // Failed: tried again in half a second, by whichever node claims first.
    let retry = Outcome::Retry { next_at_ms: now_ms() + 500, error: "503 from upstream".into() };
    first.settle(by_kind("flaky").claim_id(), attempt(1), retry).await.unwrap();
    // "crash" is never settled: its claimer is gone.

    let again = claim_until(&second, 3, Duration::from_secs(15)).await;
    assert_eq!(kinds(&again), ["crash", "flaky", "produced"]);
    let attempts: Vec<(&str, u32)> = again.iter().map(|c| (c.event.kind.as_str(), c.attempt)).collect();
    assert!(attempts.contains(&("flaky", 2)) && attempts.contains(&("crash", 2)), "{attempts:?}");
    assert!(attempts.contains(&("produced", 1)), "{attempts:?}");
    let late = first.settle(by_kind("crash").claim_id(), attempt(1), delivered(vec![], vec![])).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert!(matches!(first.renew(by_kind("crash").claim_id(), now_ms()).await, Err(StoreError::Conflict(_))));
    for claimed in &again {
        second.settle(claimed.claim_id(), attempt(claimed.attempt), delivered(vec![], vec![])).await.unwrap();
    }
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    assert!(claim(&first).await.is_empty() && claim(&second).await.is_empty(), "each delivered once");
    // The produced event is stored once, with the three first.
    let stored = log.events_after(0, 100).await.unwrap();
    let kinds: Vec<&str> = stored.iter().map(|(_, e)| e.kind.as_str()).collect();
    assert_eq!(kinds, ["ok", "flaky", "crash", "produced"]);
    assert_eq!(second.queue_stats(now_ms()).await.unwrap().pending, 0);
}

/// A claim its claimer neither settled nor released (both failed: the cluster was out of
/// reach) is not held in memory past its lease: claims go on, and what it held is let go.
#[tokio::test]
async fn a_claim_never_settled_is_not_held_past_its_lease() {
    let servers = Servers::start(1, true);
    let (log, queue) = node(&servers, 0, &[("orders", None)], LEASE).await;
    log.append(queued(&[event("lost")], "orders", &[None])).await.unwrap();
    let first = claim_until(&queue, 1, Duration::from_secs(10)).await;
    assert_eq!(queue.holding(), 1);
    tokio::time::sleep(LEASE * 2).await;
    let again = claim_until(&queue, 1, Duration::from_secs(10)).await;
    assert_eq!(again[0].attempt, 2, "the delivery came back once its lease ran out");
    assert_eq!(queue.holding(), 1, "only the new claim is held");
    let late = queue.settle(first[0].claim_id(), attempt(1), delivered(vec![], vec![])).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
}

/// Deliveries with one ordering key run one at a time, in order, whichever node claims them,
/// through retries; a route's concurrency limit holds across nodes.
#[tokio::test]
async fn order_and_concurrency_hold_across_nodes() {
    let servers = Servers::start(1, true);
    let routes = [("ordered", None), ("single", Some(1))];
    // Leases longer than the waits below, so that none runs out while a node looks.
    let lease = Duration::from_secs(8);
    let (log, first) = node(&servers, 0, &routes, lease).await;
    let (_, second) = node(&servers, 0, &routes, lease).await;
    let (a1, a2, b1) = (event("a/1"), event("a/2"), event("b/1"));
    log.append(queued(&[a1, a2, b1], "ordered", &[Some("a"), Some("a"), Some("b")])).await.unwrap();

    let heads = claim_until(&first, 2, Duration::from_secs(10)).await;
    assert_eq!(kinds(&heads), ["a/1", "b/1"]);
    let nothing = claim_until(&second, 1, Duration::from_millis(1_500)).await;
    assert!(nothing.is_empty(), "a/2 waits behind a/1: {:?}", kinds(&nothing));
    let a1 = heads.iter().find(|c| c.event.kind == "a/1").unwrap();
    let b1 = heads.iter().find(|c| c.event.kind == "b/1").unwrap();
    first.settle(b1.claim_id(), attempt(1), delivered(vec![], vec![])).await.unwrap();
    let retry = Outcome::Retry { next_at_ms: now_ms() + 300, error: "later".into() };
    first.settle(a1.claim_id(), attempt(1), retry).await.unwrap();
    // a/1 comes back before a/2, on the other node.
    let retried = claim_until(&second, 1, Duration::from_secs(10)).await;
    assert_eq!(kinds(&retried), ["a/1"]);
    assert_eq!(retried[0].attempt, 2);
    let early = claim_until(&first, 1, Duration::from_millis(800)).await;
    assert!(early.is_empty(), "a/2 still waits: {:?}", kinds(&early));
    second.settle(retried[0].claim_id(), attempt(2), delivered(vec![], vec![])).await.unwrap();
    let a2 = claim_until(&first, 1, Duration::from_secs(10)).await;
    assert_eq!(kinds(&a2), ["a/2"]);
    first.settle(a2[0].claim_id(), attempt(1), delivered(vec![], vec![])).await.unwrap();

    // One at a time on the route "single", whichever node asks.
    let (s1, s2) = (event("s/1"), event("s/2"));
    log.append(queued(&[s1, s2], "single", &[None, None])).await.unwrap();
    let one = claim_until(&first, 1, Duration::from_secs(10)).await;
    assert_eq!(kinds(&one), ["s/1"]);
    let more = claim_until(&first, 1, Duration::from_millis(800)).await;
    assert!(more.is_empty(), "the route's one slot is taken: {:?}", kinds(&more));
    let over = claim_until(&second, 1, Duration::from_millis(800)).await;
    assert!(over.is_empty(), "no slot left on any node: {:?}", kinds(&over));
    first.settle(one[0].claim_id(), attempt(1), delivered(vec![], vec![])).await.unwrap();
    assert_eq!(kinds(&claim_until(&second, 1, Duration::from_secs(10)).await), ["s/2"]);
}

/// A dead letter is listed by every node and replayed from any; a claimer that dies after
/// storing its outcome, but before the queue heard of it, does not get it stored twice.
#[tokio::test]
async fn dead_letters_are_replayed_from_any_node_and_outcomes_are_stored_once() {
    let servers = Servers::start(1, true);
    let (log, first) = node(&servers, 0, &[("orders", None)], LEASE).await;
    let (_, second) = node(&servers, 0, &[("orders", None)], LEASE).await;
    let doomed = event("doomed");
    log.append(queued(std::slice::from_ref(&doomed), "orders", &[None])).await.unwrap();
    let taken = claim_until(&first, 1, Duration::from_secs(10)).await;
    let dead = Outcome::Dead { error: "400 from upstream".into(), events: vec![], deliveries: vec![] };
    first.settle(taken[0].claim_id(), attempt(1), dead).await.unwrap();
    let listed = second.dead_letters().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].event_id.as_str(), listed[0].attempts), (doomed.id.as_str(), 1));
    assert_eq!(listed[0].last_error.as_deref(), Some("400 from upstream"));
    for hostile in ["", "x", "+1", "01", "1.2", "$KV.>", " 1"] {
        assert_eq!(second.replay(Some(DeliveryId::new(hostile))).await.unwrap(), 0, "{hostile:?}");
    }
    assert_eq!(second.replay(Some(listed[0].id.clone())).await.unwrap(), 1);
    assert!(second.dead_letters().await.unwrap().is_empty());
    let replayed = claim_until(&second, 1, Duration::from_secs(10)).await;
    assert_eq!((kinds(&replayed), replayed[0].attempt), (vec!["doomed"], 1), "attempts from zero again");

    // The claimer stores its outcome (an event) and dies before the queue hears of it: once its
    // lease is over the delivery comes back, is found settled, and is not run again.
    let queue_entry = second.held(&replayed[0].claim_id()).unwrap().queued;
    let (append, settles) = settlement(
        &queue_entry,
        attempt(1),
        AttemptOutcome::Delivered,
        None,
        vec![event("answer/1")],
        vec![],
        None,
    );
    log.append_record(append, Some(settles)).await.unwrap();
    drop(second);
    let again = claim_until(&first, 1, LEASE + Duration::from_secs(3)).await;
    assert!(again.is_empty(), "run again after its outcome was stored: {:?}", kinds(&again));
    let stored = log.events_after(0, 100).await.unwrap();
    let stored: Vec<&str> = stored.iter().map(|(_, e)| e.kind.as_str()).collect();
    assert_eq!(stored, ["doomed", "answer/1"]);

    // The same for a dead letter: the claimer that stored "dead" died before keeping the letter;
    // the node that finds the delivery settled keeps it, for any node to replay.
    let (_, third) = node(&servers, 0, &[("orders", None)], LEASE).await;
    let lost = event("lost");
    log.append(queued(std::slice::from_ref(&lost), "orders", &[None])).await.unwrap();
    let taken = claim_until(&third, 1, Duration::from_secs(10)).await;
    let queue_entry = third.held(&taken[0].claim_id()).unwrap().queued;
    let (append, settles) = settlement(
        &queue_entry,
        attempt(1),
        AttemptOutcome::Dead,
        Some("410 from upstream".into()),
        vec![],
        vec![],
        None,
    );
    log.append_record(append, Some(settles)).await.unwrap();
    drop(third);
    assert!(claim_until(&first, 1, LEASE + Duration::from_secs(3)).await.is_empty());
    let letters = first.dead_letters().await.unwrap();
    assert_eq!(letters.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(), [lost.id.as_str()]);
    assert_eq!(letters[0].last_error.as_deref(), Some("410 from upstream"));
}

/// A node whose lease differs from the one the queue was made with is refused at start, saying
/// so: its claims would run out while it still runs them, or outlast a dead node's.
#[tokio::test]
async fn a_node_with_another_lease_is_refused() {
    let servers = Servers::start(1, true);
    let _first = node(&servers, 0, &[("orders", None)], LEASE).await;
    let log = servers.connect(0, 1).await;
    let routes = vec![QueueRoute { name: "orders".into(), concurrency: None }];
    let other = QueueSettings { lease: LEASE * 3, routes, fan_out: true };
    let refused = NatsQueue::connect(log, &servers.settings(0, 1), other).await.err().unwrap().to_string();
    assert!(refused.contains("give every node the same lease_secs"), "{refused}");
}
