//! The read model on NATS: each node folds the shared log (events, queued deliveries, every
//! settled attempt and replay) into a projection in its own memory, at the log's positions and
//! delivery ids, so that any node's listings, traces, dead letters and stats are the whole
//! cluster's. Payloads stay in the log: the projection keeps the rest of each event, and a
//! payload is read from the stream's leader when one is shown.
//!
//! A read first waits until the projection holds everything the log held when the read began
//! (an append acknowledged by any node before is in what it shows), and says so if this node
//! cannot catch up in time.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use tokio::sync::watch;

use super::record::Record;
use super::{INDEX_BITS, NatsLog, unavailable};
use crate::log::{EventSummary, QueuedDelivery};
use crate::memory::{MemoryStore, ProjectedAttempt};
use crate::queue::{DeliveryId, DeliveryQueue as _, DeliveryStatus};
use crate::read::{
    AttemptRecord, DeliveryDetail, DeliveryRecord, EventFilter, EventTrace, JobRecord, MinuteStats,
    PayloadPreview, ReadModel,
};
use crate::{MINUTE_STATS_KEPT_MS, Retention, StoreError, StoreFuture, Swept};
use plugboard_runtime::clock::now_ms;

/// How long a read waits for this node's projection to reach the log's end.
const CATCH_UP: Duration = Duration::from_secs(10);

/// How often each node forgets what the log no longer holds (history another node swept).
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The read model on NATS.
pub struct NatsReadModel {
    log: Arc<NatsLog>,
    projection: Arc<MemoryStore>,
    /// The last sequence of the log folded in.
    folded: watch::Receiver<u64>,
    tail: tokio::task::JoinHandle<()>,
    forget: tokio::task::JoinHandle<()>,
}

impl Drop for NatsReadModel {
    fn drop(&mut self) {
        self.tail.abort();
        self.forget.abort();
    }
}

impl NatsReadModel {
    /// Starts folding `log` into this node's projection, from its first message, and
    /// forgetting what the log no longer holds.
    pub fn start(log: Arc<NatsLog>) -> Arc<Self> {
        let projection = Arc::new(MemoryStore::new());
        let (notify, folded) = watch::channel(0);
        let tail = tokio::spawn(fold_forever(log.stream.clone(), projection.clone(), notify));
        let forget = tokio::spawn(forget_forever(log.stream.clone(), projection.clone()));
        Arc::new(NatsReadModel { log, projection, folded, tail, forget })
    }

    /// The log's first message kept: this node's projection forgets what came before it
    /// (swept from the log by a retention pass, on any node).
    pub(super) async fn forget_swept(&self) -> Result<Swept, StoreError> {
        let info = self.log.stream.get_info().await.map_err(|e| unavailable("reading the log's state", e))?;
        Ok(forget_before(&self.projection, info.state.first_sequence))
    }

    /// The first log message `retention` keeps now, once the projection holds the whole log:
    /// the message of the oldest event kept (so that a message holding a kept event stays
    /// whole), or the one after the newest event past it when none is kept. `None` when
    /// nothing is past it.
    pub(super) async fn first_kept(&self, retention: &Retention) -> Result<Option<u64>, StoreError> {
        let message = |position: i64| u64::try_from(position).unwrap_or(0) >> INDEX_BITS;
        let cut = self.caught_up().await?.retention_cut(now_ms(), retention);
        Ok(cut.map(|(past, kept)| kept.map_or(message(past) + 1, message)))
    }

    /// Whether this node's read model lists delivery `id` (forgotten with its event, or not).
    pub(super) fn lists_delivery(&self, id: u64) -> bool {
        self.projection.lists_delivery(id)
    }

    /// Waits until the projection holds every message the log held when this was called.
    async fn caught_up(&self) -> Result<&MemoryStore, StoreError> {
        let info = self.log.stream.get_info().await.map_err(|e| unavailable("reading the log's state", e))?;
        // A stream emptied by retention has nothing to fold: there is no message `last` to wait for.
        let last = if info.state.messages == 0 { 0 } else { info.state.last_sequence };
        let mut folded = self.folded.clone();
        match tokio::time::timeout(CATCH_UP, folded.wait_for(|f| *f >= last)).await {
            Ok(Ok(_)) => Ok(&self.projection),
            _ => Err(StoreError::Unavailable(format!(
                "this node's read model has folded the log up to message {} of {last}: try again, or ask another node",
                *self.folded.borrow()
            ))),
        }
    }

    /// How many dead letters the cluster has.
    pub async fn dead_letters(&self) -> Result<u64, StoreError> {
        Ok(self.caught_up().await?.queue_stats(0).await?.dead)
    }

    /// An event's content type and payload, read from the log.
    async fn read_payload(&self, id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let Some(position) = self.caught_up().await?.position_of(id) else { return Ok(None) };
        let position = u64::try_from(position).unwrap_or(0);
        let (sequence, index) = (position >> INDEX_BITS, (position & ((1 << INDEX_BITS) - 1)) as usize);
        let message = match self.log.stream.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(unavailable("reading an event's payload", e)),
        };
        let record: Record = serde_json::from_slice(&message.payload)
            .map_err(|e| StoreError::Failed(format!("an append: {e}")))?;
        let Some(stored) = record.events().get(index) else { return Ok(None) };
        let event = stored.event().map_err(|e| StoreError::Failed(format!("an event's payload: {e}")))?;
        Ok(Some((event.content_type, event.payload)))
    }

    async fn read_trace(&self, id: &str) -> Result<Option<EventTrace>, StoreError> {
        let Some(mut trace) = self.caught_up().await?.trace(id).await? else { return Ok(None) };
        if let Some((content_type, payload)) = self.read_payload(id).await? {
            trace.payload = Some(PayloadPreview::of(&content_type, &payload));
        }
        Ok(Some(trace))
    }

    async fn read_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
        let Some(mut detail) = self.caught_up().await?.delivery(id).await? else { return Ok(None) };
        if let Some((_, payload)) = self.read_payload(&detail.delivery.event_id).await? {
            detail.payload = String::from_utf8_lossy(&payload).into_owned();
        }
        Ok(Some(detail))
    }
}

/// Folds one message of the log into the projection.
fn fold(projection: &MemoryStore, sequence: u64, payload: &[u8]) {
    let Ok(record) = serde_json::from_slice::<Record>(payload) else {
        // Another program's message on the log's subjects.
        return;
    };
    let base = sequence << INDEX_BITS;
    let position = |index: usize| i64::try_from(base | index as u64).unwrap_or(i64::MAX);
    let events = record
        .events()
        .iter()
        .enumerate()
        .filter_map(|(index, stored)| {
            let mut event = stored.event().ok()?;
            // The payload stays in the log.
            event.payload = Vec::new();
            Some((position(index), event))
        })
        .collect();
    let deliveries = record
        .deliveries()
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let queued = QueuedDelivery {
                event_id: d.event_id.clone(),
                route: d.route.clone(),
                target: d.target.clone(),
                action: d.action.clone(),
                order_key: d.order_key.clone(),
            };
            (base | index as u64, queued)
        })
        .collect();
    let settles = record.settles.as_ref().and_then(|s| {
        Some(ProjectedAttempt {
            delivery: DeliveryId::new(s.delivery.clone()).number()?,
            record: AttemptRecord {
                attempt: s.attempt,
                at_ms: record.stored_at_ms(),
                duration_us: s.duration_us,
                outcome: s.outcome,
                detail: s.error.clone(),
                handler: s.handler.clone(),
            },
            output: s.output.clone(),
        })
    });
    projection.project(record.stored_at_ms(), events, deliveries, settles);
    if let Some(id) = record.replays.as_ref().and_then(|id| DeliveryId::new(id.clone()).number()) {
        projection.project_replay(id);
    }
}

/// Folds every message of the log into `projection`, from the first, for as long as the read
/// model lives.
async fn fold_forever(stream: stream::Stream, projection: Arc<MemoryStore>, folded: watch::Sender<u64>) {
    super::follow(stream, None, 1, false, move |sequence, message| {
        fold(&projection, sequence, &message.payload);
        folded.send_replace(sequence);
    })
    .await
}

/// Forgets from `projection` what came before the log's message `first`.
fn forget_before(projection: &MemoryStore, first: u64) -> Swept {
    let position = i64::try_from(first << INDEX_BITS).unwrap_or(i64::MAX);
    projection.forget_before(position, now_ms().saturating_sub(MINUTE_STATS_KEPT_MS))
}

/// Every [`FORGET_EVERY`], forgets from `projection` what the log no longer holds.
async fn forget_forever(stream: stream::Stream, projection: Arc<MemoryStore>) {
    loop {
        tokio::time::sleep(FORGET_EVERY).await;
        match stream.get_info().await {
            Ok(info) => {
                forget_before(&projection, info.state.first_sequence);
            }
            Err(e) => tracing::debug!(error = %e, "reading the log's first message"),
        }
    }
}

impl ReadModel for NatsReadModel {
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>> {
        Box::pin(async move { self.caught_up().await?.events(filter, limit).await })
    }

    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>> {
        Box::pin(self.read_payload(id))
    }

    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>> {
        Box::pin(self.read_trace(id))
    }

    fn deliveries(
        &self,
        status: DeliveryStatus,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRecord>> {
        Box::pin(async move { self.caught_up().await?.deliveries(status, before, limit).await })
    }

    fn delivery(&self, id: DeliveryId) -> StoreFuture<'_, Option<DeliveryDetail>> {
        Box::pin(self.read_delivery(id))
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(async move { self.caught_up().await?.job(id).await })
    }

    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>> {
        Box::pin(async move { self.caught_up().await?.stats(since_ms).await })
    }
}
