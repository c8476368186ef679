//! The event log port: where webhooks, schedules, jobs and deliveries append events (with the
//! deliveries the routes queued for them), and where the live stream reads them in order.

use super::StoreFuture;
use plugboard_runtime::types::Event;

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

/// A stored event, as operators see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventSummary {
    /// Its id.
    pub id: String,
    /// The instance that produced it.
    pub source: String,
    /// Its kind.
    pub kind: String,
    /// When it was stored, ms since the Unix epoch.
    pub stored_at_ms: u64,
    /// Its attributes.
    pub attributes: Vec<(String, String)>,
    /// The event whose delivery produced it, if any.
    pub caused_by: Option<String>,
}

/// The event whose delivery produced an event with these attributes, if any (the host sets it).
pub(crate) fn caused_by(attributes: &[(String, String)]) -> Option<&str> {
    attributes
        .iter()
        .find(|(k, _)| k == plugboard_runtime::capabilities::emit::CAUSED_BY)
        .map(|(_, v)| v.as_str())
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// The delivery id was already stored within its window: nothing was written.
    Duplicate,
}

/// The event log, as the ingress, schedules and the live stream use it.
///
/// An append is acknowledged only when its future completes, and only once it is durable, so
/// that a log that is remote, partitioned and acknowledges asynchronously (NATS JetStream is
/// planned) can implement it without pretending to be local. Positions are the log's own
/// sequence numbers: increasing, not necessarily contiguous.
pub trait EventLog: Send + Sync + 'static {
    /// Stores events and their queued deliveries atomically, unless the delivery id was already
    /// stored within its window (then nothing is written).
    fn append(&self, append: Append) -> StoreFuture<'_, Appended>;
    /// Whether a webhook delivery id was already stored within its window.
    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool>;
    /// Up to `limit` events stored after position `after` (see [`EventLog::last_position`]),
    /// oldest first, each with its position: what a live stream sends next.
    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>>;
    /// The position of the newest stored event (0 when there is none).
    fn last_position(&self) -> StoreFuture<'_, i64>;
    /// Changes each time the log commits: wait on it instead of polling.
    fn commits(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Whether the log can take appends now (for readiness checks).
    fn writable(&self) -> bool;
}
