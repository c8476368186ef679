//! Where events are stored: the storage ports the pipeline, the ingress and the admin API use,
//! and their backends.
//!
//! Four ports, each what one side needs and no more:
//! - [`EventLog`] ([`log`]): append with delivery-id dedup, acknowledged once durable; read in
//!   order after a position; a commit notification;
//! - [`DeliveryQueue`] ([`queue`]): claim with a lease, settle, release, replay;
//! - [`ReadModel`] ([`read`]): listings a page at a time, traces, stats, jobs;
//! - the plugins' key-value port, `runtime::keyvalue::KvStore`.
//!
//! [`EventStore`] is the three event ports together, what a backend offers. Backends:
//! `SqliteStore` (`sqlite`, the embedded default behind the `sqlite` feature: one file, zero
//! setup) and [`MemoryStore`] ([`memory`]: nothing durable; the same pipeline tests run on
//! both); and `NatsStore` (`nats`, behind the `nats` feature: NATS JetStream, for several
//! nodes sharing one log, queue and read model). Nothing here knows the server, the pipeline or
//! a plugin's code: the pipeline depends on the ports, not the other way round.

mod error;
pub mod log;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
pub mod queue;
pub mod read;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::StoreError;
pub use log::{Append, Appended, EventLog, EventSummary, QueuedDelivery};
pub use memory::MemoryStore;
pub use queue::{
    Admit, Attempt, AttemptOutcome, Candidate, ClaimId, Claimed, DeliveryId, DeliveryQueue, DeliveryStatus,
    Outcome, QueueStats,
};
pub use read::{
    AttemptRecord, DeliveryDetail, DeliveryRecord, EventFilter, EventTrace, JobRecord, JobStatus,
    MinuteStats, PAYLOAD_PREVIEW_BYTES, PayloadPreview, ReadModel, TracedDelivery,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteCallLog, SqliteKv, SqliteRecordingLog, SqliteStore};

use std::future::Future;
use std::pin::Pin;

/// The route of async jobs: [`ReadModel::job`] reads a job's state from its delivery on it. (A
/// name the manifest reserves: no configured route may take it.)
pub use plugboard_runtime::manifest::pipeline::JOB_ROUTE;

/// What a port's method returns: a boxed future, so that the ports are object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The event ports together: what a backend of the pipeline implements, and what the server
/// holds (as `Arc<dyn EventStore>`, handing each part only the port it needs).
pub trait EventStore: EventLog + DeliveryQueue + ReadModel {}

impl<T: EventLog + DeliveryQueue + ReadModel> EventStore for T {}

/// How long the per-minute activity totals are kept.
#[cfg(any(feature = "sqlite", feature = "nats"))]
pub(crate) const MINUTE_STATS_KEPT_MS: u64 = 7 * 86_400_000;

/// How much history the store keeps. Only finished work goes: an event is deleted, with its
/// deliveries and their attempts, once none of its deliveries is pending (delivered and dead
/// ones alike), when it is older than `max_age_ms` or not among the newest `max_events`.
/// Expired webhook delivery ids go too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events stored longer ago than this go; 0 keeps them whatever their age.
    pub max_age_ms: u64,
    /// At most this many events stay (the oldest finished ones go first); 0: no count limit.
    pub max_events: u64,
    /// The most events one pass deletes, so that a pass holds the writer only briefly.
    pub chunk: u64,
    /// On NATS, nothing stored more recently than this goes, whatever the limits say: an
    /// append there is also the record of its webhook's delivery id (and a schedule's tick),
    /// so it stays for as long as those are recognised. SQLite keeps delivery ids apart from
    /// events and ignores it.
    pub min_age_ms: u64,
}

/// What one retention pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Events.
    pub events: u64,
    /// Their deliveries.
    pub deliveries: u64,
    /// The deliveries' attempts.
    pub attempts: u64,
    /// Expired webhook delivery ids.
    pub dedup_keys: u64,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, more: Swept) {
        self.events += more.events;
        self.deliveries += more.deliveries;
        self.attempts += more.attempts;
        self.dedup_keys += more.dedup_keys;
    }
}

/// A store whose history a retention pass bounds (the server runs one every
/// `retention_interval_secs`).
pub trait Sweep: Send + Sync + 'static {
    /// Deletes what is past `retention`, up to about `retention.chunk` events at a time.
    fn sweep(&self, retention: Retention) -> StoreFuture<'_, Swept>;
}

#[cfg(feature = "sqlite")]
impl Sweep for SqliteStore {
    fn sweep(&self, retention: Retention) -> StoreFuture<'_, Swept> {
        Box::pin(SqliteStore::sweep(self, retention))
    }
}

#[cfg(feature = "nats")]
impl Sweep for nats::NatsStore {
    fn sweep(&self, retention: Retention) -> StoreFuture<'_, Swept> {
        Box::pin(nats::NatsStore::sweep(self, retention))
    }
}

/// The ports' semantics, checked on every backend with the same test.
#[cfg(test)]
mod conformance {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use plugboard_runtime::types::Event;

    fn backends() -> Vec<(&'static str, Arc<dyn EventStore>, Option<tempfile::TempDir>)> {
        let memory: (&'static str, Arc<dyn EventStore>, _) = ("memory", Arc::new(MemoryStore::new()), None);
        #[cfg(feature = "sqlite")]
        {
            let dir = tempfile::tempdir().unwrap();
            let sqlite = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
            vec![memory, ("sqlite", sqlite, Some(dir))]
        }
        #[cfg(not(feature = "sqlite"))]
        vec![memory]
    }

    fn event(kind: &str) -> Event {
        Event::json(kind, "shop", &serde_json::json!({ "kind": kind })).unwrap()
    }

    fn to(e: &Event, route: &str, key: Option<&str>) -> QueuedDelivery {
        QueuedDelivery {
            event_id: e.id.clone(),
            route: route.into(),
            target: "t".into(),
            action: None,
            order_key: key.map(Into::into),
        }
    }

    async fn append(store: &dyn EventStore, events: Vec<Event>, deliveries: Vec<QueuedDelivery>) -> Appended {
        let append =
            Append { instance: "shop".into(), delivery_id: None, dedup_window_ms: 0, events, deliveries };
        store.append(append).await.unwrap()
    }

    async fn claim(store: &dyn EventStore, now: u64, lease_ms: u64) -> Vec<Claimed> {
        store.claim(now, 10, Duration::from_millis(lease_ms), &mut |_| true).await.unwrap()
    }

    fn kinds(claimed: &[Claimed]) -> Vec<&str> {
        claimed.iter().map(|c| c.event.kind.as_str()).collect()
    }

    fn once(ms: u64) -> Attempt {
        Attempt { number: 1, duration_us: ms * 1000, handler: None }
    }

    /// Leases, FIFO per ordering key, release, settle, replay and dedup, as the ports define
    /// them, on SQLite and in memory alike.
    #[tokio::test]
    async fn both_backends_keep_the_ports_semantics() {
        for (name, store, _dir) in backends() {
            let store = store.as_ref();
            let (a1, a2, b1, free) = (event("a/1"), event("a/2"), event("b/1"), event("free"));
            let deliveries = vec![
                to(&a1, "r", Some("a")),
                to(&a2, "r", Some("a")),
                to(&b1, "r", Some("b")),
                to(&free, "r", None),
            ];
            let events = vec![a1.clone(), a2.clone(), b1.clone(), free.clone()];
            assert_eq!(append(store, events, deliveries).await, Appended::Stored);
            // After the append: what it queued is due by then.
            let now = plugboard_runtime::clock::now_ms();

            // Only the head of each key is offered; a claim leases what it takes.
            let first = claim(store, now, 1_000).await;
            assert_eq!(kinds(&first), ["a/1", "b/1", "free"], "{name}");
            assert!(first.iter().all(|c| c.attempt == 1), "{name}");
            assert!(claim(store, now + 500, 1_000).await.is_empty(), "{name}: leases hold");

            // A refused candidate is left as it was, its attempt not counted.
            let refused = store.claim(now + 2_000, 10, Duration::from_secs(1), &mut |_| false).await.unwrap();
            assert!(refused.is_empty(), "{name}");

            // a/1 retries later: a/2 waits behind it (FIFO holds through retries).
            let retry = Outcome::Retry { next_at_ms: now + 10_000, error: "later".into() };
            store.settle(first[0].claim_id(), once(1), retry).await.unwrap();
            // b/1 is given back unsettled: not before now + 3 s, its attempt still counted.
            store.release(first[1].claim_id(), now + 3_000).await.unwrap();
            // free is delivered, producing an event.
            let produced =
                Outcome::Delivered { events: vec![event("out")], deliveries: vec![], output: None };
            store.settle(first[2].claim_id(), once(2), produced).await.unwrap();

            assert!(
                claim(store, now + 2_000, 1_000).await.is_empty(),
                "{name}: a/2 waits, b/1 is released later"
            );
            let later = claim(store, now + 3_000, 1_000).await;
            assert_eq!(kinds(&later), ["b/1"], "{name}");
            assert_eq!(later[0].attempt, 2, "{name}: the released claim's attempt stays counted");
            let dead = Outcome::Dead { error: "no".into(), events: vec![], deliveries: vec![] };
            store.settle(later[0].claim_id(), Attempt { number: 2, ..once(1) }, dead).await.unwrap();
            let retried = claim(store, now + 10_000, 1_000).await;
            assert_eq!(kinds(&retried), ["a/1"], "{name}");
            assert_eq!(retried[0].attempt, 2, "{name}");
            let done = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
            store.settle(retried[0].claim_id(), Attempt { number: 2, ..once(1) }, done).await.unwrap();
            let a2_claim = claim(store, now + 10_000, 1_000).await;
            assert_eq!(kinds(&a2_claim), ["a/2"], "{name}: then a/2");
            // Its claimer never settles it: once the lease ran out, it is offered again, that
            // attempt counted.
            let expired = claim(store, now + 11_000, 1_000).await;
            assert_eq!((kinds(&expired), expired[0].attempt), (vec!["a/2"], 2), "{name}");
            // The first claimer answers late: refused, and it changes nothing (nor can it renew
            // or release what it lost); the new claimer renews its lease.
            let late = Outcome::Dead { error: "late".into(), events: vec![], deliveries: vec![] };
            let lost = a2_claim[0].claim_id();
            let refused = store.settle(lost.clone(), once(1), late).await;
            assert!(matches!(refused, Err(StoreError::Conflict(_))), "{name}: {refused:?}");
            assert!(matches!(store.renew(lost.clone(), now + 99_000).await, Err(StoreError::Conflict(_))));
            assert!(matches!(store.release(lost, now).await, Err(StoreError::Conflict(_))), "{name}");
            store.renew(expired[0].claim_id(), now + 20_000).await.unwrap();
            assert!(claim(store, now + 15_000, 1_000).await.is_empty(), "{name}: the renewed lease holds");
            let done = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
            store.settle(expired[0].claim_id(), Attempt { number: 2, ..once(1) }, done).await.unwrap();

            // The read model sees it all, a page at a time.
            let delivered = store.deliveries(DeliveryStatus::Delivered, None, 10).await.unwrap();
            assert_eq!(delivered.len(), 3, "{name}");
            let dead = store.deliveries(DeliveryStatus::Dead, None, 10).await.unwrap();
            assert_eq!(
                dead.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
                [b1.id.as_str()],
                "{name}"
            );
            let page = store.deliveries(DeliveryStatus::Delivered, None, 1).await.unwrap();
            let next =
                store.deliveries(DeliveryStatus::Delivered, Some(page[0].id.clone()), 1).await.unwrap();
            assert_eq!([page[0].id.clone(), next[0].id.clone()].len(), 2, "{name}");
            assert_ne!(page[0].id, next[0].id, "{name}");
            let detail = store.delivery(dead[0].id.clone()).await.unwrap().unwrap();
            assert_eq!(detail.attempts.len(), 1, "{name}");
            assert_eq!(detail.attempts[0].outcome, AttemptOutcome::Dead, "{name}");
            let trace = store.trace(&free.id).await.unwrap().unwrap();
            assert_eq!(trace.deliveries[0].status, DeliveryStatus::Delivered, "{name}");
            assert_eq!(store.queue_stats(now + 10_000).await.unwrap().dead, 1, "{name}");

            // A claim never made settles nothing.
            let never = ClaimId { delivery: dead[0].id.clone(), attempt: 7, lease: 7 };
            let done = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
            assert!(matches!(store.settle(never, once(1), done).await, Err(StoreError::Conflict(_))));

            // Ids this backend never made are nobody: no error, nothing found or replayed.
            for hostile in ["", "+1", "01", "-0", "x", "99999999999999999999999", " 1"] {
                let id = DeliveryId::new(hostile);
                assert!(store.delivery(id.clone()).await.unwrap().is_none(), "{name}: {hostile:?}");
                assert_eq!(store.replay(Some(id.clone())).await.unwrap(), 0, "{name}: {hostile:?}");
                assert!(
                    store.deliveries(DeliveryStatus::Dead, Some(id), 10).await.unwrap().is_empty(),
                    "{name}: {hostile:?}"
                );
            }
            // Replay puts the dead letter back, attempts from zero.
            assert_eq!(store.replay(Some(dead[0].id.clone())).await.unwrap(), 1, "{name}");
            let again = claim(store, now + 30_000, 1_000).await;
            assert_eq!((kinds(&again), again[0].attempt), (vec!["b/1"], 1), "{name}");

            // An append with a delivery id is stored once within its window.
            let dedup = |e: Event| Append {
                instance: "shop".into(),
                delivery_id: Some("d-1".into()),
                dedup_window_ms: 60_000,
                events: vec![e],
                deliveries: vec![],
            };
            assert_eq!(store.append(dedup(event("x"))).await.unwrap(), Appended::Stored, "{name}");
            assert_eq!(store.append(dedup(event("x"))).await.unwrap(), Appended::Duplicate, "{name}");
            assert!(store.is_duplicate("shop", "d-1").await.unwrap(), "{name}");
            assert!(!store.is_duplicate("other", "d-1").await.unwrap(), "{name}");
            // The same event id twice is a conflict, and nothing of that append is stored.
            let before = store.last_position().await.unwrap();
            let twice = Append {
                instance: "shop".into(),
                delivery_id: None,
                dedup_window_ms: 0,
                events: vec![event("y"), a1.clone()],
                deliveries: vec![],
            };
            assert!(matches!(store.append(twice).await, Err(StoreError::Conflict(_))), "{name}");
            assert_eq!(store.last_position().await.unwrap(), before, "{name}");
            let after = store.events_after(0, 100).await.unwrap();
            assert_eq!(after.len(), 6, "{name}: four, one produced, one deduplicated append");
        }
    }

    /// A route whose deliveries the pipeline refuses (at its concurrency limit) does not hold
    /// up the others, however many of its deliveries are due before theirs.
    #[tokio::test]
    async fn a_refused_route_does_not_hold_up_the_others() {
        for (name, store, _dir) in backends() {
            let store = store.as_ref();
            let busy: Vec<Event> = (0..1_500).map(|_| event("busy")).collect();
            let deliveries = busy.iter().map(|e| to(e, "busy", None)).collect();
            append(store, busy, deliveries).await;
            let other = event("other");
            append(store, vec![other.clone()], vec![to(&other, "other", None)]).await;
            let now = plugboard_runtime::clock::now_ms() + 1_000;
            let mut not_busy = |c: &Candidate<'_>| c.route != "busy";
            let claimed = store.claim(now, 4, Duration::from_secs(60), &mut not_busy).await.unwrap();
            assert_eq!(kinds(&claimed), ["other"], "{name}");
        }
    }

    /// A settlement that cannot be stored (the store closed, as a failed disk) leaves the claim
    /// as it was: held until its lease runs out, then the delivery comes back with that attempt
    /// counted.
    #[tokio::test]
    async fn a_failed_settlement_leaves_the_claim_held() {
        /// A store, with how to close it.
        type Closable = (&'static str, Arc<dyn EventStore>, Box<dyn Fn()>);
        let memory = Arc::new(MemoryStore::new());
        let closing = memory.clone();
        let memory: Closable = ("memory", memory, Box::new(move || closing.close()));
        #[cfg(feature = "sqlite")]
        let dir = tempfile::tempdir().unwrap();
        #[cfg(feature = "sqlite")]
        let stores = {
            let sqlite = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
            let closing = sqlite.clone();
            let sqlite: Closable = ("sqlite", sqlite, Box::new(move || closing.close()));
            vec![memory, sqlite]
        };
        #[cfg(not(feature = "sqlite"))]
        let stores = vec![memory];
        for (name, store, close) in stores {
            let store = store.as_ref();
            let e = event("e");
            append(store, vec![e.clone()], vec![to(&e, "r", None)]).await;
            let now = plugboard_runtime::clock::now_ms();
            let first = claim(store, now, 1_000).await;
            close();
            let done = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
            let failed = store.settle(first[0].claim_id(), once(1), done).await;
            assert!(matches!(failed, Err(StoreError::Closed)), "{name}: {failed:?}");
            assert!(claim(store, now + 500, 1_000).await.is_empty(), "{name}: still held");
            // Its lease runs out as it would have: the delivery comes back, that attempt counted.
            let again = claim(store, now + 2_000, 1_000).await;
            assert_eq!(again.iter().map(|c| c.attempt).collect::<Vec<_>>(), [2], "{name}");
        }
    }
}
