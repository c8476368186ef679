//! The plugins' key-value port on a JetStream key-value bucket (`<stream>_KV`), shared by every
//! node: an instance's keys, counters and quotas are the same whichever node runs it, and so
//! are the AI daily budgets the host keeps in it.
//!
//! - **Keys.** `<namespace token>.k<key in base64url>`: any key a plugin may use becomes a valid
//!   bucket key, and no namespace can reach another's.
//! - **Values.** Eight bytes of expiry (ms since the epoch, 0 for none), then the value. An
//!   expired entry is not read, listed or counted as live; it is removed when its room is
//!   needed (as the SQLite store does).
//! - **Atomicity.** Every write is a compare-and-set on the entry's revision, tried again when
//!   another node wrote first: concurrent increments of one counter from several nodes all
//!   count.
//! - **Reads.** A read may be answered by any server that holds the bucket, which can lag the
//!   newest write by a moment: a value written through one node may be read through another
//!   just before it arrives there (writes are never lost: each checks the revision at the
//!   stream's leader).
//! - **Quotas.** Each namespace has a usage entry (`<namespace token>.usage`: keys and bytes of
//!   its stored entries). A write reserves its growth there first (a compare-and-set that refuses
//!   past the quota) and gives it back if the write loses its race; a delete gives its room back
//!   after the entry is gone. A node killed between the two steps leaves the usage counting
//!   more than is stored, never less: a namespace can end up refused early, never past its
//!   quota.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as KEY_CODE;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{
    NatsSettings, after_race, bucket, compare_and_set, connect_jetstream, lost_race, token, unavailable,
};
use crate::StoreError;
use plugboard_runtime::clock::now_ms;
use plugboard_runtime::keyvalue::{KvError, KvFuture, KvQuota, KvStore, add_to_counter};

/// How many times a write tries again when other nodes keep writing the same key first.
const MAX_RACES: usize = 1_000;

/// The key-value port on a JetStream bucket.
pub struct NatsKv {
    bucket: kv::Store,
    /// The bucket's stream, to list a namespace.
    stream: stream::Stream,
    name: String,
}

/// A namespace's stored entries.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Usage {
    keys: i64,
    bytes: i64,
}

/// An entry as stored: its expiry and value.
struct Stored {
    expires_ms: u64,
    value: Vec<u8>,
}

impl Stored {
    fn decode(bytes: &[u8]) -> Option<Stored> {
        let (head, value) = bytes.split_at_checked(8)?;
        let expires_ms = u64::from_be_bytes(head.try_into().ok()?);
        Some(Stored { expires_ms, value: value.to_vec() })
    }

    fn encode(expires_ms: u64, value: &[u8]) -> bytes::Bytes {
        let mut bytes = Vec::with_capacity(8 + value.len());
        bytes.extend_from_slice(&expires_ms.to_be_bytes());
        bytes.extend_from_slice(value);
        bytes.into()
    }

    fn live(&self, now: u64) -> bool {
        self.expires_ms == 0 || self.expires_ms > now
    }
}

/// What a key's room is, as a quota counts it.
fn size(key: &str, value: &[u8]) -> i64 {
    (key.len() + value.len()) as i64
}

fn backend(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("{what}: {e}"))
}

/// A namespace's token in bucket keys.
fn namespace(ns: &str) -> String {
    token(ns)[..32].to_owned()
}

impl NatsKv {
    /// Connects to the servers `settings` names and creates (or finds) the bucket next to the
    /// log's stream.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, StoreError> {
        let (_, js) = connect_jetstream(settings).await?;
        let name = format!("{}_KV", settings.stream);
        let config = kv::Config {
            bucket: name.clone(),
            history: 1,
            num_replicas: settings.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let bucket = bucket(&js, config).await?;
        let stream = js
            .get_stream(format!("KV_{name}"))
            .await
            .map_err(|e| unavailable(&format!("cannot read the bucket {name}"), e))?;
        Ok(NatsKv { bucket, stream, name })
    }

    fn key(ns: &str, key: &str) -> String {
        format!("{}.k{}", namespace(ns), KEY_CODE.encode(key))
    }

    /// An entry's revision (also of a deleted one, to write it again) and what it stores.
    async fn read(&self, key: &str) -> Result<(Option<u64>, Option<Stored>), KvError> {
        let entry = self.bucket.entry(key).await.map_err(|e| backend("reading a key", e))?;
        Ok(match entry {
            None => (None, None),
            Some(entry) if entry.operation != kv::Operation::Put => (Some(entry.revision), None),
            Some(entry) => (Some(entry.revision), Stored::decode(&entry.value)),
        })
    }

    /// Writes `value` if the entry is still at `revision`; `Ok(false)` when another write came
    /// first.
    async fn write(&self, key: &str, value: bytes::Bytes, revision: Option<u64>) -> Result<bool, KvError> {
        compare_and_set(&self.bucket, key, value, revision)
            .await
            .map(|written| written.is_some())
            .map_err(|e| backend("writing a key", e))
    }

    /// Adds `keys` and `bytes` to the namespace's usage; refused past `quota` when it grows.
    async fn reserve(&self, ns: &str, keys: i64, bytes: i64, quota: Option<KvQuota>) -> Result<(), KvError> {
        // A write that does not change the namespace's size (a counter's next value, most of
        // the time) leaves the usage entry alone: it is every writer's, and each write to it is
        // a race.
        if keys == 0 && bytes == 0 {
            return Ok(());
        }
        let key = format!("{}.usage", namespace(ns));
        for tries in 0..MAX_RACES {
            let entry = self.bucket.entry(&key).await.map_err(|e| backend("reading a quota", e))?;
            let (revision, usage) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (Some(e.revision), serde_json::from_slice::<Usage>(&e.value).unwrap_or_default())
                }
                Some(e) => (Some(e.revision), Usage::default()),
                None => (None, Usage::default()),
            };
            let next = Usage { keys: (usage.keys + keys).max(0), bytes: (usage.bytes + bytes).max(0) };
            if let Some(quota) = quota
                && (keys > 0 || bytes > 0)
            {
                quota.check(next.keys as u64, next.bytes as u64)?;
            }
            let value = serde_json::to_vec(&next).map_err(|e| backend("a quota", e))?;
            if self.write(&key, value.into(), revision).await? {
                return Ok(());
            }
            after_race(tries).await;
        }
        Err(KvError::Backend("the namespace's usage is written by too many nodes at once".into()))
    }

    /// Reserves room for a write, removing the namespace's expired entries first when that
    /// makes room.
    async fn reserve_or_reclaim(
        &self,
        ns: &str,
        keys: i64,
        bytes: i64,
        quota: KvQuota,
    ) -> Result<(), KvError> {
        match self.reserve(ns, keys, bytes, Some(quota)).await {
            Err(KvError::QuotaExceeded(_)) => {
                self.remove_expired(ns).await?;
                self.reserve(ns, keys, bytes, Some(quota)).await
            }
            other => other,
        }
    }

    /// Removes the namespace's expired entries, giving their room back.
    async fn remove_expired(&self, ns: &str) -> Result<(), KvError> {
        let now = now_ms();
        for (key, revision, stored) in self.list(ns).await? {
            if stored.live(now) {
                continue;
            }
            let bucket_key = Self::key(ns, &key);
            if self.bucket.delete_expect_revision(&bucket_key, Some(revision)).await.is_ok() {
                self.reserve(ns, -1, -size(&key, &stored.value), None).await?;
            }
        }
        Ok(())
    }

    /// Every stored entry of a namespace (expired ones too), with its key and revision.
    async fn list(&self, ns: &str) -> Result<Vec<(String, u64, Stored)>, KvError> {
        let config = jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("$KV.{}.{}.>", self.name, namespace(ns)),
            deliver_policy: jetstream::consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        let mut consumer =
            self.stream.create_consumer(config).await.map_err(|e| backend("listing a namespace", e))?;
        let pending = consumer.info().await.map_err(|e| backend("listing a namespace", e))?.num_pending;
        let mut found = Vec::new();
        if pending == 0 {
            return Ok(found);
        }
        let mut messages = consumer.messages().await.map_err(|e| backend("listing a namespace", e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| backend("listing a namespace", e))?;
            let info = message.info().map_err(|e| backend("listing a namespace", e))?;
            let (revision, remaining) = (info.stream_sequence, info.pending);
            let deleted = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
            let encoded = message.subject.as_str().rsplit('.').next().and_then(|k| k.strip_prefix('k'));
            if !deleted
                && let Some(key) =
                    encoded.and_then(|k| KEY_CODE.decode(k).ok()).and_then(|k| String::from_utf8(k).ok())
                && let Some(stored) = Stored::decode(&message.payload)
            {
                found.push((key, revision, stored));
            }
            if remaining == 0 {
                break;
            }
        }
        Ok(found)
    }

    async fn get_live(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (_, stored) = self.read(&Self::key(ns, key)).await?;
        Ok(stored.filter(|s| s.live(now_ms())).map(|s| s.value))
    }

    async fn set_value(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> Result<(), KvError> {
        let bucket_key = Self::key(ns, key);
        let expires_ms = ttl
            .map_or(0, |t| now_ms().saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)).max(1));
        for tries in 0..MAX_RACES {
            let (revision, old) = self.read(&bucket_key).await?;
            let (keys, bytes) = growth(key, old.as_ref(), &value);
            self.reserve_or_reclaim(ns, keys, bytes, quota).await?;
            if self.write(&bucket_key, Stored::encode(expires_ms, &value), revision).await? {
                return Ok(());
            }
            self.reserve(ns, -keys, -bytes, None).await?;
            after_race(tries).await;
        }
        Err(KvError::Backend(format!("`{key}` is written by too many nodes at once")))
    }

    async fn delete_key(&self, ns: &str, key: &str) -> Result<bool, KvError> {
        let bucket_key = Self::key(ns, key);
        for tries in 0..MAX_RACES {
            let (revision, old) = self.read(&bucket_key).await?;
            let Some(old) = old else { return Ok(false) };
            match self.bucket.delete_expect_revision(&bucket_key, revision).await {
                Ok(()) => {
                    self.reserve(ns, -1, -size(key, &old.value), None).await?;
                    return Ok(old.live(now_ms()));
                }
                Err(e) if lost_race(&e) => after_race(tries).await,
                Err(e) => return Err(backend("deleting a key", e)),
            }
        }
        Err(KvError::Backend(format!("`{key}` is written by too many nodes at once")))
    }

    async fn add(&self, ns: &str, key: &str, delta: i64, quota: KvQuota) -> Result<i64, KvError> {
        let bucket_key = Self::key(ns, key);
        for tries in 0..MAX_RACES {
            let (revision, old) = self.read(&bucket_key).await?;
            let now = now_ms();
            let live = old.as_ref().filter(|s| s.live(now));
            let next = add_to_counter(key, live.map(|s| s.value.as_slice()), delta)?;
            let value = next.to_string().into_bytes();
            // A live counter keeps its expiry.
            let expires_ms = live.map_or(0, |s| s.expires_ms);
            let (keys, bytes) = growth(key, old.as_ref(), &value);
            self.reserve_or_reclaim(ns, keys, bytes, quota).await?;
            if self.write(&bucket_key, Stored::encode(expires_ms, &value), revision).await? {
                return Ok(next);
            }
            self.reserve(ns, -keys, -bytes, None).await?;
            after_race(tries).await;
        }
        Err(KvError::Backend(format!("`{key}` is incremented by too many nodes at once")))
    }

    async fn live_entries(&self, ns: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let now = now_ms();
        let mut found: Vec<(String, Vec<u8>)> = self
            .list(ns)
            .await?
            .into_iter()
            .filter(|(key, _, stored)| key.starts_with(prefix) && stored.live(now))
            .map(|(key, _, stored)| (key, stored.value))
            .collect();
        found.sort();
        Ok(found)
    }
}

/// How many keys and bytes writing `value` under `key` adds, over what is stored there.
fn growth(key: &str, old: Option<&Stored>, value: &[u8]) -> (i64, i64) {
    match old {
        Some(old) => (0, size(key, value) - size(key, &old.value)),
        None => (1, size(key, value)),
    }
}

impl KvStore for NatsKv {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> KvFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.get_live(namespace, key))
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: KvQuota,
    ) -> KvFuture<'a, ()> {
        Box::pin(self.set_value(namespace, key, value, ttl, quota))
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> KvFuture<'a, bool> {
        Box::pin(self.delete_key(namespace, key))
    }

    fn increment<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        delta: i64,
        quota: KvQuota,
    ) -> KvFuture<'a, i64> {
        Box::pin(self.add(namespace, key, delta, quota))
    }

    fn entries<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> KvFuture<'a, Vec<(String, Vec<u8>)>> {
        Box::pin(self.live_entries(namespace, prefix))
    }
}
