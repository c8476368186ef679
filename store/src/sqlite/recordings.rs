//! Recorded invocations (for `plugboard replay`) in the embedded store: written by a background
//! thread in batches, as the call log is, so that recording never makes an invocation wait for
//! the disk; the newest `retain` are kept. Each row is the recording as JSON, with the columns
//! it is looked up by.
//!
//! One index (by instance), since every index is written with every recording: a lookup by
//! recording or event id reads the table, which `retain` bounds.
//!
//! They live in their own file next to the event store's ([`SqliteRecordingLog::path_beside`]):
//! SQLite has one writer per file, and recordings written into the event store's file would make
//! every webhook's commit wait for them.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use plugboard_runtime::recording::{Recording, RecordingLog, RecordingSummary};

use super::background::Background;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS recordings (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        instance TEXT NOT NULL,
        event_id TEXT,
        recorded_at_ms INTEGER NOT NULL,
        build TEXT NOT NULL,
        call TEXT NOT NULL,
        host_calls INTEGER NOT NULL,
        error TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS recordings_instance ON recordings (instance, seq);
";

/// A [`RecordingLog`] in SQLite.
pub struct SqliteRecordingLog {
    writer: Background<Recording>,
    reader: Mutex<Connection>,
}

/// The layout of this file; another is dropped and made again (recordings are a bounded log of
/// recent invocations, not records to migrate).
const LAYOUT: i64 = 1;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = super::connect(path)?;
    let layout: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if layout != LAYOUT {
        conn.execute_batch("DROP TABLE IF EXISTS recordings")?;
        conn.pragma_update(None, "user_version", LAYOUT)?;
    }
    conn.execute_batch(SCHEMA)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// The most recordings waiting for the writer, and the most bytes they may hold: past either,
/// recordings are dropped (and counted) rather than held.
const QUEUED: usize = 4_096;
const QUEUED_BYTES: usize = 64 << 20;
/// How long the writer gathers recordings before a transaction.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

impl SqliteRecordingLog {
    /// Opens (or creates) the recordings in the database at `path`, keeping the newest `retain`.
    pub fn open(path: &Path, retain: u64) -> rusqlite::Result<Self> {
        let mut conn = open(path)?;
        let reader = open(path)?;
        let writer = Background::spawn(
            "plugboard-recordings",
            QUEUED,
            QUEUED_BYTES,
            LINGER,
            "recordings",
            move |batch| write(&mut conn, batch, retain),
        )
        .map_err(|_| rusqlite::Error::InvalidQuery)?;
        Ok(SqliteRecordingLog { writer, reader: Mutex::new(reader) })
    }

    /// Where the recordings of the event store at `store` are kept: `events.db` ->
    /// `events.recordings.db`.
    pub fn path_beside(store: &Path) -> std::path::PathBuf {
        store.with_extension("recordings.db")
    }

    /// Recordings dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    fn read(&self, sql: &str, params: impl rusqlite::Params) -> Vec<Recording> {
        let Ok(conn) = self.reader.lock() else { return Vec::new() };
        let bodies = conn.prepare_cached(sql).and_then(|mut stmt| {
            stmt.query_map(params, |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()
        });
        let bodies = bodies.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read recordings");
            Vec::new()
        });
        bodies
            .iter()
            .filter_map(|body| {
                serde_json::from_str(body)
                    .map_err(|e| tracing::warn!(error = %e, "a stored recording does not read"))
                    .ok()
            })
            .collect()
    }
}

fn write(conn: &mut Connection, batch: &[Recording], retain: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO recordings (id, instance, event_id, recorded_at_ms, build, call, host_calls, error, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for r in batch {
            let Ok(body) = serde_json::to_string(r) else { continue };
            let summary = r.summary();
            insert.execute(params![
                r.id,
                r.instance,
                r.event_id,
                i64::try_from(r.recorded_at_ms).unwrap_or(i64::MAX),
                summary.build,
                summary.call,
                i64::try_from(summary.host_calls).unwrap_or(i64::MAX),
                summary.error,
                body
            ])?;
        }
    }
    tx.prepare_cached("DELETE FROM recordings WHERE seq <= (SELECT MAX(seq) FROM recordings) - ?1")?
        .execute([i64::try_from(retain).unwrap_or(i64::MAX)])?;
    tx.commit()
}

impl RecordingLog for SqliteRecordingLog {
    fn keep(&self, recording: Recording) -> bool {
        let bytes = recording.approximate_bytes();
        self.writer.send_weighing(recording, bytes)
    }

    fn get(&self, id: &str) -> Option<Recording> {
        self.read(
            "SELECT body FROM recordings WHERE id = ?1 OR event_id = ?1 ORDER BY seq DESC LIMIT 1",
            [id],
        )
        .pop()
    }

    fn recent(&self, instance: Option<&str>, limit: usize) -> Vec<Recording> {
        self.read(
            "SELECT body FROM recordings WHERE (?1 IS NULL OR instance = ?1) ORDER BY seq DESC LIMIT ?2",
            params![instance, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn summaries(&self, instance: Option<&str>, limit: usize) -> Vec<RecordingSummary> {
        let Ok(conn) = self.reader.lock() else { return Vec::new() };
        let rows = conn
            .prepare_cached(
                "SELECT id, instance, build, event_id, recorded_at_ms, call, host_calls, error FROM recordings
                 WHERE (?1 IS NULL OR instance = ?1) ORDER BY seq DESC LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![instance, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok(RecordingSummary {
                        id: r.get(0)?,
                        instance: r.get(1)?,
                        build: r.get(2)?,
                        event_id: r.get(3)?,
                        recorded_at_ms: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        call: r.get(5)?,
                        host_calls: usize::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                        error: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            });
        rows.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read recordings");
            Vec::new()
        })
    }

    fn flush(&self, timeout: std::time::Duration) {
        self.writer.flush(timeout);
    }
}
