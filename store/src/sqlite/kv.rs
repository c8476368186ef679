//! The `kv` capability's data in the embedded store: one table keyed by (namespace, key), and a
//! usage row per namespace kept in the same transaction as every write, so that quota checks do
//! not scan the namespace. Expired entries are invisible at once and purged when their room is
//! needed. Every statement is prepared once per connection (`prepare_cached`): an `increment`
//! runs six, and parsing them on each call cost more than running them (`tests/benches/kv.rs`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use plugboard_runtime::clock::now_ms;
use plugboard_runtime::keyvalue::{AnsweredAtOnce, KvError, KvQuota, add_to_counter};

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS kv (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        expires_at_ms INTEGER,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS kv_usage (
        namespace TEXT PRIMARY KEY,
        keys INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    ) WITHOUT ROWID;
";

/// A [`KvStore`] in SQLite. Writes are durable against a crash of the process (WAL,
/// `synchronous = NORMAL`); a power loss may take the last writes.
pub struct SqliteKv {
    conn: Mutex<Connection>,
}

fn backend(e: rusqlite::Error) -> KvError {
    KvError::Backend(e.to_string())
}

fn live(expires: Option<i64>, now: i64) -> bool {
    expires.is_none_or(|t| t > now)
}

/// `(value, expires_at_ms)` of the entry under `key`, expired or not.
fn entry(tx: &Transaction<'_>, ns: &str, key: &str) -> rusqlite::Result<Option<(Vec<u8>, Option<i64>)>> {
    tx.prepare_cached("SELECT value, expires_at_ms FROM kv WHERE namespace = ?1 AND key = ?2")?
        .query_row(params![ns, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

fn usage(tx: &Transaction<'_>, ns: &str) -> rusqlite::Result<(u64, u64)> {
    Ok(tx
        .prepare_cached("SELECT keys, bytes FROM kv_usage WHERE namespace = ?1")?
        .query_row([ns], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

fn add_usage(tx: &Transaction<'_>, ns: &str, keys: i64, bytes: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO kv_usage (namespace, keys, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (namespace) DO UPDATE SET keys = keys + ?2, bytes = bytes + ?3",
    )?
    .execute(params![ns, keys, bytes])?;
    Ok(())
}

fn size(key: &str, value: &[u8]) -> i64 {
    (key.len() + value.len()) as i64
}

/// Writes `value` under `key` within `quota`, purging the namespace's expired entries first
/// when that makes room.
fn put(
    tx: &Transaction<'_>,
    ns: &str,
    key: &str,
    value: &[u8],
    expires: Option<i64>,
    quota: KvQuota,
    now: i64,
) -> Result<(), KvError> {
    let fits = |tx: &Transaction<'_>| -> Result<Result<(), KvError>, rusqlite::Error> {
        let old = entry(tx, ns, key)?.map(|(v, _)| size(key, &v));
        let (keys, bytes) = usage(tx, ns)?;
        let keys = keys + u64::from(old.is_none());
        let bytes = (bytes as i64 - old.unwrap_or(0) + size(key, value)).max(0) as u64;
        Ok(quota.check(keys, bytes))
    };
    if fits(tx).map_err(backend)?.is_err() {
        let (count, bytes): (i64, i64) = tx
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(length(key) + length(value)), 0) FROM kv
                 WHERE namespace = ?1 AND expires_at_ms <= ?2",
            )
            .and_then(|mut count| count.query_row(params![ns, now], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(backend)?;
        tx.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND expires_at_ms <= ?2")
            .and_then(|mut purge| purge.execute(params![ns, now]))
            .map_err(backend)?;
        add_usage(tx, ns, -count, -bytes).map_err(backend)?;
    }
    fits(tx).map_err(backend)??;
    let old = entry(tx, ns, key).map_err(backend)?.map(|(v, _)| size(key, &v));
    tx.prepare_cached(
        "INSERT INTO kv (namespace, key, value, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, key) DO UPDATE SET value = ?3, expires_at_ms = ?4",
    )
    .and_then(|mut insert| insert.execute(params![ns, key, value, expires]))
    .map_err(backend)?;
    add_usage(tx, ns, i64::from(old.is_none()), size(key, value) - old.unwrap_or(0)).map_err(backend)
}

impl SqliteKv {
    /// Opens (or creates) the key-value tables in the database at `path`.
    pub fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = super::connect(path)?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(SqliteKv { conn: Mutex::new(conn) })
    }

    fn transaction<R>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<R, KvError>) -> Result<R, KvError> {
        let mut conn = self.conn.lock().map_err(|_| KvError::Backend("lock poisoned".into()))?;
        // IMMEDIATE takes the write lock up front (waiting up to the busy timeout): a deferred
        // transaction that reads and then writes fails at once in WAL mode when another
        // connection (the event writer) committed in between.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let answer = f(&tx)?;
        tx.commit().map_err(backend)?;
        Ok(answer)
    }
}

fn now() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

/// Answered on the calling thread, as the capability's other work is: one statement or one short
/// transaction on a WAL file, which takes microseconds.
impl AnsweredAtOnce for SqliteKv {
    fn get_now(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let now = now();
        let conn = self.conn.lock().map_err(|_| KvError::Backend("lock poisoned".into()))?;
        let found: Option<(Vec<u8>, Option<i64>)> = conn
            .prepare_cached("SELECT value, expires_at_ms FROM kv WHERE namespace = ?1 AND key = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![namespace, key], |r| Ok((r.get(0)?, r.get(1)?))).optional()
            })
            .map_err(backend)?;
        Ok(found.filter(|(_, exp)| live(*exp, now)).map(|(v, _)| v))
    }

    fn set_now(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> Result<(), KvError> {
        let now = now();
        let expires = ttl.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        self.transaction(|tx| put(tx, namespace, key, &value, expires, quota, now))
    }

    fn delete_now(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let now = now();
        self.transaction(|tx| {
            let Some((value, expires)) = entry(tx, namespace, key).map_err(backend)? else {
                return Ok(false);
            };
            tx.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")
                .and_then(|mut delete| delete.execute(params![namespace, key]))
                .map_err(backend)?;
            add_usage(tx, namespace, -1, -size(key, &value)).map_err(backend)?;
            Ok(live(expires, now))
        })
    }

    fn increment_now(&self, namespace: &str, key: &str, delta: i64, quota: KvQuota) -> Result<i64, KvError> {
        let now = now();
        self.transaction(|tx| {
            let current = entry(tx, namespace, key).map_err(backend)?.filter(|(_, exp)| live(*exp, now));
            let next = add_to_counter(key, current.as_ref().map(|(v, _)| v.as_slice()), delta)?;
            let expires = current.and_then(|(_, exp)| exp);
            put(tx, namespace, key, next.to_string().as_bytes(), expires, quota, now)?;
            Ok(next)
        })
    }

    fn entries_now(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let now = now();
        let conn = self.conn.lock().map_err(|_| KvError::Backend("lock poisoned".into()))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, value FROM kv WHERE namespace = ?1 AND substr(key, 1, length(?2)) = ?2
                 AND (expires_at_ms IS NULL OR expires_at_ms > ?3) ORDER BY key",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![namespace, prefix, now], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_runtime::keyvalue::KvStore;

    #[tokio::test]
    async fn entries_are_listed_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        plugboard_runtime::keyvalue::check_entries(&SqliteKv::open(&dir.path().join("kv.db")).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_all_count() {
        let dir = tempfile::tempdir().unwrap();
        let kv = std::sync::Arc::new(SqliteKv::open(&dir.path().join("kv.db")).unwrap());
        plugboard_runtime::keyvalue::check_counters(kv).await;
    }

    #[tokio::test]
    async fn survives_reopening_and_enforces_quotas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let quota = KvQuota { max_keys: 2, max_bytes: 100 };
        {
            let kv = SqliteKv::open(&path).unwrap();
            kv.set("a", "k", b"v".to_vec(), None, quota).await.unwrap();
            assert_eq!(kv.increment("a", "n", 41, quota).await.unwrap(), 41);
            assert!(matches!(
                kv.set("a", "third", b"v".to_vec(), None, quota).await,
                Err(KvError::QuotaExceeded(_))
            ));
            kv.set("a", "gone", b"v".to_vec(), None, KvQuota::UNLIMITED).await.unwrap();
            assert!(kv.delete("a", "gone").await.unwrap());
        }
        let kv = SqliteKv::open(&path).unwrap();
        assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(kv.increment("a", "n", 1, quota).await.unwrap(), 42);
        assert_eq!(kv.get("b", "k").await.unwrap(), None);
        kv.set("a", "n", b"x".repeat(98), None, quota).await.unwrap_err();
        kv.set("a", "k", b"short".to_vec(), Some(Duration::from_millis(1)), quota).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kv.get("a", "k").await.unwrap(), None);
        // The expired key's room is reclaimed for a new key.
        kv.set("a", "new", b"v".to_vec(), None, quota).await.unwrap();
        assert!(!kv.delete("a", "k").await.unwrap());
        assert_eq!(kv.increment("a", "new", 1, quota).await, Err(KvError::NotACounter("new".into())));
    }
}
