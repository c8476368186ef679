//! Where events are stored: what the pipeline, the ingress and the admin API need from storage
//! (the types and the [`EventStore`] trait, here), and the embedded backend ([`sqlite`]).
//!
//! [`SqliteStore`] is the embedded default: SQLite in WAL mode, with one writer thread that
//! commits every append waiting at that moment in one transaction (group commit), so concurrent
//! webhooks share one fsync. An append returns only after its transaction is durable: the
//! ingress acknowledges nothing before that.
//!
//! The same database file holds the plugins' key-value data ([`SqliteKv`]) and the outbound
//! call log ([`SqliteCallLog`]), each on its own connection.

pub mod sqlite;

pub use sqlite::{
    EventSummary, EventTrace, MinuteStats, PAYLOAD_PREVIEW_BYTES, PayloadPreview, SqliteCallLog, SqliteKv,
    SqliteStore, TracedDelivery,
};

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use crate::types::Event;

/// Why the store failed: the storage port's own error, whatever the backend (each backend maps
/// its errors into it), so that callers can tell a moment's unavailability from a conflict or a
/// broken store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take this work now (busy, locked, out of space, unreachable): the same
    /// request may succeed later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The write conflicts with what is stored.
    #[error("event store conflict: {0}")]
    Conflict(String),
    /// The store failed in a way that retrying does not mend (a damaged file, data this build
    /// cannot read).
    #[error("event store failed: {0}")]
    Failed(String),
    /// The writer is gone (the store is shutting down).
    #[error("event store is closed")]
    Closed,
    /// The claim journal (next to the store file) could not be written.
    #[error("claim journal: {0}")]
    Journal(#[from] std::io::Error),
    /// Another process runs this store's deliveries (it holds the claim journal), or this
    /// store was opened without them.
    #[error(
        "another process runs this store's deliveries (it holds the claim journal next to the store file)"
    )]
    JournalHeld,
    /// A read-only opener found a file of an older schema version, which it does not upgrade.
    #[error(
        "the store file is at schema version {found}, older than this plugboard's {known}: \
         start `plugboard up` once to upgrade it"
    )]
    OlderSchema {
        /// The file's version.
        found: u32,
        /// This build's version.
        known: u32,
    },
    /// The file was written by a newer plugboard, whose schema this build does not know.
    #[error(
        "the store file is at schema version {found}; this plugboard knows up to {known}: upgrade plugboard"
    )]
    NewerSchema {
        /// The file's version.
        found: u32,
        /// This build's version.
        known: u32,
    },
}

/// Which events a listing shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter<'a> {
    /// Only this kind (`*` wildcards).
    pub kind: Option<&'a str>,
    /// Only from this instance.
    pub source: Option<&'a str>,
    /// Only events stored before this position (a page's cursor).
    pub before: Option<i64>,
}

/// One webhook's worth of work for the log: its events, and the provider's delivery id to
/// remember for deduplication, stored atomically together.
#[derive(Debug, Clone)]
pub struct Append {
    /// The instance that received it.
    pub instance: String,
    /// The provider's delivery id, if known.
    pub delivery_id: Option<String>,
    /// How long to remember the delivery id, in ms.
    pub dedup_window_ms: u64,
    /// The events to store.
    pub events: Vec<Event>,
    /// Their deliveries, as the routes decided.
    pub deliveries: Vec<QueuedDelivery>,
}

/// A delivery of a stored event to a route's target, queued with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    /// The event to deliver.
    pub event_id: String,
    /// The route that matched, by name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// The action to invoke with the payload; `handle` when absent.
    pub action: Option<String>,
    /// Deliveries of one route with the same key run one at a time, in order.
    pub order_key: Option<String>,
}

/// A delivery that is due, with its event.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The event.
    pub event: Event,
    /// The route's name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// The action, or `handle` when absent.
    pub action: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
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

/// Where an async job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Not finished yet.
    Pending,
    /// Its action answered.
    Succeeded,
    /// It failed for good.
    Failed,
}

/// A delivery in the queue, as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: i64,
    /// The event's id.
    pub event_id: String,
    /// The route's name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// An async job's state, as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: String,
    /// Where it stands.
    pub status: JobStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The action's output, once succeeded.
    pub output: Option<serde_json::Value>,
    /// Why it failed, once failed.
    pub error: Option<String>,
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

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptRecord {
    /// 1 for the first.
    pub attempt: u32,
    /// When it ended, ms since the epoch.
    pub at_ms: u64,
    /// How long it took.
    pub duration_us: u64,
    /// What became of it.
    pub outcome: AttemptOutcome,
    /// The error, if any.
    pub detail: Option<String>,
    /// The plugin build that handled it: after a hot reload, which version handled each event.
    pub handler: Option<String>,
}

/// A delivery with its event and every attempt: what `plugboard dlq show` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: DeliveryRecord,
    /// Its event (payload as text, lossily).
    pub event_kind: String,
    /// The event's source.
    pub event_source: String,
    /// The event's payload.
    pub payload: String,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// The delivery id was already stored within its window: nothing was written.
    Duplicate,
}

/// What an [`EventStore`] method returns: a boxed future, so that the trait is object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The event log as the ingress, the dispatcher, schedules and jobs use it.
///
/// Every method is asynchronous and fallible, and an append is acknowledged only when its future
/// completes, so that a log that is remote, partitioned and acknowledges asynchronously (NATS
/// JetStream is planned) can implement it without pretending to be local. Deliveries are claimed
/// by whoever calls [`EventStore::due`] and settled by [`EventStore::record`]; a crash between
/// the two leaves them pending, which is what makes delivery at-least-once.
pub trait EventStore: Send + Sync + 'static {
    /// Stores events and their queued deliveries atomically, unless the delivery id is a
    /// duplicate.
    fn append(&self, append: Append) -> StoreFuture<'_, Appended>;
    /// Settles attempt `attempt` of `delivery`, storing what it produced.
    fn record(&self, delivery: i64, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()>;
    /// Puts dead letters back in the queue (one, or all).
    fn replay(&self, delivery: Option<i64>) -> StoreFuture<'_, u64>;
    /// Pending deliveries due at `now_ms`, in order, skipping `busy` ones and respecting ordering keys.
    fn due<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        busy: &'a HashSet<i64>,
    ) -> StoreFuture<'a, Vec<DueDelivery>>;
    /// An async job's state.
    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>>;
    /// The newest `limit` deliveries with a status whose ids are below `before` (all when
    /// `None`), newest first: a page, whose last id is the cursor of the next.
    fn deliveries(
        &self,
        status: DeliveryStatus,
        before: Option<i64>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRecord>>;
    /// Whether a webhook delivery id was already stored within its window.
    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool>;
    /// One delivery with its event and attempts.
    fn delivery(&self, id: i64) -> StoreFuture<'_, Option<DeliveryDetail>>;
    /// The delivery queue's depth, lag and dead letters at `now_ms`.
    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats>;
    /// Whether the store can take writes now (for readiness checks).
    fn writable(&self) -> bool;
    /// Counts attempt `n` of each `(delivery, n)` before it runs, durably enough to survive the
    /// process dying while it runs (see [`SqliteStore::claim`]).
    fn claim(&self, claims: Vec<(i64, u32)>) -> StoreFuture<'_, ()>;
    /// Activity per minute since `since_ms`.
    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>>;
    /// An event and everything that happened because of it.
    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>>;
    /// An event's content type and whole payload.
    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>>;
    /// The newest `limit` events stored before position `before` (all when `None`), optionally
    /// of one kind (`*` wildcards) or from one source, newest first, each with its position: a
    /// page, whose last position is the cursor of the next.
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>>;
    /// Up to `limit` events stored after position `after` (see [`EventStore::last_position`]),
    /// oldest first, each with its position: what a live stream sends next.
    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>>;
    /// The position of the newest stored event (0 when there is none).
    fn last_position(&self) -> StoreFuture<'_, i64>;
    /// Changes each time the writer commits: wait on it instead of polling.
    fn commits(&self) -> tokio::sync::watch::Receiver<u64>;
}

// SQLite reads are answered inline: with WAL they do not wait for the writer, and they take
// microseconds, less than handing them to another thread would.
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
