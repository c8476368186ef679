//! OpenAI as an AI provider: the host's `ai` calls become Chat Completions requests
//! (`POST {base_url}/v1/chat/completions`).
//!
//! Config: `base_url` (default `https://api.openai.com`; `https://api.openai.com/v1`, as the
//! official SDKs write it, means the same), `model` (default `gpt-4o-mini`),
//! `api_key_secret` (the name of the host secret holding the API key, default `openai_api_key`;
//! the key itself never enters the plugin), `organization` (optional `OpenAI-Organization`).
//! Grants it needs: `http` to the base URL, `config`, and the secret.
//!
//! Azure OpenAI is a configuration of the same connector: set `azure_deployment` (the
//! deployment's name) and `base_url` (`https://{resource}.openai.azure.com`), optionally
//! `api_version` (default `2024-10-21`, the current GA version). Requests then go to
//! `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...` with the key in
//! an `api-key` header; the deployment decides the model, so set `model` to the deployment's
//! model too (it picks `max_tokens` or, for o-series and gpt-5, `max_completion_tokens`).

use plugboard_sdk::ai::{
    ChatRequest, ChatResponse, FinishReason, Message, ResponseFormat, Role, ToolCall, ToolsRequest,
    ToolsResponse, Turn, Usage,
};
use plugboard_sdk::http::{Request, Response};
use plugboard_sdk::{AiProvider, Capability, Error, ProviderMetadata, UpstreamFailure, config};
use serde_json::{Value, json};

struct OpenAi;

const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// The Chat Completions URL under `base`, whether `base` ends in `/v1` (the official SDKs'
/// spelling) or not.
fn chat_completions_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/chat/completions")
}

/// The Azure OpenAI API version used when the config names none.
const AZURE_API_VERSION: &str = "2024-10-21";

/// The Chat Completions URL of Azure OpenAI deployment `deployment` under `base`.
fn azure_chat_completions_url(base: &str, deployment: &str, api_version: &str) -> String {
    let base = base.trim_end_matches('/');
    let deployment: String = url_path_segment(deployment);
    format!(
        "{base}/openai/deployments/{deployment}/chat/completions?api-version={}",
        url_path_segment(api_version)
    )
}

/// `s` percent-encoded for one path segment or query value (anything but unreserved bytes).
fn url_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Models that take `max_completion_tokens` and refuse `max_tokens` (reasoning models).
fn needs_max_completion_tokens(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| model.starts_with(p))
}

/// A message as Chat Completions writes it.
fn message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    json!({ "role": role, "content": m.content })
}

/// The body's model, sampling and length fields.
fn base_body(messages: Vec<Value>, model: &str, temperature: Option<f32>, max_tokens: Option<u32>) -> Value {
    let mut body = json!({ "model": model, "messages": messages });
    if let Some(t) = temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = max_tokens {
        let key = if needs_max_completion_tokens(model) { "max_completion_tokens" } else { "max_tokens" };
        body[key] = json!(n);
    }
    body
}

/// A conversation with tools, as Chat Completions takes it: the tools as `function` tools, the
/// model's calls as an assistant message's `tool_calls`, each result as a `tool` message.
fn tools_body(request: &ToolsRequest, model: &str) -> Value {
    let mut messages = Vec::new();
    for turn in &request.turns {
        match turn {
            Turn::Message(m) => messages.push(message(m)),
            Turn::Calls(c) => {
                let calls: Vec<Value> = c
                    .calls
                    .iter()
                    .map(|call| json!({ "id": call.id, "type": "function", "function": { "name": call.name, "arguments": call.arguments } }))
                    .collect();
                let content = if c.content.is_empty() { Value::Null } else { json!(c.content) };
                messages.push(json!({ "role": "assistant", "content": content, "tool_calls": calls }));
            }
            Turn::Results(results) => {
                for r in results {
                    messages.push(json!({ "role": "tool", "tool_call_id": r.call_id, "content": r.content }));
                }
            }
        }
    }
    let mut body = base_body(messages, model, request.temperature, request.max_tokens);
    let tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| {
            let parameters: Value = serde_json::from_str(&t.input_schema).unwrap_or_else(|_| json!({ "type": "object" }));
            json!({ "type": "function", "function": { "name": t.name, "description": t.description, "parameters": parameters } })
        })
        .collect();
    body["tools"] = json!(tools);
    body
}

/// The request body, as the Chat Completions API describes it.
fn body(request: &ChatRequest, model: &str) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(message).collect();
    let mut body = base_body(messages, model, request.temperature, request.max_tokens);
    match &request.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => body["response_format"] = json!({ "type": "json_object" }),
        ResponseFormat::JsonSchema(schema) => {
            let schema: Value = serde_json::from_str(schema).unwrap_or_else(|_| json!({ "type": "object" }));
            body["response_format"] = json!({ "type": "json_schema", "json_schema": { "name": "answer", "schema": schema, "strict": true } });
        }
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    body
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
fn reset_ms(text: &str) -> Option<u64> {
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    (any && number.is_empty()).then(|| (total * 1000.0).round() as u64)
}

/// The contract error for a failed answer.
fn error(response: &Response) -> Error {
    let message = response
        .json::<Value>()
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&response.body).chars().take(200).collect());
    if response.status == 429 {
        let wait = response.retry_after_ms().or_else(|| {
            ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
                .iter()
                .filter_map(|h| response.header(h).and_then(reset_ms))
                .max()
        });
        return Error::RateLimited(wait);
    }
    response.error(&message)
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

impl AiProvider for OpenAi {
    fn metadata() -> ProviderMetadata {
        ProviderMetadata {
            name: "openai".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "OpenAI Chat Completions".into(),
            default_model: DEFAULT_MODEL.into(),
            capabilities: vec![Capability::Http, Capability::Config],
        }
    }

    fn complete(request: ChatRequest) -> Result<ChatResponse, Error> {
        let model = request.model.clone().or(config::get("model")?).unwrap_or_else(|| DEFAULT_MODEL.into());
        let (answer, request_id, status) = send(&body(&request, &model))?;
        let choice = &answer["choices"][0];
        let content = choice["message"]["content"].as_str().ok_or_else(|| {
            let refusal = choice["message"]["refusal"].as_str().unwrap_or("no content in the answer");
            Error::Upstream(UpstreamFailure { status, message: refusal.into() })
        })?;
        Ok(ChatResponse {
            content: content.to_owned(),
            finish_reason: finish_reason(choice["finish_reason"].as_str()),
            usage: usage(&answer),
            model: answer["model"].as_str().unwrap_or(&model).to_owned(),
            request_id,
        })
    }

    fn complete_with_tools(request: ToolsRequest) -> Result<ToolsResponse, Error> {
        let model = request.model.clone().or(config::get("model")?).unwrap_or_else(|| DEFAULT_MODEL.into());
        let (answer, request_id, _) = send(&tools_body(&request, &model))?;
        let message = &answer["choices"][0]["message"];
        let calls = message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"] == "function")
            .map(|c| ToolCall {
                id: c["id"].as_str().unwrap_or_default().to_owned(),
                name: c["function"]["name"].as_str().unwrap_or_default().to_owned(),
                arguments: c["function"]["arguments"].as_str().unwrap_or("{}").to_owned(),
            })
            .collect();
        Ok(ToolsResponse {
            content: message["content"].as_str().unwrap_or_default().to_owned(),
            calls,
            finish_reason: finish_reason(answer["choices"][0]["finish_reason"].as_str()),
            usage: usage(&answer),
            model: answer["model"].as_str().unwrap_or(&model).to_owned(),
            request_id,
        })
    }
}

/// Tokens the answer says it used.
fn usage(answer: &Value) -> Usage {
    let tokens = |k: &str| answer["usage"][k].as_u64().unwrap_or(0) as u32;
    Usage { prompt_tokens: tokens("prompt_tokens"), completion_tokens: tokens("completion_tokens") }
}

/// Sends `body` to the configured endpoint; the answer, its request id and status.
fn send(body: &Value) -> Result<(Value, Option<String>, u16), Error> {
    let secret = config::get("api_key_secret")?.unwrap_or_else(|| "openai_api_key".into());
    let key = format!("{{{{secret:{secret}}}}}");
    let call = match config::get("azure_deployment")? {
        Some(deployment) => {
            let base = config::require("base_url")?;
            let version = config::get("api_version")?.unwrap_or_else(|| AZURE_API_VERSION.into());
            Request::post(azure_chat_completions_url(&base, &deployment, &version)).header("api-key", key)
        }
        None => {
            let base = config::get("base_url")?.unwrap_or_else(|| "https://api.openai.com".into());
            Request::post(chat_completions_url(&base)).bearer(&key)
        }
    };
    let mut call = call
        .json(body)?
        // Completions are safe to repeat here: the host may retry 429s and 5xx.
        .retry();
    if let Some(org) = config::get("organization")? {
        call = call.header("openai-organization", org);
    }
    let response = call.send()?;
    if !response.is_success() {
        return Err(error(&response));
    }
    let answer: Value = response.json()?;
    let request_id = response
        .header("x-request-id")
        .map(str::to_owned)
        .or_else(|| answer["id"].as_str().map(str::to_owned));
    Ok((answer, request_id, response.status))
}

plugboard_sdk::export_ai_provider!(OpenAi);
