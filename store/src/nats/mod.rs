//! The event log on NATS JetStream, for several plugboard nodes sharing one log (the first port
//! of the distributed backend; the delivery queue and the read model follow).
//!
//! One JetStream stream (`PLUGBOARD` by default, file storage, the configured replicas) holds
//! one message per append: its events and queued deliveries together, so that an append is
//! atomic without a transaction. The subject names the instance and the provider's delivery id
//! (`plugboard.append.<instance>.<delivery>`, each a SHA-256 token), and the delivery id is the
//! message id, so the same webhook appended through two nodes is stored once (JetStream's
//! duplicate window is the configured dedup window). An append is acknowledged when JetStream
//! acknowledged the publish, that is once the stream's replicas stored it.
//!
//! Positions are `stream sequence << 20 | the event's index in its message`: increasing, not
//! contiguous, and an append holds fewer than 2^20 events.

mod record;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::log::{Append, Appended, EventLog, EventSummary};
use crate::{StoreError, StoreFuture};
use record::Record;

/// How many bits of a position are the event's index in its message.
const INDEX_BITS: u32 = 20;

/// How long an append waits for another node's publish of the same message id to be decided.
const IN_PROCESS_PATIENCE: Duration = Duration::from_secs(10);

/// JetStream's "duplicate message id is in process" (10158): a publish with the same id is
/// being stored; it ends as stored (then this one is a duplicate) or failed.
fn in_process(e: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| e.error_code() == jetstream::ErrorCode(10158))
}

/// Where the log lives and how it is kept.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// The servers to connect to (`nats://host:port`); any one reachable is enough.
    pub servers: Vec<String>,
    /// The stream's name.
    pub stream: String,
    /// The first token of every subject the log uses.
    pub subject_prefix: String,
    /// How many servers store each message (1, 3 or 5; a cluster needs at least as many).
    pub replicas: usize,
    /// How long a delivery id is remembered (JetStream's duplicate window).
    pub dedup_window: Duration,
}

impl NatsSettings {
    /// One server, the default names, one replica, a dedup window of a week.
    pub fn new(server: &str) -> Self {
        NatsSettings {
            servers: vec![server.to_owned()],
            stream: "PLUGBOARD".into(),
            subject_prefix: "plugboard".into(),
            replicas: 1,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The event log on a JetStream stream.
pub struct NatsLog {
    client: async_nats::Client,
    stream: stream::Stream,
    js: jetstream::Context,
    prefix: String,
    commits: watch::Receiver<u64>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for NatsLog {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// A subject token for any text: hex SHA-256, so that no id can add tokens or wildcards.
fn token(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl NatsLog {
    /// Connects, checks that the servers run JetStream, and creates the stream if it does not
    /// exist. Each failure says which: no server reachable, no JetStream, too few servers for
    /// the replicas asked.
    pub async fn connect(settings: &NatsSettings) -> Result<Arc<Self>, StoreError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("plugboard")
            .connect(settings.servers.clone())
            .await
            .map_err(|e| unavailable(&format!("cannot reach NATS at {}", settings.servers.join(", ")), e))?;
        let js = jetstream::new(client.clone());
        js.query_account().await.map_err(|e| match e.kind() {
            jetstream::context::AccountErrorKind::JetStreamUnavailable => StoreError::Unavailable(
                "the NATS server does not run JetStream (start it with -js, or `jetstream {}` in its config)"
                    .into(),
            ),
            _ => unavailable("JetStream is not ready", e),
        })?;
        let config = stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.append.>", settings.subject_prefix)],
            num_replicas: settings.replicas,
            duplicate_window: settings.dedup_window,
            storage: stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        let stream = js.get_or_create_stream(config).await.map_err(|e| {
            unavailable(
                &format!("cannot create the stream {} with {} replicas", settings.stream, settings.replicas),
                e,
            )
        })?;
        // Watching starts before `connect` returns, so no append made after it goes unnoticed.
        let mut info = stream.clone();
        let next =
            info.info().await.map_err(|e| unavailable("reading the stream's state", e))?.state.last_sequence
                + 1;
        let stored = stored_from(&stream, next).await?;
        let (notify, commits) = watch::channel(0u64);
        let watcher = tokio::spawn(watch_commits(stream.clone(), stored, next, notify));
        Ok(Arc::new(NatsLog {
            client,
            stream,
            js,
            prefix: settings.subject_prefix.clone(),
            commits,
            watcher,
        }))
    }

    fn subject(&self, instance: &str, delivery_id: Option<&str>) -> String {
        let delivery = delivery_id.map(token).unwrap_or_else(|| "_".into());
        format!("{}.append.{}.{delivery}", self.prefix, token(instance))
    }

    async fn append_record(&self, append: Append) -> Result<Appended, StoreError> {
        if append.events.len() >= 1 << INDEX_BITS {
            return Err(StoreError::Failed(format!(
                "an append holds fewer than {} events",
                1u32 << INDEX_BITS
            )));
        }
        let subject = self.subject(&append.instance, append.delivery_id.as_deref());
        let mut headers = async_nats::HeaderMap::new();
        // The message id: the delivery for a webhook, otherwise the first event (its id is
        // fresh), so that a publish tried again is stored once.
        let id = match (&append.delivery_id, append.events.first()) {
            (Some(_), _) => Some(subject.clone()),
            (None, Some(first)) => Some(format!("event.{}", token(&first.id))),
            (None, None) => None,
        };
        if let Some(id) = id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        }
        let record = Record::new(&append, plugboard_runtime::clock::now_ms());
        let payload: bytes::Bytes =
            serde_json::to_vec(&record).map_err(|e| StoreError::Failed(e.to_string()))?.into();
        // While another node's publish of the same message id is being replicated, JetStream
        // answers "in process" rather than "duplicate": ask again until it decides.
        let mut pause = Duration::from_millis(10);
        let started = std::time::Instant::now();
        loop {
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
                .map_err(|e| match e.kind() {
                    // Not a moment's unavailability: the same append would be refused again.
                    jetstream::context::PublishErrorKind::MaxPayloadExceeded => StoreError::Failed(format!(
                        "the append is {} bytes, more than the NATS servers take in one message ({e}); \
                         raise their max_payload or lower server.max_body_bytes",
                        payload.len()
                    )),
                    _ => unavailable("publishing to JetStream", e),
                })?
                .await;
            match ack {
                Ok(ack) => return Ok(if ack.duplicate { Appended::Duplicate } else { Appended::Stored }),
                Err(e) if in_process(&e) && started.elapsed() < IN_PROCESS_PATIENCE => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(unavailable("JetStream did not acknowledge the append", e)),
            }
        }
    }

    async fn duplicate(&self, instance: &str, delivery_id: &str) -> Result<bool, StoreError> {
        let subject = self.subject(instance, Some(delivery_id));
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => {
                let record: Record = serde_json::from_slice(&message.payload)
                    .map_err(|e| StoreError::Failed(e.to_string()))?;
                let now = plugboard_runtime::clock::now_ms();
                Ok(record.stored_at_ms.saturating_add(record.dedup_window_ms) > now)
            }
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(false),
            Err(e) => Err(unavailable("reading the log", e)),
        }
    }

    async fn read_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, EventSummary)>, StoreError> {
        let after = u64::try_from(after).unwrap_or(0);
        let (mut sequence, first_index) = (after >> INDEX_BITS, (after & ((1 << INDEX_BITS) - 1)) + 1);
        // Position 0 (nothing read yet) starts at the first message.
        let mut skip = if after == 0 { 0 } else { first_index };
        let mut found = Vec::new();
        let subjects = format!("{}.append.>", self.prefix);
        while found.len() < limit {
            let message =
                match self.stream.direct_get_next_for_subject(subjects.as_str(), Some(sequence.max(1))).await
                {
                    Ok(message) => message,
                    Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                    Err(e) => return Err(unavailable("reading the log", e)),
                };
            if message.sequence != sequence {
                skip = 0;
            }
            sequence = message.sequence + 1;
            // A message this build did not write (another program publishing on the log's
            // subjects) is skipped, not a read that fails from then on.
            let record: Record = match serde_json::from_slice(&message.payload) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(sequence = message.sequence, error = %e, "skipping a message that is not an append");
                    skip = 0;
                    continue;
                }
            };
            for (index, summary) in record.summaries().into_iter().enumerate().skip(skip as usize) {
                if found.len() == limit {
                    break;
                }
                let position = (message.sequence << INDEX_BITS) | index as u64;
                found.push((i64::try_from(position).unwrap_or(i64::MAX), summary));
            }
            skip = 0;
        }
        Ok(found)
    }

    async fn newest(&self) -> Result<i64, StoreError> {
        let info = self.stream.get_info().await.map_err(|e| unavailable("reading the stream's state", e))?;
        let last = info.state.last_sequence;
        if last == 0 {
            return Ok(0);
        }
        // After every event of the newest message, however many it holds.
        let position = (last << INDEX_BITS) | ((1 << INDEX_BITS) - 1);
        Ok(i64::try_from(position).unwrap_or(i64::MAX))
    }
}

type Stored = jetstream::consumer::pull::Ordered;

/// The stream's messages from sequence `next` on, headers only, as they are stored (an ordered
/// consumer sees only what was stored, never a publish JetStream refused as a duplicate).
async fn stored_from(stream: &stream::Stream, next: u64) -> Result<Stored, StoreError> {
    let config = jetstream::consumer::pull::OrderedConfig {
        deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
        headers_only: true,
        ..Default::default()
    };
    let consumer = stream.create_consumer(config).await.map_err(|e| unavailable("watching the log", e))?;
    consumer.messages().await.map_err(|e| unavailable("watching the log", e))
}

/// Bumps `notify` for every message the stream stores, from sequence `next` on; when the
/// watch breaks (the server went away), it starts again after the last message it saw.
async fn watch_commits(
    stream: stream::Stream,
    mut stored: Stored,
    mut next: u64,
    notify: watch::Sender<u64>,
) {
    loop {
        while let Some(Ok(message)) = stored.next().await {
            if let Ok(info) = message.info() {
                next = next.max(info.stream_sequence + 1);
            }
            notify.send_modify(|n| *n = n.wrapping_add(1));
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match stored_from(&stream, next).await {
                Ok(again) => {
                    stored = again;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "watching the NATS log for commits"),
            }
        }
    }
}

impl EventLog for NatsLog {
    fn append(&self, append: Append) -> StoreFuture<'_, Appended> {
        Box::pin(self.append_record(append))
    }

    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.duplicate(instance, delivery_id))
    }

    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>> {
        Box::pin(self.read_after(after, limit))
    }

    fn last_position(&self) -> StoreFuture<'_, i64> {
        Box::pin(self.newest())
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    fn writable(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

#[cfg(test)]
mod tests;
