//! Running a recorded invocation again: the same input, in a fresh instance of the loaded build
//! (the recorded one, or another), with every host call answered from the recording.

use serde::{Deserialize, Serialize};

use super::tape::Tape;
use super::{Divergence, Input, Outcome, Recording};
use crate::error::InvokeError;
use crate::{Host, PluginKind};

/// What a replay did, to set next to what was recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    /// The build that ran: `name@version sha256:<12 hex>`.
    pub build: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The first call it made that was not the recorded one, if any.
    pub divergence: Option<Divergence>,
    /// Recorded calls it never made.
    pub unasked: usize,
}

impl Replayed {
    /// Whether the run asked exactly the recorded calls and ended exactly as recorded.
    pub fn identical_to(&self, recording: &Recording) -> bool {
        self.divergence.is_none() && self.unasked == 0 && self.outcome == recording.outcome
    }
}

impl Host {
    /// Runs `recording` again on instance `id` (loaded with the recorded build, or another
    /// build to try it), answering every host call from the recording: nothing reaches the
    /// network, the key-value store, the AI providers or the event log.
    pub async fn replay(&self, id: &str, recording: &Recording) -> Result<Replayed, InvokeError> {
        let plugin = self.get(id)?;
        if plugin.kind != PluginKind::Connector {
            return Err(InvokeError::WrongKind {
                id: id.to_owned(),
                expected: PluginKind::Connector.name(),
                actual: plugin.kind.name(),
            });
        }
        let seed = u128::from_str_radix(&recording.insecure_seed, 16).map_err(|_| {
            InvokeError::Internal("the recording's insecure seed is not 32 hex digits".into())
        })?;
        let tape = Tape::replaying(recording.calls.clone(), seed);
        let taped = Some(tape.clone());
        let result = match &recording.input {
            Input::Handle { event } => self.run_handle(&plugin, event.clone(), taped).await.map(drop),
            Input::OnWebhook { request } => self.run_webhook(&plugin, request.clone(), taped).await.map(drop),
            Input::Invoke { action, input, event_id } => {
                self.run_invoke(&plugin, action, input.clone(), event_id.as_deref(), taped).await.map(drop)
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
        })
    }
}
