//! The recorder an instance's `record` policy starts for one invocation: it makes the tape the
//! invocation records to, and when the invocation ends keeps the recording or drops it (the
//! policy, the size limit, a writer that cannot keep up), counting what it dropped.

use crate::clock::now_ms;
use crate::error::InvokeError;
use crate::instance::Plugin;
use crate::recording::{Input, Outcome, Record, Recording};
use crate::shared::Shared;
use crate::tape::Tape;

/// One invocation being recorded: started when the instance's [`Record`] policy selects it,
/// finished (kept or dropped) when it ends.
pub(crate) struct Recorder {
    tape: Tape,
    input: Input,
    started_ms: u64,
    /// `record = "failures"`: kept only if the invocation fails.
    only_failures: bool,
}

impl Recorder {
    /// A recorder for this invocation of `plugin`, if its policy selects it.
    pub(crate) fn start(shared: &Shared, plugin: &Plugin, input: impl FnOnce() -> Input) -> Option<Recorder> {
        let only_failures = match plugin.record? {
            Record::All => false,
            Record::Failures => true,
            Record::Sampled(rate) => {
                if fastrand::f64() >= rate {
                    return None;
                }
                false
            }
        };
        let tape = Tape::recording(shared.max_recording_bytes);
        let input = input();
        // The input counts too: an event or a request larger than the limit is not recorded.
        tape.count(input.weight());
        Some(Recorder { tape, input, started_ms: now_ms(), only_failures })
    }

    /// The tape the invocation records to.
    pub(crate) fn tape(&self) -> Tape {
        self.tape.clone()
    }

    /// Hands the recording to the log, unless the policy or the size limit says otherwise.
    pub(crate) fn finish<T>(
        recorder: Option<Recorder>,
        shared: &Shared,
        plugin: &Plugin,
        result: &Result<T, InvokeError>,
    ) {
        let Some(Recorder { tape, input, started_ms, only_failures }) = recorder else { return };
        let error = result.as_ref().err();
        if only_failures && error.is_none() {
            return;
        }
        let played = tape.finish();
        let dropped = |reason: &str| {
            shared.metrics.add(
                "plugboard_recordings_dropped_total",
                &[("instance", &plugin.id), ("reason", reason)],
                1,
            );
        };
        if played.overflowed {
            tracing::warn!(
                instance = %plugin.id,
                limit = shared.max_recording_bytes,
                "an invocation was not recorded: its recording is over the limit of {} bytes",
                shared.max_recording_bytes
            );
            dropped("too_large");
            return;
        }
        let event_id = match &input {
            Input::Handle { event } => Some(event.id.clone()),
            Input::Invoke { event_id, .. } => event_id.clone(),
            Input::OnWebhook { .. } => None,
        };
        let recording = Recording {
            // Time-ordered, from the thread's generator: no system call per recording.
            id: uuid::Builder::from_unix_timestamp_millis(started_ms, &rand::random())
                .into_uuid()
                .to_string(),
            instance: plugin.id.clone(),
            build: plugin.handler(),
            sha256: plugin.info.sha256.clone(),
            event_id,
            recorded_at_ms: started_ms,
            input,
            insecure_seed: format!("{:032x}", tape.insecure_seed),
            random_seed: hex::encode(tape.random_seed),
            calls: played.entries,
            outcome: Outcome {
                emitted: played.emitted,
                answer: played.answer,
                error: error.map(|e| e.to_string()),
            },
        };
        if shared.recordings.keep(recording) {
            shared.metrics.add("plugboard_recordings_total", &[("instance", &plugin.id)], 1);
        } else {
            dropped("backlog");
        }
    }
}
