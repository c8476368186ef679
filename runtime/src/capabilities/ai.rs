//! The `ai` capability: a chat completion routed to the AI provider instance the operator chose
//! for this plugin (or the host's default), which runs in its own sandbox with its own grants.
//! The host answers from its response cache when it can and refuses calls past the plugin's
//! daily token budget ([`crate::egress::ai`]).

use std::future::Future;
use std::pin::Pin;

use wasmtime::component::{HasData, Linker};

use crate::bindings::ai::{self as wit, Host};
use crate::bindings::types::{ChatRequest, ChatResponse, Error, ToolsRequest, ToolsResponse};
use crate::capabilities::{Capability, Scope};
use crate::clock::now_ms;
use crate::egress::ai::{AiRouter, CacheKey, answer_bytes};
use crate::keyvalue::KvStore;
use crate::limits::hold_output;
use crate::tape::{on_tape, play};

/// A completion on its way, from whoever runs the provider instances.
pub type Completion = Pin<Box<dyn Future<Output = Result<ChatResponse, Error>> + Send>>;

/// A tool-calling turn on its way.
pub type ToolsCompletion = Pin<Box<dyn Future<Output = Result<ToolsResponse, Error>> + Send>>;

/// A connector action run as a tool, on its way: its output (JSON text) and the events it
/// emitted.
pub type ActionRun = Pin<Box<dyn Future<Output = Result<(String, Vec<crate::Event>), Error>> + Send>>;

/// A connector action as a tool: what the model is told, and what the grant check needs.
pub struct ToolTarget {
    /// What it does.
    pub description: String,
    /// The JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// Whether it may delete or overwrite, as its plugin declares (or does not say).
    pub destructive: bool,
}

/// Runs AI provider instances for the `ai` and `ai-tools` capabilities, and connector actions
/// as tools: the runtime's host does, each in its own sandbox. The capabilities name only
/// this, never the host.
pub trait AiProviders: Send + Sync {
    /// Runs `request` on provider instance `provider`, on behalf of event `event_id`.
    fn complete(&self, provider: &str, request: ChatRequest, event_id: Option<String>) -> Completion;

    /// Runs one tool-calling turn on provider instance `provider`.
    fn complete_with_tools(
        &self,
        provider: &str,
        request: ToolsRequest,
        event_id: Option<String>,
    ) -> ToolsCompletion;

    /// Connector `instance`'s `action`, if it is loaded and offers it.
    fn action(&self, instance: &str, action: &str) -> Option<ToolTarget>;

    /// Runs connector `instance`'s `action` with `input`, in its own instance and grants.
    fn run_action(
        &self,
        instance: &str,
        action: &str,
        input: serde_json::Value,
        event_id: Option<String>,
    ) -> ActionRun;
}

/// What an `ai` or `ai-tools` call sees: the caller, the providers, the host's cache and
/// budgets, the answers this invocation already received, its emitted events, and the bytes it
/// has made the host hold.
pub struct AiView<'a> {
    pub(crate) scope: Scope<'a>,
    /// The caller is itself an AI provider, which may not call the capability.
    pub(crate) caller_is_provider: bool,
    /// The provider instance that serves plugins whose grants name none.
    pub(crate) default_provider: Option<String>,
    pub(crate) providers: &'a dyn AiProviders,
    pub(crate) router: &'a AiRouter,
    pub(crate) kv: &'a dyn KvStore,
    pub(crate) answers: &'a mut Vec<(CacheKey, ChatResponse)>,
    /// The events the caller emitted; `ai-tools` adds those of the tools it runs.
    pub(crate) emitted: &'a mut Vec<crate::Event>,
    pub(crate) held: &'a mut usize,
}

struct HasAi;

impl HasData for HasAi {
    type Data<'a> = AiView<'a>;
}

/// Adds the `ai` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> AiView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasAi>(linker, get)
}

/// The provider instance that serves `scope`'s `capability` calls (`ai` or `ai-tools`): the
/// instance's grant, else the host's default. An AI provider may not call either: a provider
/// calling a provider could loop forever, and bills twice.
pub(crate) fn provider_for(
    scope: &Scope<'_>,
    capability: &str,
    caller_is_provider: bool,
    default_provider: Option<&String>,
) -> Result<String, Error> {
    scope.require(Capability::Ai)?;
    if caller_is_provider {
        return Err(Error::Denied(format!("an AI provider cannot call the `{capability}` capability")));
    }
    let plugin = scope.instance;
    scope
        .grants
        .ai_provider
        .clone()
        .or_else(|| default_provider.cloned())
        .ok_or_else(|| Error::Denied(format!("no AI provider is configured for `{plugin}`")))
}

impl Host for AiView<'_> {
    async fn complete(&mut self, request: ChatRequest) -> Result<ChatResponse, Error> {
        let taped = on_tape(self.scope.tape, &(&request,), 0);
        play(taped, "ai.complete", async {
            let provider =
                provider_for(&self.scope, "ai", self.caller_is_provider, self.default_provider.as_ref())?;
            let plugin = self.scope.instance;
            let router = self.router;
            let key = router.cache_key(&provider, &request);
            // The same question again in this invocation: the answer it already holds (not yet in
            // the shared cache, which takes it once the invocation succeeds).
            if let Some(key) = &key
                && let Some((_, answer)) = self.answers.iter().find(|(k, _)| k == key)
            {
                return Ok(answer.clone());
            }
            let limits = self.scope.limits;
            if let Some(key) = &key
                && let Some(answer) = router.cached(self.kv, plugin, &provider, key).await
            {
                hold_output(self.held, answer_bytes(&answer), limits).map_err(Error::QuotaExceeded)?;
                return Ok(answer);
            }
            router.check_budget(self.kv, plugin, self.scope.grants.ai_daily_tokens, now_ms()).await?;
            let remaining = self.scope.deadline.saturating_duration_since(tokio::time::Instant::now());
            let running = self.providers.complete(&provider, request, self.scope.event_id.map(str::to_owned));
            let answer = match tokio::time::timeout(remaining, running).await {
                Ok(answer) => answer?,
                Err(_) => {
                    return Err(Error::Timeout(format!("AI provider `{provider}` did not answer in time")));
                }
            };
            router.charge(self.kv, plugin, &provider, &answer.usage, now_ms()).await;
            // What the plugin is handed, the host holds for this invocation: bounded like any output.
            hold_output(self.held, answer_bytes(&answer), limits).map_err(Error::QuotaExceeded)?;
            if let Some(key) = key {
                // Cached once the invocation ends without an error (the plugin could use it).
                self.answers.push((key, answer.clone()));
            }
            Ok(answer)
        })
        .await
    }
}
