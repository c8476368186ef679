//! A connector as plugin authors built them before the contract gained `action-hints`,
//! `ai-tools` and `provider-tools`: `wit/` here is a frozen copy of `plugboard:connector@0.1.0`
//! from that time (commit 65c6bd1), never updated. The host must load it and run it as before.
//!
//! - `metadata`: one action, `remember`, and the `kv` capability.
//! - `invoke("remember", {"value": ..})`: stores the value, reads it back and answers it.

wit_bindgen::generate!({
    path: "wit",
    world: "plugboard:connector/connector",
});

use exports::plugboard::connector::plugin::Guest;
use plugboard::connector::kv;
use plugboard::connector::types::{
    Action, Capability, ConnectorMetadata, Error, Event, NewEvent, WebhookReply, WebhookRequest,
};

struct Legacy;

impl Guest for Legacy {
    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            name: "legacy".into(),
            version: "0.1.0".into(),
            description: "Built against the earlier contract".into(),
            produces: vec![],
            actions: vec![Action {
                name: "remember".into(),
                description: "Stores a value and reads it back".into(),
                input_schema: r#"{"type":"object","required":["value"]}"#.into(),
            }],
            capabilities: vec![Capability::Kv],
            webhook_verification: None,
        }
    }

    fn on_webhook(_: WebhookRequest) -> Result<WebhookReply, Error> {
        Err(Error::NotFound("no webhooks".into()))
    }

    fn handle(_: Event) -> Result<Vec<NewEvent>, Error> {
        Ok(vec![])
    }

    fn invoke(action: String, input_json: String) -> Result<String, Error> {
        if action != "remember" {
            return Err(Error::NotFound(format!("unknown action `{action}`")));
        }
        kv::set("value", input_json.as_bytes(), None)?;
        let back = kv::get("value")?.ok_or_else(|| Error::Internal("the value is gone".into()))?;
        String::from_utf8(back).map_err(|e| Error::Internal(e.to_string()))
    }
}

export!(Legacy);
