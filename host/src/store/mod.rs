//! Where events are stored: the durable event log.
//!
//! [`SqliteStore`] is the embedded default: SQLite in WAL mode, with one writer thread that
//! commits every append waiting at that moment in one transaction (group commit), so concurrent
//! webhooks share one fsync. An append returns only after its transaction is durable: the
//! ingress acknowledges nothing before that.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::bindings::types::Event;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("event store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone (the store is shutting down).
    #[error("event store is closed")]
    Closed,
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
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// The delivery id was already stored within its window: nothing was written.
    Duplicate,
}

struct Job {
    append: Append,
    now_ms: u64,
    done: oneshot::Sender<Result<Appended, StoreError>>,
}

/// The embedded event log.
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        occurred_at_ms INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        payload BLOB NOT NULL,
        attributes TEXT NOT NULL,
        stored_at_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS deliveries (
        instance TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (instance, delivery_id)
    );
";

fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer_conn = open(path)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("plugboard-store".into())
            .spawn(move || writer_loop(writer_conn, rx))
            .map_err(|_| StoreError::Closed)?;
        Ok(SqliteStore { writer: Mutex::new(Some(tx)), reader: Mutex::new(reader) })
    }

    /// Stores `append` durably, or reports it as a duplicate delivery.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        let (done, wait) = oneshot::channel();
        let job = Job { append, now_ms: crate::capabilities::emit::now_ms(), done };
        {
            let writer = self.writer.lock().map_err(|_| StoreError::Closed)?;
            writer.as_ref().ok_or(StoreError::Closed)?.send(job).map_err(|_| StoreError::Closed)?;
        }
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Whether `delivery_id` of `instance` is already stored and not expired.
    pub fn is_duplicate(&self, instance: &str, delivery_id: &str) -> Result<bool, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let now = crate::capabilities::emit::now_ms() as i64;
        let found: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM deliveries WHERE instance = ?1 AND delivery_id = ?2 AND expires_at_ms > ?3",
                params![instance, delivery_id, now],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// The most recent `limit` events, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare(
            "SELECT id, source, kind, occurred_at_ms, content_type, payload, attributes \
             FROM events ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            let attributes: String = r.get(6)?;
            Ok(Event {
                id: r.get(0)?,
                source: r.get(1)?,
                kind: r.get(2)?,
                occurred_at_ms: r.get::<_, i64>(3)? as u64,
                content_type: r.get(4)?,
                payload: r.get(5)?,
                attributes: serde_json::from_str(&attributes).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many events are stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer thread after it commits what it has.
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
    }
}

/// Takes every job waiting, writes them in one transaction, then answers each.
fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        match write_batch(&mut conn, &batch) {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(Ok(outcome));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch {
                    let _ = job.done.send(Err(StoreError::Sqlite(rusqlite::Error::InvalidParameterName(
                        message.clone(),
                    ))));
                }
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Appended>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut dedup = tx.prepare_cached(
            "INSERT INTO deliveries (instance, delivery_id, expires_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (instance, delivery_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms \
             WHERE deliveries.expires_at_ms <= ?4",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, source, kind, occurred_at_ms, content_type, payload, attributes, stored_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for job in batch {
            let a = &job.append;
            if let Some(delivery) = &a.delivery_id {
                let expires = job.now_ms.saturating_add(a.dedup_window_ms) as i64;
                if dedup.execute(params![a.instance, delivery, expires, job.now_ms as i64])? == 0 {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
            }
            for e in &a.events {
                let attributes = serde_json::to_string(&e.attributes).unwrap_or_else(|_| "[]".into());
                insert.execute(params![
                    e.id,
                    e.source,
                    e.kind,
                    e.occurred_at_ms as i64,
                    e.content_type,
                    e.payload,
                    attributes,
                    job.now_ms as i64
                ])?;
            }
            outcomes.push(Appended::Stored);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}
