//! One append as a JetStream message: JSON, payloads in base64. The queued deliveries are kept
//! with their events, for the delivery queue on JetStream to take them from.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::log::{Append, EventSummary};

/// An append as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Record {
    pub(super) instance: String,
    pub(super) delivery_id: Option<String>,
    pub(super) dedup_window_ms: u64,
    pub(super) stored_at_ms: u64,
    events: Vec<StoredEvent>,
    deliveries: Vec<StoredDelivery>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEvent {
    id: String,
    source: String,
    kind: String,
    occurred_at_ms: u64,
    content_type: String,
    payload: String,
    attributes: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredDelivery {
    event_id: String,
    route: String,
    target: String,
    action: Option<String>,
    order_key: Option<String>,
}

impl Record {
    pub(super) fn new(append: &Append, stored_at_ms: u64) -> Self {
        Record {
            instance: append.instance.clone(),
            delivery_id: append.delivery_id.clone(),
            dedup_window_ms: append.dedup_window_ms,
            stored_at_ms,
            events: append
                .events
                .iter()
                .map(|e| StoredEvent {
                    id: e.id.clone(),
                    source: e.source.clone(),
                    kind: e.kind.clone(),
                    occurred_at_ms: e.occurred_at_ms,
                    content_type: e.content_type.clone(),
                    payload: BASE64.encode(&e.payload),
                    attributes: e.attributes.clone(),
                })
                .collect(),
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
        }
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
                caused_by: e
                    .attributes
                    .iter()
                    .find(|(k, _)| k == plugboard_runtime::capabilities::emit::CAUSED_BY)
                    .map(|(_, v)| v.clone()),
            })
            .collect()
    }
}
