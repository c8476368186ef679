//! Running a recorded invocation again: the same input, in a fresh instance of the loaded build
//! (the recorded one, or another), with every host call answered from the recording.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{InvokeError, LoadError};
use crate::instance::Plugin;
use crate::recording::{Input, Outcome, Recording};
use crate::tape::{Divergence, Tape};
use crate::{Host, PluginKind, PluginSpec};

/// What a replay did, to set next to what was recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    /// The build that ran: `name@version sha256:<12 hex>`.
    pub build: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The first call it made that was not the recorded one, if any.
    pub divergence: Option<Divergence>,
    /// Recorded host calls it never made.
    pub unasked: usize,
    /// Clock readings past what the recording holds, and config values it does not hold,
    /// answered live: a build that reads more of them than the recorded one did (the recorded
    /// build never does).
    pub live_readings: usize,
}

impl Replayed {
    /// Whether the run asked exactly the recorded host calls and ended exactly as recorded.
    pub fn identical_to(&self, recording: &Recording) -> bool {
        self.divergence.is_none() && self.unasked == 0 && self.outcome == recording.outcome
    }
}

/// A build of an instance loaded to be tried against recordings, never installed: no route,
/// webhook or schedule reaches it. It has the instance's id, grants, limits and config.
pub struct Candidate {
    plugin: Arc<Plugin>,
}

impl Candidate {
    /// The build: `name@version sha256:<12 hex>`.
    pub fn build(&self) -> String {
        self.plugin.handler()
    }
}

/// How many examples of each kind a [`ShadowReport`] keeps.
const SHADOW_EXAMPLES: usize = 5;

/// A candidate build replayed against an instance's recent recordings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The candidate build.
    pub build: String,
    /// Recordings replayed.
    pub replayed: usize,
    /// Replays that asked the same calls and ended the same way.
    pub identical: usize,
    /// Replays that ended otherwise, or parted from the recording, without failing where the
    /// recorded run succeeded.
    pub different: usize,
    /// Replays that failed where the recorded run succeeded, or could not run.
    pub failed: usize,
    /// Up to five examples of each kind that was not identical.
    pub examples: Vec<ShadowExample>,
}

impl ShadowReport {
    /// Whether every replay was identical (and there was at least one).
    pub fn clean(&self) -> bool {
        self.replayed > 0 && self.identical == self.replayed
    }
}

/// One replay that was not identical.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShadowExample {
    /// `different` or `failed`.
    pub verdict: String,
    /// The recording.
    pub recording: String,
    /// Its event, if any.
    pub event_id: Option<String>,
    /// The recorded build.
    pub recorded_build: String,
    /// What the recorded run ended with, and what the candidate ended with.
    pub recorded: Outcome,
    /// The candidate's run (absent when it could not run).
    pub replayed: Option<Replayed>,
    /// Why the replay could not run, if it could not.
    pub error: Option<String>,
}

impl Host {
    /// Runs `recording` again on instance `id` (loaded with the recorded build, or another
    /// build to try it), answering every host call from the recording: nothing reaches the
    /// network, the key-value store, the AI providers or the event log.
    pub async fn replay(&self, id: &str, recording: &Recording) -> Result<Replayed, InvokeError> {
        let plugin = self.get_kind(id, PluginKind::Connector)?;
        self.replay_on(&plugin, recording).await
    }

    /// Loads `component` as a candidate build of instance `id`, with its grants, limits and
    /// config, without installing it.
    pub async fn candidate(&self, id: &str, component: &[u8]) -> Result<Candidate, LoadError> {
        let current =
            self.get(id).map_err(|e| LoadError::Spec { id: id.to_owned(), reason: e.to_string() })?;
        // A candidate is only replayed: it records nothing.
        let spec = PluginSpec { record: None, ..current.uploaded_spec() };
        Ok(Candidate { plugin: Arc::new(crate::load::load(self, spec, component).await?) })
    }

    /// Replays `recordings` on `candidate` and sorts the outcomes: identical, different,
    /// failed.
    pub async fn shadow(&self, candidate: &Candidate, recordings: &[Recording]) -> ShadowReport {
        let mut report = ShadowReport { build: candidate.build(), ..ShadowReport::default() };
        for recording in recordings {
            report.replayed += 1;
            let replayed = self.replay_on(&candidate.plugin, recording).await;
            let verdict = match &replayed {
                Ok(r) if r.identical_to(recording) => {
                    report.identical += 1;
                    continue;
                }
                Ok(r) if r.outcome.error.is_none() || recording.failed() => {
                    report.different += 1;
                    "different"
                }
                _ => {
                    report.failed += 1;
                    "failed"
                }
            };
            if report.examples.iter().filter(|e| e.verdict == verdict).count() < SHADOW_EXAMPLES {
                let (replayed, error) = match replayed {
                    Ok(r) => (Some(r), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                report.examples.push(ShadowExample {
                    verdict: verdict.into(),
                    recording: recording.id.clone(),
                    event_id: recording.event_id.clone(),
                    recorded_build: recording.build.clone(),
                    recorded: recording.outcome.clone(),
                    replayed,
                    error,
                });
            }
        }
        report
    }

    async fn replay_on(&self, plugin: &Arc<Plugin>, recording: &Recording) -> Result<Replayed, InvokeError> {
        if plugin.kind != PluginKind::Connector {
            return Err(crate::invoke::wrong_kind(plugin, PluginKind::Connector));
        }
        let seed = u128::from_str_radix(&recording.insecure_seed, 16).map_err(|_| {
            InvokeError::Internal("the recording's insecure seed is not 32 hex digits".into())
        })?;
        let random_seed = <[u8; 32]>::try_from(hex::decode(&recording.random_seed).unwrap_or_default())
            .map_err(|_| InvokeError::Internal("the recording's random seed is not 64 hex digits".into()))?;
        let tape = Tape::replaying(recording.calls.clone(), seed, random_seed);
        let taped = Some(tape.clone());
        let result = match &recording.input {
            Input::Handle { event } => self.run_handle(plugin, event.clone(), taped).await.map(drop),
            Input::OnWebhook { request } => self.run_webhook(plugin, request.clone(), taped).await.map(drop),
            Input::Invoke { action, input, event_id } => {
                self.run_invoke(plugin, action, input.clone(), event_id.as_deref(), taped).await.map(drop)
            }
        };
        let played = tape.finish();
        Ok(Replayed {
            build: plugin.handler(),
            outcome: Outcome {
                emitted: played.emitted,
                answer: played.answer,
                error: result.err().map(|e| e.to_string()),
            },
            divergence: played.divergence,
            unasked: played.unasked,
            live_readings: played.live,
        })
    }
}
