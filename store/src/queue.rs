//! The delivery queue port: deliveries are claimed with a lease, run by the pipeline, and
//! settled (delivered, retried after a delay, or dead-lettered); dead letters can be replayed.
//!
//! Which deliveries run, how many per route at once, and what a failure becomes is the
//! pipeline's business (`pipeline::dispatcher`); the queue keeps each delivery's state, its
//! lease and its order.

use std::time::Duration;

use super::{QueuedDelivery, StoreFuture};
use plugboard_runtime::types::Event;

/// A delivery's id: opaque to everyone but the backend that made it (a row number in SQLite, a
/// stream sequence elsewhere). Operators pass it back to show or replay a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// The id spelled `id`.
    pub fn new(id: impl Into<String>) -> Self {
        DeliveryId(id.into())
    }

    /// How it is spelled.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number it spells, for a backend whose ids are numbers: only the canonical spelling
    /// (no sign, no leading zero) is one, so that each delivery has one id.
    pub fn number<T: std::str::FromStr + ToString>(&self) -> Option<T> {
        let n: T = self.0.parse().ok()?;
        (n.to_string() == self.0).then_some(n)
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A claimed delivery, with its event: the claimer holds its lease until it settles it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery's id.
    pub id: DeliveryId,
    /// The event.
    pub event: Event,
    /// The route's name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// The action, or `handle` when absent.
    pub action: Option<String>,
    /// The number of the attempt this claim is (1 for the first). It is counted when claimed:
    /// a claimer that dies running it has used it.
    pub attempt: u32,
    /// Which lease this claim holds: unique among the claims of one store.
    pub lease: u64,
}

impl Claimed {
    /// Which claim this is, to settle, renew or release it.
    pub fn claim_id(&self) -> ClaimId {
        ClaimId { delivery: self.id.clone(), attempt: self.attempt, lease: self.lease }
    }
}

/// One claim of a delivery: the delivery, the attempt the claim counted and its lease. Only the
/// claim that holds a delivery's lease may settle, renew or release it: a claimer whose lease
/// ran out (and whose delivery another claim took, or a replay put back) is refused with a
/// conflict, so that a late answer cannot overwrite a newer attempt's or end its lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimId {
    /// The delivery.
    pub delivery: DeliveryId,
    /// The attempt its claim counted.
    pub attempt: u32,
    /// The lease its claim took ([`Claimed::lease`]).
    pub lease: u64,
}

impl std::fmt::Display for ClaimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delivery {} (attempt {})", self.delivery, self.attempt)
    }
}

/// An attempt to settle: which one, how long it took, and which build of the target ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first.
    pub number: u32,
    /// How long it took.
    pub duration_us: u64,
    /// The plugin build that handled it (`name@version sha256:...`), when one ran.
    pub handler: Option<String>,
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Delivered. Its output events are stored, with their own queued deliveries.
    Delivered {
        /// Events the target produced.
        events: Vec<Event>,
        /// Deliveries of those events.
        deliveries: Vec<QueuedDelivery>,
        /// An action's JSON output.
        output: Option<String>,
    },
    /// Failed; try again at `next_at_ms`.
    Retry {
        /// When.
        next_at_ms: u64,
        /// Why it failed.
        error: String,
    },
    /// Failed for good: a dead letter.
    Dead {
        /// Why.
        error: String,
        /// Events to store all the same (a job's completion notice).
        events: Vec<Event>,
        /// Their deliveries.
        deliveries: Vec<QueuedDelivery>,
    },
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or running it).
    Pending,
    /// Delivered.
    Delivered,
    /// Failed for good: a dead letter, until replayed.
    Dead,
}

impl DeliveryStatus {
    /// The name operators see.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// The status named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Dead]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one attempt, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// The delivery succeeded.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// It failed for good.
    Dead,
}

impl AttemptOutcome {
    /// The name operators see.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }

    /// The outcome named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        [AttemptOutcome::Delivered, AttemptOutcome::Retry, AttemptOutcome::Dead]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delivery queue at a glance, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Pending deliveries.
    pub pending: u64,
    /// How long the oldest due pending delivery has been due, in ms.
    pub lag_ms: u64,
    /// Dead letters.
    pub dead: u64,
}

/// Decides, for each delivery a claim could take (in the queue's order), whether to take it: the
/// pipeline's concurrency limits, applied before anything is counted. It runs while the claim
/// holds the queue (no other claim runs meanwhile): it must answer at once and not call back
/// into the store.
pub type Admit<'a> = dyn for<'c> FnMut(&Candidate<'c>) -> bool + Send + 'a;

/// A delivery a claim could take, as its [`Admit`] sees it (its event is read only for those
/// taken).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The delivery's id.
    pub id: &'a DeliveryId,
    /// The route's name.
    pub route: &'a str,
    /// The target instance.
    pub target: &'a str,
    /// The number the attempt would have.
    pub attempt: u32,
}

/// The delivery queue, as the dispatcher and operators use it.
///
/// Deliveries are at-least-once: a claim counts its attempt and leases the delivery; a claimer
/// that dies loses its leases when they run out (one still running renews its own), and the
/// delivery comes due again with that attempt counted, so that one that kills its claimer every
/// time runs out of attempts instead of looping. Deliveries of one route with the same ordering
/// key are offered one at a time, in the order they were queued: the next only once the one
/// before is settled delivered or dead.
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Claims up to `limit` deliveries due at `now_ms` that nobody holds, each for `lease`,
    /// oldest due first. Those `admit` refuses stay as they were, and the claim looks further
    /// (a busy route does not hold up the others).
    fn claim<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        admit: &'a mut Admit<'a>,
    ) -> StoreFuture<'a, Vec<Claimed>>;
    /// Settles a claim with the outcome of `attempt`, storing what it produced in the same
    /// write, and ends its lease once that write is durable (no claim takes the delivery
    /// meanwhile; if the write fails, the claim still holds it).
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when the claim no longer holds the
    /// delivery.
    fn settle(&self, claim: ClaimId, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()>;
    /// Keeps a claim's lease until `until_ms`: what a claimer still running the delivery does
    /// before the lease runs out. A conflict when the claim no longer holds it.
    fn renew(&self, claim: ClaimId, until_ms: u64) -> StoreFuture<'_, ()>;
    /// Gives a claimed delivery back unsettled (its outcome could not be stored): nobody may
    /// claim it before `not_before_ms`; its claimed attempt stays counted. A conflict when the
    /// claim no longer holds it.
    fn release(&self, claim: ClaimId, not_before_ms: u64) -> StoreFuture<'_, ()>;
    /// Puts dead letters back in the queue (one, or all), keeping their event ids, their
    /// attempts counted from zero again; answers how many.
    fn replay(&self, delivery: Option<DeliveryId>) -> StoreFuture<'_, u64>;
    /// The queue's depth, lag and dead letters at `now_ms`.
    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats>;
    /// The lease every claim must ask for, when the queue fixed it as it was made (NATS: its
    /// consumers' ack wait); `None` when a claim chooses its own.
    fn fixed_lease(&self) -> Option<Duration> {
        None
    }
}
