//! {{name}}: a plugboard connector.
//!
//! - Webhooks sent to `/hooks/<instance>` become `{{name}}/received` events.
//! - Each event delivered to it is summarised into a `{{name}}/summarized` event.
//! - Action `greet` answers `{"greeting": "hello, <name>"}`.
//!
//! Keep decisions in plain functions (like `summarize`): they are tested with `cargo test`
//! without a host; the capability calls around them run inside plugboard.

use plugboard_sdk::{
    Capability, Connector, Error, Event, Metadata, NewEvent, VerificationScheme, WebhookReply, WebhookRequest, info,
};
use serde_json::{Value, json};

struct Plugin;

/// What the plugin makes of an event's JSON payload.
pub fn summarize(payload: &Value) -> Value {
    let fields = payload.as_object().map(|o| o.len()).unwrap_or(0);
    json!({ "fields": fields, "has_id": payload.get("id").is_some() })
}

impl Connector for Plugin {
    fn metadata() -> Metadata {
        Metadata::new("{{name}}", env!("CARGO_PKG_VERSION"), "Describe what {{name}} does in one line")
            .produces("{{name}}/received")
            .produces("{{name}}/summarized")
            .action("greet", "Greets someone", json!({"type": "object", "properties": {"name": {"type": "string"}}}))
            .requests(Capability::Log)
            .verifies_with(VerificationScheme::Hmac)
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let payload: Value = request.json()?;
        Ok(WebhookReply::ok(vec![NewEvent::json("{{name}}/received", &payload)?]))
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let payload: Value = event.json()?;
        info!("summarizing {}", event.kind; "event" => event.id);
        Ok(vec![NewEvent::json("{{name}}/summarized", &summarize(&payload))?])
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "greet" => Ok(json!({ "greeting": format!("hello, {}", input["name"].as_str().unwrap_or("world")) })),
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }
}

plugboard_sdk::export_connector!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_counts_fields() {
        assert_eq!(summarize(&json!({"id": 1, "total": "9.99"})), json!({"fields": 2, "has_id": true}));
        assert_eq!(summarize(&json!("not an object")), json!({"fields": 0, "has_id": false}));
    }
}
