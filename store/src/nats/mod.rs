//! The event ports on NATS JetStream, for several plugboard nodes sharing one log: the log (this
//! file), the delivery queue (`queue.rs`), the read model each node folds from the log
//! (`read.rs`), and the three together as one store (`store.rs`). The plugins' key-value store
//! on NATS follows.
//!
//! One JetStream stream (`PLUGBOARD` by default, file storage, the configured replicas) holds
//! one message per append: its events and queued deliveries together, so that an append is
//! atomic without a transaction. The subject names the instance and the provider's delivery id
//! (`plugboard.append.<instance>.<delivery>`, each a SHA-256 token). A delivery is a duplicate
//! while the last message on its subject is within that append's dedup window; an append
//! publishes only if the subject's last sequence is still the one it read
//! (`Nats-Expected-Last-Subject-Sequence`), so the same webhook appended through two nodes at
//! once is stored once, and JetStream keeps no long-lived message ids in memory. Reads go to
//! the stream's leader, never to a replica that may lag. An append is acknowledged when
//! JetStream acknowledged the publish: a majority of the replicas has it (each server syncs
//! to disk on its own schedule: `sync_interval`, every two minutes unless set to `always`).
//!
//! Positions are `stream sequence << 20 | the event's index in its message`: increasing, not
//! contiguous, and an append holds fewer than 2^20 events.

mod kv;
mod queue;
mod read;
mod record;
mod store;

pub use kv::NatsKv;
pub use queue::{NatsQueue, QueueRoute, QueueSettings};
pub use read::NatsReadModel;
pub use store::NatsStore;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::log::{Append, Appended, EventLog, EventSummary};
use crate::{StoreError, StoreFuture};
use plugboard_runtime::clock::now_ms;
use record::{Record, Settlement};

/// How many bits of a position are the event's index in its message.
const INDEX_BITS: u32 = 20;

/// How long JetStream remembers a message id: enough for a publish tried again.
const PUBLISH_DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// How long an append keeps asking while other nodes' appends of the same delivery are being
/// decided.
const IN_PROCESS_PATIENCE: Duration = Duration::from_secs(10);

/// The JetStream error code behind a refused publish, if it has one.
fn error_code(e: &jetstream::context::PublishError) -> Option<jetstream::ErrorCode> {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>()).map(|e| e.error_code())
}

/// JetStream's "duplicate message id is in process" (10158): a publish with the same id is
/// being stored; it ends as stored (then this one is a duplicate) or failed.
fn in_process(e: &jetstream::context::PublishError) -> bool {
    error_code(e) == Some(jetstream::ErrorCode(10158))
}

/// The subject's last sequence is no longer the one the append read (10071, or 10164 as
/// servers 2.12 and later answer for `Nats-Expected-Last-Subject-Sequence`): another append of
/// the same delivery was stored first.
fn another_came_first(e: &jetstream::context::PublishError) -> bool {
    e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
        || error_code(e) == Some(jetstream::ErrorCode(10164))
}

/// Whether `e`, or what caused it, is JetStream refusing a write made at a revision (a subject
/// sequence) that is no longer the last one: another write came first. The client reports this
/// by kind only for some calls (and not for the code servers 2.12 and later answer), so the
/// cause is looked for.
fn lost_race(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(js) = e.downcast_ref::<jetstream::Error>()
            && matches!(js.error_code(), jetstream::ErrorCode(10071) | jetstream::ErrorCode(10164))
        {
            return true;
        }
        if let Some(publish) = e.downcast_ref::<jetstream::context::PublishError>()
            && another_came_first(publish)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// A short pause after a lost race, longer each time: the winner's write reaches the replica
/// the next read is served from.
async fn after_race(tries: usize) {
    tokio::time::sleep(Duration::from_millis(tries.min(20) as u64)).await;
}

/// How long connecting waits for JetStream to answer: a cluster that has just started, or
/// whose server came back, elects its leaders first and meanwhile lets requests time out.
const READY_PATIENCE: Duration = Duration::from_secs(30);

/// A client of the servers `settings` names, checked to run JetStream. Each failure says which:
/// no server reachable, no JetStream, unreadable credentials. While JetStream does not answer
/// yet, it connects again (perhaps to another of the servers), for `READY_PATIENCE` in all.
async fn connect_jetstream(
    settings: &NatsSettings,
) -> Result<(async_nats::Client, jetstream::Context), StoreError> {
    let deadline = tokio::time::Instant::now() + READY_PATIENCE;
    let out_of_time =
        || StoreError::Unavailable(format!("JetStream is not ready: no answer within {READY_PATIENCE:?}"));
    // Why the last try failed once a server was reached: the error given at the deadline.
    let mut not_ready: Option<StoreError> = None;
    loop {
        match tokio::time::timeout_at(deadline, try_connect_jetstream(settings)).await {
            Ok(Ok(ready)) => return Ok(ready),
            Ok(Err(Attempt::Failed(e))) => return Err(e),
            Ok(Err(Attempt::NotReady(e))) => {
                if not_ready.is_none() {
                    tracing::warn!("{e}; connecting again for up to {READY_PATIENCE:?}");
                }
                not_ready = Some(e);
            }
            // A server answered before: it may be restarting while the cluster elects.
            Ok(Err(Attempt::Unreachable(e))) if not_ready.is_some() => not_ready = Some(e),
            Ok(Err(Attempt::Unreachable(e))) => return Err(e),
            Err(_) => return Err(not_ready.unwrap_or_else(out_of_time)),
        }
        let pause = Duration::from_millis(500);
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(not_ready.unwrap_or_else(out_of_time));
        }
        tokio::time::sleep(pause).await;
    }
}

/// How one try to connect to JetStream failed.
enum Attempt {
    /// No server could be reached.
    Unreachable(StoreError),
    /// A server answered, JetStream did not yet (no leader elected).
    NotReady(StoreError),
    /// Trying again would not help: no JetStream, refused credentials.
    Failed(StoreError),
}

async fn try_connect_jetstream(
    settings: &NatsSettings,
) -> Result<(async_nats::Client, jetstream::Context), Attempt> {
    use jetstream::context::AccountErrorKind;
    let client = connect_client(settings).await.map_err(|e| match e {
        StoreError::Unavailable(_) => Attempt::Unreachable(e),
        e => Attempt::Failed(e),
    })?;
    let js = jetstream::new(client.clone());
    match js.query_account().await {
        Ok(_) => Ok((client, js)),
        Err(e) => Err(match e.kind() {
            AccountErrorKind::TimedOut | AccountErrorKind::Other => {
                Attempt::NotReady(unavailable("JetStream is not ready", e))
            }
            AccountErrorKind::JetStream(je)
                if je.error_code() == jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE =>
            {
                Attempt::NotReady(unavailable("JetStream is not ready", e))
            }
            AccountErrorKind::JetStreamUnavailable => Attempt::Failed(StoreError::Unavailable(
                "the NATS server does not run JetStream (start it with -js, or `jetstream {}` in its config)"
                    .into(),
            )),
            AccountErrorKind::JetStream(_) => {
                Attempt::Failed(unavailable("JetStream refused this account", e))
            }
        }),
    }
}

/// A client of the servers `settings` names, with its credentials and TLS.
async fn connect_client(settings: &NatsSettings) -> Result<async_nats::Client, StoreError> {
    let mut options =
        async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5)).name("plugboard");
    if let Some(credentials) = &settings.credentials {
        options = options
            .credentials(credentials)
            .map_err(|e| StoreError::Failed(format!("the NATS credentials cannot be read: {e}")))?;
    }
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .connect(settings.servers.clone())
        .await
        .map_err(|e| unavailable(&format!("cannot reach NATS at {}", settings.servers.join(", ")), e))
}

/// The key-value bucket `config` asks for, created unless it exists.
async fn bucket(
    js: &jetstream::Context,
    config: async_nats::jetstream::kv::Config,
) -> Result<async_nats::jetstream::kv::Store, StoreError> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    js.create_key_value(config).await.map_err(|e| unavailable(&format!("cannot create the bucket {name}"), e))
}

/// Writes `value` under `key` if its entry is still at `revision` (`None`: there is none):
/// `Some` new revision, or `None` when another write came first.
async fn compare_and_set(
    bucket: &async_nats::jetstream::kv::Store,
    key: &str,
    value: bytes::Bytes,
    revision: Option<u64>,
) -> Result<Option<u64>, async_nats::Error> {
    use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
    match revision {
        Some(revision) => match bucket.update(key, value, revision).await {
            Ok(written) => Ok(Some(written)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision || lost_race(&e) => Ok(None),
            Err(e) => Err(e.into()),
        },
        None => match bucket.create(key, value).await {
            Ok(written) => Ok(Some(written)),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists || lost_race(&e) => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
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
    /// The user's credentials (a `.creds` file's content), when the servers ask for them.
    pub credentials: Option<String>,
    /// A CA certificate file to verify the servers' TLS certificates with (TLS required).
    pub tls_ca: Option<std::path::PathBuf>,
}

impl NatsSettings {
    /// One server, the default names, one replica, a dedup window of a week.
    pub fn new(server: &str) -> Self {
        NatsSettings {
            servers: vec![server.to_owned()],
            stream: "PLUGBOARD".into(),
            subject_prefix: "plugboard".into(),
            replicas: 1,
            credentials: None,
            tls_ca: None,
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
        let (client, js) = connect_jetstream(settings).await?;
        let config = stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.append.>", settings.subject_prefix)],
            num_replicas: settings.replicas,
            // Message ids only cover a publish tried again; a webhook's own dedup window is
            // checked on its subject, for as long as the append asks.
            duplicate_window: PUBLISH_DEDUP_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let subjects = config.subjects.clone();
        let mut stream = js.get_or_create_stream(config).await.map_err(|e| {
            unavailable(
                &format!("cannot create the stream {} with {} replicas", settings.stream, settings.replicas),
                e,
            )
        })?;
        // An existing stream is taken as it is: say so when it is not the one asked for.
        let info = stream.info().await.map_err(|e| unavailable("reading the stream's state", e))?;
        let (found, last_sequence) = (info.config.clone(), info.state.last_sequence);
        if found.num_replicas.max(1) != settings.replicas.max(1) || found.subjects != subjects {
            return Err(StoreError::Failed(format!(
                "the stream {} exists with {} replicas and subjects {:?}; this configuration asks for {} and \
                 {subjects:?}: change the stream (`nats stream edit`) or name another",
                settings.stream, found.num_replicas, found.subjects, settings.replicas
            )));
        }
        // Watching starts before `connect` returns, after what the stream held when it was read
        // above, so no append made after it goes unnoticed.
        let next = last_sequence + 1;
        let stored = reader_from(&stream, next, true).await?;
        let (notify, commits) = watch::channel(0u64);
        // Every message the stream stores is a commit to announce.
        let watcher = tokio::spawn(follow(stream.clone(), Some(stored), next, true, move |_, _| {
            notify.send_modify(|n| *n = n.wrapping_add(1));
        }));
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

    /// Stores `append`, with the attempt it settles if any.
    async fn append_record(
        &self,
        append: Append,
        settles: Option<Settlement>,
    ) -> Result<Appended, StoreError> {
        self.append_with(append, |record| record.settles = settles).await
    }

    /// Stores `append`, its record completed by `complete`.
    async fn append_with(
        &self,
        append: Append,
        complete: impl FnOnce(&mut Record) + Send,
    ) -> Result<Appended, StoreError> {
        if append.events.len() >= 1 << INDEX_BITS {
            return Err(StoreError::Failed(format!(
                "an append holds fewer than {} events",
                1u32 << INDEX_BITS
            )));
        }
        let subject = self.subject(&append.instance, append.delivery_id.as_deref());
        // The message id: the first event's (fresh) id, so that a publish tried again is
        // stored once.
        let id = append.events.first().map(|first| format!("event.{}", token(&first.id)));
        let mut record = Record::new(&append, now_ms());
        complete(&mut record);
        let payload: bytes::Bytes =
            serde_json::to_vec(&record).map_err(|e| StoreError::Failed(e.to_string()))?.into();
        // While another node's publish of the same message id is being replicated, JetStream
        // answers "in process" rather than "duplicate": ask again until it decides.
        let mut pause = Duration::from_millis(10);
        let started = std::time::Instant::now();
        loop {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = &id {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            }
            if append.delivery_id.is_some() {
                // Stored only if no other append of this delivery came first.
                let last = match self.last_on(&subject).await? {
                    Some((_, record)) if record.remembered_at(now_ms()) => {
                        return Ok(Appended::Duplicate);
                    }
                    Some((sequence, _)) => sequence,
                    None => 0,
                };
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    last.to_string().as_str(),
                );
            }
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
                // Another append of this delivery was stored since: look again.
                Err(e) if another_came_first(&e) && started.elapsed() < IN_PROCESS_PATIENCE => {}
                Err(e) if in_process(&e) && started.elapsed() < IN_PROCESS_PATIENCE => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(unavailable("JetStream did not acknowledge the append", e)),
            }
        }
    }

    /// The last message on `subject`, read from the stream's leader, with its record.
    async fn last_on(&self, subject: &str) -> Result<Option<(u64, Record)>, StoreError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let record: Record = serde_json::from_slice(&message.payload)
                    .map_err(|e| StoreError::Failed(e.to_string()))?;
                Ok(Some((message.sequence, record)))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable("reading the log", e)),
        }
    }

    async fn duplicate(&self, instance: &str, delivery_id: &str) -> Result<bool, StoreError> {
        let last = self.last_on(&self.subject(instance, Some(delivery_id))).await?;
        Ok(last.is_some_and(|(_, record)| record.remembered_at(now_ms())))
    }

    async fn read_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, EventSummary)>, StoreError> {
        let after = u64::try_from(after).unwrap_or(0);
        let (mut sequence, first_index) = (after >> INDEX_BITS, (after & ((1 << INDEX_BITS) - 1)) + 1);
        // Position 0 (nothing read yet) starts at the first message.
        let mut skip = if after == 0 { 0 } else { first_index };
        let mut found = Vec::new();
        let subjects = format!("{}.append.>", self.prefix);
        while found.len() < limit {
            let next = self
                .stream
                .raw_message_builder()
                .sequence(sequence.max(1))
                .next_by_subject(subjects.as_str());
            let message = match next.send().await {
                Ok(message) => message,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => break,
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

/// The next item of a pull request's batch, or `None` once the batch ended or `wait` passed
/// without one: a request whose answer was lost (around a server restart) is otherwise waited
/// for forever.
pub(super) async fn next_within<S>(batch: &mut S, wait: Duration) -> Option<S::Item>
where
    S: futures_util::Stream + Unpin,
{
    tokio::time::timeout(wait, batch.next()).await.ok().flatten()
}

/// How much longer than a pull request's own expiry its answer is waited for.
pub(super) const PULL_GRACE: Duration = Duration::from_secs(3);

/// A reader of the log's stream: an ephemeral consumer that hands out its messages in order, as
/// they are stored (it sees only what was stored, never a publish JetStream refused as a
/// duplicate), without acknowledgements.
pub(super) type Reader = consumer::PullConsumer;

/// How long one pull request of a reader of the log waits for messages.
const READ_WAIT: Duration = Duration::from_secs(2);

/// The most messages one pull request of a reader takes.
const READ_BATCH: usize = 1_000;

/// A reader of the stream from sequence `next` on (`headers_only`: without the payloads). The
/// servers remove it a minute after its last pull.
pub(super) async fn reader_from(
    stream: &stream::Stream,
    next: u64,
    headers_only: bool,
) -> Result<Reader, StoreError> {
    let config = consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
        ack_policy: consumer::AckPolicy::None,
        headers_only,
        inactive_threshold: Duration::from_secs(60),
        num_replicas: 1,
        memory_storage: true,
        ..Default::default()
    };
    stream.create_consumer(config).await.map_err(|e| unavailable("reading the log", e))
}

/// Hands `each` every message of the stream from sequence `next` on, in order and once, for as
/// long as it runs, starting with `reader` when given. It reads in pull requests that each end
/// (a long-lived subscription can stop handing out messages after a server restart); when a
/// request fails, or a message went missing on the way (its consumer sequence skips one), it
/// starts another reader after the last message handed.
pub(super) async fn follow(
    stream: stream::Stream,
    mut reader: Option<Reader>,
    mut next: u64,
    headers_only: bool,
    mut each: impl FnMut(u64, &jetstream::Message),
) {
    loop {
        let consumer = match reader.take() {
            Some(reader) => reader,
            None => match reader_from(&stream, next, headers_only).await {
                Ok(reader) => reader,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the NATS log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        // The consumer's own count of what it handed out: a jump means a message was lost.
        let mut handed = 0;
        'reading: loop {
            let batch = consumer.batch().max_messages(READ_BATCH).expires(READ_WAIT).messages().await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::debug!(error = %e, "reading the NATS log; reading it again");
                    break 'reading;
                }
            };
            while let Some(message) = next_within(&mut batch, READ_WAIT + PULL_GRACE).await {
                let Ok(message) = message else { break 'reading };
                let Ok(info) = message.info() else { continue };
                if info.consumer_sequence != handed + 1 {
                    tracing::debug!(next, "a message of the NATS log went missing; reading it again");
                    break 'reading;
                }
                handed = info.consumer_sequence;
                let sequence = info.stream_sequence;
                if sequence >= next {
                    each(sequence, &message);
                    next = sequence + 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl EventLog for NatsLog {
    fn append(&self, append: Append) -> StoreFuture<'_, Appended> {
        Box::pin(self.append_record(append, None))
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
