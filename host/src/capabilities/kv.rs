//! The `kv` capability: each instance's own key-value namespace.
//!
//! Storage sits behind [`KvStore`] so that an embedder (or the durable store) can supply its own;
//! [`MemoryKv`] is the built-in one. The namespace is the instance id, chosen by the host, so a
//! plugin can never name another instance's keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bindings::kv::Host;
use crate::bindings::types::Error;
use crate::capabilities::Capability;
use crate::runtime::InstanceState;

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
    /// The backing store failed.
    #[error("key-value store failed: {0}")]
    Backend(String),
}

/// Where instances' keys live. Implementations must keep namespaces apart.
pub trait KvStore: Send + Sync + 'static {
    /// The value under `key`, unless absent or expired.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores `value`, expiring after `ttl` when given.
    fn set(&self, namespace: &str, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), KvError>;
    /// Removes `key`; answers whether it existed (and had not expired).
    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError>;
    /// Adds `delta` to the counter under `key` and returns the new value; absent counts as 0.
    fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<i64, KvError>;
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

/// An in-memory [`KvStore`]: fast, and gone when the process ends.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl MemoryKv {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<(String, String), Entry>) -> R) -> Result<R, KvError> {
        let mut map = self.entries.lock().map_err(|_| KvError::Backend("lock poisoned".into()))?;
        Ok(f(&mut map))
    }
}

impl KvStore for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let now = Instant::now();
        self.with(|m| {
            m.get(&(namespace.to_owned(), key.to_owned())).filter(|e| e.live(now)).map(|e| e.value.clone())
        })
    }

    fn set(&self, namespace: &str, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), KvError> {
        let expires = ttl.map(|d| Instant::now() + d);
        self.with(|m| {
            m.insert((namespace.to_owned(), key.to_owned()), Entry { value, expires });
        })
    }

    fn delete(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let now = Instant::now();
        self.with(|m| m.remove(&(namespace.to_owned(), key.to_owned())).is_some_and(|e| e.live(now)))
    }

    fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let now = Instant::now();
        self.with(|m| {
            let entry = m
                .entry((namespace.to_owned(), key.to_owned()))
                .or_insert(Entry { value: b"0".to_vec(), expires: None });
            if !entry.live(now) {
                *entry = Entry { value: b"0".to_vec(), expires: None };
            }
            let current: i64 = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| KvError::NotACounter(key.to_owned()))?;
            let next = current.checked_add(delta).ok_or_else(|| KvError::Overflow(key.to_owned()))?;
            entry.value = next.to_string().into_bytes();
            Ok(next)
        })?
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidInput(format!("a key must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NotACounter(_) | KvError::Overflow(_) => Error::InvalidInput(e.to_string()),
            KvError::Backend(_) => Error::Internal(e.to_string()),
        }
    }
}

impl Host for InstanceState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        Ok(self.host.kv.get(&self.plugin.id, &key)?)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), Error> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::InvalidInput(format!("a value may be at most {MAX_VALUE_BYTES} bytes")));
        }
        Ok(self.host.kv.set(&self.plugin.id, &key, value, ttl_ms.map(Duration::from_millis))?)
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        Ok(self.host.kv.delete(&self.plugin.id, &key)?)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        Ok(self.host.kv.increment(&self.plugin.id, &key, delta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_apart_and_ttls_expire() {
        let kv = MemoryKv::default();
        kv.set("a", "k", b"1".to_vec(), None).unwrap();
        assert_eq!(kv.get("b", "k").unwrap(), None);
        kv.set("a", "short", b"x".to_vec(), Some(Duration::from_millis(1))).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("a", "short").unwrap(), None);
        assert!(!kv.delete("a", "short").unwrap());
        assert!(kv.delete("a", "k").unwrap());
    }

    #[test]
    fn counters_refuse_non_numbers_and_overflow() {
        let kv = MemoryKv::default();
        assert_eq!(kv.increment("a", "n", 5).unwrap(), 5);
        assert_eq!(kv.increment("a", "n", -7).unwrap(), -2);
        kv.set("a", "s", b"text".to_vec(), None).unwrap();
        assert_eq!(kv.increment("a", "s", 1), Err(KvError::NotACounter("s".into())));
        kv.set("a", "max", i64::MAX.to_string().into_bytes(), None).unwrap();
        assert_eq!(kv.increment("a", "max", 1), Err(KvError::Overflow("max".into())));
    }
}
