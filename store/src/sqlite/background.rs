//! A writer thread for records that must never make their producer wait for the disk (the
//! outbound call log, recordings): items go through a bounded channel and are committed in
//! batches; when the channel is full (the disk cannot keep up) items are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the writer thread is handed: an item to write, or a flush to answer once written.
enum ToWriter<T> {
    Item(T),
    Flush(mpsc::SyncSender<()>),
}

/// The producer's side of a writer thread.
pub(crate) struct Background<T> {
    tx: mpsc::SyncSender<ToWriter<(T, usize)>>,
    dropped: Arc<AtomicU64>,
    /// Bytes queued and not yet written, against `max_queued_bytes`.
    queued: Arc<AtomicUsize>,
    max_queued_bytes: usize,
}

/// The most items one batch commits.
const BATCH: usize = 4_096;

impl<T: Send + 'static> Background<T> {
    /// Starts thread `name`, which hands each batch of up to 4,096 items to `write`, waiting
    /// `linger` after the first of a batch; at most `capacity` items and `max_queued_bytes` bytes
    /// (as [`Background::send_weighing`] counts them) wait. `what` names the items in the
    /// warning a failed batch logs.
    pub(crate) fn spawn(
        name: &str,
        capacity: usize,
        max_queued_bytes: usize,
        linger: Duration,
        what: &'static str,
        mut write: impl FnMut(&[T]) -> rusqlite::Result<()> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<ToWriter<(T, usize)>>(capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                // Waiting a little after the first item makes one transaction of many: fewer
                // locks and WAL frames per item, and less CPU taken from the event store.
                if !linger.is_zero() && !matches!(first, ToWriter::Flush(_)) {
                    std::thread::sleep(linger);
                }
                let mut batch = Vec::new();
                let mut bytes = 0;
                let mut flushed = Vec::new();
                for message in std::iter::once(first).chain(rx.try_iter().take(BATCH)) {
                    match message {
                        ToWriter::Item((item, weight)) => {
                            batch.push(item);
                            bytes += weight;
                        }
                        ToWriter::Flush(done) => flushed.push(done),
                    }
                }
                if !batch.is_empty()
                    && let Err(e) = write(&batch)
                {
                    tracing::warn!(error = %e, lost = batch.len(), "could not write {what}");
                }
                written.fetch_sub(bytes, Ordering::Relaxed);
                for done in flushed {
                    let _ = done.send(());
                }
            }
        })?;
        Ok(Background { tx, dropped: Arc::new(AtomicU64::new(0)), queued, max_queued_bytes })
    }

    /// Queues `item` without waiting; drops (and counts) it when the queue is full.
    pub(crate) fn send(&self, item: T) {
        self.send_weighing(item, 0);
    }

    /// Queues `item`, which makes the queue hold about `bytes`, without waiting; drops (and
    /// counts) it when the queue is full, in items or in bytes. Answers whether it was queued.
    pub(crate) fn send_weighing(&self, item: T, bytes: usize) -> bool {
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.max_queued_bytes
            || self.tx.try_send(ToWriter::Item((item, bytes))).is_err()
        {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Items dropped because the writer fell behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits, at most `timeout`, until every item queued so far is written.
    pub(crate) fn flush(&self, timeout: Duration) {
        let (done, written) = mpsc::sync_channel(1);
        let deadline = Instant::now() + timeout;
        // The channel may be full: wait for room, within the timeout.
        let mut message = ToWriter::Flush(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}
