//! The read model port: what operators see of the log and the queue (listings a page at a time,
//! an event's trace, a dead letter's attempts, activity per minute, async jobs).

use serde::Serialize;

use super::{AttemptOutcome, DeliveryId, DeliveryStatus, EventSummary, StoreFuture};

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
    pub id: DeliveryId,
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

/// One delivery of a traced event, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TracedDelivery {
    /// The delivery's id.
    pub id: DeliveryId,
    /// The route.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// The action invoked (`handle` when absent).
    pub action: Option<String>,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// What the action answered, when it succeeded.
    pub output: Option<String>,
    /// The events this delivery produced, each traced in turn.
    pub produced: Vec<EventTrace>,
}

/// An event and everything that happened because of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventTrace {
    /// The event.
    pub event: EventSummary,
    /// The traced event's payload (not the produced events'), as operators read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadPreview>,
    /// Its deliveries.
    pub deliveries: Vec<TracedDelivery>,
}

/// The most payload bytes a trace shows; the whole payload is at `GET /v1/events/{id}/payload`
/// and `plugboard events show --raw`.
pub const PAYLOAD_PREVIEW_BYTES: usize = 16 << 10;

/// An event's payload as text an operator can read safely: the first
/// [`PAYLOAD_PREVIEW_BYTES`], decoded as UTF-8 (invalid bytes replaced), control characters
/// written out as `\u{..}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PayloadPreview {
    /// Its content type, as the producer said.
    pub content_type: String,
    /// Its size in bytes.
    pub bytes: usize,
    /// The text shown.
    pub text: String,
    /// Whether `text` shows only the start.
    pub truncated: bool,
}

impl PayloadPreview {
    /// The preview of `payload`.
    pub fn of(content_type: &str, payload: &[u8]) -> Self {
        let shown = &payload[..payload.len().min(PAYLOAD_PREVIEW_BYTES)];
        PayloadPreview {
            content_type: plugboard_runtime::printable(content_type),
            bytes: payload.len(),
            text: plugboard_runtime::printable(&String::from_utf8_lossy(shown)),
            truncated: shown.len() < payload.len(),
        }
    }
}

/// One minute of activity, for the dashboard's charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinuteStats {
    /// The minute's start, ms since the Unix epoch.
    pub minute_ms: u64,
    /// Events stored.
    pub events: u64,
    /// Delivery attempts.
    pub attempts: u64,
    /// Attempts that failed (retried or dead).
    pub failures: u64,
    /// Mean attempt duration, ms.
    pub mean_ms: f64,
    /// Longest attempt, ms.
    pub max_ms: f64,
}

/// What operators read: the admin API, the dashboard and the CLI.
///
/// Listings answer a page at a time, newest first, with the cursor of the next page in their
/// last item: never a silent cap.
pub trait ReadModel: Send + Sync + 'static {
    /// The newest `limit` events stored before position `before` (all when `None`), optionally
    /// of one kind (`*` wildcards) or from one source, newest first, each with its position.
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>>;
    /// An event's content type and whole payload.
    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>>;
    /// An event and everything that happened because of it.
    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>>;
    /// The newest `limit` deliveries with a status, queued before the delivery `before` (all
    /// when `None`), newest first: a page, whose last id is the cursor of the next.
    fn deliveries(
        &self,
        status: DeliveryStatus,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRecord>>;
    /// One delivery with its event and attempts.
    fn delivery(&self, id: DeliveryId) -> StoreFuture<'_, Option<DeliveryDetail>>;
    /// An async job's state.
    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>>;
    /// Activity per minute since `since_ms`, oldest first.
    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_preview_is_capped_and_escaped() {
        let mut payload = b"\x1b]0;owned\x07".to_vec();
        payload.extend(vec![b'x'; 20 << 10]);
        let preview = PayloadPreview::of("text/plain\r", &payload);
        assert!(preview.truncated);
        assert_eq!(preview.bytes, payload.len());
        assert!(preview.text.starts_with("\\u{1b}]0;owned\\u{7}"), "{}", &preview.text[..40]);
        assert!(preview.text.len() < PAYLOAD_PREVIEW_BYTES + 64);
        assert_eq!(preview.content_type, "text/plain\\u{d}");
    }
}
