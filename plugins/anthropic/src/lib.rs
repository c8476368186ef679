//! Anthropic as an AI provider: the host's `ai` calls become Messages API requests
//! (`POST {base_url}/v1/messages`, `anthropic-version: 2023-06-01`).
//!
//! Config: `base_url` (default `https://api.anthropic.com`), `model` (default
//! `claude-sonnet-4-5`), `max_tokens` (default 1024; the API requires it), `api_key_secret` (the
//! host secret sent as `x-api-key`, default `anthropic_api_key`).
//! System messages go to the top-level `system` field. The API has no JSON mode, so a JSON
//! answer is asked for in the system prompt (with the schema when one is given).

use plugboard_sdk::ai::{ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, Usage};
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
        let base = config::get("base_url")?.unwrap_or_else(|| "https://api.anthropic.com".into());
        let model = request.model.clone().or(config::get("model")?).unwrap_or_else(|| DEFAULT_MODEL.into());
        let max_tokens = config::get("max_tokens")?.and_then(|v| v.parse().ok()).unwrap_or(1024);
        let secret = config::get("api_key_secret")?.unwrap_or_else(|| "anthropic_api_key".into());
        let response = Request::post(format!("{}/v1/messages", base.trim_end_matches('/')))
            .header("x-api-key", format!("{{{{secret:{secret}}}}}"))
            .header("anthropic-version", API_VERSION)
            .json(&body(&request, &model, max_tokens))?
            .retry()
            .send()?;
        if !response.is_success() {
            return Err(error(&response));
        }
        let answer: Value = response.json()?;
        let blocks = answer["content"].as_array().ok_or_else(|| {
            Error::Upstream(UpstreamFailure {
                status: response.status,
                message: "no content in the answer".into(),
            })
        })?;
        let content: String = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        let tokens = |k: &str| answer["usage"][k].as_u64().unwrap_or(0) as u32;
        Ok(ChatResponse {
            content,
            finish_reason: finish_reason(answer["stop_reason"].as_str()),
            usage: Usage {
                prompt_tokens: tokens("input_tokens"),
                completion_tokens: tokens("output_tokens"),
            },
            model: answer["model"].as_str().unwrap_or(&model).to_owned(),
            request_id: response
                .header("request-id")
                .map(str::to_owned)
                .or_else(|| answer["id"].as_str().map(str::to_owned)),
        })
    }
}

plugboard_sdk::export_ai_provider!(Anthropic);
