//! Where events are stored: the durable event log.
//!
//! [`SqliteStore`] is the embedded default: SQLite in WAL mode, with one writer thread that
//! commits every append waiting at that moment in one transaction (group commit), so concurrent
//! webhooks share one fsync. An append returns only after its transaction is durable: the
//! ingress acknowledges nothing before that.
//!
//! The same database file holds the plugins' key-value data ([`SqliteKv`]) and the outbound
//! call log ([`SqliteCallLog`]), each on its own connection.

mod calls;
pub(crate) mod claims;
mod kv;
mod trace;

pub use calls::SqliteCallLog;
pub use kv::SqliteKv;
pub use trace::{
    EventSummary, EventTrace, MinuteStats, PAYLOAD_PREVIEW_BYTES, PayloadPreview, TracedDelivery,
};

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::types::Event;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("event store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone (the store is shutting down).
    #[error("event store is closed")]
    Closed,
    /// The claim journal (next to the store file) could not be written.
    #[error("claim journal: {0}")]
    Journal(#[from] std::io::Error),
    /// Another process runs this store's deliveries (it holds the claim journal), or this
    /// store was opened without them.
    #[error(
        "another process runs this store's deliveries (it holds the claim journal next to the store file)"
    )]
    JournalHeld,
    /// A read-only opener found a file of an older schema version, which it does not upgrade.
    #[error(
        "the store file is at schema version {found}, older than this plugboard's {known}: \
         start `plugboard up` once to upgrade it"
    )]
    OlderSchema {
        /// The file's version.
        found: u32,
        /// This build's version.
        known: u32,
    },
    /// The file was written by a newer plugboard, whose schema this build does not know.
    #[error(
        "the store file is at schema version {found}; this plugboard knows up to {known}: upgrade plugboard"
    )]
    NewerSchema {
        /// The file's version.
        found: u32,
        /// This build's version.
        known: u32,
    },
}

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
    /// Their deliveries, as the routes decided.
    pub deliveries: Vec<QueuedDelivery>,
}

/// A delivery of a stored event to a route's target, queued with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    /// The event to deliver.
    pub event_id: String,
    /// The route that matched, by name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// The action to invoke with the payload; `handle` when absent.
    pub action: Option<String>,
    /// Deliveries of one route with the same key run one at a time, in order.
    pub order_key: Option<String>,
}

/// A delivery that is due, with its event.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The event.
    pub event: Event,
    /// The route's name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// The action, or `handle` when absent.
    pub action: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Delivered. Its output events are stored, with their own queued deliveries.
    Delivered {
        /// Events the target produced.
        events: Vec<Event>,
        /// Deliveries of those events.
        deliveries: Vec<QueuedDelivery>,
        /// An action's JSON output.
        output: Option<String>,
    },
    /// Failed; try again at `next_at_ms`.
    Retry {
        /// When.
        next_at_ms: u64,
        /// Why it failed.
        error: String,
    },
    /// Failed for good: a dead letter.
    Dead {
        /// Why.
        error: String,
        /// Events to store all the same (a job's completion notice).
        events: Vec<Event>,
        /// Their deliveries.
        deliveries: Vec<QueuedDelivery>,
    },
}

/// A delivery in the queue, as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: i64,
    /// The event's id.
    pub event_id: String,
    /// The route's name.
    pub route: String,
    /// The target instance.
    pub target: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
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
    /// `pending`, `succeeded` or `failed`.
    pub status: &'static str,
    /// Attempts so far.
    pub attempts: u32,
    /// The action's output, once succeeded.
    pub output: Option<serde_json::Value>,
    /// Why it failed, once failed.
    pub error: Option<String>,
}

/// The delivery queue at a glance, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Pending deliveries.
    pub pending: u64,
    /// How long the oldest due pending delivery has been due, in ms.
    pub lag_ms: u64,
    /// Dead letters.
    pub dead: u64,
}

/// An attempt to settle: which one, how long it took, and which build of the target ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first.
    pub number: u32,
    /// How long it took.
    pub duration_us: u64,
    /// The plugin build that handled it (`name@version sha256:...`), when one ran.
    pub handler: Option<String>,
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
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
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

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored.
    Stored,
    /// The delivery id was already stored within its window: nothing was written.
    Duplicate,
}

enum Work {
    Append(Append, oneshot::Sender<Result<Appended, StoreError>>),
    Outcome {
        delivery: i64,
        attempt: Attempt,
        outcome: Outcome,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Replay {
        delivery: Option<i64>,
        done: oneshot::Sender<Result<u64, StoreError>>,
    },
    Sweep {
        retention: Retention,
        done: oneshot::Sender<Result<Swept, StoreError>>,
    },
}

struct Job {
    work: Work,
    now_ms: u64,
}

/// What an [`EventStore`] method returns: a boxed future, so that the trait is object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The event log as the ingress, the dispatcher, schedules and jobs use it.
///
/// Every method is asynchronous and fallible, and an append is acknowledged only when its future
/// completes, so that a log that is remote, partitioned and acknowledges asynchronously (NATS
/// JetStream is planned) can implement it without pretending to be local. Deliveries are claimed
/// by whoever calls [`EventStore::due`] and settled by [`EventStore::record`]; a crash between
/// the two leaves them pending, which is what makes delivery at-least-once.
pub trait EventStore: Send + Sync + 'static {
    /// Stores events and their queued deliveries atomically, unless the delivery id is a
    /// duplicate.
    fn append(&self, append: Append) -> StoreFuture<'_, Appended>;
    /// Settles attempt `attempt` of `delivery`, storing what it produced.
    fn record(&self, delivery: i64, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()>;
    /// Puts dead letters back in the queue (one, or all).
    fn replay(&self, delivery: Option<i64>) -> StoreFuture<'_, u64>;
    /// Pending deliveries due at `now_ms`, in order, skipping `busy` ones and respecting ordering keys.
    fn due<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        busy: &'a HashSet<i64>,
    ) -> StoreFuture<'a, Vec<DueDelivery>>;
    /// An async job's state.
    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>>;
    /// Deliveries with a status, newest first.
    fn deliveries<'a>(&'a self, status: &'a str, limit: usize) -> StoreFuture<'a, Vec<DeliveryRecord>>;
    /// Whether a webhook delivery id was already stored within its window.
    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool>;
    /// One delivery with its event and attempts.
    fn delivery(&self, id: i64) -> StoreFuture<'_, Option<DeliveryDetail>>;
    /// The delivery queue's depth, lag and dead letters at `now_ms`.
    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats>;
    /// Whether the store can take writes now (for readiness checks).
    fn writable(&self) -> bool;
    /// Counts attempt `n` of each `(delivery, n)` before it runs, durably enough to survive the
    /// process dying while it runs (see [`SqliteStore::claim`]).
    fn claim(&self, claims: Vec<(i64, u32)>) -> StoreFuture<'_, ()>;
    /// Activity per minute since `since_ms`.
    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>>;
    /// An event and everything that happened because of it.
    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>>;
    /// An event's content type and whole payload.
    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>>;
    /// The newest `limit` events stored before position `before` (all when `None`), optionally
    /// of one kind (`*` wildcards) or from one source, newest first, each with its position: a
    /// page, whose last position is the cursor of the next.
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>>;
    /// Up to `limit` events stored after position `after` (see [`EventStore::last_position`]),
    /// oldest first, each with its position: what a live stream sends next.
    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>>;
    /// The position of the newest stored event (0 when there is none).
    fn last_position(&self) -> StoreFuture<'_, i64>;
    /// Changes each time the writer commits: wait on it instead of polling.
    fn commits(&self) -> tokio::sync::watch::Receiver<u64>;
}

// SQLite reads are answered inline: with WAL they do not wait for the writer, and they take
// microseconds, less than handing them to another thread would.
impl EventStore for SqliteStore {
    fn append(&self, append: Append) -> StoreFuture<'_, Appended> {
        Box::pin(SqliteStore::append(self, append))
    }

    fn record(&self, delivery: i64, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()> {
        Box::pin(SqliteStore::record(self, delivery, attempt, outcome))
    }

    fn replay(&self, delivery: Option<i64>) -> StoreFuture<'_, u64> {
        Box::pin(SqliteStore::replay(self, delivery))
    }

    fn due<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        busy: &'a HashSet<i64>,
    ) -> StoreFuture<'a, Vec<DueDelivery>> {
        Box::pin(std::future::ready(SqliteStore::due(self, now_ms, limit, busy)))
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(std::future::ready(SqliteStore::job(self, id)))
    }

    fn deliveries<'a>(&'a self, status: &'a str, limit: usize) -> StoreFuture<'a, Vec<DeliveryRecord>> {
        Box::pin(std::future::ready(SqliteStore::deliveries(self, status, limit)))
    }

    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(SqliteStore::is_duplicate(self, instance, delivery_id)))
    }

    fn delivery(&self, id: i64) -> StoreFuture<'_, Option<DeliveryDetail>> {
        Box::pin(std::future::ready(SqliteStore::delivery(self, id)))
    }

    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>> {
        Box::pin(std::future::ready(SqliteStore::trace(self, id)))
    }

    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>> {
        Box::pin(std::future::ready(SqliteStore::payload(self, id)))
    }

    fn writable(&self) -> bool {
        SqliteStore::writable(self)
    }

    fn claim(&self, claims: Vec<(i64, u32)>) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(SqliteStore::claim(self, &claims)))
    }

    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats> {
        Box::pin(std::future::ready(SqliteStore::queue_stats(self, now_ms)))
    }

    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>> {
        Box::pin(std::future::ready(SqliteStore::stats(self, since_ms)))
    }

    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>> {
        Box::pin(std::future::ready(SqliteStore::events(self, filter, limit)))
    }

    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>> {
        Box::pin(std::future::ready(SqliteStore::events_after(self, after, limit)))
    }

    fn last_position(&self) -> StoreFuture<'_, i64> {
        Box::pin(std::future::ready(SqliteStore::last_position(self)))
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }
}

/// The embedded event log.
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    reader: Mutex<Connection>,
    /// Counts committed batches.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// Whether the writer thread still runs (false once it ended, by closing or by a panic).
    writer_alive: Arc<AtomicBool>,
    /// Which attempts are running (see [`claims`]); `None` when opened without deliveries.
    claims: Mutex<Option<claims::ClaimJournal>>,
}

/// Clears the writer's liveness flag however the writer thread ends, panics included.
struct WriterAlive(Arc<AtomicBool>);

impl Drop for WriterAlive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The event store's schema, one migration per version. A file records the version it is at
/// in SQLite's `user_version`; opening applies the missing migrations in order, each in its own
/// transaction, so an upgrade opens a file an older plugboard wrote. Version 1 is written with
/// `IF NOT EXISTS` because files from before versioning (version 0) already hold its tables.
const MIGRATIONS: [&str; 4] = [
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
];

/// How long the per-minute activity (`minute_stats`) is kept.
const MINUTE_STATS_KEPT_MS: u64 = 7 * 86_400_000;

/// One minute's activity, added up while a batch is written and stored with it.
#[derive(Default)]
struct MinuteTotals {
    events: i64,
    attempts: i64,
    failures: i64,
    duration_us_sum: i64,
    duration_us_max: i64,
}

/// What a batch adds to each minute's activity.
#[derive(Default)]
struct Activity(std::collections::BTreeMap<i64, MinuteTotals>);

impl Activity {
    fn events(&mut self, at_ms: u64, n: usize) {
        if n > 0 {
            self.0.entry(minute_of(at_ms)).or_default().events += n as i64;
        }
    }

    fn attempt(&mut self, at_ms: u64, failed: bool, duration_us: u64) {
        let totals = self.0.entry(minute_of(at_ms)).or_default();
        let us = i64::try_from(duration_us).unwrap_or(i64::MAX);
        totals.attempts += 1;
        totals.failures += i64::from(failed);
        totals.duration_us_sum = totals.duration_us_sum.saturating_add(us);
        totals.duration_us_max = totals.duration_us_max.max(us);
    }

    fn store(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let mut add = tx.prepare_cached(
            "INSERT INTO minute_stats (minute, events, attempts, failures, duration_us_sum, duration_us_max) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (minute) DO UPDATE SET \
             events = events + excluded.events, attempts = attempts + excluded.attempts, \
             failures = failures + excluded.failures, duration_us_sum = duration_us_sum + excluded.duration_us_sum, \
             duration_us_max = MAX(duration_us_max, excluded.duration_us_max)",
        )?;
        for (minute, t) in &self.0 {
            add.execute(params![
                minute,
                t.events,
                t.attempts,
                t.failures,
                t.duration_us_sum,
                t.duration_us_max
            ])?;
        }
        Ok(())
    }
}

fn minute_of(at_ms: u64) -> i64 {
    i64::try_from(at_ms / 60_000).unwrap_or(i64::MAX)
}

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
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if pages == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    }
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    Ok(conn)
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = connect(path)?;
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// How much history the store keeps. Only finished work goes: an event is deleted, with its
/// deliveries and their attempts, once none of its deliveries is pending (delivered and dead
/// ones alike), when it is older than `max_age_ms` or not among the newest `max_events`.
/// Expired webhook delivery ids go too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events stored longer ago than this go; 0 keeps them whatever their age.
    pub max_age_ms: u64,
    /// At most this many events stay (the oldest finished ones go first); 0: no count limit.
    pub max_events: u64,
    /// The most events one pass deletes, so that a pass holds the writer only briefly.
    pub chunk: u64,
}

/// What one retention pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Events.
    pub events: u64,
    /// Their deliveries.
    pub deliveries: u64,
    /// The deliveries' attempts.
    pub attempts: u64,
    /// Expired webhook delivery ids.
    pub dedup_keys: u64,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, more: Swept) {
        self.events += more.events;
        self.deliveries += more.deliveries;
        self.attempts += more.attempts;
        self.dedup_keys += more.dedup_keys;
    }
}

fn sweep(tx: &rusqlite::Transaction<'_>, retention: &Retention, now_ms: u64) -> rusqlite::Result<Swept> {
    let age_cutoff = match retention.max_age_ms {
        0 => i64::MIN,
        age => i64::try_from(now_ms.saturating_sub(age)).unwrap_or(i64::MAX),
    };
    let keep = match retention.max_events {
        0 => None,
        n => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    };
    tx.prepare_cached("DELETE FROM minute_stats WHERE minute < ?1")?
        .execute(params![minute_of(now_ms.saturating_sub(MINUTE_STATS_KEPT_MS))])?;
    tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS swept (id TEXT PRIMARY KEY); DELETE FROM temp.swept;")?;
    tx.prepare_cached(
        "INSERT INTO temp.swept (id) SELECT e.id FROM events e \
         WHERE (e.stored_at_ms < ?1 OR (?2 IS NOT NULL AND e.seq <= (SELECT MAX(seq) FROM events) - ?2)) \
         AND NOT EXISTS (SELECT 1 FROM delivery_queue q WHERE q.event_id = e.id AND q.status = 'pending') \
         ORDER BY e.seq LIMIT ?3",
    )?
    .execute(params![age_cutoff, keep, i64::try_from(retention.chunk).unwrap_or(i64::MAX)])?;
    let attempts = tx.execute(
        "DELETE FROM attempts WHERE delivery IN \
         (SELECT q.id FROM delivery_queue q JOIN temp.swept s ON q.event_id = s.id)",
        [],
    )?;
    let deliveries =
        tx.execute("DELETE FROM delivery_queue WHERE event_id IN (SELECT id FROM temp.swept)", [])?;
    let events = tx.execute("DELETE FROM events WHERE id IN (SELECT id FROM temp.swept)", [])?;
    let dedup_keys = tx.execute(
        "DELETE FROM webhook_deliveries WHERE expires_at_ms < ?1",
        [i64::try_from(now_ms).unwrap_or(i64::MAX)],
    )?;
    Ok(Swept {
        events: events as u64,
        deliveries: deliveries as u64,
        attempts: attempts as u64,
        dedup_keys: dedup_keys as u64,
    })
}

impl SqliteStore {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // First: a second server on this store (two processes running one store's deliveries
        // would run each twice) is refused before it writes anything.
        let Some((mut journal, unfinished)) = claims::ClaimJournal::open(path)? else {
            return Err(StoreError::JournalHeld);
        };
        let mut writer_conn = open(path)?;
        let reader = open(path)?;
        // Attempts that were running when the process died count, before anything runs again.
        if !unfinished.is_empty() {
            count_unfinished(&mut writer_conn, &unfinished, crate::runtime::clock::now_ms())?;
            tracing::warn!(
                deliveries = unfinished.len(),
                "counted the attempts that were running when the process stopped"
            );
        }
        journal.clear()?;
        Self::start(writer_conn, reader, Some(journal))
    }

    /// Opens the store at `path` to write to it, not to run its deliveries (`plugboard dlq
    /// replay` next to a running server): the claim journal stays with whoever holds it.
    pub fn open_without_deliveries(path: &Path) -> Result<Self, StoreError> {
        Self::start(open(path)?, open(path)?, None)
    }

    fn start(
        writer_conn: Connection,
        reader: Connection,
        claims: Option<claims::ClaimJournal>,
    ) -> Result<Self, StoreError> {
        let claims = Mutex::new(claims);
        let (tx, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(tokio::sync::watch::Sender::new(0));
        let committed = commits.clone();
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = WriterAlive(writer_alive.clone());
        std::thread::Builder::new()
            .name("plugboard-store".into())
            .spawn(move || {
                let _alive = alive;
                writer_loop(writer_conn, rx, &committed)
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(SqliteStore {
            writer: Mutex::new(Some(tx)),
            reader: Mutex::new(reader),
            commits,
            writer_alive,
            claims,
        })
    }

    /// Opens the store at `path` for reading only (the CLI's listings): nothing is written, no
    /// schema is upgraded, no claim journal is touched; writes fail with [`StoreError::Closed`].
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: u32 = reader.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match found.cmp(&SCHEMA_VERSION) {
            std::cmp::Ordering::Greater => {
                return Err(StoreError::NewerSchema { found, known: SCHEMA_VERSION });
            }
            std::cmp::Ordering::Less => return Err(StoreError::OlderSchema { found, known: SCHEMA_VERSION }),
            std::cmp::Ordering::Equal => {}
        }
        Ok(SqliteStore {
            writer: Mutex::new(None),
            reader: Mutex::new(reader),
            commits: Arc::new(tokio::sync::watch::Sender::new(0)),
            writer_alive: Arc::new(AtomicBool::new(false)),
            claims: Mutex::new(None),
        })
    }

    /// Whether writes can still be stored: the writer thread runs and has not been closed.
    pub fn writable(&self) -> bool {
        self.writer_alive.load(Ordering::SeqCst) && self.writer.lock().is_ok_and(|w| w.is_some())
    }

    /// Stops taking writes: work already handed over is written, then the writer thread ends;
    /// later writes fail with [`StoreError::Closed`]. Reads go on.
    pub fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
    }

    fn submit(&self, work: Work) -> Result<(), StoreError> {
        let job = Job { work, now_ms: crate::runtime::clock::now_ms() };
        let writer = self.writer.lock().map_err(|_| StoreError::Closed)?;
        writer.as_ref().ok_or(StoreError::Closed)?.send(job).map_err(|_| StoreError::Closed)
    }

    /// Stores `append` (events and their deliveries) durably, or reports it as a duplicate.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        let (done, wait) = oneshot::channel();
        self.submit(Work::Append(append, done))?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Records the outcome of attempt number `attempt` of `delivery`, durably.
    pub async fn record(&self, delivery: i64, attempt: Attempt, outcome: Outcome) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.submit(Work::Outcome { delivery, attempt, outcome, done })?;
        wait.await.map_err(|_| StoreError::Closed)??;
        // Best effort: a claim left in the journal counts, at the next start, the attempt the
        // outcome just stored (attempts are set to the larger of the two), so nothing is lost.
        let done = self
            .claims
            .lock()
            .map_err(|_| StoreError::Closed)
            .and_then(|mut journal| Ok(journal.as_mut().map(|j| j.done(delivery)).transpose()?));
        if let Err(e) = done {
            tracing::warn!(delivery, "claim journal: {e}");
        }
        Ok(())
    }

    /// Counts attempt `n` of each `(delivery, n)` before it runs: if the process dies while
    /// running it, the attempt still counts at the next start, so a delivery that kills the host
    /// ends as a dead letter instead of looping. Written to the claim journal next to the store
    /// file (see [`claims`]), which survives the process dying, not a power loss.
    pub fn claim(&self, claims: &[(i64, u32)]) -> Result<(), StoreError> {
        let mut journal = self.claims.lock().map_err(|_| StoreError::Closed)?;
        let journal = journal.as_mut().ok_or(StoreError::JournalHeld)?;
        Ok(journal.claim(claims)?)
    }

    /// Deletes one chunk of history past `retention` (see [`Retention`]); answers what went.
    pub async fn sweep(&self, retention: Retention) -> Result<Swept, StoreError> {
        let (done, wait) = oneshot::channel();
        self.submit(Work::Sweep { retention, done })?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Puts dead letters back in the queue (one, or all with `None`), keeping their event ids;
    /// answers how many.
    pub async fn replay(&self, delivery: Option<i64>) -> Result<u64, StoreError> {
        let (done, wait) = oneshot::channel();
        self.submit(Work::Replay { delivery, done })?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Up to `limit` pending deliveries due at `now_ms`, oldest first, skipping `busy` ones.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        busy: &HashSet<i64>,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached(
            "SELECT q.id, q.route, q.target, q.action, q.attempts, \
                    e.id, e.source, e.kind, e.occurred_at_ms, e.content_type, e.payload, e.attributes \
             FROM delivery_queue q JOIN events e ON e.id = q.event_id \
             WHERE q.status = 'pending' AND q.next_at_ms <= ?1 \
               AND (q.order_key IS NULL OR q.id = (SELECT MIN(p.id) FROM delivery_queue p \
                    WHERE p.status = 'pending' AND p.route = q.route AND p.order_key = q.order_key)) \
             ORDER BY q.next_at_ms, q.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms as i64, (limit + busy.len()) as i64], |r| {
            Ok(DueDelivery {
                id: r.get(0)?,
                route: r.get(1)?,
                target: r.get(2)?,
                action: r.get(3)?,
                attempts: r.get::<_, i64>(4)? as u32,
                event: event_from_row(r, 5)?,
            })
        })?;
        let mut due: Vec<DueDelivery> = rows.collect::<Result<_, _>>()?;
        due.retain(|d| !busy.contains(&d.id));
        due.truncate(limit);
        Ok(due)
    }

    /// One delivery with its event and every attempt.
    pub fn delivery(&self, id: i64) -> Result<Option<DeliveryDetail>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let head = conn
            .query_row(
                "SELECT q.id, q.event_id, q.route, q.target, q.status, q.attempts, q.last_error, e.kind, e.source, e.payload \
                 FROM delivery_queue q JOIN events e ON e.id = q.event_id WHERE q.id = ?1",
                params![id],
                |r| {
                    Ok(DeliveryDetail {
                        delivery: delivery_from_row(r)?,
                        event_kind: r.get(7)?,
                        event_source: r.get(8)?,
                        payload: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(9)?).into_owned(),
                        attempts: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut detail) = head else { return Ok(None) };
        detail.attempts = attempts(&conn, id)?;
        Ok(Some(detail))
    }

    /// The async job whose id is `id` (the id of its `job/requested` event).
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(conn
            .query_row(
                "SELECT status, attempts, output, last_error FROM delivery_queue WHERE event_id = ?1 AND route = 'job'",
                params![id],
                |r| {
                    let status: String = r.get(0)?;
                    Ok(JobRecord {
                        id: id.to_owned(),
                        status: match status.as_str() {
                            "delivered" => "succeeded",
                            "dead" => "failed",
                            _ => "pending",
                        },
                        attempts: r.get::<_, i64>(1)? as u32,
                        output: r.get::<_, Option<String>>(2)?.and_then(|o| serde_json::from_str(&o).ok()),
                        error: if status == "dead" { r.get(3)? } else { None },
                    })
                },
            )
            .optional()?)
    }

    /// Deliveries with `status` (`pending`, `delivered`, `dead`), newest first.
    pub fn deliveries(&self, status: &str, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_id, route, target, status, attempts, last_error FROM delivery_queue \
             WHERE status = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![status, limit as i64], delivery_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `delivery_id` of `instance` is already stored and not expired.
    pub fn is_duplicate(&self, instance: &str, delivery_id: &str) -> Result<bool, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let now = crate::runtime::clock::now_ms() as i64;
        let found: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM webhook_deliveries WHERE instance = ?1 AND delivery_id = ?2 AND expires_at_ms > ?3",
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
        let rows = stmt.query_map(params![limit as i64], |r| event_from_row(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The delivery queue's depth, lag and dead letters at `now_ms`.
    pub fn queue_stats(&self, now_ms: u64) -> Result<QueueStats, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        // Three index ranges (pending and dead rows only), not a scan of every delivery ever
        // made: `/metrics` runs this at each scrape.
        let (pending, oldest, dead): (i64, Option<i64>, i64) = conn.query_row(
            "SELECT (SELECT COUNT(*) FROM delivery_queue WHERE status = 'pending'), \
                    (SELECT MIN(next_at_ms) FROM delivery_queue WHERE status = 'pending' AND next_at_ms <= ?1), \
                    (SELECT COUNT(*) FROM delivery_queue WHERE status = 'dead')",
            params![now_ms as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(QueueStats {
            pending: pending as u64,
            lag_ms: oldest.map(|t| now_ms.saturating_sub(t as u64)).unwrap_or(0),
            dead: dead as u64,
        })
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

/// Every attempt of delivery `id`, oldest first.
fn attempts(conn: &Connection, id: i64) -> rusqlite::Result<Vec<AttemptRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at_ms, duration_us, outcome, detail, handler FROM attempts WHERE delivery = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(AttemptRecord {
            attempt: r.get::<_, i64>(0)? as u32,
            at_ms: r.get::<_, i64>(1)? as u64,
            duration_us: r.get::<_, i64>(2)? as u64,
            outcome: r.get(3)?,
            detail: r.get(4)?,
            handler: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Reads `id, event_id, route, target, status, attempts, last_error` from the first columns.
fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        event_id: r.get(1)?,
        route: r.get(2)?,
        target: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get::<_, i64>(5)? as u32,
        last_error: r.get(6)?,
    })
}

fn event_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Event> {
    let attributes: String = r.get(at + 6)?;
    Ok(Event {
        id: r.get(at)?,
        source: r.get(at + 1)?,
        kind: r.get(at + 2)?,
        occurred_at_ms: r.get::<_, i64>(at + 3)? as u64,
        content_type: r.get(at + 4)?,
        payload: r.get(at + 5)?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
    })
}

/// What one job's part of a transaction answered, before the commit decides.
enum Answer {
    Append(Appended),
    Outcome,
    Replay(u64),
    Sweep(Swept),
}

/// Takes every job waiting, writes them in one transaction, then answers each.
fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, commits: &tokio::sync::watch::Sender<u64>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = write_batch(&mut conn, &batch);
        if result.is_ok() {
            commits.send_modify(|n| *n = n.wrapping_add(1));
        }
        if batch.iter().any(|j| matches!(j.work, Work::Sweep { .. })) {
            // Hand the pages retention freed back to the file system (a no-op for files made
            // before incremental auto-vacuum: their free pages are reused instead).
            if let Err(e) = conn.execute_batch("PRAGMA incremental_vacuum;") {
                tracing::warn!(error = %e, "incremental vacuum failed");
            }
        }
        for (i, job) in batch.into_iter().enumerate() {
            let failed = || {
                StoreError::Sqlite(rusqlite::Error::InvalidParameterName(
                    result.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                ))
            };
            let answer = result.as_ref().ok().and_then(|a| a.get(i));
            match (job.work, answer) {
                (Work::Append(_, done), Some(Answer::Append(a))) => drop(done.send(Ok(*a))),
                (Work::Append(_, done), _) => drop(done.send(Err(failed()))),
                (Work::Outcome { done, .. }, Some(Answer::Outcome)) => drop(done.send(Ok(()))),
                (Work::Outcome { done, .. }, _) => drop(done.send(Err(failed()))),
                (Work::Replay { done, .. }, Some(Answer::Replay(n))) => drop(done.send(Ok(*n))),
                (Work::Replay { done, .. }, _) => drop(done.send(Err(failed()))),
                (Work::Sweep { done, .. }, Some(Answer::Sweep(n))) => drop(done.send(Ok(*n))),
                (Work::Sweep { done, .. }, _) => drop(done.send(Err(failed()))),
            }
        }
    }
}

/// Counts, at start, the attempts the claim journal says were running when the process died:
/// each delivery still pending has at least that many attempts.
fn count_unfinished(conn: &mut Connection, unfinished: &[(i64, u32)], now_ms: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut count = tx.prepare_cached(
            "UPDATE delivery_queue SET attempts = MAX(attempts, ?2), updated_at_ms = ?3 \
             WHERE id = ?1 AND status = 'pending'",
        )?;
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        for (delivery, attempt) in unfinished {
            count.execute(params![delivery, attempt, now])?;
        }
    }
    tx.commit()
}

fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    deliveries: &[QueuedDelivery],
    now_ms: u64,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (id, source, kind, occurred_at_ms, content_type, payload, attributes, stored_at_ms, caused_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for e in events {
        let attributes = serde_json::to_string(&e.attributes).unwrap_or_else(|_| "[]".into());
        let caused_by =
            e.attributes.iter().find(|(k, _)| k == crate::capabilities::emit::CAUSED_BY).map(|(_, v)| v);
        insert.execute(params![
            e.id,
            e.source,
            e.kind,
            e.occurred_at_ms as i64,
            e.content_type,
            e.payload,
            attributes,
            now_ms as i64,
            caused_by
        ])?;
    }
    let mut queue = tx.prepare_cached(
        "INSERT INTO delivery_queue (event_id, route, target, action, order_key, status, attempts, next_at_ms, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
    )?;
    for d in deliveries {
        queue.execute(params![d.event_id, d.route, d.target, d.action, d.order_key, now_ms as i64])?;
    }
    Ok(())
}

fn write_batch(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Answer>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(batch.len());
    // The dashboard's per-minute charts read these totals, not the history.
    let mut activity = Activity::default();
    for job in batch {
        let now = job.now_ms as i64;
        match &job.work {
            Work::Append(a, _) => {
                if let Some(delivery) = &a.delivery_id {
                    let expires = job.now_ms.saturating_add(a.dedup_window_ms) as i64;
                    let fresh = tx
                        .prepare_cached(
                            "INSERT INTO webhook_deliveries (instance, delivery_id, expires_at_ms) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (instance, delivery_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms \
                             WHERE webhook_deliveries.expires_at_ms <= ?4",
                        )?
                        .execute(params![a.instance, delivery, expires, now])?;
                    if fresh == 0 {
                        answers.push(Answer::Append(Appended::Duplicate));
                        continue;
                    }
                }
                insert_events(&tx, &a.events, &a.deliveries, job.now_ms)?;
                activity.events(job.now_ms, a.events.len());
                answers.push(Answer::Append(Appended::Stored));
            }
            Work::Outcome {
                delivery,
                attempt: Attempt { number: attempt, duration_us, handler },
                outcome,
                ..
            } => {
                let mut output_text = None;
                let (status, next_at, error, kind) = match outcome {
                    Outcome::Delivered { events, deliveries, output } => {
                        insert_events(&tx, events, deliveries, job.now_ms)?;
                        activity.events(job.now_ms, events.len());
                        output_text = output.as_deref();
                        ("delivered", now, None, "delivered")
                    }
                    Outcome::Retry { next_at_ms, error } => {
                        ("pending", *next_at_ms as i64, Some(error.as_str()), "retry")
                    }
                    Outcome::Dead { error, events, deliveries } => {
                        insert_events(&tx, events, deliveries, job.now_ms)?;
                        activity.events(job.now_ms, events.len());
                        ("dead", now, Some(error.as_str()), "dead")
                    }
                };
                tx.prepare_cached(
                    "UPDATE delivery_queue SET status = ?2, attempts = ?3, next_at_ms = ?4, last_error = ?5, updated_at_ms = ?6, \
                     output = ?7 WHERE id = ?1",
                )?
                .execute(params![delivery, status, attempt, next_at, error, now, output_text])?;
                tx.prepare_cached(
                    "INSERT INTO attempts (delivery, attempt, at_ms, duration_us, outcome, detail, handler) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    delivery,
                    attempt,
                    now,
                    *duration_us as i64,
                    kind,
                    error,
                    handler
                ])?;
                activity.attempt(job.now_ms, kind != "delivered", *duration_us);
                answers.push(Answer::Outcome);
            }
            Work::Sweep { retention, .. } => answers.push(Answer::Sweep(sweep(&tx, retention, job.now_ms)?)),
            Work::Replay { delivery, .. } => {
                let n = tx
                    .prepare_cached(
                        "UPDATE delivery_queue SET status = 'pending', attempts = 0, next_at_ms = ?1, updated_at_ms = ?1 \
                         WHERE status = 'dead' AND (?2 IS NULL OR id = ?2)",
                    )?
                    .execute(params![now, delivery])?;
                answers.push(Answer::Replay(n as u64));
            }
        }
    }
    activity.store(&tx)?;
    tx.commit()?;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file from before schema versions (user_version 0, no `caused_by`) opens, keeps its
    /// events, and gains the newer columns and indexes; a file from a newer build is refused.
    #[test]
    fn an_upgrade_opens_an_older_file_and_refuses_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(MIGRATIONS[0]).unwrap();
        old.execute(
            "INSERT INTO events (id, source, kind, occurred_at_ms, content_type, payload, attributes, stored_at_ms)
             VALUES ('e-1', 'shop', 'orders/create', 1, 'application/json', x'7b7d', '[]', 1)",
            [],
        )
        .unwrap();
        drop(old);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.recent(10).unwrap()[0].id, "e-1");
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        for index in [
            "events_caused_by",
            "attempts_delivery",
            "attempts_at",
            "delivery_status_id",
            "events_stored_at",
            "delivery_queue_event",
        ] {
            let found: bool = conn
                .prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1")
                .unwrap()
                .exists([index])
                .unwrap();
            assert!(found, "index {index} missing");
        }
        // Opening again applies nothing twice.
        drop(SqliteStore::open(&path).unwrap());

        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);
        let refused = SqliteStore::open(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("upgrade plugboard"), "{refused}");
    }

    /// What the CLI's listings open changes nothing: no upgrade of an older file, no claim
    /// journal taken from the server that runs the store; a second server is refused.
    #[tokio::test]
    async fn read_only_openers_change_nothing_and_one_process_runs_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let running = SqliteStore::open(&path).unwrap();
        let append = Append {
            instance: "shop".into(),
            delivery_id: None,
            dedup_window_ms: 0,
            events: vec![event("orders/create")],
            deliveries: vec![],
        };
        running.append(append).await.unwrap();
        running.claim(&[(1, 1)]).unwrap();

        let reader = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(reader.recent(10).unwrap().len(), 1);
        assert!(matches!(reader.claim(&[(2, 1)]), Err(StoreError::JournalHeld)));
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::JournalHeld)));
        let admin = SqliteStore::open_without_deliveries(&path).unwrap();
        assert_eq!(admin.replay(None).await.unwrap(), 0);
        drop((reader, admin));
        // The server's claim is still in its journal.
        running.claim(&[(3, 1)]).unwrap();
        let journal = std::fs::read_to_string(dir.path().join("events.db-claims")).unwrap();
        assert_eq!(journal, "claim 1 1\nclaim 3 1\n");
        drop(running);

        // After a clean stop, a listing still opens it; an older file is not upgraded by one.
        assert_eq!(SqliteStore::open_read_only(&path).unwrap().recent(10).unwrap().len(), 1);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION - 1).unwrap();
        drop(conn);
        let refused = SqliteStore::open_read_only(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("plugboard up"), "{refused}");
        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION - 1);
    }

    /// The per-minute charts count what the writer stored, at the minute it stored it.
    #[tokio::test]
    async fn minute_stats_count_events_attempts_failures_and_durations() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        let queued = |e: &Event| QueuedDelivery {
            event_id: e.id.clone(),
            route: "r".into(),
            target: "t".into(),
            action: None,
            order_key: None,
        };
        let events = vec![event("a/b"), event("a/b"), event("a/c")];
        let deliveries = events.iter().map(queued).collect();
        let append =
            Append { instance: "shop".into(), delivery_id: None, dedup_window_ms: 0, events, deliveries };
        store.append(append).await.unwrap();
        let delivered = Outcome::Delivered { events: vec![event("x/y")], deliveries: vec![], output: None };
        store.record(1, Attempt { number: 1, duration_us: 3_000, handler: None }, delivered).await.unwrap();
        let dead = Outcome::Dead { error: "no".into(), events: vec![], deliveries: vec![] };
        store.record(2, Attempt { number: 1, duration_us: 1_000, handler: None }, dead).await.unwrap();
        let now = crate::runtime::clock::now_ms();
        let minutes = store.stats(now - 120_000).unwrap();
        let total = |f: fn(&MinuteStats) -> u64| minutes.iter().map(f).sum::<u64>();
        assert_eq!(total(|m| m.events), 4, "{minutes:?}");
        assert_eq!(total(|m| m.attempts), 2, "{minutes:?}");
        assert_eq!(total(|m| m.failures), 1, "{minutes:?}");
        if let [one] = minutes.as_slice() {
            assert_eq!((one.mean_ms, one.max_ms), (2.0, 3.0));
        }
        assert!(store.stats(now + 120_000).unwrap().is_empty());
    }

    fn event(kind: &str) -> Event {
        Event {
            id: crate::capabilities::emit::new_event_id(),
            source: "shop".into(),
            kind: kind.into(),
            occurred_at_ms: 1,
            content_type: "application/octet-stream".into(),
            payload: vec![7; 1024],
            attributes: vec![],
        }
    }

    /// A long synthetic history under a count limit: once the limit is reached the file stops
    /// growing (retention's freed pages are reused or handed back), finished events go oldest
    /// first, and an event whose delivery is still pending is never deleted.
    #[tokio::test]
    async fn retention_keeps_the_file_from_growing_and_spares_pending_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(&path).unwrap();
        let retention = Retention { max_age_ms: 0, max_events: 2_000, chunk: 5_000 };
        let stuck = event("orders/create");
        let pending = QueuedDelivery {
            event_id: stuck.id.clone(),
            route: "r".into(),
            target: "t".into(),
            action: None,
            order_key: None,
        };
        let append = |events: Vec<Event>, deliveries: Vec<QueuedDelivery>| Append {
            instance: "shop".into(),
            delivery_id: None,
            dedup_window_ms: 0,
            events,
            deliveries,
        };
        store.append(append(vec![stuck.clone()], vec![pending])).await.unwrap();
        let size = || {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
            std::fs::metadata(&path).unwrap().len()
        };
        let mut sizes = Vec::new();
        let mut swept = 0;
        for _ in 0..24 {
            for _ in 0..10 {
                store.append(append((0..50).map(|_| event("orders/paid")).collect(), vec![])).await.unwrap();
            }
            swept += store.sweep(retention).await.unwrap().events;
            sizes.push(size());
        }
        // The newest 2,000, and the oldest one, whose delivery is still pending.
        assert_eq!(store.count().unwrap(), 2_001);
        assert_eq!(swept, 24 * 500 - 2_000);
        assert!(store.recent(100_000).unwrap().iter().any(|e| e.id == stuck.id), "pending work stays");
        // 12,000 events were written; after the first rounds the file holds steady.
        let (early, late) = (sizes[7], *sizes.last().unwrap());
        assert!(late <= early + early / 20, "the file kept growing: {sizes:?}");
        assert!(late < 12_000 * 1024 / 2, "12,000 events of 1 KiB would take {late} bytes: {sizes:?}");
    }
}
