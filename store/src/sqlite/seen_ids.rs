//! A Bloom filter of the webhook delivery ids the store holds, asked before SQLite is.
//!
//! Nearly every webhook carries an id never seen before, and asking SQLite whether it is stored
//! read the id index's pages again each time: every commit changes the write-ahead log, and a
//! reader that finds the log changed drops its page cache. Under load that lookup cost about
//! 16 µs of CPU per webhook. The filter answers "not stored" for almost every new id from
//! memory; the rest (about 1% of new ids, and the real duplicates) are asked of SQLite as before.
//!
//! It never says "not stored" for an id the store holds:
//! - the writer adds each id after the commit that stored it and before it answers the webhook,
//!   so a sender who got an answer and sends again is looked up in SQLite;
//! - a rebuild (from the table: to drop the ids swept away and to grow) takes in every id added
//!   while it reads, so an id committed during the read is not lost when the new filter replaces
//!   the old one; it reads every row, expired or not (whether an id has expired is SQLite's to
//!   say, by a clock that may be stepped back);
//! - a rebuild that cannot finish (its list of ids added meanwhile too long, its thread gone) is
//!   given up and its result never put in place: the filter in place already holds those ids;
//! - until the first build is done, every lookup goes to SQLite.
//!
//! The filter only spares lookups: the writer's insert stays what refuses a duplicate (an id
//! another process stored is refused there, after its connector ran).
//!
//! Memory: 10 bits per id, from 65,536 ids (80 KiB) up to 8,388,608 ids (10 MiB), twice that
//! while a rebuild makes the next filter, and 8 bytes for each id added meanwhile (at most
//! 1,048,576 of them, 8 MiB). Past that many ids, false positives grow and more new
//! ids are asked of SQLite, as every one was before; nothing is refused that should not be. The
//! hashes are keyed per process, so a sender cannot choose ids that all collide.

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, params};

/// Bits per id: with [`HASHES`] bits set per id, about 1% false positives at capacity.
const BITS_PER_ID: usize = 10;
/// Bits set per id.
const HASHES: u32 = 7;
/// The fewest ids a filter is made for (80 KiB).
const MIN_CAPACITY: usize = 1 << 16;
/// The most ids a filter is made for (10 MiB).
const MAX_CAPACITY: usize = 1 << 23;
/// The most ids added while a rebuild reads the table: past it, the rebuild is given up (the
/// table is read more slowly than ids arrive, or the rebuild's thread is gone).
const MAX_ADDED_MEANWHILE: usize = 1 << 20;
/// Rows read from the table per read transaction while rebuilding: short transactions let
/// the log be checkpointed while a large table is read.
const SCAN_CHUNK: i64 = 10_000;
/// How many rows the table holds at most, from the first and last row ids: a count would read
/// every row in one long transaction. Rows deleted between the two only make the filter larger.
const ROWS_AT_MOST: &str = "SELECT MAX(rowid) - MIN(rowid) + 1 FROM webhook_deliveries";
/// A chunk of the table's ids, in row order.
const READ_CHUNK: &str = "SELECT rowid, instance, delivery_id FROM webhook_deliveries \
     WHERE rowid > ?1 ORDER BY rowid LIMIT ?2";
/// After a rebuild failed, the next one waits this long (lookups go to SQLite meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The ids of one build: bits, and how many ids they were made for and hold.
struct Bits {
    words: Box<[AtomicU64]>,
    len: u64,
    capacity: usize,
    /// Ids read from the table.
    built: usize,
    /// Ids added since.
    added: AtomicUsize,
}

impl Bits {
    fn for_ids(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let words = (capacity * BITS_PER_ID).div_ceil(64);
        Bits {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            len: words as u64 * 64,
            capacity,
            built: 0,
            added: AtomicUsize::new(0),
        }
    }

    /// The bit positions of `hash` (double hashing, each reduced to the length by a multiply).
    fn positions(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let (first, step) = (hash as u32, (hash >> 32) as u32 | 1);
        (0..HASHES).map(move |i| (u64::from(first.wrapping_add(i.wrapping_mul(step))) * self.len) >> 32)
    }

    fn set(&self, hash: u64) {
        for bit in self.positions(hash) {
            // Release: a lookup that later learns of the commit (through SQLite or the answer)
            // sees the bits set before it.
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// Sets `hash` as an id added since the build.
    fn add(&self, hash: u64) {
        self.set(hash);
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    fn may_hold(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|bit| self.words[(bit / 64) as usize].load(Ordering::Acquire) & (1 << (bit % 64)) != 0)
    }

    /// Whether enough ids were added since the build that it is time for another: once it holds
    /// as many as it was made for, and at least as many new ones as it read (at the largest
    /// size, a table that holds more is read again only after as many new ids as it holds: one
    /// row read per id stored).
    fn full(&self) -> bool {
        let added = self.added.load(Ordering::Relaxed);
        added >= self.capacity.saturating_sub(self.built).max(self.built).max(1)
    }
}

/// Where a rebuild stands.
#[derive(Default)]
struct Rebuild {
    /// The latest rebuild started: one given up, or started after, is never put in place.
    generation: u64,
    /// While one reads the table: the hashes added meanwhile.
    added_meanwhile: Option<Vec<u64>>,
    /// After one failed: not before then.
    not_before: Option<Instant>,
}

/// The filter of one store's delivery ids (see the module's comment).
pub(super) struct SeenIds {
    keys: std::collections::hash_map::RandomState,
    /// The store's file, which a rebuild reads on a connection of its own.
    path: PathBuf,
    current: RwLock<Option<Arc<Bits>>>,
    rebuild: Mutex<Rebuild>,
    /// The fewest ids a build is made for ([`MIN_CAPACITY`] but in tests).
    min_capacity: usize,
    /// The most ids added during a rebuild ([`MAX_ADDED_MEANWHILE`] but in tests).
    max_added_meanwhile: usize,
    /// Lookups answered from memory (counted in tests only: a shared counter on every lookup).
    #[cfg(test)]
    spared: AtomicU64,
}

impl SeenIds {
    /// A filter of the ids in the store at `path`. It reads the table the first time it is
    /// used (a process that takes no webhooks never reads it).
    pub(super) fn new(path: PathBuf) -> Arc<Self> {
        Self::with_limits(path, MIN_CAPACITY, MAX_ADDED_MEANWHILE)
    }

    fn with_limits(path: PathBuf, min_capacity: usize, max_added_meanwhile: usize) -> Arc<Self> {
        Arc::new(SeenIds {
            keys: Default::default(),
            path,
            current: RwLock::default(),
            rebuild: Mutex::default(),
            min_capacity,
            max_added_meanwhile,
            #[cfg(test)]
            spared: AtomicU64::new(0),
        })
    }

    fn hash(&self, instance: &str, delivery_id: &str) -> u64 {
        self.keys.hash_one((instance, delivery_id))
    }

    fn current(&self) -> Option<Arc<Bits>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// False when `delivery_id` of `instance` is certainly not stored; true when it may be
    /// (SQLite then answers), and while no build is ready.
    pub(super) fn may_hold(self: &Arc<Self>, instance: &str, delivery_id: &str) -> bool {
        match self.current() {
            Some(bits) if !bits.may_hold(self.hash(instance, delivery_id)) => {
                #[cfg(test)]
                self.spared.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(_) => true,
            None => {
                self.start_rebuild_if_due(&mut self.rebuild_state(), None);
                true
            }
        }
    }

    /// Adds an id the writer has committed. Called before its webhook is answered.
    pub(super) fn add(self: &Arc<Self>, instance: &str, delivery_id: &str) {
        let hash = self.hash(instance, delivery_id);
        // Under the rebuild's lock, which a rebuild also holds to put its filter in place: the
        // id is either in the list the rebuild takes in, or set in the filter it put in place.
        let mut rebuild = self.rebuild_state();
        let bits = self.current();
        if let Some(bits) = &bits {
            bits.add(hash);
        }
        if let Some(meanwhile) = rebuild.added_meanwhile.as_mut() {
            meanwhile.push(hash);
            if meanwhile.len() >= self.max_added_meanwhile {
                let generation = rebuild.generation;
                give_up(&mut rebuild, generation, "more ids arrived than it could take in");
            }
        }
        self.start_rebuild_if_due(&mut rebuild, bits.as_deref());
    }

    fn rebuild_state(&self) -> std::sync::MutexGuard<'_, Rebuild> {
        self.rebuild.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts reading the table on a thread of its own when there is no filter yet or
    /// `bits` is full, unless a rebuild runs or failed a moment ago.
    fn start_rebuild_if_due(self: &Arc<Self>, rebuild: &mut Rebuild, bits: Option<&Bits>) {
        if rebuild.added_meanwhile.is_some()
            || rebuild.not_before.is_some_and(|t| Instant::now() < t)
            || bits.is_some_and(|b| !b.full())
        {
            return;
        }
        let generation = begin(rebuild);
        let filter = self.clone();
        let spawned = std::thread::Builder::new()
            .name("plugboard-seen-ids".into())
            .spawn(move || filter.rebuild_from_table(generation));
        if let Err(e) = spawned {
            give_up(rebuild, generation, &format!("its thread could not start: {e}"));
        }
    }

    /// Reads every id from the table, makes a filter for twice as many, and puts it in place
    /// with the ids added meanwhile.
    fn rebuild_from_table(self: Arc<Self>, generation: u64) {
        let started = Instant::now();
        let _unfinished = Unfinished { filter: &self, generation };
        if let Some(held) = self.install(generation, self.read_table()) {
            tracing::debug!(
                ids = held,
                ms = started.elapsed().as_millis() as u64,
                "read the stored delivery ids"
            );
        }
    }

    /// Puts in place the filter `read` from the table by rebuild `generation`, with the ids
    /// added meanwhile; returns how many it read. Nothing if that rebuild was given up.
    fn install(&self, generation: u64, read: rusqlite::Result<Bits>) -> Option<usize> {
        let mut rebuild = self.rebuild_state();
        if rebuild.generation != generation {
            return None;
        }
        let bits = match read {
            Ok(bits) => bits,
            Err(e) => {
                give_up(&mut rebuild, generation, &format!("the table could not be read: {e}"));
                return None;
            }
        };
        for hash in rebuild.added_meanwhile.take()? {
            bits.add(hash);
        }
        let built = bits.built;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(bits));
        Some(built)
    }

    /// A filter of every id in the table, made for twice as many as it may hold. Their hashes
    /// are set as they are read: nothing of the size of the table is held besides the bits.
    fn read_table(&self) -> rusqlite::Result<Bits> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let held: Option<i64> = conn.query_row(ROWS_AT_MOST, [], |r| r.get(0))?;
        let held = held.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let mut bits = Bits::for_ids(held.saturating_mul(2).clamp(self.min_capacity, MAX_CAPACITY));
        // A chunk per read transaction.
        let mut select = conn.prepare(READ_CHUNK)?;
        let mut after = i64::MIN;
        loop {
            let mut read = 0;
            let mut rows = select.query(params![after, SCAN_CHUNK])?;
            while let Some(row) = rows.next()? {
                after = row.get(0)?;
                let (instance, id) = (row.get_ref(1)?.as_str()?, row.get_ref(2)?.as_str()?);
                bits.set(self.hash(instance, id));
                read += 1;
            }
            bits.built += read;
            if read < SCAN_CHUNK as usize {
                return Ok(bits);
            }
        }
    }

    /// Gives up rebuild `generation` if it is still the one running.
    fn give_up(&self, generation: u64, why: &str) {
        give_up(&mut self.rebuild_state(), generation, why);
    }

    /// Lookups answered from memory so far.
    #[cfg(test)]
    pub(super) fn spared(&self) -> u64 {
        self.spared.load(Ordering::Relaxed)
    }

    /// Whether a build is in place.
    #[cfg(test)]
    pub(super) fn ready(&self) -> bool {
        self.current().is_some()
    }
}

/// Marks a rebuild as running; answers its generation.
fn begin(rebuild: &mut Rebuild) -> u64 {
    rebuild.generation += 1;
    rebuild.added_meanwhile = Some(Vec::new());
    rebuild.generation
}

/// Gives up rebuild `generation` if it is still the one running: its filter will not be put in
/// place, and the next starts after [`RETRY_AFTER`]. The filter in place (if any) already holds
/// every id added meanwhile; without one, lookups go to SQLite.
fn give_up(rebuild: &mut Rebuild, generation: u64, why: &str) {
    if rebuild.generation == generation && rebuild.added_meanwhile.take().is_some() {
        tracing::warn!(
            why,
            "gave up reading the stored delivery ids; lookups the filter cannot answer go to SQLite"
        );
        rebuild.not_before = Some(Instant::now() + RETRY_AFTER);
    }
}

/// Gives its rebuild up if the thread unwinds before putting the filter in place: else the
/// list of ids added meanwhile would grow with every webhook and no rebuild would start again.
struct Unfinished<'a> {
    filter: &'a SeenIds,
    generation: u64,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.filter.give_up(self.generation, "its thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct, well-spread hashes (splitmix64 of `i`), the same on every run.
    fn hash(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Every id added is held, far past the capacity too; at capacity, about 1% of ids never
    /// added are false positives (each one a lookup in SQLite, as before the filter).
    #[test]
    fn an_added_id_is_always_held_and_few_others_seem_to_be() {
        let bits = Bits::for_ids(MIN_CAPACITY);
        for i in 0..MIN_CAPACITY as u64 {
            bits.set(hash(i));
        }
        assert!((0..MIN_CAPACITY as u64).all(|i| bits.may_hold(hash(i))));
        let probes = 100_000;
        let false_positives = (0..probes).filter(|i| bits.may_hold(hash(1 << 40 | i))).count();
        assert!(false_positives < probes as usize / 50, "{false_positives} of {probes}");
        for i in MIN_CAPACITY as u64..4 * MIN_CAPACITY as u64 {
            bits.set(hash(i));
        }
        assert!((0..4 * MIN_CAPACITY as u64).all(|i| bits.may_hold(hash(i))));
    }

    fn table(dir: &std::path::Path) -> (PathBuf, Connection) {
        let path = dir.join("events.db");
        let conn = crate::sqlite::schema::open(&path).unwrap();
        (path, conn)
    }

    fn store_id(conn: &Connection, id: &str) {
        conn.execute(
            "INSERT INTO webhook_deliveries (instance, delivery_id, expires_at_ms) VALUES ('shop', ?1, ?2)",
            params![id, i64::MAX],
        )
        .unwrap();
    }

    /// An id committed while a rebuild reads the table (so not among what it read) is held by
    /// the filter the rebuild puts in place.
    #[test]
    fn an_id_added_while_the_table_is_read_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = table(dir.path());
        store_id(&conn, "before");
        let seen = SeenIds::new(path);
        // A rebuild has started (as the first lookup starts one) and read "before" only.
        let generation = begin(&mut seen.rebuild_state());
        let read = seen.read_table();
        store_id(&conn, "during");
        seen.add("shop", "during");
        assert_eq!(seen.install(generation, read), Some(1));
        assert!(seen.may_hold("shop", "before"));
        assert!(seen.may_hold("shop", "during"));
        // Not a filter that holds everything.
        assert!((0..100).any(|i| !seen.may_hold("shop", &format!("never-{i}"))));
    }

    /// A table larger than one read's chunk is read whole, in row order, expired ids too: a
    /// clock stepped back can make one unexpired again, and SQLite then finds it.
    #[test]
    fn a_large_table_is_read_whole_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut conn) = table(dir.path());
        let tx = conn.transaction().unwrap();
        for i in 0..25_000 {
            store_id(&tx, &format!("d-{i}"));
        }
        tx.execute("INSERT INTO webhook_deliveries VALUES ('shop', 'expired', 1)", []).unwrap();
        tx.commit().unwrap();
        let seen = SeenIds::new(path);
        let generation = begin(&mut seen.rebuild_state());
        let read = seen.read_table();
        assert_eq!(seen.install(generation, read), Some(25_001));
        assert!((0..25_000).all(|i| seen.may_hold("shop", &format!("d-{i}"))));
        assert!(seen.may_hold("shop", "expired"));
        let plan: String =
            conn.query_row(&format!("EXPLAIN QUERY PLAN {READ_CHUNK}"), params![1, 2], |r| r.get(3)).unwrap();
        assert!(plan.contains("USING INTEGER PRIMARY KEY"), "{plan}");
    }

    /// While ids are stored one after another and the filter (made small here) is rebuilt
    /// again and again on its own threads, every id stored is held as soon as it was added.
    #[test]
    fn ids_stay_held_through_repeated_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = table(dir.path());
        let seen = SeenIds::with_limits(path, 64, MAX_ADDED_MEANWHILE);
        assert!(seen.may_hold("shop", "anything"), "nothing is known before the first build");
        let until = Instant::now() + Duration::from_secs(30);
        while !seen.ready() {
            assert!(Instant::now() < until, "the first build never came");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut builds = std::collections::HashSet::new();
        for i in 0..3_000 {
            let id = format!("d-{i}");
            store_id(&conn, &id);
            seen.add("shop", &id);
            builds.insert(seen.current().map(|b| b.built));
            assert!(seen.may_hold("shop", &id), "{id}");
            if i % 100 == 0 {
                assert!((0..=i).all(|j| seen.may_hold("shop", &format!("d-{j}"))), "after d-{i}");
            }
        }
        // From 64 ids, doubling: about six builds if each comes at once, fewer on a busy machine.
        assert!(builds.len() >= 3, "the filter was built {} times", builds.len());
    }

    /// When more ids arrive during a rebuild than it may keep a list of, the rebuild is given up:
    /// what it read is never put in place (it lacks those ids), and the filter in place, which
    /// holds them, stays.
    #[test]
    fn a_rebuild_outrun_by_new_ids_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = table(dir.path());
        let seen = SeenIds::with_limits(path, 64, 10);
        let first = begin(&mut seen.rebuild_state());
        assert_eq!(seen.install(first, seen.read_table()), Some(0));
        let outrun = begin(&mut seen.rebuild_state());
        let read = seen.read_table();
        for i in 0..10 {
            store_id(&conn, &format!("d-{i}"));
            seen.add("shop", &format!("d-{i}"));
        }
        assert!(seen.rebuild_state().added_meanwhile.is_none(), "the list stops at its limit");
        assert!(seen.rebuild_state().not_before.is_some(), "the next rebuild waits");
        assert_eq!(seen.install(outrun, read), None);
        assert!((0..10).all(|i| seen.may_hold("shop", &format!("d-{i}"))));
    }

    /// A rebuild whose thread panics is given up: else its list of ids would grow with every
    /// webhook and no rebuild would start again.
    #[test]
    fn a_rebuild_whose_thread_panics_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _conn) = table(dir.path());
        let seen = SeenIds::new(path);
        let generation = begin(&mut seen.rebuild_state());
        let on_thread = seen.clone();
        let ended = std::thread::spawn(move || {
            let _unfinished = Unfinished { filter: &on_thread, generation };
            panic!("a rebuild that breaks");
        })
        .join();
        assert!(ended.is_err());
        assert!(seen.rebuild_state().added_meanwhile.is_none());
        seen.add("shop", "after");
        assert!(seen.rebuild_state().added_meanwhile.is_none(), "no list kept for a dead rebuild");
    }
}
