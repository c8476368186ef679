//! The `ai` capability: a chat completion routed to the AI provider instance the operator chose
//! for this plugin (or the host's default), which runs in its own sandbox with its own grants.
//! The host answers from its response cache when it can and refuses calls past the plugin's
//! daily token budget ([`crate::egress::ai`]).

use crate::bindings::ai::Host;
use crate::bindings::types::{ChatRequest, ChatResponse, Error};
use crate::capabilities::Capability;
use crate::capabilities::emit::now_ms;
use crate::{InstanceState, PluginKind};

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
        let router = &self.host.ai;
        let plugin = self.plugin.id.as_str();
        let key = router.cache_key(&provider, &request);
        // The same question again in this invocation: the answer it already holds (not yet in
        // the shared cache, which takes it once the invocation succeeds).
        if let Some(key) = &key
            && let Some((_, answer)) = self.ai_answers.iter().find(|(k, _)| k == key)
        {
            return Ok(answer.clone());
        }
        if let Some(key) = &key
            && let Some(answer) = router.cached(self.host.kv.as_ref(), plugin, &provider, key)
        {
            self.hold(crate::egress::ai::answer_bytes(&answer)).map_err(Error::QuotaExceeded)?;
            return Ok(answer);
        }
        router.check_budget(self.host.kv.as_ref(), plugin, self.plugin.grants.ai_daily_tokens, now_ms())?;
        let remaining = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        let host = crate::Host::from_inner(self.host.clone());
        let answer = match tokio::time::timeout(
            remaining,
            host.complete_for_event(&provider, request, self.event_id.clone()),
        )
        .await
        {
            Ok(Ok(invocation)) => invocation.output,
            Ok(Err(e)) => return Err(e.into_wit_error()),
            Err(_) => return Err(Error::Timeout(format!("AI provider `{provider}` did not answer in time"))),
        };
        router.charge(self.host.kv.as_ref(), plugin, &provider, &answer, now_ms());
        // What the plugin is handed, the host holds for this invocation: bounded like any output.
        self.hold(crate::egress::ai::answer_bytes(&answer)).map_err(Error::QuotaExceeded)?;
        if let Some(key) = key {
            // Cached once the invocation ends without an error (the plugin could use it).
            self.ai_answers.push((key, answer.clone()));
        }
        Ok(answer)
    }
}
