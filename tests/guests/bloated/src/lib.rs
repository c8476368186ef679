//! Describes itself with 100,000 actions (about 5 MiB of metadata): the host must refuse to load
//! it rather than keep and serve all of it. Written against raw bindings.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:connector/connector",
});

use exports::plugboard::connector::plugin::Guest;
use plugboard::connector::types::{
    Action, ConnectorMetadata, Error, Event, NewEvent, WebhookReply, WebhookRequest,
};

struct Bloated;

impl Guest for Bloated {
    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            name: "bloated".into(),
            version: "0.1.0".into(),
            description: "Too much metadata".into(),
            produces: vec![],
            actions: (0..100_000)
                .map(|i| Action {
                    name: format!("action-{i}"),
                    description: "x".repeat(32),
                    input_schema: "{}".into(),
                })
                .collect(),
            capabilities: vec![],
            webhook_verification: None,
        }
    }

    fn on_webhook(_request: WebhookRequest) -> Result<WebhookReply, Error> {
        Err(Error::NotFound("no webhooks".into()))
    }

    fn handle(_event: Event) -> Result<Vec<NewEvent>, Error> {
        Ok(vec![])
    }

    fn invoke(_action: String, _input_json: String) -> Result<String, Error> {
        Ok("{}".into())
    }
}

export!(Bloated);
