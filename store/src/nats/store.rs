//! The three event ports on NATS together: what a plugboard node holds as its event store.

use std::sync::Arc;
use std::time::Duration;

use super::{INDEX_BITS, NatsLog, NatsQueue, NatsReadModel, NatsSettings, QueueSettings, unavailable};
use crate::log::{Append, Appended, EventLog, EventSummary};
use crate::queue::{Admit, Attempt, ClaimId, Claimed, DeliveryId, DeliveryQueue, Outcome, QueueStats};
use crate::read::{
    DeliveryDetail, DeliveryRecord, EventFilter, EventTrace, JobRecord, MinuteStats, ReadModel,
};
use crate::{DeliveryStatus, Retention, StoreError, StoreFuture, Swept};

/// The event log, the delivery queue and the read model on one NATS cluster.
pub struct NatsStore {
    log: Arc<NatsLog>,
    queue: Arc<NatsQueue>,
    read: Arc<NatsReadModel>,
}

impl NatsStore {
    /// Connects to the cluster, creating what is missing, and starts this node's fan-out and
    /// read model.
    pub async fn connect(settings: &NatsSettings, queue: QueueSettings) -> Result<Arc<Self>, StoreError> {
        let log = NatsLog::connect(settings).await?;
        let queue = NatsQueue::connect(log.clone(), settings, queue).await?;
        let read = NatsReadModel::start(log.clone());
        Ok(Arc::new(NatsStore { log, queue, read }))
    }

    /// Deletes the history past `retention`, as a SQLite store's retention pass does: from the
    /// log, every append before the first it keeps (never one whose deliveries the fan-out has
    /// not queued yet: a pending delivery's event lives on in the queue; never one younger than
    /// `min_age_ms`, which still records its webhook's delivery id), the dead letters of those
    /// appends, and from this node's read model what the log no longer holds (other nodes'
    /// forget it within a minute).
    pub async fn sweep(&self, retention: Retention) -> Result<Swept, StoreError> {
        let Some(first_kept) = self.read.first_kept(&retention).await? else {
            return self.read.forget_swept().await;
        };
        let first_kept = first_kept.min(self.queue.fanned_out_until().await?);
        self.log
            .stream
            .purge()
            .sequence(first_kept)
            .await
            .map_err(|e| unavailable("deleting history from the log", e))?;
        let swept = self.read.forget_swept().await?;
        // Those of events kept for a sibling delivery still pending stay, as on SQLite.
        let read = &self.read;
        self.queue.forget_dead_before(first_kept << INDEX_BITS, |id| read.lists_delivery(id)).await?;
        Ok(swept)
    }

    /// The delivery queue, for what only it answers (its dead letters from the claims bucket).
    pub fn queue(&self) -> &NatsQueue {
        &self.queue
    }
}

impl EventLog for NatsStore {
    fn append(&self, append: Append) -> StoreFuture<'_, Appended> {
        self.log.append(append)
    }

    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool> {
        self.log.is_duplicate(instance, delivery_id)
    }

    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>> {
        self.log.events_after(after, limit)
    }

    fn last_position(&self) -> StoreFuture<'_, i64> {
        self.log.last_position()
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.log.commits()
    }

    fn writable(&self) -> bool {
        self.log.writable()
    }
}

impl DeliveryQueue for NatsStore {
    fn claim<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        admit: &'a mut Admit<'a>,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        self.queue.claim(now_ms, limit, lease, admit)
    }

    fn settle(&self, claim: ClaimId, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()> {
        self.queue.settle(claim, attempt, outcome)
    }

    fn renew(&self, claim: ClaimId, until_ms: u64) -> StoreFuture<'_, ()> {
        self.queue.renew(claim, until_ms)
    }

    fn release(&self, claim: ClaimId, not_before_ms: u64) -> StoreFuture<'_, ()> {
        self.queue.release(claim, not_before_ms)
    }

    fn replay(&self, delivery: Option<DeliveryId>) -> StoreFuture<'_, u64> {
        self.queue.replay(delivery)
    }

    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats> {
        Box::pin(async move {
            let queued = self.queue.queue_stats(now_ms).await?;
            Ok(QueueStats { dead: self.read.dead_letters().await?, ..queued })
        })
    }

    fn fixed_lease(&self) -> Option<Duration> {
        self.queue.fixed_lease()
    }
}

impl ReadModel for NatsStore {
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>> {
        self.read.events(filter, limit)
    }

    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>> {
        self.read.payload(id)
    }

    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>> {
        self.read.trace(id)
    }

    fn deliveries(
        &self,
        status: DeliveryStatus,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRecord>> {
        self.read.deliveries(status, before, limit)
    }

    fn delivery(&self, id: DeliveryId) -> StoreFuture<'_, Option<DeliveryDetail>> {
        self.read.delivery(id)
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        self.read.job(id)
    }

    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>> {
        self.read.stats(since_ms)
    }
}
