//! What every invocation of every plugin reaches through the host: the key-value store, the
//! egress (secrets, OAuth2 clients, the call log, per-destination state), the AI router with its
//! cache and budgets, the metrics, and the AI provider instances. Instances' stores hold it, not
//! the host itself, so that an invocation's state does not own the host that runs it.

use std::sync::{Arc, RwLock};

use crate::capabilities::ai::AiProviders;
use crate::egress::Egress;
use crate::egress::ai::AiRouter;
use crate::keyvalue::KvStore;
use crate::metrics::Metrics;
use crate::recording::RecordingLog;

pub(crate) struct Shared {
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) egress: Egress,
    pub(crate) ai: AiRouter,
    pub(crate) metrics: Arc<Metrics>,
    /// The AI provider instance that serves plugins whose grants name none.
    pub(crate) default_ai_provider: RwLock<Option<String>>,
    /// Runs provider instances for the `ai` capability: the host, held weakly.
    pub(crate) providers: Arc<dyn AiProviders>,
    /// Where recorded invocations go, and the largest one kept.
    pub(crate) recordings: Arc<dyn RecordingLog>,
    pub(crate) max_recording_bytes: usize,
}

impl Shared {
    pub(crate) fn default_ai_provider(&self) -> Option<String> {
        self.default_ai_provider.read().ok().and_then(|p| p.clone())
    }
}
