//! `echo`: answers every event with an `echo/replied` event and uses every host capability on the
//! way, so that it shows (and tests) what a plugin can do and what the host refuses.
//!
//! - `handle`: logs the event, counts it in kv, reads the `greeting` config value, emits an
//!   `echo/seen` event and returns `echo/replied` with the original payload.
//! - `on-webhook`: turns the body into one `echo/received` event and answers 200 with
//!   `{"received": <bytes>}`.
//! - `invoke`: `ping` returns `{}`; `fetch` sends `input.method` (default `GET`) to `input.url`
//!   through the host, with `input.headers` (which may hold `{{secret:NAME}}` placeholders),
//!   `input.body` and `input.retry`; `ask` runs a chat
//!   completion through the configured AI provider; `kv-roundtrip` sets, reads and deletes a key;
//!   `config` returns every config value; `calls` counts calls in the instance's own memory.

use plugboard_sdk::ai::{Agent, Chat};
use plugboard_sdk::http::Request;
use plugboard_sdk::{
    Capability, Connector, Error, Event, Metadata, NewEvent, VerificationScheme, WebhookReply,
    WebhookRequest, config, emit, kv,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

struct Echo;

/// Counts `calls` actions in this instance's memory: 1 every time on fresh instances.
static CALLS: AtomicU64 = AtomicU64::new(0);

impl Connector for Echo {
    fn metadata() -> Metadata {
        Metadata::new("echo", env!("CARGO_PKG_VERSION"), "Echoes events and exercises every capability")
            .produces("echo/replied")
            .produces("echo/seen")
            .produces("echo/received")
            .action("ping", "Answers {} at once", json!({"type": "object"}))
            .action(
                "fetch",
                "Sends a request through the host",
                json!({"type": "object", "required": ["url"], "properties": {
                    "url": {"type": "string"}, "method": {"type": "string"}, "headers": {"type": "object"},
                    "body": {"type": "string"}, "retry": {"type": "boolean"}
                }}),
            )
            .action(
                "ask",
                "Asks the configured AI provider",
                json!({"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}),
            )
            .action(
                "agent",
                "Asks the configured AI provider, letting the model call these actions",
                json!({"type": "object", "required": ["prompt", "tools"], "properties": {
                    "prompt": {"type": "string"}, "tools": {"type": "array", "items": {"type": "string"}},
                    "max_rounds": {"type": "integer"}}}),
            )
            .action(
                "turn",
                "One model turn with a tool of its own (`lookup`); answers what the model asked for",
                json!({"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}),
            )
            .action("kv-roundtrip", "Sets, reads and deletes a key", json!({"type": "object"}))
            .action("config", "Returns every config value", json!({"type": "object"}))
            .action("calls", "Counts calls in this instance's memory", json!({"type": "object"}))
            .requests(Capability::Log)
            .requests(Capability::Kv)
            .requests(Capability::Emit)
            .requests(Capability::Config)
            .requests(Capability::Http)
            .requests(Capability::Ai)
            .verifies_with(VerificationScheme::None)
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let event = NewEvent {
            kind: "echo/received".into(),
            occurred_at_ms: None,
            content_type: request.header("content-type").unwrap_or("application/octet-stream").into(),
            payload: request.body.clone(),
            attributes: vec![("path".into(), request.path.clone())],
        };
        WebhookReply::ok(vec![event]).with_json_body(&json!({ "received": request.body.len() }))
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        plugboard_sdk::info!("echoing {}", event.kind; "event" => event.id, "source" => event.source);
        let count = kv::increment("events-seen", 1)?;
        let greeting = config::get("greeting")?.unwrap_or_else(|| "hello".into());
        emit::publish(NewEvent::json("echo/seen", &json!({ "id": event.id, "count": count }))?)?;
        let reply = NewEvent {
            kind: "echo/replied".into(),
            occurred_at_ms: None,
            content_type: event.content_type.clone(),
            payload: event.payload.clone(),
            attributes: vec![("greeting".into(), greeting), ("count".into(), count.to_string())],
        };
        Ok(vec![reply])
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "ping" => Ok(json!({})),
            "calls" => Ok(json!(CALLS.fetch_add(1, Ordering::Relaxed) + 1)),
            "fetch" => {
                let url =
                    input["url"].as_str().ok_or_else(|| Error::InvalidInput("`url` is required".into()))?;
                let mut request = Request::new(input["method"].as_str().unwrap_or("GET"), url);
                if let Some(headers) = input["headers"].as_object() {
                    for (name, value) in headers {
                        request = request.header(name.as_str(), value.as_str().unwrap_or_default());
                    }
                }
                if let Some(body) = input["body"].as_str() {
                    request = request.body(body);
                }
                if input["retry"].as_bool() == Some(true) {
                    request = request.retry();
                }
                let reply = request.send()?;
                Ok(json!({ "status": reply.status, "body": String::from_utf8_lossy(&reply.body) }))
            }
            "agent" => {
                let prompt = input["prompt"]
                    .as_str()
                    .ok_or_else(|| Error::InvalidInput("`prompt` is required".into()))?;
                let mut agent = Agent::new().user(prompt);
                for tool in input["tools"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    agent = agent.tool(tool);
                }
                if let Some(n) = input["max_rounds"].as_u64() {
                    agent = agent.max_rounds(n as u32);
                }
                let answer = agent.send()?;
                let rounds: Vec<Value> = answer
                    .rounds
                    .iter()
                    .map(|r| json!({ "name": r.call.name, "output": r.output, "is_error": r.is_error }))
                    .collect();
                Ok(
                    json!({ "content": answer.content, "rounds": rounds, "tokens": answer.usage.prompt_tokens + answer.usage.completion_tokens }),
                )
            }
            "turn" => {
                let prompt = input["prompt"]
                    .as_str()
                    .ok_or_else(|| Error::InvalidInput("`prompt` is required".into()))?;
                let request = plugboard_sdk::ai::ToolsRequest {
                    model: None,
                    turns: vec![plugboard_sdk::ai::Turn::Message(plugboard_sdk::ai::Message {
                        role: plugboard_sdk::ai::Role::User,
                        content: prompt.into(),
                    })],
                    tools: vec![plugboard_sdk::ai::Tool {
                        name: "lookup".into(),
                        description: "Looks something up".into(),
                        input_schema: json!({"type": "object"}).to_string(),
                    }],
                    temperature: None,
                    max_tokens: None,
                };
                let answer = plugboard_sdk::ai::complete_turn(&request)?;
                let calls: Vec<&str> = answer.calls.iter().map(|c| c.name.as_str()).collect();
                Ok(json!({ "content": answer.content, "calls": calls }))
            }
            "ask" => {
                let prompt = input["prompt"]
                    .as_str()
                    .ok_or_else(|| Error::InvalidInput("`prompt` is required".into()))?;
                let answer = Chat::new().user(prompt).temperature(0.0).send()?;
                // A plugin that cannot use the answer (say, it does not parse) fails.
                if input["reject"].as_bool() == Some(true) {
                    return Err(Error::InvalidInput("the answer is not usable".into()));
                }
                Ok(json!({ "content": answer.content, "model": answer.model }))
            }
            "kv-roundtrip" => {
                kv::set("roundtrip", &input, None)?;
                let back: Option<Value> = kv::get("roundtrip")?;
                let existed = kv::delete("roundtrip")?;
                Ok(json!({ "read": back, "deleted": existed }))
            }
            "config" => {
                let all: serde_json::Map<String, Value> =
                    config::all()?.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                Ok(Value::Object(all))
            }
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }
}

plugboard_sdk::export_connector!(Echo);
