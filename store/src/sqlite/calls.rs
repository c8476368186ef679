//! The outbound call log in the embedded store. Recording never waits for the disk: records go
//! through a queue of bounded length to a writer thread that commits them in batches; when the
//! queue is full (the disk cannot keep up) records are dropped and counted rather than slowing
//! every plugin's requests. The newest `retain` records are kept.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, params};

use plugboard_runtime::egress::calls::{CallFilter, CallLog, CallRecord};

use super::background::Background;

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
    writer: Background<CallRecord>,
    reader: Mutex<Connection>,
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

impl SqliteCallLog {
    /// Opens (or creates) the call log in the database at `path`, keeping the newest `retain`.
    pub fn open(path: &Path, retain: u64) -> rusqlite::Result<Self> {
        let mut conn = open(path)?;
        let reader = open(path)?;
        let writer = Background::spawn(
            "plugboard-calls",
            65_536,
            usize::MAX,
            Duration::ZERO,
            "outbound call records",
            move |batch| write(&mut conn, batch, retain),
        )
        .map_err(|_| rusqlite::Error::InvalidQuery)?;
        Ok(SqliteCallLog { writer, reader: Mutex::new(reader) })
    }

    /// Records dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
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
        self.writer.send(call);
    }

    fn flush(&self, timeout: std::time::Duration) {
        self.writer.flush(timeout);
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
