//! The `ai-tools` capability: a chat completion in which the model may call connector actions
//! as tools. The host runs the loop: it sends the conversation and the tools to the plugin's AI
//! provider, runs each call the model asks for as that action (in a fresh instance of its
//! connector, with that instance's grants and limits, never the caller's), hands the results
//! back, and repeats until the model answers. Bounded in rounds, calls per round, result size,
//! the caller's deadline, output bytes and daily token budget.

use std::collections::BTreeMap;

use serde_json::Value;
use wasmtime::component::{HasData, Linker};

use super::ai::AiProviders;
use crate::bindings::ai_tools::{self as wit, AgentRequest, AgentResponse, Host, ToolRound};
use crate::bindings::types::{Error, Tool, ToolCalls, ToolResult, ToolsRequest, Turn, Usage};
use crate::capabilities::{Capability, Scope};
use crate::clock::now_ms;
use crate::egress::ai::AiRouter;
use crate::keyvalue::KvStore;
use crate::limits::hold_output;

/// Model turns that may ask for calls when the request names no limit.
const DEFAULT_ROUNDS: u32 = 4;
/// The most such turns any request may have.
const MAX_ROUNDS: u32 = 8;
/// The most tools one request may offer.
const MAX_TOOLS: usize = 32;
/// The most calls the model may ask for in one turn.
const MAX_CALLS_PER_TURN: usize = 16;
/// The most bytes of one call's result handed back to the model.
const MAX_RESULT_BYTES: usize = 16 << 10;

/// The tools' model names, each with its instance and action.
type ToolTargets = BTreeMap<String, (String, String)>;

/// What an `ai-tools` call sees: what an `ai` call does, and the caller's emitted events (a
/// tool's events join them, stored when the caller's invocation succeeds).
pub struct AiToolsView<'a> {
    pub(crate) scope: Scope<'a>,
    /// The caller is itself an AI provider, which may not call the capability.
    pub(crate) caller_is_provider: bool,
    pub(crate) default_provider: Option<String>,
    pub(crate) providers: &'a dyn AiProviders,
    pub(crate) router: &'a AiRouter,
    pub(crate) kv: &'a dyn KvStore,
    pub(crate) emitted: &'a mut Vec<crate::Event>,
    pub(crate) held: &'a mut usize,
}

struct HasAiTools;

impl HasData for HasAiTools {
    type Data<'a> = AiToolsView<'a>;
}

/// Adds the `ai-tools` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> AiToolsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasAiTools>(linker, get)
}

/// The model's name for `instance`'s `action`, if it fits the rules the model APIs share
/// (1 to 64 of `[A-Za-z0-9_-]`).
fn tool_name(instance: &str, action: &str) -> Option<String> {
    let name = format!("{instance}_{action}");
    let fits = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    fits.then_some(name)
}

/// `text` cut to `max` bytes on a character boundary.
fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl AiToolsView<'_> {
    /// The tools the request names, each granted to the caller and offered by its connector.
    fn tools(&self, names: &[String]) -> Result<(Vec<Tool>, ToolTargets), Error> {
        if names.is_empty() || names.len() > MAX_TOOLS {
            return Err(Error::InvalidInput(format!("name 1 to {MAX_TOOLS} tools")));
        }
        let granted: Vec<_> = self
            .scope
            .grants
            .ai_tools
            .iter()
            .filter_map(|g| plugboard_manifest::ToolPattern::parse(g).ok())
            .collect();
        let mut tools = Vec::new();
        let mut by_name = BTreeMap::new();
        for text in names {
            let shown = crate::printable(&clip(text.clone(), 128));
            let (instance, action) = text
                .split_once('.')
                .filter(|(i, a)| !i.is_empty() && !a.is_empty() && *a != "*")
                .ok_or_else(|| Error::InvalidInput(format!("tool `{shown}` is not `instance.action`")))?;
            if !granted.iter().any(|p| p.covers(instance, action)) {
                return Err(Error::Denied(format!(
                    "tool `{shown}` is not in grants.ai_tools of instance `{}`",
                    self.scope.instance
                )));
            }
            let (description, schema) = self
                .providers
                .action(instance, action)
                .ok_or_else(|| Error::NotFound(format!("no loaded connector offers `{shown}`")))?;
            let name = tool_name(instance, action).ok_or_else(|| {
                Error::InvalidInput(format!("tool `{shown}` has no name a model takes (64 of [A-Za-z0-9_-])"))
            })?;
            if by_name.insert(name.clone(), (instance.to_owned(), action.to_owned())).is_none() {
                tools.push(Tool { name, description, input_schema: schema.to_string() });
            }
        }
        Ok((tools, by_name))
    }

    /// Runs one call the model asked for: its result for the model, and whether it failed.
    async fn run_call(&mut self, by_name: &ToolTargets, name: &str, arguments: &str) -> (String, bool) {
        let Some((instance, action)) = by_name.get(name) else {
            return (format!("no tool named `{}`", crate::printable(&clip(name.to_owned(), 128))), true);
        };
        let input: Value = match serde_json::from_str(arguments) {
            Ok(input) => input,
            Err(e) => return (format!("the arguments are not JSON: {e}"), true),
        };
        let remaining = self.scope.deadline.saturating_duration_since(tokio::time::Instant::now());
        let event_id = self.scope.event_id.map(str::to_owned);
        let running = self.providers.run_action(instance, action, input, event_id);
        match tokio::time::timeout(remaining, running).await {
            Ok(Ok((output, events))) => {
                self.emitted.extend(events);
                (clip(output, MAX_RESULT_BYTES), false)
            }
            Ok(Err(e)) => (crate::error::describe(&e), true),
            Err(_) => ("the tool did not answer in time".into(), true),
        }
    }
}

impl Host for AiToolsView<'_> {
    async fn run(&mut self, request: AgentRequest) -> Result<AgentResponse, Error> {
        self.scope.require(Capability::Ai)?;
        if self.caller_is_provider {
            return Err(Error::Denied("an AI provider cannot call the `ai-tools` capability".into()));
        }
        let plugin = self.scope.instance;
        let provider = self
            .scope
            .grants
            .ai_provider
            .clone()
            .or_else(|| self.default_provider.clone())
            .ok_or_else(|| Error::Denied(format!("no AI provider is configured for `{plugin}`")))?;
        let rounds_allowed = request.max_rounds.unwrap_or(DEFAULT_ROUNDS);
        if rounds_allowed == 0 || rounds_allowed > MAX_ROUNDS {
            return Err(Error::InvalidInput(format!("max-rounds must be 1 to {MAX_ROUNDS}")));
        }
        let (tools, by_name) = self.tools(&request.tools)?;
        let mut turns: Vec<Turn> = request.messages.into_iter().map(Turn::Message).collect();
        let mut rounds: Vec<ToolRound> = Vec::new();
        let mut usage = Usage { prompt_tokens: 0, completion_tokens: 0 };
        let mut asked = 0;
        loop {
            self.router.check_budget(self.kv, plugin, self.scope.grants.ai_daily_tokens, now_ms()).await?;
            let turn = ToolsRequest {
                model: request.model.clone(),
                turns: turns.clone(),
                tools: tools.clone(),
                temperature: request.temperature,
                max_tokens: request.max_tokens,
            };
            let remaining = self.scope.deadline.saturating_duration_since(tokio::time::Instant::now());
            let event_id = self.scope.event_id.map(str::to_owned);
            let running = self.providers.complete_with_tools(&provider, turn, event_id);
            let answer = match tokio::time::timeout(remaining, running).await {
                Ok(answer) => answer?,
                Err(_) => {
                    return Err(Error::Timeout(format!("AI provider `{provider}` did not answer in time")));
                }
            };
            self.router.charge(self.kv, plugin, &provider, &answer.usage, now_ms()).await;
            usage.prompt_tokens = usage.prompt_tokens.saturating_add(answer.usage.prompt_tokens);
            usage.completion_tokens = usage.completion_tokens.saturating_add(answer.usage.completion_tokens);
            hold_output(self.held, answer.content.len(), self.scope.limits).map_err(Error::QuotaExceeded)?;
            if answer.calls.is_empty() {
                return Ok(AgentResponse { content: answer.content, rounds, usage, model: answer.model });
            }
            if asked == rounds_allowed {
                return Err(Error::QuotaExceeded(format!(
                    "the model still asked for tools after {rounds_allowed} rounds"
                )));
            }
            if answer.calls.len() > MAX_CALLS_PER_TURN {
                return Err(Error::Upstream(crate::bindings::types::UpstreamFailure {
                    status: 0,
                    message: format!(
                        "the model asked for {} calls at once; at most {MAX_CALLS_PER_TURN}",
                        answer.calls.len()
                    ),
                }));
            }
            asked += 1;
            let mut results = Vec::new();
            for call in &answer.calls {
                let (content, is_error) = self.run_call(&by_name, &call.name, &call.arguments).await;
                let bytes = content.len() + call.id.len() + call.name.len() + call.arguments.len();
                hold_output(self.held, bytes, self.scope.limits).map_err(Error::QuotaExceeded)?;
                rounds.push(ToolRound { call: call.clone(), output: content.clone(), is_error });
                results.push(ToolResult { call_id: call.id.clone(), content, is_error });
            }
            turns.push(Turn::Calls(ToolCalls { content: answer.content, calls: answer.calls }));
            turns.push(Turn::Results(results));
        }
    }
}
