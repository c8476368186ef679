//! Recordings: what one invocation was asked, every answer the host gave it, and how it ended.
//! Every effect a plugin has goes through the host (http, kv, ai, config, emit, clocks, random),
//! so the host can write down what it answered each call of an invocation ([`crate::tape`]) and
//! later run the invocation again with exactly those answers, with no network and no side
//! effects ([`crate::replay`]). An instance records when its spec says so ([`Record`]; the
//! recorder that starts and keeps a recording is `crate::recorder`); recordings go to the
//! [`RecordingLog`] port, in memory unless the embedder supplies one (the server keeps them in a
//! SQLite file beside its event store).
//!
//! What a recording holds is what the plugin saw: its outbound requests as it wrote them (secret
//! placeholders, not secrets: the host fills those in after the call is recorded) and the answers
//! as it received them (with any secret an upstream echoed back already redacted by the host).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::bindings::types::{Event, NewEvent, WebhookRequest};
pub use crate::spec::Record;
pub use crate::tape::{Answer, Divergence, Tape, TapeEntry, off_sequence};
use crate::tape::{bytes_weight, event_weight, pairs_weight};

/// What the invocation was asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Input {
    /// `handle(event)`.
    Handle {
        /// The event delivered.
        event: Event,
    },
    /// `on-webhook(request)`, after verification.
    OnWebhook {
        /// The verified request.
        request: WebhookRequest,
    },
    /// `invoke(action, input)`.
    Invoke {
        /// The action.
        action: String,
        /// Its input, as JSON text.
        input: String,
        /// The event on whose behalf it ran, if any.
        event_id: Option<String>,
    },
}

impl Input {
    /// What it comes to in a recording, about.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Input::Handle { event } => {
                bytes_weight(event.payload.len()) + pairs_weight(&event.attributes) + 256
            }
            Input::OnWebhook { request } => {
                bytes_weight(request.body.len()) + pairs_weight(&request.headers) + 256
            }
            Input::Invoke { input, .. } => input.len() + 256,
        }
    }
}

/// How an invocation ended, as a replay compares it: what the plugin published and answered, or
/// why it failed. Host-assigned ids and times are left out: they differ on every run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Events published through `emit`, as the plugin wrote them.
    pub emitted: Vec<NewEvent>,
    /// Its answer, when it returned one.
    pub answer: Option<Answer>,
    /// Why the invocation failed (the plugin's error, a trap, a limit), if it did.
    pub error: Option<String>,
}

/// Two outcomes are the same when they are the same data, compared field by field as recorded.
impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

/// One recorded invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recording {
    /// Its id (a UUIDv7: ids sort by time).
    pub id: String,
    /// The instance that ran.
    pub instance: String,
    /// The build that ran: `name@version sha256:<12 hex>`.
    pub build: String,
    /// The SHA-256 of that build's component.
    pub sha256: String,
    /// The event handled, or on whose behalf an action ran; none for a webhook.
    pub event_id: Option<String>,
    /// When it started, ms since the Unix epoch.
    pub recorded_at_ms: u64,
    /// What it was asked.
    pub input: Input,
    /// What `wasi:random/insecure-seed` answered (hex).
    pub insecure_seed: String,
    /// The seed of its random numbers (hex): a replay draws the same ones.
    pub random_seed: String,
    /// Every answer the host gave, in order.
    pub calls: Vec<TapeEntry>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Recording {
    /// Whether the invocation failed.
    pub fn failed(&self) -> bool {
        self.outcome.error.is_some()
    }

    /// About how many bytes it holds (its answers, arguments and payloads), without writing it
    /// out: what a queue of recordings weighs.
    pub fn approximate_bytes(&self) -> usize {
        let calls: usize =
            self.calls.iter().map(|c| c.call.len() + c.args.get().len() + c.answer.get().len()).sum();
        let emitted: usize = self.outcome.emitted.iter().map(event_weight).sum();
        let answer = self.outcome.answer.as_ref().map_or(0, Answer::weight);
        calls + self.input.weight() + emitted + answer + 1024
    }

    /// The one-line summary listings show.
    pub fn summary(&self) -> RecordingSummary {
        RecordingSummary {
            id: self.id.clone(),
            instance: self.instance.clone(),
            build: self.build.clone(),
            event_id: self.event_id.clone(),
            recorded_at_ms: self.recorded_at_ms,
            call: match &self.input {
                Input::Handle { .. } => "handle".into(),
                Input::OnWebhook { .. } => "on-webhook".into(),
                Input::Invoke { action, .. } => format!("invoke {action}"),
            },
            host_calls: self.calls.len(),
            error: self.outcome.error.clone(),
        }
    }
}

/// A recording in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    /// The recording's id.
    pub id: String,
    /// The instance.
    pub instance: String,
    /// The build that ran.
    pub build: String,
    /// The event, if any.
    pub event_id: Option<String>,
    /// When it started.
    pub recorded_at_ms: u64,
    /// `handle`, `on-webhook` or `invoke ACTION`.
    pub call: String,
    /// How many answers it holds.
    pub host_calls: usize,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Where recordings go. Keeping one must not block: it runs as an invocation ends.
pub trait RecordingLog: Send + Sync + 'static {
    /// Keeps one recording (or queues it to be written); false when it had to be dropped (a
    /// writer that cannot keep up).
    fn keep(&self, recording: Recording) -> bool;
    /// The recording `id`, or the newest one of the event `id`.
    fn get(&self, id: &str) -> Option<Recording>;
    /// The newest `limit` recordings, of `instance` when given, newest first.
    fn recent(&self, instance: Option<&str>, limit: usize) -> Vec<Recording>;
    /// Their summaries, without reading whole recordings where the log can avoid it.
    fn summaries(&self, instance: Option<&str>, limit: usize) -> Vec<RecordingSummary> {
        self.recent(instance, limit).iter().map(Recording::summary).collect()
    }
    /// Waits, at most `timeout`, until every recording handed to [`RecordingLog::keep`] so far
    /// is kept. For shutdown and tests.
    fn flush(&self, _timeout: std::time::Duration) {}
}

/// The newest recordings, in memory (the default when no store is attached).
pub struct MemoryRecordingLog {
    capacity: usize,
    recordings: Mutex<VecDeque<Recording>>,
}

impl MemoryRecordingLog {
    /// Keeps the last `capacity` recordings.
    pub fn new(capacity: usize) -> Self {
        MemoryRecordingLog { capacity, recordings: Mutex::new(VecDeque::new()) }
    }
}

impl RecordingLog for MemoryRecordingLog {
    fn keep(&self, recording: Recording) -> bool {
        let mut kept = self.recordings.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= self.capacity {
            kept.pop_front();
        }
        if self.capacity > 0 {
            kept.push_back(recording);
        }
        true
    }

    fn get(&self, id: &str) -> Option<Recording> {
        let kept = self.recordings.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().find(|r| r.id == id || r.event_id.as_deref() == Some(id)).cloned()
    }

    fn recent(&self, instance: Option<&str>, limit: usize) -> Vec<Recording> {
        let kept = self.recordings.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().rev().filter(|r| instance.is_none_or(|i| r.instance == i)).take(limit).cloned().collect()
    }
}
