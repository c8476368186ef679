//! The event store's schema and opening its file.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// The event store's schema, one migration per version. A file records the version it is at
/// in SQLite's `user_version`; opening applies the missing migrations in order, each in its own
/// transaction, so an upgrade opens a file an older plugboard wrote. Version 1 is written with
/// `IF NOT EXISTS` because files from before versioning (version 0) already hold its tables.
pub(super) const MIGRATIONS: [&str; 5] = [
    // 1: the event log, deduplication keys, the delivery queue and its attempts.
    "CREATE TABLE IF NOT EXISTS events (
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
    CREATE TABLE IF NOT EXISTS webhook_deliveries (
        instance TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (instance, delivery_id)
    );
    CREATE TABLE IF NOT EXISTS delivery_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL REFERENCES events(id),
        route TEXT NOT NULL,
        target TEXT NOT NULL,
        action TEXT,
        order_key TEXT,
        output TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at_ms INTEGER NOT NULL,
        last_error TEXT,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS delivery_due ON delivery_queue (status, next_at_ms);
    CREATE INDEX IF NOT EXISTS delivery_order ON delivery_queue (route, order_key, status, id);
    CREATE TABLE IF NOT EXISTS attempts (
        delivery INTEGER NOT NULL REFERENCES delivery_queue(id),
        attempt INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        handler TEXT
    );",
    // 2: events name the event whose delivery produced them (files from before versioning
    // may have the column already: see `migrate`).
    "ALTER TABLE events ADD COLUMN caused_by TEXT;
    CREATE INDEX IF NOT EXISTS events_caused_by ON events (caused_by);",
    // 3: the indexes the admin views, traces and the queue's joins need at millions of rows.
    "CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery, attempt);
    CREATE INDEX IF NOT EXISTS attempts_at ON attempts (at_ms);
    CREATE INDEX IF NOT EXISTS events_stored_at ON events (stored_at_ms);
    CREATE INDEX IF NOT EXISTS delivery_queue_event ON delivery_queue (event_id);
    CREATE INDEX IF NOT EXISTS webhook_deliveries_expiry ON webhook_deliveries (expires_at_ms);",
    // 4: what `tests/benches/admin_queries.rs` found slow at a million events: dead letters by
    // id (`/v1/dlq`), and the per-minute charts, now kept as totals per minute by the writer
    // (filled from the last day of history on upgrade).
    "CREATE INDEX IF NOT EXISTS delivery_status_id ON delivery_queue (status, id);
    CREATE TABLE IF NOT EXISTS minute_stats (
        minute INTEGER PRIMARY KEY,
        events INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        duration_us_sum INTEGER NOT NULL DEFAULT 0,
        duration_us_max INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO minute_stats (minute, events)
        SELECT stored_at_ms / 60000, COUNT(*) FROM events WHERE stored_at_ms >= (unixepoch() - 86400) * 1000 GROUP BY 1;
    INSERT INTO minute_stats (minute, attempts, failures, duration_us_sum, duration_us_max)
        SELECT at_ms / 60000, COUNT(*), SUM(outcome != 'delivered'), SUM(duration_us), MAX(duration_us)
        FROM attempts WHERE at_ms >= (unixepoch() - 86400) * 1000 GROUP BY 1
        ON CONFLICT (minute) DO UPDATE SET attempts = excluded.attempts, failures = excluded.failures,
            duration_us_sum = excluded.duration_us_sum, duration_us_max = excluded.duration_us_max;",
    // 5: only events a delivery produced have a cause; a webhook's events (most of them) no
    // longer add an entry to the index of causes, which every commit wrote pages of.
    "DROP INDEX IF EXISTS events_caused_by;
    CREATE INDEX events_caused_by ON events (caused_by) WHERE caused_by IS NOT NULL;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the file to [`SCHEMA_VERSION`], or refuses a file a newer plugboard wrote.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found: current, known: SCHEMA_VERSION });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as u32 + 1;
        let tx = conn.transaction()?;
        let has_cause: bool =
            tx.prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'caused_by'")?.exists([])?;
        if version == 2 && has_cause {
            // Written before versioning by a build that already added the column.
            tx.execute_batch("CREATE INDEX IF NOT EXISTS events_caused_by ON events (caused_by);")?;
        } else {
            tx.execute_batch(migration)?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Opens the database file at `path` for one of the store's parts (events, kv, call log). A new
/// file is set to incremental auto-vacuum before anything is created in it, so the space that
/// retention frees can be handed back to the file system.
pub(crate) fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    plan_once(&conn)?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if pages == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    }
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    Ok(conn)
}

/// Keeps each cached statement's query plan: without it, SQLite plans a statement again
/// whenever a bound value that could change the plan is new (a `LIMIT ?`, a range bound), which
/// on the claim query cost more than running it. Plans here come from the indexes alone (the
/// store never runs ANALYZE), so holding them loses nothing.
pub(super) fn plan_once(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = connect(path)?;
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    migrate(&mut conn)?;
    Ok(conn)
}
