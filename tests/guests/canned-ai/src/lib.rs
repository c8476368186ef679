//! A deterministic AI provider for tests: answers `canned: <last user message>` (or a JSON object
//! when JSON was asked for), with token counts from the text's length. No network.
//!
//! With tools: the first turn calls the first tool with `{}`; once results came back it answers
//! `canned: tools said <results>`. A user message `loop` makes it call forever, `unknown` makes
//! it call a tool it was not given, `many` makes it ask for 17 calls at once, `big-args` calls
//! with 70 KB of arguments and `array-args` with arguments that are not an object.

use plugboard_sdk::ai::{
    ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, ToolCall, ToolsRequest, ToolsResponse,
    Turn, Usage,
};
use plugboard_sdk::{AiProvider, Error, ProviderMetadata};

struct CannedAi;

impl AiProvider for CannedAi {
    fn metadata() -> ProviderMetadata {
        ProviderMetadata {
            name: "canned-ai".into(),
            version: "0.1.0".into(),
            description: "Answers deterministically, for tests".into(),
            default_model: "canned-1".into(),
            capabilities: vec![],
        }
    }

    fn complete(request: ChatRequest) -> Result<ChatResponse, Error> {
        let last = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .ok_or_else(|| Error::InvalidInput("no user message".into()))?;
        let content = match request.response_format {
            ResponseFormat::Text => format!("canned: {}", last.content),
            _ => serde_json::json!({ "echo": last.content }).to_string(),
        };
        let prompt_tokens: usize =
            request.messages.iter().map(|m| m.content.split_whitespace().count()).sum();
        Ok(ChatResponse {
            usage: Usage {
                prompt_tokens: prompt_tokens as u32,
                completion_tokens: content.split_whitespace().count() as u32,
            },
            content,
            finish_reason: FinishReason::Stop,
            model: request.model.unwrap_or_else(|| "canned-1".into()),
            request_id: Some("canned-req-1".into()),
        })
    }

    fn complete_with_tools(request: ToolsRequest) -> Result<ToolsResponse, Error> {
        CannedAi::turn(&request)
    }
}

impl CannedAi {
    fn turn(request: &ToolsRequest) -> Result<ToolsResponse, Error> {
        let user = request
            .turns
            .iter()
            .rev()
            .find_map(|t| match t {
                Turn::Message(m) if m.role == Role::User => Some(m.content.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::InvalidInput("no user message".into()))?;
        let results: Vec<String> = request
            .turns
            .iter()
            .filter_map(|t| match t {
                Turn::Results(r) => Some(r.iter().map(|r| r.content.clone()).collect::<Vec<_>>().join(",")),
                _ => None,
            })
            .collect();
        let first = request.tools.first().map(|t| t.name.clone()).unwrap_or_default();
        let call = |n: usize, name: &str| ToolCall {
            id: format!("call-{n}"),
            name: name.into(),
            arguments: "{}".into(),
        };
        let calls = match user.as_str() {
            "loop" => vec![call(results.len(), &first)],
            "many" => (0..17).map(|n| call(n, &first)).collect(),
            "unknown" if results.is_empty() => vec![call(0, "nope")],
            "big-args" if results.is_empty() => {
                vec![ToolCall {
                    arguments: format!("{{\"x\":\"{}\"}}", "a".repeat(70_000)),
                    ..call(0, &first)
                }]
            }
            "array-args" if results.is_empty() => {
                vec![ToolCall { arguments: "[1]".into(), ..call(0, &first) }]
            }
            _ if results.is_empty() => vec![call(0, &first)],
            _ => Vec::new(),
        };
        let content = if calls.is_empty() {
            format!("canned: tools said {}", results.join(";"))
        } else {
            String::new()
        };
        Ok(ToolsResponse {
            finish_reason: if calls.is_empty() { FinishReason::Stop } else { FinishReason::ToolCalls },
            calls,
            usage: Usage { prompt_tokens: 1, completion_tokens: 1 },
            content,
            model: "canned-1".into(),
            request_id: None,
        })
    }
}

plugboard_sdk::export_ai_provider!(CannedAi);
