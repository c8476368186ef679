//! The `ai-tools` capability: a chat completion in which the model may call connector actions
//! as tools. The host runs the loop: it sends the conversation and the tools to the plugin's AI
//! provider, runs each call the model asks for as that action (in an instance of its connector,
//! fresh unless that connector reuses them, with that instance's grants and limits, never the
//! caller's), hands the results
//! back, and repeats until the model answers. Bounded in rounds, calls per round, result size,
//! the caller's deadline, output bytes and daily token budget.

use std::collections::BTreeMap;

use serde_json::Value;
use wasmtime::component::{HasData, Linker};

use super::ai::AiView;
use crate::bindings::ai_tools::{self as wit, AgentRequest, AgentResponse, Host, ToolRound};
use crate::bindings::types::{Error, Tool, ToolCalls, ToolResult, ToolsRequest, ToolsResponse, Turn, Usage};
use crate::clock::now_ms;
use crate::limits::hold_output;
use crate::tape::{on_tape, play};
use crate::text::clip;

/// Model turns that may ask for calls when the request names no limit.
const DEFAULT_ROUNDS: u32 = 4;
/// The most such turns any request may have.
const MAX_ROUNDS: u32 = 8;
/// The most tools one request may offer.
const MAX_TOOLS: usize = 32;
/// The most calls the model may ask for in one turn.
const MAX_CALLS_PER_TURN: usize = 16;
/// The most calls one request may run in all.
const MAX_CALLS: usize = 32;
/// The most bytes of one call's result handed back to the model.
const MAX_RESULT_BYTES: usize = 16 << 10;
/// The most bytes of one call's arguments.
const MAX_ARGUMENT_BYTES: usize = 64 << 10;
/// The most bytes of a failed call's message handed back to the model.
const MAX_ERROR_BYTES: usize = 1 << 10;

/// The tools' model names, each with its instance and action.
type ToolTargets = BTreeMap<String, (String, String)>;

struct HasAiTools;

impl HasData for HasAiTools {
    type Data<'a> = AiView<'a>;
}

/// Adds the `ai-tools` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> AiView<'_>,
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
impl AiView<'_> {
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
            let shown = crate::printable(&clip(text, 128));
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
            // The check at start refuses grants that let an instance run itself; an embedder
            // who skips it still cannot (the call would wait for the caller's own slot).
            if instance == self.scope.instance {
                return Err(Error::Denied(format!("tool `{shown}` is the calling instance itself")));
            }
            let target = self
                .providers
                .action(instance, action)
                .ok_or_else(|| Error::NotFound(format!("no loaded connector offers `{shown}`")))?;
            // A wildcard grant covers what only adds or reads; an action that may delete or
            // overwrite (or does not say) must be named: whoever's words reach the model can
            // make it call any tool it is offered.
            if target.destructive
                && !granted.iter().any(|p| p.action.as_deref() == Some(action) && p.instance == instance)
            {
                return Err(Error::Denied(format!(
                    "tool `{shown}` may delete or overwrite: name it in grants.ai_tools, a wildcard does not cover it"
                )));
            }
            let name = tool_name(instance, action).ok_or_else(|| {
                Error::InvalidInput(format!("tool `{shown}` has no name a model takes (64 of [A-Za-z0-9_-])"))
            })?;
            match by_name.get(&name) {
                Some((i, a)) if i == instance && a == action => {}
                // `a_b` + `c` and `a` + `b_c` are both `a_b_c`: the model could not tell them apart.
                Some(_) => {
                    return Err(Error::InvalidInput(format!("two tools would both be named `{name}`")));
                }
                None => {
                    by_name.insert(name.clone(), (instance.to_owned(), action.to_owned()));
                    tools.push(Tool {
                        name,
                        description: target.description,
                        input_schema: target.input_schema.to_string(),
                    });
                }
            }
        }
        Ok((tools, by_name))
    }

    /// Runs one call the model asked for: its result for the model, and whether it failed.
    async fn run_call(&mut self, by_name: &ToolTargets, name: &str, arguments: &str) -> (String, bool) {
        let Some((instance, action)) = by_name.get(name) else {
            return (format!("no tool named `{}`", crate::printable(&clip(name, 128))), true);
        };
        if arguments.len() > MAX_ARGUMENT_BYTES {
            return (format!("the arguments are over {MAX_ARGUMENT_BYTES} bytes"), true);
        }
        let input: Value = match serde_json::from_str(arguments) {
            Ok(input @ Value::Object(_)) => input,
            Ok(_) => return ("the arguments are not a JSON object".into(), true),
            Err(e) => return (format!("the arguments are not JSON: {e}"), true),
        };
        let remaining = self.scope.deadline.saturating_duration_since(tokio::time::Instant::now());
        let event_id = self.scope.event_id.map(str::to_owned);
        let running = self.providers.run_action(instance, action, input, event_id);
        match tokio::time::timeout(remaining, running).await {
            Ok(Ok((output, events))) => {
                // What a tool emitted is the caller's to hold: within the caller's limits.
                let limits = self.scope.limits;
                if self.emitted.len() + events.len() > limits.max_events as usize {
                    return (
                        format!("the tool's events would pass the caller's limit of {}", limits.max_events),
                        true,
                    );
                }
                for e in &events {
                    let size = crate::capabilities::emit::size_of(
                        &e.kind,
                        &e.content_type,
                        &e.payload,
                        &e.attributes,
                    );
                    if let Err(why) = hold_output(self.held, size, limits) {
                        return (format!("the tool's events pass the caller's output limit: {why}"), true);
                    }
                }
                self.emitted.extend(events);
                (clip(&output, MAX_RESULT_BYTES), false)
            }
            Ok(Err(e)) => (crate::printable(&clip(&crate::error::describe(&e), MAX_ERROR_BYTES)), true),
            Err(_) => ("the tool did not answer in time".into(), true),
        }
    }
}

impl AiView<'_> {
    /// The provider that serves the caller, once the caller may use it.
    fn provider(&self) -> Result<String, Error> {
        super::ai::provider_for(
            &self.scope,
            "ai-tools",
            self.caller_is_provider,
            self.default_provider.as_ref(),
        )
    }

    /// One turn on `provider`, within the budget, deadline and output limit, charged.
    async fn turn(&mut self, provider: &str, turn: ToolsRequest) -> Result<ToolsResponse, Error> {
        let plugin = self.scope.instance;
        self.router.check_budget(self.kv, plugin, self.scope.grants.ai_daily_tokens, now_ms()).await?;
        let remaining = self.scope.deadline.saturating_duration_since(tokio::time::Instant::now());
        let event_id = self.scope.event_id.map(str::to_owned);
        let running = self.providers.complete_with_tools(provider, turn, event_id);
        let answer = match tokio::time::timeout(remaining, running).await {
            Ok(answer) => answer?,
            Err(_) => return Err(Error::Timeout(format!("AI provider `{provider}` did not answer in time"))),
        };
        self.router.charge(self.kv, plugin, provider, &answer.usage, now_ms()).await;
        let bytes = answer.content.len()
            + answer.calls.iter().map(|c| c.id.len() + c.name.len() + c.arguments.len()).sum::<usize>();
        hold_output(self.held, bytes, self.scope.limits).map_err(Error::QuotaExceeded)?;
        Ok(answer)
    }
}

impl Host for AiView<'_> {
    async fn complete_turn(&mut self, request: ToolsRequest) -> Result<ToolsResponse, Error> {
        let taped = on_tape(self.scope.tape, &(&request,), 0);
        play(taped, "ai-tools.complete-turn", async {
            let provider = self.provider()?;
            if request.tools.len() > MAX_TOOLS {
                return Err(Error::InvalidInput(format!("at most {MAX_TOOLS} tools")));
            }
            self.turn(&provider, request).await
        })
        .await
    }

    async fn run(&mut self, request: AgentRequest) -> Result<AgentResponse, Error> {
        let taped = on_tape(self.scope.tape, &(&request,), 0);
        play(taped, "ai-tools.run", async {
            let provider = self.provider()?;
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
                let turn = ToolsRequest {
                    model: request.model.clone(),
                    turns: turns.clone(),
                    tools: tools.clone(),
                    temperature: request.temperature,
                    max_tokens: request.max_tokens,
                };
                // Held and charged in `turn`: the answer's text and every call it asks for, before
                // any call runs.
                let answer = self.turn(&provider, turn).await?;
                usage.prompt_tokens = usage.prompt_tokens.saturating_add(answer.usage.prompt_tokens);
                usage.completion_tokens =
                    usage.completion_tokens.saturating_add(answer.usage.completion_tokens);
                if answer.calls.is_empty() {
                    return Ok(AgentResponse { content: answer.content, rounds, usage, model: answer.model });
                }
                if asked == rounds_allowed {
                    return Err(Error::QuotaExceeded(format!(
                        "the model still asked for tools after {rounds_allowed} rounds"
                    )));
                }
                // Bounds the model passes are not retried: a retry would run the tools again.
                if answer.calls.len() > MAX_CALLS_PER_TURN {
                    return Err(Error::QuotaExceeded(format!(
                        "the model asked for {} calls at once; at most {MAX_CALLS_PER_TURN}",
                        answer.calls.len()
                    )));
                }
                if rounds.len() + answer.calls.len() > MAX_CALLS {
                    return Err(Error::QuotaExceeded(format!(
                        "the model asked for more than {MAX_CALLS} calls in all"
                    )));
                }
                asked += 1;
                let mut results = Vec::new();
                for call in &answer.calls {
                    let (content, is_error) = self.run_call(&by_name, &call.name, &call.arguments).await;
                    hold_output(self.held, content.len(), self.scope.limits).map_err(Error::QuotaExceeded)?;
                    rounds.push(ToolRound { call: call.clone(), output: content.clone(), is_error });
                    results.push(ToolResult { call_id: call.id.clone(), content, is_error });
                }
                turns.push(Turn::Calls(ToolCalls { content: answer.content, calls: answer.calls }));
                turns.push(Turn::Results(results));
            }
        })
        .await
    }
}
