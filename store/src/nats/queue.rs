//! The delivery queue on JetStream: any node claims any delivery, a claim is a consumer's ack
//! wait, retries are delayed negative acknowledgements, and a node killed mid-delivery loses
//! its claims to the others when their ack wait runs out.
//!
//! - **Queueing.** One node at a time runs the fan-out: it holds the key `fan-out` in the slots
//!   bucket (which expires one lease after its last write; it renews it every third of a lease,
//!   and another node takes over when it stops). It reads the log through one durable consumer,
//!   in order, and publishes each append's deliveries to the work-queue stream `<stream>_QUEUE`
//!   on `<prefix>.queue.<route>.<ordering key>` (both SHA-256 tokens; `_` without a key), with a
//!   message id made from the delivery's id, then acknowledges the append: a fan-out killed
//!   between the two has the append queued again by the next, and JetStream drops the repeated
//!   publishes. One reader keeps deliveries in the log's order (a node that stalls for longer
//!   than a lease while it holds the key can interleave its last appends with its successor's).
//! - **Claiming.** One durable pull consumer per route (its ack wait is the lease). A delivery
//!   with an ordering key runs only while it is the oldest message left on its subject: the
//!   one before it (running, or waiting for its retry) keeps it waiting, on every node. A
//!   route's concurrency is a set of slots in the key-value bucket `<stream>_SLOTS`, whose
//!   entries expire one lease after they were last written: a claim takes a slot before it
//!   takes a delivery, so the limit holds across nodes, and a dead node's slots come free.
//! - **Attempts and fencing.** Each delivery claimed at least once has an entry in
//!   `<stream>_CLAIMS` (until it is settled): its attempts, which claim holds it, its last
//!   error. Claiming, renewing, releasing and settling write it at the revision the claim last
//!   saw, so a claimer whose lease ran out (and whose delivery another node took) is refused
//!   with a conflict before it changes anything.
//! - **Settling.** What an attempt produced, and the attempt itself, are appended to the log
//!   under an id made from the delivery, its replay generation and (for a retry) the attempt:
//!   a claimer that dies between the append and the acknowledgement, and the node that runs the
//!   delivery again, store its events once; a delivery handed out again whose final outcome is
//!   in the log already is acknowledged, not run again. Dead letters are kept in
//!   `<stream>_DEAD` until replayed.
//! - **Configuration.** Every node must be given the same lease: a node whose lease differs from
//!   the one the consumers and the slots bucket were made with is refused at start.
//!
//! Time is the servers': a claim's `now_ms` is not used (a delivery is due when JetStream
//! redelivers it), and every claim asks for the lease the consumers were made with.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, kv, stream};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use super::record::{Record, Settlement, StoredDelivery, StoredEvent};
use super::{
    INDEX_BITS, NatsLog, NatsSettings, PUBLISH_DEDUP_WINDOW, PULL_GRACE, bucket, compare_and_set, lost_race,
    next_within, token, unavailable,
};
use crate::log::{Append, Appended};
use crate::queue::{
    Admit, Attempt, AttemptOutcome, Candidate, ClaimId, Claimed, DeliveryId, DeliveryQueue, Outcome,
    QueueStats,
};
use crate::read::DeliveryRecord;
use crate::{DeliveryStatus, StoreError, StoreFuture};
use plugboard_runtime::clock::now_ms;

/// The log's instance name for the appends that settle attempts.
const SETTLEMENTS: &str = "plugboard/settlements";

/// How long a delivery refused by the pipeline (its route busy on this node) waits before
/// another claim is offered it.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// The longest a delivery waits behind the one before it with its ordering key before it asks
/// again.
const ORDER_PAUSE: Duration = Duration::from_secs(1);

/// Deliveries a route's consumer has handed out and not yet seen acknowledged: running,
/// waiting for a retry, or waiting behind their ordering key. Past it, the route's other
/// deliveries wait.
const MAX_OUTSTANDING: i64 = 65_536;

/// How long a delivery's claims entry outlives its last write.
const CLAIMS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A route whose deliveries the queue hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRoute {
    /// Its name.
    pub name: String,
    /// The most of its deliveries running at once across all nodes; unlimited when absent.
    pub concurrency: Option<usize>,
}

/// How the queue runs.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long a claim holds a delivery unless renewed: the consumers' ack wait, and how long
    /// a concurrency slot outlives a node that died holding it. Every claim asks for this lease.
    pub lease: Duration,
    /// The routes whose deliveries this node runs.
    pub routes: Vec<QueueRoute>,
    /// Whether this node queues the log's deliveries (every server does; an operator's command,
    /// which only reads or replays, does not: killed while it held an append, it would hold up
    /// the queue for the fan-out's ack wait).
    pub fan_out: bool,
}

/// A delivery as queued: everything a claimer needs, its event included. (Unknown fields are
/// ignored, here and in every record nodes share: during a rolling upgrade an older node reads
/// what a newer one wrote.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Queued {
    /// The delivery's id: the log position of the append that queued it, and its index there.
    id: String,
    /// Which replay of it: 0, then one more each time a dead letter is replayed.
    generation: u32,
    delivery: StoredDelivery,
    event: StoredEvent,
}

/// A delivery's claims, as kept in the claims bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ClaimState {
    generation: u32,
    /// Attempts counted (each claim counts one).
    attempt: u32,
    /// The claim that holds it last ([`Claimed::lease`]).
    serial: u64,
    last_error: Option<String>,
}

/// A dead letter, as kept in the dead-letter bucket until replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeadLetter {
    queued: Queued,
    attempts: u32,
    error: String,
}

/// A route's consumer.
struct RouteQueue {
    name: String,
    concurrency: Option<usize>,
    consumer: consumer::PullConsumer,
    /// The first token of its slots' keys.
    slot_prefix: String,
}

/// A claim this node holds.
#[derive(Clone)]
pub(super) struct Held {
    message: jetstream::Message,
    pub(super) queued: Queued,
    state: ClaimState,
    /// The claims bucket's revision of the delivery's entry, as this claim last wrote it.
    revision: u64,
    /// The concurrency slot it holds, and that entry's revision.
    slot: Option<(String, u64)>,
    /// When it was claimed or last renewed: past two leases, its lease has surely run out.
    renewed: tokio::time::Instant,
}

/// The delivery queue on JetStream.
pub struct NatsQueue {
    log: Arc<NatsLog>,
    queue: stream::Stream,
    prefix: String,
    claims: kv::Store,
    /// Dead letters, kept until replayed.
    dead: kv::Store,
    slots: kv::Store,
    routes: Vec<RouteQueue>,
    pub(super) lease: Duration,
    next_route: AtomicUsize,
    serials: AtomicU64,
    held: Mutex<HashMap<u64, Held>>,
    fan_out: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        if let Some(fan_out) = &self.fan_out {
            fan_out.abort();
        }
    }
}

/// What a claim found one fetched message to be.
enum Inspected {
    /// Not this claim's: waiting behind its key, settled already, or not a delivery.
    Passed,
    /// A delivery the pipeline may take.
    Candidate(Box<Found>),
}

/// A delivery a claim may take, as read.
struct Found {
    message: jetstream::Message,
    queued: Queued,
    event: plugboard_runtime::types::Event,
    /// Its claims entry's revision, to count the attempt at.
    revision: Option<u64>,
    /// What earlier claims of this generation counted.
    previous: Option<ClaimState>,
    attempt: u32,
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("{what}: {e}"))
}

/// A node configured with another lease than the cluster's queue was made with.
fn different_lease(what: &str, found: Duration, asked: Duration) -> StoreError {
    StoreError::Failed(format!(
        "{what} holds deliveries for {} s, this node's lease_secs is {}: give every node the same \
         lease_secs (or remove the queue's consumers and buckets to change it)",
        found.as_secs(),
        asked.as_secs()
    ))
}

/// One of the queue's buckets, `{stream}_{suffix}`: a value per key, on the stream's replicas'
/// disks, each entry kept `max_age` after its last write (zero: until deleted).
fn queue_bucket(settings: &NatsSettings, suffix: &str, max_age: Duration) -> kv::Config {
    kv::Config {
        bucket: format!("{}_{suffix}", settings.stream),
        history: 1,
        max_age,
        num_replicas: settings.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

impl NatsQueue {
    /// Creates (or finds) the queue's stream, buckets and consumers next to `log`'s stream,
    /// and starts this node's fan-out.
    pub async fn connect(
        log: Arc<NatsLog>,
        settings: &NatsSettings,
        queue: QueueSettings,
    ) -> Result<Arc<Self>, StoreError> {
        let js = log.js.clone();
        let prefix = settings.subject_prefix.clone();
        let replicas = settings.replicas;
        let name = format!("{}_QUEUE", settings.stream);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.queue.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            num_replicas: replicas,
            duplicate_window: PUBLISH_DEDUP_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let stream = js.get_or_create_stream(config).await.map_err(|e| {
            unavailable(&format!("cannot create the stream {name} with {replicas} replicas"), e)
        })?;
        // What a delivered delivery leaves (a delete marker) goes after a week, as does the
        // entry of one nobody claimed for a week (its attempts then count from 1).
        let claims = bucket(&js, queue_bucket(settings, "CLAIMS", CLAIMS_KEPT)).await?;
        let dead = bucket(&js, queue_bucket(settings, "DEAD", Duration::ZERO)).await?;
        let slots = bucket(&js, queue_bucket(settings, "SLOTS", queue.lease)).await?;
        let slots_age =
            slots.status().await.map_err(|e| unavailable("reading the slots bucket", e))?.max_age();
        if slots_age != queue.lease {
            return Err(different_lease(
                &format!("the bucket {}_SLOTS", settings.stream),
                slots_age,
                queue.lease,
            ));
        }
        let mut routes = Vec::new();
        for route in &queue.routes {
            let tag = token(&route.name);
            let config = consumer::pull::Config {
                durable_name: Some(format!("route-{}", &tag[..32])),
                description: Some(format!("deliveries of the route {}", route.name)),
                filter_subject: format!("{prefix}.queue.{tag}.>"),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: queue.lease,
                max_ack_pending: MAX_OUTSTANDING,
                num_replicas: replicas,
                ..Default::default()
            };
            let name = format!("route-{}", &tag[..32]);
            if let Ok(mut existing) = stream.get_consumer::<consumer::pull::Config>(&name).await
                && let Ok(info) = existing.info().await
                && info.config.ack_wait != queue.lease
            {
                let what = format!("the consumer of the route {}", route.name);
                return Err(different_lease(&what, info.config.ack_wait, queue.lease));
            }
            let consumer = stream.create_consumer(config).await.map_err(|e| {
                unavailable(&format!("cannot create the consumer of the route {}", route.name), e)
            })?;
            routes.push(RouteQueue {
                name: route.name.clone(),
                concurrency: route.concurrency,
                consumer,
                slot_prefix: tag[..32].to_owned(),
            });
        }
        let fan_out = log
            .stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(FAN_OUT_CONSUMER.into()),
                description: Some("queues the deliveries of each append, one append at a time".into()),
                filter_subject: format!("{prefix}.append.>"),
                ack_policy: consumer::AckPolicy::Explicit,
                // A dead holder's appends come back as its key expires.
                ack_wait: queue.lease,
                // Read by one node at a time (the holder of the `fan-out` key), in order.
                max_ack_pending: 4_096,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("cannot create the fan-out consumer", e))?;
        let fan_out = queue
            .fan_out
            .then(|| tokio::spawn(fan_out_forever(js, fan_out, prefix.clone(), slots.clone(), queue.lease)));
        // Serials unique among every node's claims: each node starts from a random point.
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish() >> 1;
        Ok(Arc::new(NatsQueue {
            log,
            queue: stream,
            prefix,
            claims,
            dead,
            slots,
            routes,
            lease: queue.lease,
            next_route: AtomicUsize::new(0),
            serials: AtomicU64::new(seed),
            held: Mutex::new(HashMap::new()),
            fan_out,
        }))
    }

    /// The claims bucket's entry of a delivery: its revision (to write it back) and state.
    async fn state(&self, id: &str) -> Result<(Option<u64>, Option<ClaimState>), StoreError> {
        let entry = self.claims.entry(id).await.map_err(|e| unavailable("reading a delivery's claims", e))?;
        let Some(entry) = entry else { return Ok((None, None)) };
        if entry.operation != kv::Operation::Put {
            return Ok((Some(entry.revision), None));
        }
        let state = serde_json::from_slice(&entry.value).map_err(|e| failed("a delivery's claims", e))?;
        Ok((Some(entry.revision), Some(state)))
    }

    /// Writes a delivery's state if its entry is still at `revision` (`None`: there is none),
    /// answering the new revision; a conflict when another claim wrote it since.
    async fn write_state(
        &self,
        id: &str,
        state: &ClaimState,
        revision: Option<u64>,
    ) -> Result<u64, StoreError> {
        let value: bytes::Bytes =
            serde_json::to_vec(state).map_err(|e| failed("a delivery's claims", e))?.into();
        match compare_and_set(&self.claims, id, value, revision).await {
            Ok(Some(written)) => Ok(written),
            Ok(None) => Err(StoreError::Conflict(format!("delivery {id}"))),
            Err(e) => Err(unavailable("writing a delivery's claims", e)),
        }
    }

    /// Takes up to `want` of `route`'s free concurrency slots (all it wants when unlimited).
    async fn take_slots(
        &self,
        route: &RouteQueue,
        want: usize,
    ) -> Result<Vec<Option<(String, u64)>>, StoreError> {
        let Some(limit) = route.concurrency else { return Ok(vec![None; want]) };
        let mut taken = Vec::new();
        for index in 0..limit.max(1) {
            if taken.len() == want {
                break;
            }
            let key = format!("{}.{index}", route.slot_prefix);
            match self.slots.create(&key, bytes::Bytes::new()).await {
                Ok(revision) => taken.push(Some((key, revision))),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists || lost_race(&e) => {}
                Err(e) => {
                    self.free_slots(taken).await;
                    return Err(unavailable("taking a concurrency slot", e));
                }
            }
        }
        Ok(taken)
    }

    async fn free_slots(&self, slots: impl IntoIterator<Item = Option<(String, u64)>>) {
        for (key, revision) in slots.into_iter().flatten() {
            // A slot not freed comes free one lease after it was last written.
            if let Err(e) = self.slots.delete_expect_revision(&key, Some(revision)).await {
                tracing::debug!(error = %e, "freeing concurrency slot {key}");
            }
        }
    }

    /// Whether the message at `sequence` is the oldest one left on `subject`.
    async fn is_head(&self, subject: &str, sequence: u64) -> Result<bool, StoreError> {
        let first = self.queue.raw_message_builder().sequence(1).next_by_subject(subject).send().await;
        match first {
            Ok(first) => Ok(first.sequence >= sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(true),
            Err(e) => Err(unavailable("reading the queue", e)),
        }
    }

    async fn claim_due(
        &self,
        limit: usize,
        lease: Duration,
        admit: &mut Admit<'_>,
    ) -> Result<Vec<Claimed>, StoreError> {
        if lease != self.lease {
            return Err(StoreError::Failed(format!(
                "a claim asked for a lease of {lease:?}; this queue's consumers hold deliveries for {:?}",
                self.lease
            )));
        }
        // Claims whose settling and releasing both failed (the cluster was unreachable) are
        // held no longer than their lease, which ran out long ago: the delivery went back.
        if let Ok(mut all) = self.held.lock() {
            all.retain(|_, held| held.renewed.elapsed() < self.lease * 2);
        }
        let mut taken = Vec::new();
        let count = self.routes.len();
        // Each claim starts at another route, so that none waits behind the others.
        let start = self.next_route.fetch_add(1, Ordering::Relaxed);
        for k in 0..count {
            if taken.len() >= limit {
                break;
            }
            let route = &self.routes[(start + k) % count];
            if let Err(e) = self.claim_from(route, limit, admit, &mut taken).await {
                // What was claimed before the failure is held: it must run, not wait out its
                // lease unseen.
                if taken.is_empty() {
                    return Err(e);
                }
                tracing::warn!(error = %e, claimed = taken.len(), "claiming deliveries stopped early");
                break;
            }
        }
        Ok(taken)
    }

    async fn claim_from(
        &self,
        route: &RouteQueue,
        limit: usize,
        admit: &mut Admit<'_>,
        taken: &mut Vec<Claimed>,
    ) -> Result<(), StoreError> {
        while taken.len() < limit {
            let slots = self.take_slots(route, limit - taken.len()).await?;
            if slots.is_empty() {
                return Ok(());
            }
            let batch = route.consumer.fetch().max_messages(slots.len()).messages().await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    self.free_slots(slots).await;
                    return Err(unavailable(&format!("fetching deliveries of the route {}", route.name), e));
                }
            };
            let mut messages = Vec::new();
            while let Some(message) = next_within(&mut batch, PULL_GRACE).await {
                match message {
                    Ok(message) => messages.push(message),
                    Err(e) => {
                        tracing::debug!(error = %e, "fetching deliveries");
                        break;
                    }
                }
            }
            let fetched = messages.len();
            // What each is, in parallel; then the pipeline's say, in order; then the claims,
            // in parallel again: a batch takes a few round trips, not a few per delivery.
            let inspected = join_all(messages.into_iter().map(|m| self.inspect(m))).await;
            let mut slots = slots.into_iter();
            let (mut refused, mut failure) = (false, None);
            let mut chosen = Vec::new();
            for inspected in inspected {
                let candidate = match inspected {
                    Ok(Inspected::Candidate(candidate)) => candidate,
                    Ok(Inspected::Passed) => continue,
                    Err(e) => {
                        failure.get_or_insert(e);
                        continue;
                    }
                };
                let id = DeliveryId::new(candidate.queued.id.clone());
                let offered = Candidate {
                    id: &id,
                    route: &candidate.queued.delivery.route,
                    target: &candidate.queued.delivery.target,
                    attempt: candidate.attempt,
                };
                // Once the route is busy here (or the claim failed), what came with it waits.
                if refused || failure.is_some() || !admit(&offered) {
                    refused = true;
                    let _ = candidate.message.ack_with(AckKind::Nak(Some(REFUSED_PAUSE))).await;
                    continue;
                }
                chosen.push((candidate, slots.next().flatten()));
            }
            self.free_slots(slots).await;
            let claims =
                join_all(chosen.into_iter().map(|(candidate, slot)| self.take(candidate, slot))).await;
            for claim in claims {
                match claim {
                    Ok(Some((claimed, held))) => {
                        if let Ok(mut all) = self.held.lock() {
                            all.insert(claimed.lease, held);
                        }
                        taken.push(claimed);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if refused || fetched == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// What one fetched delivery is: not this claim's (waiting behind its key, not a delivery,
    /// settled already), or a candidate with its attempt counted.
    async fn inspect(&self, message: jetstream::Message) -> Result<Inspected, StoreError> {
        let (sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(e) => return Err(unavailable("reading a delivery's metadata", e)),
        };
        let queued: Queued = match serde_json::from_slice(&message.payload) {
            Ok(queued) => queued,
            Err(e) => {
                // Not a delivery this build queued: it is taken off the queue, not retried forever.
                tracing::warn!(sequence, error = %e, "dropping a message on the queue that is not a delivery");
                let _ = message.double_ack().await;
                return Ok(Inspected::Passed);
            }
        };
        let event = match queued.event.event() {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(delivery = %queued.id, error = %e, "dropping a delivery whose event cannot be read");
                let _ = message.double_ack().await;
                return Ok(Inspected::Passed);
            }
        };
        let give_back = |e: StoreError| async {
            let _ = message.ack_with(AckKind::Nak(Some(REFUSED_PAUSE))).await;
            Err(e)
        };
        if queued.delivery.order_key.is_some() {
            match self.is_head(message.subject.as_str(), sequence).await {
                Ok(true) => {}
                Ok(false) => {
                    // The one before it is still running or waiting for a retry.
                    let pause =
                        (REFUSED_PAUSE * u32::try_from(delivered).unwrap_or(u32::MAX)).min(ORDER_PAUSE);
                    let _ = message.ack_with(AckKind::Nak(Some(pause))).await;
                    return Ok(Inspected::Passed);
                }
                Err(e) => return give_back(e).await,
            }
        }
        // Handed out for the first time, and never replayed: nobody claimed it before.
        let (revision, previous) = if delivered == 1 && queued.generation == 0 {
            (None, None)
        } else {
            match self.state(&queued.id).await {
                Ok((revision, state)) => (revision, state.filter(|s| s.generation == queued.generation)),
                Err(e) => return give_back(e).await,
            }
        };
        // Handed out again: its claimer may have died after its outcome was stored, before the
        // queue heard of it (whatever its claims entry says, or if it was deleted).
        if delivered > 1 {
            match self.settled_before(&queued).await {
                Ok(true) => {
                    let _ = message.double_ack().await;
                    return Ok(Inspected::Passed);
                }
                Ok(false) => {}
                Err(e) => return give_back(e).await,
            }
        }
        let attempt = previous.as_ref().map_or(0, |s| s.attempt).saturating_add(1);
        Ok(Inspected::Candidate(Box::new(Found { message, queued, event, revision, previous, attempt })))
    }

    /// Whether `queued`'s final outcome is in the log already; a dead one is kept as a dead
    /// letter too, if its claimer died before it could.
    async fn settled_before(&self, queued: &Queued) -> Result<bool, StoreError> {
        let subject = self.log.subject(SETTLEMENTS, Some(&settled_key(&queued.id, queued.generation)));
        let Some((_, record)) = self.log.last_on(&subject).await? else { return Ok(false) };
        if let Some(settled) = record.settles.filter(|s| s.outcome == AttemptOutcome::Dead) {
            let letter = DeadLetter {
                queued: queued.clone(),
                attempts: settled.attempt,
                error: settled.error.unwrap_or_default(),
            };
            self.keep_dead_letter(&queued.id, &letter).await?;
        }
        Ok(true)
    }

    async fn keep_dead_letter(&self, id: &str, letter: &DeadLetter) -> Result<(), StoreError> {
        let value = serde_json::to_vec(letter).map_err(|e| failed("a dead letter", e))?;
        self.dead.put(id, value.into()).await.map_err(|e| unavailable("keeping a dead letter", e))?;
        Ok(())
    }

    /// Claims a candidate the pipeline took: counts its attempt in its claims entry, at the
    /// revision it was read at (`None` when another node claimed it meanwhile).
    async fn take(
        &self,
        found: Box<Found>,
        slot: Option<(String, u64)>,
    ) -> Result<Option<(Claimed, Held)>, StoreError> {
        let Found { message, queued, event, revision, previous, attempt } = *found;
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let state = ClaimState {
            generation: queued.generation,
            attempt,
            serial,
            last_error: previous.and_then(|s| s.last_error),
        };
        let revision = match self.write_state(&queued.id, &state, revision).await {
            Ok(revision) => revision,
            Err(e) => {
                let _ = message.ack_with(AckKind::Nak(Some(REFUSED_PAUSE))).await;
                self.free_slots([slot]).await;
                return match e {
                    // Another node claimed it at the same moment (its lease had just run out).
                    StoreError::Conflict(_) => Ok(None),
                    e => Err(e),
                };
            }
        };
        let claimed = Claimed {
            id: DeliveryId::new(queued.id.clone()),
            event,
            route: queued.delivery.route.clone(),
            target: queued.delivery.target.clone(),
            action: queued.delivery.action.clone(),
            attempt,
            lease: serial,
        };
        let renewed = tokio::time::Instant::now();
        Ok(Some((claimed, Held { message, queued, state, revision, slot, renewed })))
    }

    /// The claim `claim` names, if this node holds it.
    pub(super) fn held(&self, claim: &ClaimId) -> Result<Held, StoreError> {
        let all = self.held.lock().map_err(|_| StoreError::Failed("the claims lock is poisoned".into()))?;
        match all.get(&claim.lease) {
            Some(held)
                if held.queued.id == claim.delivery.as_str() && held.state.attempt == claim.attempt =>
            {
                Ok(held.clone())
            }
            _ => Err(StoreError::Conflict(format!("{claim} is not held by this claim"))),
        }
    }

    /// How many claims this node holds.
    #[cfg(test)]
    pub(super) fn holding(&self) -> usize {
        self.held.lock().map(|all| all.len()).unwrap_or(0)
    }

    fn forget(&self, claim: &ClaimId) {
        if let Ok(mut all) = self.held.lock() {
            all.remove(&claim.lease);
        }
    }

    /// Writes the claim's state back (a newer claim refuses it), keeping what it holds.
    async fn fence(&self, claim: &ClaimId, held: &mut Held, state: ClaimState) -> Result<(), StoreError> {
        match self.write_state(&held.queued.id, &state, Some(held.revision)).await {
            Ok(revision) => {
                held.revision = revision;
                held.state = state;
                held.renewed = tokio::time::Instant::now();
                if let Ok(mut all) = self.held.lock() {
                    all.insert(claim.lease, held.clone());
                }
                Ok(())
            }
            Err(e) => {
                if matches!(e, StoreError::Conflict(_)) {
                    // Its lease ran out and another claim took the delivery.
                    self.forget(claim);
                    self.free_slots([held.slot.take()]).await;
                }
                Err(e)
            }
        }
    }

    async fn settle_claim(
        &self,
        claim: ClaimId,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let mut held = self.held(&claim)?;
        let id = held.queued.id.clone();
        let (kind, error, events, deliveries, output, retry_at) = match outcome {
            Outcome::Delivered { events, deliveries, output } => {
                (AttemptOutcome::Delivered, None, events, deliveries, output, None)
            }
            Outcome::Retry { next_at_ms, error } => {
                (AttemptOutcome::Retry, Some(error), Vec::new(), Vec::new(), None, Some(next_at_ms))
            }
            Outcome::Dead { error, events, deliveries } => {
                (AttemptOutcome::Dead, Some(error), events, deliveries, None, None)
            }
        };
        // First the fence: a claim whose lease ran out changes nothing.
        let mut state = held.state.clone();
        state.last_error = error.clone().or(state.last_error);
        self.fence(&claim, &mut held, state).await?;
        let dead_letter = (kind == AttemptOutcome::Dead).then(|| DeadLetter {
            queued: held.queued.clone(),
            attempts: attempt.number,
            error: error.clone().unwrap_or_default(),
        });
        // Then what it produced, and the attempt, once whichever claimer appends it.
        let (append, settles) = settlement(&held.queued, attempt, kind, error, events, deliveries, output);
        match self.log.append_record(append, Some(settles)).await? {
            Appended::Stored => {}
            Appended::Duplicate => {
                tracing::debug!(delivery = %id, "this attempt's outcome was stored by a claimer before")
            }
        }
        // Then the dead letter, kept until replayed (a claimer killed before this has its
        // outcome in the log: the delivery comes back, is found settled, and is acknowledged;
        // the read model lists it dead all the same).
        if let Some(letter) = dead_letter {
            self.keep_dead_letter(&id, &letter).await?;
        }
        // Then the queue: the delivery leaves it, or comes back when its retry is due.
        let acked = match retry_at {
            Some(at) => {
                let delay = Duration::from_millis(at.saturating_sub(now_ms()));
                held.message.ack_with(AckKind::Nak(Some(delay))).await
            }
            None => {
                if let Err(e) = self.claims.delete_expect_revision(&id, Some(held.revision)).await {
                    tracing::debug!(delivery = %id, error = %e, "forgetting a settled delivery's claims");
                }
                held.message.double_ack().await
            }
        };
        if let Err(e) = acked {
            // Settled all the same: whoever runs it again finds its outcome stored.
            tracing::warn!(delivery = %id, error = %e, "acknowledging a settled delivery");
        }
        self.forget(&claim);
        self.free_slots([held.slot]).await;
        Ok(())
    }

    async fn renew_claim(&self, claim: ClaimId, _until_ms: u64) -> Result<(), StoreError> {
        let mut held = self.held(&claim)?;
        let state = held.state.clone();
        self.fence(&claim, &mut held, state).await?;
        held.message.ack_with(AckKind::Progress).await.map_err(|e| unavailable("renewing a lease", e))?;
        if let Some((key, revision)) = &held.slot {
            match self.slots.update(key, bytes::Bytes::new(), *revision).await {
                Ok(revision) => {
                    held.slot = Some((key.clone(), revision));
                    if let Ok(mut all) = self.held.lock() {
                        all.insert(claim.lease, held);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "keeping a concurrency slot"),
            }
        }
        Ok(())
    }

    async fn release_claim(&self, claim: ClaimId, not_before_ms: u64) -> Result<(), StoreError> {
        let mut held = self.held(&claim)?;
        let state = held.state.clone();
        self.fence(&claim, &mut held, state).await?;
        let delay = Duration::from_millis(not_before_ms.saturating_sub(now_ms()));
        held.message
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| unavailable("releasing a delivery", e))?;
        self.forget(&claim);
        self.free_slots([held.slot]).await;
        Ok(())
    }

    /// Removes a dead letter's every trace from its bucket (no delete marker stays).
    async fn drop_dead_letter(&self, id: &str) -> Result<(), StoreError> {
        let subject = format!("{}{id}", self.dead.prefix);
        self.dead
            .stream
            .purge()
            .filter(subject)
            .await
            .map_err(|e| unavailable("removing a dead letter", e))?;
        Ok(())
    }

    /// Removes the dead letters of deliveries before `position` (what the log no longer
    /// holds the history of) but those `kept` says stay, answering how many.
    pub(super) async fn forget_dead_before(
        &self,
        position: u64,
        kept: impl Fn(u64) -> bool,
    ) -> Result<u64, StoreError> {
        let mut forgotten = 0;
        for id in self.dead_letter_ids().await? {
            if DeliveryId::new(id.clone()).number::<u64>().is_some_and(|n| n < position && !kept(n)) {
                self.drop_dead_letter(&id).await?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// The first log message the fan-out has not queued the deliveries of: history before it
    /// may go, and none after it.
    pub(super) async fn fanned_out_until(&self) -> Result<u64, StoreError> {
        let mut consumer = self
            .log
            .stream
            .get_consumer::<consumer::pull::Config>(FAN_OUT_CONSUMER)
            .await
            .map_err(|e| unavailable("finding the fan-out", e))?;
        let info = consumer.info().await.map_err(|e| unavailable("reading the fan-out's progress", e))?;
        Ok(info.ack_floor.stream_sequence + 1)
    }

    /// The dead letters kept, by delivery id.
    async fn dead_letter_ids(&self) -> Result<Vec<String>, StoreError> {
        let keys = self.dead.keys().await.map_err(|e| unavailable("listing dead letters", e))?;
        let keys: Vec<_> = keys.collect().await;
        keys.into_iter().map(|k| k.map_err(|e| unavailable("listing dead letters", e))).collect()
    }

    /// A dead letter kept, with its entry's revision.
    async fn dead_letter(&self, id: &str) -> Result<Option<(u64, DeadLetter)>, StoreError> {
        let entry = self.dead.entry(id).await.map_err(|e| unavailable("reading a dead letter", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(None) };
        let letter = serde_json::from_slice(&entry.value).map_err(|e| failed("a dead letter", e))?;
        Ok(Some((entry.revision, letter)))
    }

    async fn replay_dead(&self, delivery: Option<DeliveryId>) -> Result<u64, StoreError> {
        let ids = match delivery {
            // Ids this queue never made are nobody's.
            Some(id) => match id.number::<u64>() {
                Some(_) => vec![id.as_str().to_owned()],
                None => return Ok(0),
            },
            None => self.dead_letter_ids().await?,
        };
        let mut replayed = 0;
        for id in ids {
            let Some((revision, DeadLetter { mut queued, .. })) = self.dead_letter(&id).await? else {
                continue;
            };
            queued.generation = queued.generation.saturating_add(1);
            // Queued first, then the letter removed: a replay that stops between them leaves
            // the letter listed, and its new generation runs from attempt 1 all the same.
            publish_queued(&self.log.js, &self.prefix, &queued)
                .await?
                .await
                .map_err(|e| unavailable("queueing a replayed delivery", e))?;
            match self.dead.delete_expect_revision(&id, Some(revision)).await {
                Ok(()) => replayed += 1,
                // Replayed by another node at the same moment: its publish and this one are the
                // same message (the same id), stored once.
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(unavailable("removing a replayed dead letter", e)),
            }
            // And the log, for every node's read model to show it pending again.
            let append = Append {
                instance: SETTLEMENTS.into(),
                delivery_id: Some(format!("{id}:{}:replayed", queued.generation)),
                dedup_window_ms: u64::MAX,
                events: Vec::new(),
                deliveries: Vec::new(),
            };
            self.log.append_with(append, |record| record.replays = Some(id.clone())).await?;
        }
        Ok(replayed)
    }

    /// The dead letters, as operators list them (the read model lists them too).
    pub async fn dead_letters(&self) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut dead = Vec::new();
        for id in self.dead_letter_ids().await? {
            if let Some((_, DeadLetter { queued, attempts, error })) = self.dead_letter(&id).await? {
                dead.push(DeliveryRecord {
                    id: DeliveryId::new(id),
                    event_id: queued.event.id().to_owned(),
                    route: queued.delivery.route.clone(),
                    target: queued.delivery.target.clone(),
                    status: DeliveryStatus::Dead,
                    attempts,
                    last_error: Some(error),
                });
            }
        }
        dead.sort_by_key(|d| std::cmp::Reverse(d.id.number::<u64>()));
        Ok(dead)
    }

    async fn stats(&self, now: u64) -> Result<QueueStats, StoreError> {
        let info = self.queue.get_info().await.map_err(|e| unavailable("reading the queue's state", e))?;
        let lag_ms = if info.state.messages == 0 {
            0
        } else {
            let first =
                u64::try_from(info.state.first_timestamp.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            now.saturating_sub(first)
        };
        // Dead letters are the read model's to count (NatsStore does): counting them here
        // would read every claims entry.
        Ok(QueueStats { pending: info.state.messages, lag_ms, dead: 0 })
    }
}

/// The log's delivery id of the append that settles a delivery for good (delivered or dead).
fn settled_key(id: &str, generation: u32) -> String {
    format!("{id}:{generation}:settled")
}

/// The append that settles an attempt at `queued`: what it produced and the attempt, under an
/// id made from the delivery, its generation and (for a retry) the attempt, so that it is
/// stored once whichever claimer appends it.
pub(super) fn settlement(
    queued: &Queued,
    attempt: Attempt,
    outcome: AttemptOutcome,
    error: Option<String>,
    events: Vec<plugboard_runtime::types::Event>,
    deliveries: Vec<crate::QueuedDelivery>,
    output: Option<String>,
) -> (Append, Settlement) {
    let (id, generation) = (queued.id.clone(), queued.generation);
    let key = match outcome {
        AttemptOutcome::Retry => format!("{id}:{generation}:{}", attempt.number),
        _ => settled_key(&id, generation),
    };
    let append = Append {
        instance: SETTLEMENTS.into(),
        delivery_id: Some(key),
        dedup_window_ms: u64::MAX,
        events,
        deliveries,
    };
    let settles = Settlement {
        delivery: id,
        generation,
        attempt: attempt.number,
        outcome,
        duration_us: attempt.duration_us,
        handler: attempt.handler,
        error,
        output,
    };
    (append, settles)
}

/// Publishes a delivery to the queue, its message id made from its id and generation: a
/// publish tried again (a fan-out killed before it acknowledged the append) is stored once.
async fn publish_queued(
    js: &jetstream::Context,
    prefix: &str,
    queued: &Queued,
) -> Result<jetstream::context::PublishAckFuture, StoreError> {
    let key = queued.delivery.order_key.as_deref().map(token).unwrap_or_else(|| "_".into());
    let subject = format!("{prefix}.queue.{}.{key}", token(&queued.delivery.route));
    let mut headers = async_nats::HeaderMap::new();
    headers
        .insert(async_nats::header::NATS_MESSAGE_ID, format!("{}.{}", queued.id, queued.generation).as_str());
    let payload: bytes::Bytes =
        serde_json::to_vec(queued).map_err(|e| failed("a queued delivery", e))?.into();
    js.publish_with_headers(subject, headers, payload)
        .await
        .map_err(|e| unavailable("queueing a delivery", e))
}

/// Queues the deliveries of one append of the log, in order.
async fn fan_out_one(
    js: &jetstream::Context,
    prefix: &str,
    message: &jetstream::Message,
) -> Result<(), StoreError> {
    let sequence =
        message.info().map_err(|e| unavailable("reading an append's metadata", e))?.stream_sequence;
    let record: Record = match serde_json::from_slice(&message.payload) {
        Ok(record) => record,
        // Another program's message on the log's subjects: nothing to queue.
        Err(_) => return Ok(()),
    };
    let mut acks = Vec::new();
    for (index, delivery) in record.deliveries().iter().enumerate() {
        let Some(event) = record.events().iter().find(|e| e.id() == delivery.event_id) else {
            tracing::warn!(sequence, event = %delivery.event_id, "a queued delivery's event is not in its append");
            continue;
        };
        let queued = Queued {
            id: ((sequence << INDEX_BITS) | index as u64).to_string(),
            generation: 0,
            delivery: delivery.clone(),
            event: event.clone(),
        };
        acks.push(publish_queued(js, prefix, &queued).await?);
    }
    for ack in acks {
        ack.await.map_err(|e| unavailable("queueing a delivery", e))?;
    }
    Ok(())
}

/// The durable consumer of the log that the fan-out reads.
const FAN_OUT_CONSUMER: &str = "fan-out";

/// The key whose holder runs the fan-out.
const FAN_OUT_KEY: &str = "fan-out";

/// Runs the fan-out whenever this node holds its key, until the queue is dropped.
async fn fan_out_forever(
    js: jetstream::Context,
    consumer: consumer::PullConsumer,
    prefix: String,
    slots: kv::Store,
    lease: Duration,
) {
    loop {
        match slots.create(FAN_OUT_KEY, bytes::Bytes::new()).await {
            Ok(revision) => {
                tracing::debug!("this node runs the fan-out");
                let held = AtomicU64::new(revision);
                if let Err(e) = fan_out_while_held(&js, &consumer, &prefix, &slots, lease, &held).await {
                    tracing::warn!(error = %e, "the fan-out stopped; trying again");
                }
                // Given up at once, for whichever node takes it next (this one, a moment later).
                let _ = slots.delete_expect_revision(FAN_OUT_KEY, Some(held.load(Ordering::Relaxed))).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // Another node runs it (or the bucket is unreachable): look again later.
            Err(_) => tokio::time::sleep(lease / 3).await,
        }
    }
}

/// Queues the log's appends in order for as long as this node keeps the fan-out key.
async fn fan_out_while_held(
    js: &jetstream::Context,
    consumer: &consumer::PullConsumer,
    prefix: &str,
    slots: &kv::Store,
    lease: Duration,
    held: &AtomicU64,
) -> Result<(), StoreError> {
    // The key is renewed every third of a lease: it expires one lease after its last write.
    let every = lease / 3;
    let mut renewed = tokio::time::Instant::now();
    let renew = async |renewed: &mut tokio::time::Instant| -> Result<(), StoreError> {
        if renewed.elapsed() >= every {
            let revision = slots
                .update(FAN_OUT_KEY, bytes::Bytes::new(), held.load(Ordering::Relaxed))
                .await
                .map_err(|e| unavailable("keeping the fan-out", e))?;
            held.store(revision, Ordering::Relaxed);
            *renewed = tokio::time::Instant::now();
        }
        Ok(())
    };
    loop {
        renew(&mut renewed).await?;
        // Each read is a pull request of its own that ends within a third of a lease: a
        // long-lived subscription can stop handing out messages after a server restart.
        let mut batch = consumer
            .batch()
            .max_messages(256)
            .expires(every)
            .messages()
            .await
            .map_err(|e| unavailable("reading the log to queue it", e))?;
        while let Some(message) = next_within(&mut batch, every + PULL_GRACE).await {
            let message = message.map_err(|e| unavailable("reading the log to queue it", e))?;
            if let Err(e) = fan_out_one(js, prefix, &message).await {
                // Given back, to be queued again before anything after it.
                let _ = message.ack_with(AckKind::Nak(None)).await;
                return Err(e);
            }
            message.ack().await.map_err(|e| unavailable("acknowledging a queued append", e))?;
            renew(&mut renewed).await?;
        }
    }
}

impl DeliveryQueue for NatsQueue {
    fn claim<'a>(
        &'a self,
        _now_ms: u64,
        limit: usize,
        lease: Duration,
        admit: &'a mut Admit<'a>,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        Box::pin(self.claim_due(limit, lease, admit))
    }

    fn settle(&self, claim: ClaimId, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()> {
        Box::pin(self.settle_claim(claim, attempt, outcome))
    }

    fn renew(&self, claim: ClaimId, until_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(self.renew_claim(claim, until_ms))
    }

    fn release(&self, claim: ClaimId, not_before_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(self.release_claim(claim, not_before_ms))
    }

    fn replay(&self, delivery: Option<DeliveryId>) -> StoreFuture<'_, u64> {
        Box::pin(self.replay_dead(delivery))
    }

    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats> {
        Box::pin(self.stats(now_ms))
    }

    fn fixed_lease(&self) -> Option<Duration> {
        Some(self.lease)
    }
}
