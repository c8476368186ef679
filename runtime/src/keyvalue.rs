//! The key-value port: where instances' keys live. [`KvStore`] is what the `kv` capability
//! and the AI token budgets need from storage; [`MemoryKv`] is the built-in implementation, and
//! the server's durable store supplies another. Namespaces keep instances apart; quotas are
//! checked by the implementation on every write.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Why a key-value operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// The value under the key is not a signed 64-bit counter.
    #[error("the value under `{0}` is not a counter")]
    NotACounter(String),
    /// Adding the delta would overflow the counter.
    #[error("counter `{0}` would overflow")]
    Overflow(String),
    /// The write would take the namespace past its quota.
    #[error("key-value quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The backing store failed.
    #[error("key-value store failed: {0}")]
    Backend(String),
}

/// How much one namespace may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// The most keys.
    pub max_keys: u64,
    /// The most bytes, keys and values together.
    pub max_bytes: u64,
}

impl KvQuota {
    /// No practical limit.
    pub const UNLIMITED: KvQuota = KvQuota { max_keys: u64::MAX, max_bytes: u64::MAX };

    /// Checks a namespace's usage after a write; expired entries the store could not yet
    /// purge count too.
    pub fn check(&self, keys: u64, bytes: u64) -> Result<(), KvError> {
        if keys > self.max_keys {
            return Err(KvError::QuotaExceeded(format!(
                "the namespace may hold at most {} keys",
                self.max_keys
            )));
        }
        if bytes > self.max_bytes {
            return Err(KvError::QuotaExceeded(format!(
                "the namespace may hold at most {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

/// What a [`KvStore`] method returns: a boxed future, so that the trait is object safe and a
/// store that is remote (a NATS JetStream bucket) answers without blocking the caller.
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'a>>;

/// Where instances' keys live: the key-value port. What every implementation must do, whatever
/// it stores in:
/// - keep namespaces apart: a key of one namespace is never read, listed or counted in another;
/// - expire an entry once its TTL passed: it is no longer read, listed or counted as live, and
///   its room is reclaimed before a write is refused for quota;
/// - check the quota it is given on every write, against the namespace's keys and bytes (key
///   and value lengths) after the write, and refuse the write whole when it would pass;
/// - apply `increment` atomically: concurrent increments of one counter all count.
///
/// [`check_entries`] checks the listing part; `tests` in the server's SQLite backend run the rest.
pub trait KvStore: Send + Sync + 'static {
    /// The value under `key`, unless absent or expired.
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>>;
    /// Stores `value`, expiring after `ttl` when given.
    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, ()>;
    /// Removes `key`; answers whether it existed (and had not expired).
    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> KvFuture<'a, bool>;
    /// Adds `delta` to the counter under `key` and returns the new value; absent counts as 0.
    /// A live counter keeps its expiry.
    fn increment<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        delta: i64,
        quota: KvQuota,
    ) -> KvFuture<'a, i64>;
    /// The live entries whose keys start with `prefix`, sorted by key. Host-side only (usage
    /// reports): plugins cannot list keys.
    fn entries<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> KvFuture<'a, Vec<(String, Vec<u8>)>>;
}

/// A [`KvStore`] whose answers are ready at once (in memory, or a local file whose statements
/// take microseconds): it implements these, and the port's futures come ready-made.
pub trait AnsweredAtOnce: Send + Sync + 'static {
    /// See [`KvStore::get`].
    fn get_now(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// See [`KvStore::set`].
    fn set_now(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> Result<(), KvError>;
    /// See [`KvStore::delete`].
    fn delete_now(&self, namespace: &str, key: &str) -> Result<bool, KvError>;
    /// See [`KvStore::increment`].
    fn increment_now(&self, namespace: &str, key: &str, delta: i64, quota: KvQuota) -> Result<i64, KvError>;
    /// See [`KvStore::entries`].
    fn entries_now(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError>;
}

impl<T: AnsweredAtOnce> KvStore for T {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(self.get_now(namespace, key)))
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, ()> {
        Box::pin(std::future::ready(self.set_now(namespace, key, value, ttl, quota)))
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> KvFuture<'a, bool> {
        Box::pin(std::future::ready(self.delete_now(namespace, key)))
    }

    fn increment<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        delta: i64,
        quota: KvQuota,
    ) -> KvFuture<'a, i64> {
        Box::pin(std::future::ready(self.increment_now(namespace, key, delta, quota)))
    }

    fn entries<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> KvFuture<'a, Vec<(String, Vec<u8>)>> {
        Box::pin(std::future::ready(self.entries_now(namespace, prefix)))
    }
}

/// The value of a counter kept by [`KvStore::increment`] (decimal text); `None` for a value
/// that is not one.
pub fn counter_value(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The new value of a counter holding `current` (absent: 0) after adding `delta`.
pub fn add_to_counter(key: &str, current: Option<&[u8]>, delta: i64) -> Result<i64, KvError> {
    let current: i64 = match current {
        None => 0,
        Some(bytes) => counter_value(bytes).ok_or_else(|| KvError::NotACounter(key.to_owned()))?,
    };
    current.checked_add(delta).ok_or_else(|| KvError::Overflow(key.to_owned()))
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

#[derive(Default)]
struct Namespace {
    entries: HashMap<String, Entry>,
    bytes: u64,
}

fn size(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl Namespace {
    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now))
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= size(key, &entry.value);
        Some(entry)
    }

    /// Inserts within `quota`, purging expired entries first when that makes room.
    fn put(&mut self, key: &str, entry: Entry, quota: KvQuota, now: Instant) -> Result<(), KvError> {
        let fits = |ns: &Namespace| {
            let old = ns.entries.get(key).map(|e| size(key, &e.value));
            let keys = ns.entries.len() as u64 + u64::from(old.is_none());
            quota.check(keys, ns.bytes - old.unwrap_or(0) + size(key, &entry.value))
        };
        if fits(self).is_err() {
            let expired: Vec<String> =
                self.entries.iter().filter(|(_, e)| !e.live(now)).map(|(k, _)| k.clone()).collect();
            for k in expired {
                self.remove(&k);
            }
        }
        fits(self)?;
        self.remove(key);
        self.bytes += size(key, &entry.value);
        self.entries.insert(key.to_owned(), entry);
        Ok(())
    }
}

/// An in-memory [`KvStore`]: fast, and gone when the process ends.
#[derive(Default)]
pub struct MemoryKv {
    namespaces: Mutex<HashMap<String, Namespace>>,
}

impl MemoryKv {
    fn with<R>(&self, namespace: &str, f: impl FnOnce(&mut Namespace) -> R) -> Result<R, KvError> {
        let mut map = self.namespaces.lock().map_err(|_| KvError::Backend("lock poisoned".into()))?;
        Ok(f(map.entry(namespace.to_owned()).or_default()))
    }
}

/// Answered at once: the map is in memory.
impl AnsweredAtOnce for MemoryKv {
    fn get_now(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let now = Instant::now();
        self.with(namespace, |ns| ns.live(key, now).map(|e| e.value.clone()))
    }

    fn set_now(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> Result<(), KvError> {
        let now = Instant::now();
        self.with(namespace, |ns| {
            ns.put(key, Entry { value, expires: ttl.and_then(|d| now.checked_add(d)) }, quota, now)
        })?
    }

    fn delete_now(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let now = Instant::now();
        self.with(namespace, |ns| ns.remove(key).is_some_and(|e| e.live(now)))
    }

    fn increment_now(&self, namespace: &str, key: &str, delta: i64, quota: KvQuota) -> Result<i64, KvError> {
        let now = Instant::now();
        self.with(namespace, |ns| {
            let live = ns.live(key, now);
            let next = add_to_counter(key, live.map(|e| e.value.as_slice()), delta)?;
            let expires = live.and_then(|e| e.expires);
            ns.put(key, Entry { value: next.to_string().into_bytes(), expires }, quota, now)?;
            Ok(next)
        })?
    }

    fn entries_now(&self, namespace: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let now = Instant::now();
        self.with(namespace, |ns| {
            let mut found: Vec<_> = ns
                .entries
                .iter()
                .filter(|(k, e)| k.starts_with(prefix) && e.live(now))
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect();
            found.sort();
            found
        })
    }
}

/// Checks what every [`KvStore`] must do when listing: only its namespace, only the prefix,
/// only live entries, sorted by key. For the tests of an implementation: it writes to
/// namespaces `a` and `b` of `kv`, and panics with the difference when the listing is wrong.
#[cfg(any(test, feature = "conformance"))]
pub async fn check_entries(kv: &dyn KvStore) {
    let u = KvQuota::UNLIMITED;
    kv.set("a", "total/x/2", b"2".to_vec(), None, u).await.unwrap();
    kv.set("a", "total/x/1", b"1".to_vec(), None, u).await.unwrap();
    kv.set("a", "totally", b"no".to_vec(), None, u).await.unwrap();
    kv.set("a", "total/gone", b"no".to_vec(), Some(Duration::from_millis(1)), u).await.unwrap();
    kv.set("b", "total/other", b"no".to_vec(), None, u).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let found = kv.entries("a", "total/").await.unwrap();
    assert_eq!(found, vec![("total/x/1".into(), b"1".to_vec()), ("total/x/2".into(), b"2".to_vec())]);
}

/// Checks that increments of one counter from many tasks at once all count, and that a counter
/// keeps its expiry. For the tests of an implementation: it writes to namespace `c` of `kv`,
/// and panics with the difference when they do not.
#[cfg(any(test, feature = "conformance"))]
pub async fn check_counters(kv: std::sync::Arc<dyn KvStore>) {
    let u = KvQuota::UNLIMITED;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    kv.increment("c", "n", 1, u).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(kv.increment("c", "n", 0, u).await.unwrap(), 400, "concurrent increments were lost");
    kv.set("c", "short", b"1".to_vec(), Some(Duration::from_millis(20)), u).await.unwrap();
    assert_eq!(kv.increment("c", "short", 1, u).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(kv.get("c", "short").await.unwrap(), None, "an increment dropped the counter's expiry");
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: KvQuota = KvQuota::UNLIMITED;

    #[tokio::test]
    async fn entries_are_listed_by_prefix() {
        check_entries(&MemoryKv::default()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_all_count() {
        check_counters(std::sync::Arc::new(MemoryKv::default())).await;
    }

    #[tokio::test]
    async fn namespaces_are_apart_and_ttls_expire() {
        let kv = MemoryKv::default();
        kv.set("a", "k", b"1".to_vec(), None, U).await.unwrap();
        assert_eq!(kv.get("b", "k").await.unwrap(), None);
        kv.set("a", "short", b"x".to_vec(), Some(Duration::from_millis(1)), U).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kv.get("a", "short").await.unwrap(), None);
        assert!(!kv.delete("a", "short").await.unwrap());
        assert!(kv.delete("a", "k").await.unwrap());
    }

    #[tokio::test]
    async fn counters_refuse_non_numbers_and_overflow() {
        let kv = MemoryKv::default();
        assert_eq!(kv.increment("a", "n", 5, U).await.unwrap(), 5);
        assert_eq!(kv.increment("a", "n", -7, U).await.unwrap(), -2);
        kv.set("a", "s", b"text".to_vec(), None, U).await.unwrap();
        assert_eq!(kv.increment("a", "s", 1, U).await, Err(KvError::NotACounter("s".into())));
        kv.set("a", "max", i64::MAX.to_string().into_bytes(), None, U).await.unwrap();
        assert_eq!(kv.increment("a", "max", 1, U).await, Err(KvError::Overflow("max".into())));
    }

    #[tokio::test]
    async fn a_ttl_beyond_the_clock_means_no_expiry_not_a_panic() {
        let kv = MemoryKv::default();
        kv.set("a", "k", b"v".to_vec(), Some(Duration::MAX), U).await.unwrap();
        assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test]
    async fn quotas_count_keys_and_bytes_and_make_room_from_expired_entries() {
        let kv = MemoryKv::default();
        let quota = KvQuota { max_keys: 2, max_bytes: 10 };
        kv.set("a", "k1", b"12".to_vec(), None, quota).await.unwrap();
        kv.set("a", "k2", b"12".to_vec(), Some(Duration::from_millis(1)), quota).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // k2 expired: its room is reclaimed.
        kv.set("a", "k3", b"12".to_vec(), None, quota).await.unwrap();
        assert!(matches!(
            kv.set("a", "k4", b"1".to_vec(), None, quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        assert!(matches!(
            kv.set("a", "k1", b"1234567".to_vec(), None, quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        // Overwriting in place within the quota, and other namespaces, are fine.
        kv.set("a", "k1", b"1234".to_vec(), None, quota).await.unwrap();
        kv.set("b", "k4", b"1".to_vec(), None, quota).await.unwrap();
        assert_eq!(kv.get("a", "k1").await.unwrap(), Some(b"1234".to_vec()));
    }
}
