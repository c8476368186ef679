//! Anthropic as an AI provider: the host's `ai` calls become Messages API requests
//! (`POST {base_url}/v1/messages`, `anthropic-version: 2023-06-01`).
//!
//! Config: `base_url` (default `https://api.anthropic.com`), `model` (default
//! `claude-sonnet-4-5`), `max_tokens` (default 1024; the API requires it), `api_key_secret` (the
//! host secret sent as `x-api-key`, default `anthropic_api_key`).
//! System messages go to the top-level `system` field. The API has no JSON mode, so a JSON
//! answer is asked for in the system prompt (with the schema when one is given).
//!
//! Tool calling (`ai-tools`): tools go as `tools` (`name`, `description`, `input_schema`); the
//! model's calls come back as `tool_use` content blocks and go back as the assistant's turn;
//! their results go as a user turn of `tool_result` blocks (`tool_use_id`, `content`,
//! `is_error`).

use plugboard_sdk::ai::{
    ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, ToolCall, ToolsRequest, ToolsResponse,
    Turn, Usage,
};
use plugboard_sdk::http::{Request, Response};
use plugboard_sdk::{AiProvider, Capability, Error, ProviderMetadata, UpstreamFailure, config};
use serde_json::{Value, json};

struct Anthropic;

const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
const API_VERSION: &str = "2023-06-01";

fn body(request: &ChatRequest, model: &str, default_max_tokens: u32) -> Value {
    let mut system: Vec<String> =
        request.messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.clone()).collect();
    match &request.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            system.push("Answer with one JSON object and nothing else.".into());
        }
        ResponseFormat::JsonSchema(schema) => system.push(format!(
            "Answer with one JSON object that conforms to this JSON Schema, and nothing else:\n{schema}"
        )),
    }
    let messages: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| {
            let role = if m.role == Role::Assistant { "assistant" } else { "user" };
            json!({ "role": role, "content": m.content })
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens.unwrap_or(default_max_tokens),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    body
}

/// A conversation with tools, as the Messages API takes it.
fn tools_body(request: &ToolsRequest, model: &str, default_max_tokens: u32) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for turn in &request.turns {
        match turn {
            Turn::Message(m) if m.role == Role::System => system.push(m.content.clone()),
            Turn::Message(m) => {
                let role = if m.role == Role::Assistant { "assistant" } else { "user" };
                messages.push(json!({ "role": role, "content": m.content }));
            }
            Turn::Calls(c) => {
                let mut blocks = Vec::new();
                if !c.content.is_empty() {
                    blocks.push(json!({ "type": "text", "text": c.content }));
                }
                for call in &c.calls {
                    let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(
                        json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input }),
                    );
                }
                messages.push(json!({ "role": "assistant", "content": blocks }));
            }
            Turn::Results(results) => {
                let blocks: Vec<Value> = results
                    .iter()
                    .map(|r| json!({ "type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error }))
                    .collect();
                messages.push(json!({ "role": "user", "content": blocks }));
            }
        }
    }
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| {
            let schema: Value =
                serde_json::from_str(&t.input_schema).unwrap_or_else(|_| json!({ "type": "object" }));
            json!({ "name": t.name, "description": t.description, "input_schema": schema })
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens.unwrap_or(default_max_tokens),
        "messages": messages,
        "tools": tools,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// Sends a Messages API request; the answer and its request id.
fn send(body: &Value) -> Result<(Value, Option<String>), Error> {
    let base = config::get("base_url")?.unwrap_or_else(|| "https://api.anthropic.com".into());
    let secret = config::get("api_key_secret")?.unwrap_or_else(|| "anthropic_api_key".into());
    let response = Request::post(format!("{}/v1/messages", base.trim_end_matches('/')))
        .header("x-api-key", format!("{{{{secret:{secret}}}}}"))
        .header("anthropic-version", API_VERSION)
        .json(body)?
        .retry()
        .send()?;
    if !response.is_success() {
        return Err(error(&response));
    }
    let answer: Value = response.json()?;
    if !answer["content"].is_array() {
        return Err(Error::Upstream(UpstreamFailure {
            status: response.status,
            message: "no content in the answer".into(),
        }));
    }
    let id =
        response.header("request-id").map(str::to_owned).or_else(|| answer["id"].as_str().map(str::to_owned));
    Ok((answer, id))
}

/// The text blocks of an answer, joined.
fn text_of(answer: &Value) -> String {
    answer["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

/// Tokens the answer says it used.
fn usage(answer: &Value) -> Usage {
    let tokens = |k: &str| answer["usage"][k].as_u64().unwrap_or(0) as u32;
    Usage { prompt_tokens: tokens("input_tokens"), completion_tokens: tokens("output_tokens") }
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("end_turn") | Some("stop_sequence") | Some("pause_turn") => FinishReason::Stop,
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

/// The contract error for a failed answer (`{"type": "error", "error": {"type", "message"}}`).
fn error(response: &Response) -> Error {
    let detail = response.json::<Value>().ok();
    let kind = detail.as_ref().and_then(|v| v["error"]["type"].as_str()).unwrap_or("");
    let message = detail
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str())
        .map(|m| format!("{kind}: {m}"))
        .unwrap_or_else(|| String::from_utf8_lossy(&response.body).chars().take(200).collect());
    match response.status {
        // Overloaded: retryable, like a rate limit, after the server's wait when it gives one.
        529 => Error::RateLimited(response.retry_after_ms()),
        _ => response.error(&message),
    }
}

impl AiProvider for Anthropic {
    fn metadata() -> ProviderMetadata {
        ProviderMetadata {
            name: "anthropic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Anthropic Messages API".into(),
            default_model: DEFAULT_MODEL.into(),
            capabilities: vec![Capability::Http, Capability::Config],
        }
    }

    fn complete(request: ChatRequest) -> Result<ChatResponse, Error> {
        let model = request.model.clone().or(config::get("model")?).unwrap_or_else(|| DEFAULT_MODEL.into());
        let max_tokens = config::get("max_tokens")?.and_then(|v| v.parse().ok()).unwrap_or(1024);
        let (answer, request_id) = send(&body(&request, &model, max_tokens))?;
        Ok(ChatResponse {
            content: text_of(&answer),
            finish_reason: finish_reason(answer["stop_reason"].as_str()),
            usage: usage(&answer),
            model: answer["model"].as_str().unwrap_or(&model).to_owned(),
            request_id,
        })
    }

    fn complete_with_tools(request: ToolsRequest) -> Result<ToolsResponse, Error> {
        let model = request.model.clone().or(config::get("model")?).unwrap_or_else(|| DEFAULT_MODEL.into());
        let max_tokens = config::get("max_tokens")?.and_then(|v| v.parse().ok()).unwrap_or(1024);
        let (answer, request_id) = send(&tools_body(&request, &model, max_tokens))?;
        let calls = answer["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| ToolCall {
                id: b["id"].as_str().unwrap_or_default().to_owned(),
                name: b["name"].as_str().unwrap_or_default().to_owned(),
                arguments: b["input"].to_string(),
            })
            .collect();
        Ok(ToolsResponse {
            content: text_of(&answer),
            calls,
            finish_reason: finish_reason(answer["stop_reason"].as_str()),
            usage: usage(&answer),
            model: answer["model"].as_str().unwrap_or(&model).to_owned(),
            request_id,
        })
    }
}

plugboard_sdk::export_ai_provider!(Anthropic);
