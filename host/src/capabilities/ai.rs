//! The `ai` capability: a chat completion routed to the AI provider instance the operator chose
//! for this plugin (or the host's default), which runs in its own sandbox with its own grants.

use crate::bindings::ai::Host;
use crate::bindings::types::{ChatRequest, ChatResponse, Error};
use crate::capabilities::Capability;
use crate::runtime::{InstanceState, PluginKind};

impl Host for InstanceState {
    async fn complete(&mut self, request: ChatRequest) -> Result<ChatResponse, Error> {
        self.require(Capability::Ai)?;
        if self.plugin.kind == PluginKind::AiProvider {
            // A provider calling a provider could loop forever, and bills twice.
            return Err(Error::Denied("an AI provider cannot call the `ai` capability".into()));
        }
        let provider =
            self.plugin.grants.ai_provider.clone().or_else(|| self.host.default_ai_provider()).ok_or_else(
                || Error::Denied(format!("no AI provider is configured for `{}`", self.plugin.id)),
            )?;
        let remaining = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        let host = crate::Host::from_inner(self.host.clone());
        match tokio::time::timeout(remaining, host.complete(&provider, request)).await {
            Ok(Ok(invocation)) => Ok(invocation.output),
            Ok(Err(e)) => Err(e.into_wit_error()),
            Err(_) => Err(Error::Timeout(format!("AI provider `{provider}` did not answer in time"))),
        }
    }
}
