//! The outbound call log in the embedded store. Recording never waits for the disk: records go
//! through a bounded channel to a writer thread that commits them in batches; when the channel
//! is full (the disk cannot keep up) records are dropped and counted rather than slowing every
//! plugin's requests. The newest `retain` records are kept.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use plugboard_runtime::egress::calls::{CallFilter, CallLog, CallRecord};

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS outbound_calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        instance TEXT NOT NULL,
        event_id TEXT,
        method TEXT NOT NULL,
        destination TEXT NOT NULL,
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER,
        outcome TEXT NOT NULL,
        error TEXT,
        latency_us INTEGER NOT NULL,
        request_bytes INTEGER NOT NULL,
        response_bytes INTEGER NOT NULL,
        attempt INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS outbound_calls_instance ON outbound_calls (instance, id);
";

/// A [`CallLog`] in SQLite.
pub struct SqliteCallLog {
    tx: mpsc::SyncSender<ToWriter>,
    reader: Mutex<Connection>,
    dropped: Arc<AtomicU64>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = super::connect(path)?;
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

fn host_of(destination: &str) -> &str {
    destination.split("://").nth(1).and_then(|h| h.rsplit_once(':')).map(|(h, _)| h).unwrap_or("")
}

/// What the writer thread is handed: a record to write, or a flush to answer once written.
enum ToWriter {
    Record(CallRecord),
    Flush(mpsc::SyncSender<()>),
}

impl SqliteCallLog {
    /// Opens (or creates) the call log in the database at `path`, keeping the newest `retain`.
    pub fn open(path: &Path, retain: u64) -> rusqlite::Result<Self> {
        let mut writer = open(path)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::sync_channel::<ToWriter>(65_536);
        let spawned = std::thread::Builder::new().name("plugboard-calls".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = Vec::new();
                let mut flushed = Vec::new();
                for message in std::iter::once(first).chain(rx.try_iter().take(4_096)) {
                    match message {
                        ToWriter::Record(call) => batch.push(call),
                        ToWriter::Flush(done) => flushed.push(done),
                    }
                }
                if !batch.is_empty()
                    && let Err(e) = write(&mut writer, &batch, retain)
                {
                    tracing::warn!(error = %e, lost = batch.len(), "could not write outbound call records");
                }
                for done in flushed {
                    let _ = done.send(());
                }
            }
        });
        if spawned.is_err() {
            return Err(rusqlite::Error::InvalidQuery);
        }
        Ok(SqliteCallLog { tx, reader: Mutex::new(reader), dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// Records dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write(conn: &mut Connection, batch: &[CallRecord], retain: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO outbound_calls (at_ms, instance, event_id, method, destination, host, path, status,
             outcome, error, latency_us, request_bytes, response_bytes, attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for c in batch {
            insert.execute(params![
                c.at_ms as i64,
                c.instance,
                c.event_id,
                c.method,
                c.destination,
                host_of(&c.destination),
                c.path,
                c.status,
                c.outcome,
                c.error,
                c.latency_us as i64,
                c.request_bytes as i64,
                c.response_bytes as i64,
                c.attempt,
            ])?;
        }
    }
    tx.execute(
        "DELETE FROM outbound_calls WHERE id <= (SELECT MAX(id) FROM outbound_calls) - ?1",
        [i64::try_from(retain).unwrap_or(i64::MAX)],
    )?;
    tx.commit()
}

impl CallLog for SqliteCallLog {
    fn record(&self, call: CallRecord) {
        if self.tx.try_send(ToWriter::Record(call)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self, timeout: std::time::Duration) {
        let (done, written) = mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + timeout;
        // The channel may be full: wait for room, within the timeout.
        let mut message = ToWriter::Flush(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }

    fn query(&self, filter: &CallFilter) -> Vec<CallRecord> {
        let Ok(conn) = self.reader.lock() else { return Vec::new() };
        let rows = conn
            .prepare_cached(
                "SELECT at_ms, instance, event_id, method, destination, path, status, outcome, error,
                        latency_us, request_bytes, response_bytes, attempt
                 FROM outbound_calls
                 WHERE (?1 IS NULL OR instance = ?1) AND (?2 IS NULL OR host = ?2)
                   AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR outcome = ?4)
                 ORDER BY id DESC LIMIT ?5",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        filter.instance,
                        filter.host,
                        filter.status,
                        filter.outcome,
                        filter.limit() as i64
                    ],
                    |r| {
                        Ok(CallRecord {
                            at_ms: r.get::<_, i64>(0)? as u64,
                            instance: r.get(1)?,
                            event_id: r.get(2)?,
                            method: r.get(3)?,
                            destination: r.get(4)?,
                            path: r.get(5)?,
                            status: r.get(6)?,
                            outcome: r.get(7)?,
                            error: r.get(8)?,
                            latency_us: r.get::<_, i64>(9)? as u64,
                            request_bytes: r.get::<_, i64>(10)? as u64,
                            response_bytes: r.get::<_, i64>(11)? as u64,
                            attempt: r.get(12)?,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()
            });
        rows.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read outbound call records");
            Vec::new()
        })
    }
}
