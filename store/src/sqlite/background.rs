//! A writer thread for records that must never make their producer wait for the disk (the
//! outbound call log, recordings): items go through a channel and are committed in batches;
//! when the queue is full (the disk cannot keep up) items are dropped and counted. The queue
//! is counted, not preallocated: a bounded std channel would hold its whole capacity from the
//! start (14 MB for the call log's 65,536 records, with no outbound call made).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// What the writer thread is handed: an item to write, or a flush to answer once written.
enum ToWriter<T> {
    Item(T),
    Flush(mpsc::SyncSender<()>),
}

/// The producer's side of a writer thread.
pub(crate) struct Background<T> {
    tx: mpsc::Sender<ToWriter<(T, usize)>>,
    dropped: Arc<AtomicU64>,
    /// Items queued and not yet taken by the writer, against `capacity`.
    items: Arc<AtomicUsize>,
    capacity: usize,
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
        let (tx, rx) = mpsc::channel::<ToWriter<(T, usize)>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        let items = Arc::new(AtomicUsize::new(0));
        let taken = items.clone();
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
                            taken.fetch_sub(1, Ordering::Relaxed);
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
        Ok(Background { tx, dropped: Arc::new(AtomicU64::new(0)), items, capacity, queued, max_queued_bytes })
    }

    /// Queues `item` without waiting; drops (and counts) it when the queue is full.
    pub(crate) fn send(&self, item: T) {
        self.send_weighing(item, 0);
    }

    /// Queues `item`, which makes the queue hold about `bytes`, without waiting; drops (and
    /// counts) it when the queue is full, in items or in bytes. Answers whether it was queued.
    pub(crate) fn send_weighing(&self, item: T, bytes: usize) -> bool {
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        let waiting = self.items.fetch_add(1, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.max_queued_bytes
            || waiting >= self.capacity
            || self.tx.send(ToWriter::Item((item, bytes))).is_err()
        {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            self.items.fetch_sub(1, Ordering::Relaxed);
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
        if self.tx.send(ToWriter::Flush(done)).is_ok() {
            let _ = written.recv_timeout(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While the writer is busy, at most `capacity` items wait; the rest are dropped and
    /// counted, and every queued one is written afterwards.
    #[test]
    fn past_its_capacity_items_are_dropped_and_counted() {
        let (started, writing) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = written.clone();
        let background =
            Background::spawn("test-writer", 2, usize::MAX, Duration::ZERO, "items", move |batch| {
                let _ = started.send(());
                let _ = released.recv();
                sink.lock().unwrap().extend_from_slice(batch);
                Ok(())
            })
            .unwrap();
        background.send(0);
        writing.recv().unwrap(); // the writer holds item 0
        for n in 1..=4 {
            background.send(n);
        }
        assert_eq!(background.dropped(), 2);
        drop(release);
        background.flush(Duration::from_secs(30));
        assert_eq!(*written.lock().unwrap(), [0, 1, 2]);
    }
}
