//! The protocol handler: `tools/list` shows a client the actions it may call, `tools/call`
//! runs one. Each call (refused, failed or done) is stored as an event of source `mcp`, kind
//! `mcp/tool-called`, with the client, the tool, a digest of the input, the outcome and the
//! time taken; the action's outbound calls and log lines carry that event's id. So the events
//! view, an event's trace, the call log and `/metrics` show what AI agents did.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::clients::{McpClient, McpClients, Refusal};
use super::tools::{InputError, Offered, Schemas, offered};
use crate::manifest::pipeline::MCP_SOURCE;
use crate::pipeline::Routes;
use crate::runtime::text::clip;
use crate::store::{Append, EventStore};
use crate::types::Error as WitError;
use crate::{Event, Host, InvokeError};

/// The kind of the events that record tool calls.
pub const TOOL_CALLED: &str = "mcp/tool-called";

/// The attribute of a call's record that names the client (in the host's reserved namespace).
pub const CLIENT_ATTRIBUTE: &str = "plugboard.mcp.client";

/// The attribute of a call's record that names the tool.
pub const TOOL_ATTRIBUTE: &str = "plugboard.mcp.tool";

/// How many times a call's record is offered to a store that is unavailable.
const RECORD_ATTEMPTS: u32 = 3;

/// What every connection's handler shares.
pub struct McpState {
    host: Host,
    store: Arc<dyn EventStore>,
    routes: Arc<Routes>,
    dispatcher: Option<Arc<tokio::sync::Notify>>,
    clients: McpClients,
    schemas: Schemas,
}

impl McpState {
    /// The state of an MCP server over `host`'s connectors, recording calls in `store`.
    pub fn new(host: Host, store: Arc<dyn EventStore>, clients: McpClients) -> McpState {
        McpState {
            host,
            store,
            routes: Arc::default(),
            dispatcher: None,
            clients,
            schemas: Schemas::default(),
        }
    }

    /// Where the events of tool calls (the record, and what actions emit) go next.
    pub fn with_routes(mut self, routes: Arc<Routes>, dispatcher: Option<Arc<tokio::sync::Notify>>) -> Self {
        self.routes = routes;
        self.dispatcher = dispatcher;
        self
    }

    /// The configured clients.
    pub fn clients(&self) -> &McpClients {
        &self.clients
    }
}

/// One connection's handler: serves one client (stdio) or whichever client the HTTP request's
/// token named.
#[derive(Clone)]
pub struct McpServer {
    state: Arc<McpState>,
    client: Option<Arc<McpClient>>,
}

impl McpServer {
    /// A handler for `client` alone, as `plugboard mcp --client NAME` serves it over stdio.
    pub fn for_client(state: Arc<McpState>, client: Arc<McpClient>) -> McpServer {
        McpServer { state, client: Some(client) }
    }

    /// A handler for HTTP requests, each of which names its client (see [`super::http`]).
    pub(super) fn for_requests(state: Arc<McpState>) -> McpServer {
        McpServer { state, client: None }
    }

    /// The client this request comes from.
    fn client(&self, context: &RequestContext<RoleServer>) -> Result<Arc<McpClient>, McpError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<McpClient>>())
            .cloned()
            .ok_or_else(|| McpError::invalid_request("no client: the request carried no token", None))
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("plugboard", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool is a plugboard connector action, named instance_action. Calls run \
                 sandboxed with the operator's grants and are recorded.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let client = self.client(&context)?;
        // A listing costs the host what a call's lookup does: it counts against the limits.
        let _slot = match client.admit() {
            Ok(slot) => slot,
            Err(refusal) => {
                let message = match refusal {
                    Refusal::RateLimited(wait) => {
                        format!("over this client's rate: retry after {} ms", millis(wait))
                    }
                    Refusal::Busy(n) => format!("this client may run {n} requests at once"),
                };
                return Err(McpError::invalid_request(message, None));
            }
        };
        let tools = offered(&self.state.host, &client).into_iter().map(|o| o.tool).collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let client = self.client(&context)?;
        let input = Value::Object(request.arguments.unwrap_or_default());
        // A task of its own: a client that hangs up (or a transport that stops waiting) does
        // not cut the call short between running the action and storing its record.
        let server = self.clone();
        let name = request.name.into_owned();
        let call = tokio::spawn(async move { server.call(&client, &name, input).await });
        match call.await {
            Ok(result) => Ok(result.into()),
            Err(e) => {
                tracing::error!("an MCP tool call failed: {e}");
                Ok(tool_error("internal", "the call failed; see the server's log", None).into())
            }
        }
    }
}

/// How a call ended, as the client and the record see it.
struct Ended {
    /// `ok`, or the error's kind: a WIT error case (`invalid-input`, `denied`, ...).
    outcome: &'static str,
    result: CallToolResult,
    /// The plugin build that ran, when one did.
    build: Option<String>,
    output_bytes: usize,
}

impl Ended {
    fn refused(kind: &'static str, message: &str) -> Ended {
        Ended { outcome: kind, result: tool_error(kind, message, None), build: None, output_bytes: 0 }
    }
}

impl McpServer {
    async fn call(&self, client: &Arc<McpClient>, name: &str, input: Value) -> CallToolResult {
        let started = Instant::now();
        let metrics = self.state.host.metrics();
        // Limits first: a client over its rate is refused before anything is looked up or
        // stored, so a flood of calls cannot become a flood of writes.
        let _slot = match client.admit() {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics.add(
                    "plugboard_mcp_tool_calls_total",
                    &[("client", &client.name), ("outcome", "rate-limited")],
                    1,
                );
                return match refusal {
                    Refusal::RateLimited(wait) => {
                        let ms = millis(wait);
                        tool_error(
                            "rate-limited",
                            &format!("over this client's rate: retry after {ms} ms"),
                            Some(ms),
                        )
                    }
                    Refusal::Busy(n) => tool_error(
                        "rate-limited",
                        &format!("this client may run {n} calls at once; wait for one to finish"),
                        None,
                    ),
                };
            }
        };
        let tool = offered(&self.state.host, client).into_iter().find(|o| o.name == name);
        // A name no tool has is the client's text: recorded bounded and printable.
        let shown_name = match &tool {
            Some(t) => t.name.clone(),
            None => crate::printable(&clip(name, 128)),
        };
        // The record's id exists before the action runs, so its outbound calls and log lines
        // can name it.
        let record_id = crate::Event::json(TOOL_CALLED, MCP_SOURCE, &json!({})).map(|e| e.id).ok();
        let (ended, emitted) = match &tool {
            // Unknown and not granted read alike, so a client cannot probe for what it may
            // not call.
            None => (
                Ended::refused(
                    "denied",
                    &format!("no tool `{shown_name}` is available to client `{}`", client.name),
                ),
                Vec::new(),
            ),
            Some(tool) => match self.state.schemas.check(tool, &input) {
                Err(InputError::Invalid(errors)) => (
                    Ended::refused(
                        "invalid-input",
                        &format!("the input does not match the tool's input schema: {}", errors.join("; ")),
                    ),
                    Vec::new(),
                ),
                Err(InputError::BadSchema(why)) => {
                    tracing::warn!(instance = %tool.instance, action = %tool.action, "MCP call refused: the action's input schema cannot be checked: {why}");
                    (
                        Ended::refused(
                            "internal",
                            "the tool's input schema cannot be checked; see the server's log",
                        ),
                        Vec::new(),
                    )
                }
                Ok(()) => self.run(tool, &input, record_id.as_deref()).await,
            },
        };
        let latency = started.elapsed();
        metrics.add(
            "plugboard_mcp_tool_calls_total",
            &[("client", &client.name), ("outcome", ended.outcome)],
            1,
        );
        metrics.observe(
            "plugboard_mcp_tool_call_seconds",
            &[("client", &client.name)],
            latency.as_secs_f64(),
        );
        let input_text = input.to_string();
        let error = ended.result.meta.as_ref().and_then(|m| m.0.get(ERROR_META)).cloned();
        let payload = json!({
            "client": client.name,
            "tool": shown_name,
            "instance": tool.as_ref().map(|t| &t.instance),
            "action": tool.as_ref().map(|t| &t.action),
            "destructive": tool.as_ref().map(|t| t.destructive),
            "input_sha256": hex::encode(Sha256::digest(input_text.as_bytes())),
            "input_bytes": input_text.len(),
            "outcome": ended.outcome,
            "error": error,
            "build": ended.build,
            "output_bytes": ended.output_bytes,
            "emitted": emitted.len(),
            "latency_us": u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        });
        self.record(client, &shown_name, record_id, payload, emitted).await;
        tracing::info!(client = %client.name, tool = %shown_name, outcome = ended.outcome,
            latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), "MCP tool call");
        ended.result
    }

    /// Runs the action in a fresh instance; returns how it ended and what it emitted.
    async fn run(&self, tool: &Offered, input: &Value, record_id: Option<&str>) -> (Ended, Vec<Event>) {
        match self.state.host.invoke_for_event(&tool.instance, &tool.action, input, record_id).await {
            Ok(done) => {
                let output = done.output;
                let text = output.to_string();
                let output_bytes = text.len();
                let result = if output.is_object() {
                    CallToolResult::structured(output)
                } else {
                    // Structured content is an object; any other output is text alone.
                    CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)])
                };
                (Ended { outcome: "ok", result, build: Some(done.handler), output_bytes }, done.emitted)
            }
            Err(e) => {
                let (kind, message, retry) = describe_failure(&e);
                if !matches!(e, InvokeError::Plugin(_)) {
                    tracing::warn!(instance = %tool.instance, action = %tool.action, "MCP tool call failed: {e}");
                }
                (
                    Ended {
                        outcome: kind,
                        result: tool_error(kind, &message, retry),
                        build: None,
                        output_bytes: 0,
                    },
                    Vec::new(),
                )
            }
        }
    }

    /// Stores the call's record with what the action emitted, routed like any events, trying
    /// a store that is briefly unavailable again. A record that still cannot be stored is
    /// written to the log whole (the audit trail's fallback) and counted; the client still
    /// gets its answer, since the action has run by then and a retry would run it again.
    async fn record(
        &self,
        client: &McpClient,
        tool: &str,
        id: Option<String>,
        payload: Value,
        emitted: Vec<Event>,
    ) {
        let Ok(mut event) = Event::json(TOOL_CALLED, MCP_SOURCE, &payload) else { return };
        if let Some(id) = id {
            event.id = id;
        }
        // Reserved attribute names: no plugin's event can carry them.
        event.attributes.push((CLIENT_ATTRIBUTE.into(), client.name.clone()));
        event.attributes.push((TOOL_ATTRIBUTE.into(), tool.to_owned()));
        let mut events = vec![event];
        events.extend(emitted);
        let deliveries = self.state.routes.deliveries(&events);
        let mut wait = std::time::Duration::from_millis(100);
        for attempt in 1..=RECORD_ATTEMPTS {
            let append = Append {
                instance: MCP_SOURCE.into(),
                delivery_id: None,
                dedup_window_ms: 0,
                deliveries: deliveries.clone(),
                events: events.clone(),
            };
            match self.state.store.append(append).await {
                Ok(_) => {
                    if let Some(notify) = &self.state.dispatcher {
                        notify.notify_one();
                    }
                    return;
                }
                Err(crate::store::StoreError::Unavailable(_)) if attempt < RECORD_ATTEMPTS => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                Err(e) => {
                    self.state.host.metrics().add(
                        "plugboard_store_errors_total",
                        &[("operation", "mcp-record")],
                        1,
                    );
                    tracing::error!(client = %client.name, tool, record = %payload,
                        "the record of an MCP tool call could not be stored: {e}");
                    return;
                }
            }
        }
    }
}

/// Where in a tool error's `_meta` the typed error is.
pub const ERROR_META: &str = "plugboard/error";

/// A tool error as the client sees it: `isError`, the error as text (`kind: message`, which
/// the model reads), and typed in `_meta` as `plugboard/error`: `{"kind", "message",
/// "retry_after_ms"?}` with the WIT error's case. Not as structured content: a client checks
/// structured content against the tool's output schema, errors included.
fn tool_error(kind: &str, message: &str, retry_after_ms: Option<u64>) -> CallToolResult {
    let mut error = json!({ "kind": kind, "message": message });
    if let Some(ms) = retry_after_ms {
        error["retry_after_ms"] = ms.into();
    }
    let mut meta = rmcp::model::MetaObject::new();
    meta.0.insert(ERROR_META.into(), error);
    CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!("{kind}: {message}"))])
        .with_meta(Some(meta))
}

/// A failed invocation as a tool error: the plugin's own error keeps its case and message;
/// the host's reasons (a trap, the fuel, the memory limit) are named but not detailed, since
/// the operator's log has the backtrace and the client needs none.
fn describe_failure(e: &InvokeError) -> (&'static str, String, Option<u64>) {
    match e {
        InvokeError::Plugin(w) => {
            let (kind, retry) = match w {
                WitError::InvalidInput(_) => ("invalid-input", None),
                WitError::Unauthorized(_) => ("unauthorized", None),
                WitError::NotFound(_) => ("not-found", None),
                WitError::Denied(_) => ("denied", None),
                WitError::RateLimited(ms) => ("rate-limited", *ms),
                WitError::Timeout(_) => ("timeout", None),
                WitError::Upstream(_) => ("upstream", None),
                WitError::Internal(_) => ("internal", None),
                WitError::QuotaExceeded(_) => ("quota-exceeded", None),
            };
            (kind, crate::runtime::describe_error(w), retry)
        }
        InvokeError::Timeout(d) => ("timeout", format!("the action did not finish within {d:?}"), None),
        other => ("internal", format!("the action failed ({})", other.kind()), None),
    }
}

/// A wait in whole milliseconds, at least one.
fn millis(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
}
