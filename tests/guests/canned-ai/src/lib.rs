//! A deterministic AI provider for tests: answers `canned: <last user message>` (or a JSON object
//! when JSON was asked for), with token counts from the text's length. No network.

use plugboard_sdk::ai::{ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, Usage};
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
}

plugboard_sdk::export_ai_provider!(CannedAi);
