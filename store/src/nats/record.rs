//! One append as a JetStream message: JSON, payloads in base64. Fields this build does not know
//! are ignored, not refused: during a rolling upgrade an older node reads what a newer one wrote. The queued deliveries are kept
//! with their events, for the delivery queue on JetStream to take them from; an append that
//! settles an attempt at a delivery says so ([`Settlement`]), so that the log is also the
//! history of every attempt.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::AttemptOutcome;
use crate::log::{Append, EventSummary};
use plugboard_runtime::types::Event;

/// An append as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) instance: String,
    pub(super) delivery_id: Option<String>,
    pub(super) dedup_window_ms: u64,
    pub(super) stored_at_ms: u64,
    events: Vec<StoredEvent>,
    deliveries: Vec<StoredDelivery>,
    /// The attempt this append settles, when a delivery's claimer wrote it. (Absent in the
    /// records of the first NATS builds.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) settles: Option<Settlement>,
    /// The dead letter this append puts back in the queue, when an operator replayed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) replays: Option<String>,
}

/// What became of one attempt at a delivery, as the log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Settlement {
    /// The delivery.
    pub(super) delivery: String,
    /// Which replay of it (0 until a dead letter is replayed).
    pub(super) generation: u32,
    pub(super) attempt: u32,
    pub(super) outcome: AttemptOutcome,
    pub(super) duration_us: u64,
    pub(super) handler: Option<String>,
    pub(super) error: Option<String>,
    /// An action's JSON output.
    pub(super) output: Option<String>,
}

/// An event as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredEvent {
    id: String,
    source: String,
    kind: String,
    occurred_at_ms: u64,
    content_type: String,
    payload: String,
    attributes: Vec<(String, String)>,
}

/// A queued delivery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredDelivery {
    pub(super) event_id: String,
    pub(super) route: String,
    pub(super) target: String,
    pub(super) action: Option<String>,
    pub(super) order_key: Option<String>,
}

impl StoredEvent {
    pub(super) fn new(e: &Event) -> Self {
        StoredEvent {
            id: e.id.clone(),
            source: e.source.clone(),
            kind: e.kind.clone(),
            occurred_at_ms: e.occurred_at_ms,
            content_type: e.content_type.clone(),
            payload: BASE64.encode(&e.payload),
            attributes: e.attributes.clone(),
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The event, or why its payload cannot be read.
    pub(super) fn event(&self) -> Result<Event, base64::DecodeError> {
        Ok(Event {
            id: self.id.clone(),
            source: self.source.clone(),
            kind: self.kind.clone(),
            occurred_at_ms: self.occurred_at_ms,
            content_type: self.content_type.clone(),
            payload: BASE64.decode(&self.payload)?,
            attributes: self.attributes.clone(),
        })
    }
}

impl Record {
    pub(super) fn new(append: &Append, stored_at_ms: u64) -> Self {
        Record {
            instance: append.instance.clone(),
            delivery_id: append.delivery_id.clone(),
            dedup_window_ms: append.dedup_window_ms,
            stored_at_ms,
            events: append.events.iter().map(StoredEvent::new).collect(),
            deliveries: append
                .deliveries
                .iter()
                .map(|d| StoredDelivery {
                    event_id: d.event_id.clone(),
                    route: d.route.clone(),
                    target: d.target.clone(),
                    action: d.action.clone(),
                    order_key: d.order_key.clone(),
                })
                .collect(),
            settles: None,
            replays: None,
        }
    }

    /// When it was stored.
    pub(super) fn stored_at_ms(&self) -> u64 {
        self.stored_at_ms
    }

    /// The events stored.
    pub(super) fn events(&self) -> &[StoredEvent] {
        &self.events
    }

    /// The deliveries queued, in order.
    pub(super) fn deliveries(&self) -> &[StoredDelivery] {
        &self.deliveries
    }

    /// Whether its delivery id is still remembered at `now_ms` (within its dedup window).
    pub(super) fn remembered_at(&self, now_ms: u64) -> bool {
        self.stored_at_ms.saturating_add(self.dedup_window_ms) > now_ms
    }

    /// The events as operators list them.
    pub(super) fn summaries(&self) -> Vec<EventSummary> {
        self.events
            .iter()
            .map(|e| EventSummary {
                id: e.id.clone(),
                source: e.source.clone(),
                kind: e.kind.clone(),
                stored_at_ms: self.stored_at_ms,
                attributes: e.attributes.clone(),
                caused_by: crate::log::caused_by(&e.attributes).map(Into::into),
            })
            .collect()
    }
}
