//! The embedded backend: SQLite in WAL mode, with one writer thread that commits the appends
//! waiting at that moment (up to 256) in one transaction (group commit), so concurrent webhooks
//! share one fsync. An append returns only after its transaction is durable.
//!
//! - [`schema`]: the migrations, and opening a file;
//! - [`writer`]: the writer thread and what one batch writes;
//! - [`queries`]: reads for the dispatcher and operators; [`trace`]: an event's path;
//! - [`kv`] and [`calls`]: plugins' key-value data and the outbound call log, in the same file;
//! - [`claims`]: the journal of running attempts;
//! - [`seen_ids`]: the delivery ids stored, in memory, asked before the table is.

mod background;
mod calls;
pub(crate) mod claims;
mod kv;
mod queries;
mod recordings;
mod schema;
mod seen_ids;
mod trace;
mod writer;

pub use calls::SqliteCallLog;
pub use kv::SqliteKv;
pub use recordings::SqliteRecordingLog;
pub use schema::SCHEMA_VERSION;
pub(crate) use schema::connect;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{
    Admit, Append, Appended, Attempt, Candidate, ClaimId, Claimed, DeliveryDetail, DeliveryId, DeliveryQueue,
    DeliveryRecord, DeliveryStatus, EventFilter, EventLog, EventSummary, EventTrace, JobRecord, MinuteStats,
    Outcome, QueueStats, ReadModel, Retention, StoreError, StoreFuture, Swept,
};
use schema::open;

/// SQLite's errors, as the port names them: busy, locked, full or unreachable files are a
/// moment's unavailability; a constraint is a conflict; anything else is a failure.
pub(super) fn store_error(e: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly => StoreError::Unavailable(e.to_string()),
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            _ => StoreError::Failed(e.to_string()),
        },
        _ => StoreError::Failed(e.to_string()),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        store_error(&e)
    }
}
use queries::DueRow;
use writer::{Job, Work, count_unfinished, writer_loop};

/// The row of delivery `id`: `None` for an id this backend did not make (only the canonical
/// spelling of a row number is one).
pub(super) fn rowid(id: &DeliveryId) -> Option<i64> {
    id.number()
}

/// The id of the delivery in row `row`.
pub(super) fn delivery_id(row: i64) -> DeliveryId {
    DeliveryId::new(row.to_string())
}

impl EventLog for SqliteStore {
    fn append(&self, append: Append) -> StoreFuture<'_, Appended> {
        Box::pin(SqliteStore::append(self, append))
    }

    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(SqliteStore::is_duplicate(self, instance, delivery_id)))
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

    fn writable(&self) -> bool {
        SqliteStore::writable(self)
    }
}

impl DeliveryQueue for SqliteStore {
    fn claim<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        admit: &'a mut Admit<'a>,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        Box::pin(std::future::ready(SqliteStore::claim(self, now_ms, limit, lease, admit)))
    }

    fn settle(&self, claim: ClaimId, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()> {
        Box::pin(async move { SqliteStore::settle(self, &claim, attempt, outcome).await })
    }

    fn renew(&self, claim: ClaimId, until_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(SqliteStore::hold(self, &claim, until_ms)))
    }

    fn release(&self, claim: ClaimId, not_before_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(SqliteStore::hold(self, &claim, not_before_ms)))
    }

    fn replay(&self, delivery: Option<DeliveryId>) -> StoreFuture<'_, u64> {
        Box::pin(async move { SqliteStore::replay(self, delivery.as_ref()).await })
    }

    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats> {
        Box::pin(std::future::ready(SqliteStore::queue_stats(self, now_ms)))
    }
}

// SQLite reads are answered inline: with WAL they do not wait for the writer, and they take
// microseconds, less than handing them to another thread would.
impl ReadModel for SqliteStore {
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>> {
        Box::pin(std::future::ready(SqliteStore::events(self, filter, limit)))
    }

    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>> {
        Box::pin(std::future::ready(SqliteStore::payload(self, id)))
    }

    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>> {
        Box::pin(std::future::ready(SqliteStore::trace(self, id)))
    }

    fn deliveries(
        &self,
        status: DeliveryStatus,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRecord>> {
        Box::pin(std::future::ready(SqliteStore::deliveries_before(self, status, before.as_ref(), limit)))
    }

    fn delivery(&self, id: DeliveryId) -> StoreFuture<'_, Option<DeliveryDetail>> {
        Box::pin(std::future::ready(SqliteStore::delivery(self, &id)))
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        Box::pin(std::future::ready(SqliteStore::job(self, id)))
    }

    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>> {
        Box::pin(std::future::ready(SqliteStore::stats(self, since_ms)))
    }
}

/// The most due deliveries one claim looks through for ones its `admit` takes.
pub const MAX_CLAIM_SCAN: usize = 10_000;

/// A claimed delivery's lease, kept by the process that runs this store's deliveries (the one
/// holding the claim journal): its leases end with it, which is what a lease's expiry means on
/// one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    /// The attempt the claim counted (kept after the lease ends, until an outcome is stored,
    /// so that a delivery whose outcome could not be stored does not get that attempt back).
    attempt: u32,
    /// Nobody claims it again before this (`u64::MAX` while its outcome is being stored).
    until_ms: u64,
    /// Which claim took it ([`Claimed::lease`]).
    serial: u64,
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
    /// Claimed deliveries not settled yet, by row.
    leases: Mutex<HashMap<i64, Lease>>,
    /// Taken by each claim, so that claims do not interleave.
    claiming: Mutex<()>,
    /// The last lease given.
    serials: std::sync::atomic::AtomicU64,
    /// The webhook delivery ids stored (`None` when opened read-only: SQLite answers).
    seen_ids: Option<Arc<seen_ids::SeenIds>>,
}

/// Clears the writer's liveness flag however the writer thread ends, panics included.
struct WriterAlive(Arc<AtomicBool>);

impl Drop for WriterAlive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
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
            count_unfinished(&mut writer_conn, &unfinished, plugboard_runtime::clock::now_ms())?;
            tracing::warn!(
                deliveries = unfinished.len(),
                "counted the attempts that were running when the process stopped"
            );
        }
        journal.clear()?;
        Self::start(path, writer_conn, reader, Some(journal))
    }

    /// Opens the store at `path` to write to it, not to run its deliveries (`plugboard dlq
    /// replay` next to a running server): the claim journal stays with whoever holds it.
    pub fn open_without_deliveries(path: &Path) -> Result<Self, StoreError> {
        Self::start(path, open(path)?, open(path)?, None)
    }

    fn start(
        path: &Path,
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
        let seen_ids = seen_ids::SeenIds::new(path.to_owned());
        let seen_by_writer = seen_ids.clone();
        std::thread::Builder::new()
            .name("plugboard-store".into())
            .spawn(move || {
                let _alive = alive;
                writer_loop(writer_conn, rx, &committed, &seen_by_writer)
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(SqliteStore {
            writer: Mutex::new(Some(tx)),
            reader: Mutex::new(reader),
            commits,
            writer_alive,
            claims,
            leases: Mutex::default(),
            claiming: Mutex::default(),
            serials: Default::default(),
            seen_ids: Some(seen_ids),
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
        schema::plan_once(&reader)?;
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
            leases: Mutex::default(),
            claiming: Mutex::default(),
            serials: Default::default(),
            seen_ids: None,
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
        let job = Job { work, now_ms: plugboard_runtime::clock::now_ms() };
        let writer = self.writer.lock().map_err(|_| StoreError::Closed)?;
        writer.as_ref().ok_or(StoreError::Closed)?.send(job).map_err(|_| StoreError::Closed)
    }

    /// Stores `append` (events and their deliveries) durably, or reports it as a duplicate.
    pub async fn append(&self, append: Append) -> Result<Appended, StoreError> {
        let (done, wait) = oneshot::channel();
        self.submit(Work::Append(append, done))?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// The leases, whatever happened to the last holder of their lock: each change to them is
    /// one map operation, so a panic elsewhere (in an `admit`) leaves them whole.
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Lease>> {
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The row of `claim`'s delivery, if the claim still holds its lease.
    fn held(&self, leases: &HashMap<i64, Lease>, claim: &ClaimId) -> Result<i64, StoreError> {
        rowid(&claim.delivery)
            .filter(|row| {
                leases.get(row).is_some_and(|l| l.attempt == claim.attempt && l.serial == claim.lease)
            })
            .ok_or_else(|| StoreError::Conflict(format!("{claim} is not claimed here (its lease was lost)")))
    }

    /// Settles `claim` with the outcome of `attempt`, durably, and ends its lease.
    pub async fn settle(
        &self,
        claim: &ClaimId,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        // While its outcome is stored, no claim takes it (even if its lease would run out).
        let (row, until_ms) = {
            let mut leases = self.leases();
            let row = self.held(&leases, claim)?;
            let lease = leases.get_mut(&row).ok_or(StoreError::Closed)?;
            (row, std::mem::replace(&mut lease.until_ms, u64::MAX))
        };
        let (done, wait) = oneshot::channel();
        let stored = match self.submit(Work::Outcome { delivery: row, attempt, outcome, done }) {
            Ok(()) => wait.await.map_err(|_| StoreError::Closed).and_then(|answer| answer),
            Err(e) => Err(e),
        };
        let mut leases = self.leases();
        let mine = leases.get(&row).is_some_and(|l| l.serial == claim.lease);
        if let Err(e) = stored {
            // Not stored: the claim still holds it, as before.
            if let Some(lease) = leases.get_mut(&row).filter(|_| mine) {
                lease.until_ms = until_ms;
            }
            return Err(e);
        }
        if mine {
            leases.remove(&row);
            // Under the leases' lock, so that no new claim of it is journalled in between.
            // Best effort: a claim left in the journal counts, at the next start, the attempt
            // the outcome just stored (attempts are set to the larger of the two).
            let done = self
                .claims
                .lock()
                .map_err(|_| StoreError::Closed)
                .and_then(|mut journal| Ok(journal.as_mut().map(|j| j.done(row)).transpose()?));
            if let Err(e) = done {
                tracing::warn!(delivery = row, "claim journal: {e}");
            }
        }
        Ok(())
    }

    /// Claims up to `limit` deliveries due at `now_ms` for `lease` (see
    /// [`DeliveryQueue::claim`]), looking through at most [`MAX_CLAIM_SCAN`] due deliveries.
    /// Each claimed attempt is written to the claim journal before the claim answers: if the
    /// process dies while running it, the attempt still counts at the next start, so a
    /// delivery that kills the host ends as a dead letter instead of looping. The journal
    /// survives the process dying, not a power loss (see [`claims`]).
    pub fn claim(
        &self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        admit: &mut Admit<'_>,
    ) -> Result<Vec<Claimed>, StoreError> {
        // Claims are taken one at a time, and each decides from the leases as they were before
        // it read what is due: a lease a settlement ends after that (its delivery no longer
        // pending, which the read may not show yet) still counts for this claim. Settlements
        // never wait for a claim's read.
        let _one_at_a_time = self.claiming.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let leases = self.leases().clone();
        let mut taken = Vec::new();
        let mut after = None;
        let mut scanned = 0;
        let page = limit.saturating_mul(4).clamp(64, 1_024);
        'pages: while taken.len() < limit && scanned < MAX_CLAIM_SCAN {
            let rows = self.due_rows(now_ms, after, page)?;
            let full = rows.len() == page;
            for due in rows {
                scanned += 1;
                after = Some((due.next_at_ms, due.row));
                // Each page is read on its own: one changed in between could show a row again.
                if taken.iter().any(|(t, _): &(DueRow, u32)| t.row == due.row) {
                    continue;
                }
                let mut attempt = due.attempts.saturating_add(1);
                if let Some(l) = leases.get(&due.row) {
                    if l.until_ms > now_ms {
                        continue;
                    }
                    attempt = attempt.max(l.attempt.saturating_add(1));
                }
                let candidate = Candidate { id: &due.id, route: &due.route, target: &due.target, attempt };
                if admit(&candidate) {
                    taken.push((due, attempt));
                    if taken.len() == limit {
                        break 'pages;
                    }
                }
            }
            if !full {
                break;
            }
        }
        let mut live = self.leases();
        // A lease that changed since the snapshot (its claimer settled it meanwhile) may mean
        // the read is older than the settlement: that delivery waits for the next claim.
        taken.retain(|(due, _)| live.get(&due.row) == leases.get(&due.row));
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let counted: Vec<(i64, u32)> = taken.iter().map(|(due, attempt)| (due.row, *attempt)).collect();
        {
            let mut journal = self.claims.lock().map_err(|_| StoreError::Closed)?;
            journal.as_mut().ok_or(StoreError::JournalHeld)?.claim(&counted)?;
        }
        let until_ms = now_ms.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
        let mut serials = Vec::with_capacity(counted.len());
        for (row, attempt) in &counted {
            let serial = self.serials.fetch_add(1, Ordering::Relaxed) + 1;
            live.insert(*row, Lease { attempt: *attempt, until_ms, serial });
            serials.push(serial);
        }
        drop(live);
        // Leased: their events can be read without holding up settlements.
        let mut claimed = Vec::with_capacity(taken.len());
        for ((due, attempt), serial) in taken.into_iter().zip(serials) {
            match self.event(&due.event_id) {
                Ok(Some(event)) => claimed.push(due.claimed(event, attempt, serial)),
                // A pending delivery keeps its event (retention spares it); if it cannot be
                // read now, the claim is undone (its attempt not counted) and the delivery
                // waits a while, rather than run without its event.
                Ok(None) | Err(_) => {
                    tracing::error!(delivery = due.row, event = %due.event_id, "reading a claimed delivery's event failed");
                    let mut leases = self.leases();
                    if let Some(lease) = leases.get_mut(&due.row).filter(|l| l.serial == serial) {
                        lease.attempt = attempt.saturating_sub(1);
                        lease.until_ms = now_ms.saturating_add(10_000);
                        if let Ok(mut journal) = self.claims.lock()
                            && let Some(Err(e)) = journal.as_mut().map(|j| j.done(due.row))
                        {
                            tracing::warn!(delivery = due.row, "claim journal: {e}");
                        }
                    }
                }
            }
        }
        Ok(claimed)
    }

    /// Keeps `claim`'s lease until `until_ms` (renewing it, or giving the delivery back for
    /// later).
    pub fn hold(&self, claim: &ClaimId, until_ms: u64) -> Result<(), StoreError> {
        let mut leases = self.leases();
        let row = self.held(&leases, claim)?;
        if let Some(lease) = leases.get_mut(&row) {
            lease.until_ms = until_ms;
        }
        Ok(())
    }

    /// Deletes one chunk of history past `retention` (see [`Retention`]); answers what went.
    pub async fn sweep(&self, retention: Retention) -> Result<Swept, StoreError> {
        let (done, wait) = oneshot::channel();
        self.submit(Work::Sweep { retention, done })?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Puts dead letters back in the queue (one, or all with `None`), keeping their event ids;
    /// answers how many.
    pub async fn replay(&self, delivery: Option<&DeliveryId>) -> Result<u64, StoreError> {
        let delivery = match delivery.map(rowid) {
            None => None,
            Some(None) => return Ok(0),
            Some(Some(row)) => Some(row),
        };
        // Their attempts count from zero again: a lease an interrupted settlement left behind
        // must not count for them. But one a claim took after the replay was stored is that
        // claim's, and stays.
        let before = self.leases().clone();
        let (done, wait) = oneshot::channel();
        self.submit(Work::Replay { delivery, done })?;
        let replayed = wait.await.map_err(|_| StoreError::Closed)??;
        let mut leases = self.leases();
        for row in &replayed {
            if leases.get(row) == before.get(row) {
                leases.remove(row);
            }
        }
        Ok(replayed.len() as u64)
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

#[cfg(test)]
mod tests {
    /// SQLite's errors reach callers as the port's kinds: what retrying may mend, a conflict,
    /// and a failure; not as SQLite's own type.
    #[test]
    fn sqlite_errors_become_the_ports_kinds() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);").unwrap();
        let duplicate = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        assert!(matches!(StoreError::from(duplicate), StoreError::Conflict(_)));
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        assert!(matches!(StoreError::from(busy), StoreError::Unavailable(_)));
        let garbage = conn.query_row("SELECT 'x'", [], |r| r.get::<_, i64>(0)).unwrap_err();
        assert!(matches!(StoreError::from(garbage), StoreError::Failed(_)));
    }

    use super::schema::MIGRATIONS;
    use super::*;
    use crate::QueuedDelivery;
    use plugboard_runtime::types::Event;

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

    /// The index of causes holds only events a delivery produced: a webhook's events add no
    /// entry to it (no page of it written per commit), and a trace still finds an event's
    /// effects through it.
    #[test]
    fn only_events_with_a_cause_are_in_the_index_of_causes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let partial: bool = conn
            .query_row(
                "SELECT partial FROM pragma_index_list('events') WHERE name = 'events_caused_by'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(partial, "the index of causes holds events without one");
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id, source FROM events WHERE caused_by = ?1 ORDER BY seq",
                ["x"],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("USING INDEX events_caused_by"), "{plan}");
    }

    /// A claim's query is planned once, not again for every new limit or position it is run
    /// with: SQLite re-plans a statement whose bound values could change its plan (a `LIMIT ?`
    /// among them) unless the plan is held stable, and planning cost more than the read itself
    /// on the webhook load test.
    #[test]
    fn the_claim_query_is_not_planned_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        for (limit, after) in [(64, None), (65, Some((1, 1))), (1_024, Some((2, 7))), (100, None)] {
            store.due_rows(1_000, after, limit).unwrap();
        }
        let conn = store.reader.lock().unwrap();
        let stmt = conn.prepare_cached(super::queries::DUE_ROWS).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// What the CLI's listings open changes nothing: no upgrade of an older file, no claim
    /// journal taken from the server that runs the store; a second server is refused.
    #[tokio::test]
    async fn read_only_openers_change_nothing_and_one_process_runs_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let running = SqliteStore::open(&path).unwrap();
        let created = event("orders/create");
        let to = |route: &str| QueuedDelivery {
            event_id: created.id.clone(),
            route: route.into(),
            target: "t".into(),
            action: None,
            order_key: None,
        };
        let append = Append {
            instance: "shop".into(),
            delivery_id: None,
            dedup_window_ms: 0,
            deliveries: vec![to("a"), to("b")],
            events: vec![created.clone()],
        };
        running.append(append).await.unwrap();
        let now = plugboard_runtime::clock::now_ms();
        let lease = Duration::from_secs(60);
        assert_eq!(running.claim(now, 1, lease, &mut |_| true).unwrap().len(), 1);

        let reader = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(reader.recent(10).unwrap().len(), 1);
        assert!(matches!(reader.claim(now, 1, lease, &mut |_| true), Err(StoreError::JournalHeld)));
        assert!(matches!(SqliteStore::open(&path), Err(StoreError::JournalHeld)));
        let admin = SqliteStore::open_without_deliveries(&path).unwrap();
        assert_eq!(admin.replay(None).await.unwrap(), 0);
        drop((reader, admin));
        // The server's claim is still in its journal, and its lease holds: the next claim takes
        // the other delivery.
        assert_eq!(running.claim(now, 2, lease, &mut |_| true).unwrap().len(), 1);
        let journal = std::fs::read_to_string(dir.path().join("events.db-claims")).unwrap();
        assert_eq!(journal, "claim 1 1\nclaim 2 1\n");
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

    /// Settlements are stored while another connection to the same file (the key-value store,
    /// the call log) commits all the time: none is refused as "database is locked" (a writer
    /// transaction that read before writing used to be refused at once when another connection
    /// committed in between).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settlements_are_stored_while_another_connection_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(&path).unwrap();
        let events: Vec<Event> = (0..300).map(|_| event("a/b")).collect();
        let deliveries = events
            .iter()
            .map(|e| QueuedDelivery {
                event_id: e.id.clone(),
                route: "r".into(),
                target: "t".into(),
                action: None,
                order_key: None,
            })
            .collect();
        let append =
            Append { instance: "shop".into(), delivery_id: None, dedup_window_ms: 0, events, deliveries };
        store.append(append).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let other = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let conn = super::connect(&path).unwrap();
                conn.execute_batch("CREATE TABLE IF NOT EXISTS other (n INTEGER)").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    conn.execute("INSERT INTO other (n) VALUES (1)", []).unwrap();
                }
            })
        };
        let now = plugboard_runtime::clock::now_ms() + 1_000;
        let claimed = store.claim(now, 300, Duration::from_secs(60), &mut |_| true).unwrap();
        assert_eq!(claimed.len(), 300);
        let mut refused = Vec::new();
        for c in &claimed {
            let done = Outcome::Delivered { events: vec![], deliveries: vec![], output: None };
            let attempt = Attempt { number: 1, duration_us: 1, handler: None };
            if let Err(e) = store.settle(&c.claim_id(), attempt, done).await {
                refused.push(e.to_string());
            }
        }
        stop.store(true, Ordering::Relaxed);
        other.join().unwrap();
        assert!(refused.is_empty(), "{} of 300 refused: {:?}", refused.len(), refused.first());
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
        let claimed = store
            .claim(plugboard_runtime::clock::now_ms(), 2, Duration::from_secs(60), &mut |_| true)
            .unwrap();
        let delivered = Outcome::Delivered { events: vec![event("x/y")], deliveries: vec![], output: None };
        let first = claimed[0].claim_id();
        store
            .settle(&first, Attempt { number: 1, duration_us: 3_000, handler: None }, delivered)
            .await
            .unwrap();
        let dead = Outcome::Dead { error: "no".into(), events: vec![], deliveries: vec![] };
        let second = claimed[1].claim_id();
        store.settle(&second, Attempt { number: 1, duration_us: 1_000, handler: None }, dead).await.unwrap();
        let now = plugboard_runtime::clock::now_ms();
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

    /// A backlog is written in transactions of bounded size: appends queued while another
    /// connection holds SQLite's write lock are all stored once it lets go, in several commits
    /// rather than one that would hold every row and keep every answer waiting for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backlog_is_committed_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let commits = EventLog::commits(store.as_ref());
        let before = *commits.borrow();
        let blocker = super::connect(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let appends: Vec<_> = (0..1_000)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let append = Append {
                        instance: "shop".into(),
                        delivery_id: None,
                        dedup_window_ms: 0,
                        deliveries: vec![],
                        events: vec![event("a/b")],
                    };
                    store.append(append).await
                })
            })
            .collect();
        // Long enough for the appends to queue behind the lock; if some come later, they only
        // make more, smaller batches.
        tokio::time::sleep(Duration::from_millis(500)).await;
        blocker.execute_batch("COMMIT").unwrap();
        for append in appends {
            assert_eq!(append.await.unwrap().unwrap(), Appended::Stored);
        }
        assert_eq!(store.recent(2_000).unwrap().len(), 1_000);
        let batches = *commits.borrow() - before;
        assert!(batches >= 4, "1,000 appends in {batches} commits: at most 256 jobs a transaction");
    }

    /// A delivery id is a duplicate for its instance while its window lasts, and only then;
    /// asked again and again (the statement kept prepared between webhooks), the answers stay
    /// right as ids are stored in between. `both_backends_keep_the_ports_semantics` (`lib.rs`)
    /// checks one id once on every backend; this checks SQLite's cached lookup over time.
    #[tokio::test]
    async fn a_delivery_id_is_a_duplicate_for_its_instance_within_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("events.db")).unwrap();
        let append = |delivery_id: &str, dedup_window_ms| Append {
            instance: "shop".into(),
            delivery_id: Some(delivery_id.into()),
            dedup_window_ms,
            deliveries: vec![],
            events: vec![event("orders/create")],
        };
        for round in 0..3 {
            let id = format!("d-{round}");
            assert!(!store.is_duplicate("shop", &id).unwrap(), "{id} before it is stored");
            assert_eq!(store.append(append(&id, 60_000)).await.unwrap(), Appended::Stored);
            assert!(store.is_duplicate("shop", &id).unwrap(), "{id} once stored");
            assert!(!store.is_duplicate("other-shop", &id).unwrap(), "{id} is the shop's only");
            assert_eq!(store.append(append(&id, 60_000)).await.unwrap(), Appended::Duplicate);
        }
        // A window already over remembers nothing.
        assert_eq!(store.append(append("brief", 0)).await.unwrap(), Appended::Stored);
        assert!(!store.is_duplicate("shop", "brief").unwrap());
    }

    /// After a restart the ids stored before are still duplicates (the filter of stored ids is
    /// read from the table), and a new id is answered from memory, without asking SQLite.
    #[tokio::test]
    async fn stored_ids_survive_a_restart_and_new_ones_are_answered_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let append = |delivery_id: String| Append {
            instance: "shop".into(),
            delivery_id: Some(delivery_id),
            dedup_window_ms: 60_000,
            deliveries: vec![],
            events: vec![event("orders/create")],
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            for i in 0..50 {
                assert_eq!(store.append(append(format!("d-{i}"))).await.unwrap(), Appended::Stored);
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let seen = store.seen_ids.clone().unwrap();
        // Before the filter is read, SQLite answers (and the first lookup starts the read).
        assert!(store.is_duplicate("shop", "d-0").unwrap());
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while !seen.ready() {
            assert!(std::time::Instant::now() < until, "the stored ids were never read");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!((0..50).all(|i| store.is_duplicate("shop", &format!("d-{i}")).unwrap()));
        let before = seen.spared();
        assert!((0..50).all(|i| !store.is_duplicate("shop", &format!("new-{i}")).unwrap()));
        assert!(
            seen.spared() - before >= 45,
            "{} of 50 new ids answered from memory",
            seen.spared() - before
        );
        assert_eq!(store.append(append("new-0".into())).await.unwrap(), Appended::Stored);
        assert!(
            store.is_duplicate("shop", "new-0").unwrap(),
            "an id is a duplicate once its append is answered"
        );
        assert!(!store.is_duplicate("other-shop", "new-0").unwrap());
    }

    fn event(kind: &str) -> Event {
        Event {
            id: plugboard_runtime::capabilities::emit::new_event_id(),
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
        let retention = Retention { max_age_ms: 0, max_events: 2_000, chunk: 5_000, min_age_ms: 0 };
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
