//! Answers with data that breaks the contract; the host must refuse each as invalid output and
//! lose nothing else. Written against raw bindings, as a plugin without the SDK would be.
//!
//! - `invoke("bad-utf8")`: a string that is not UTF-8 (the canonical ABI forbids it).
//! - `invoke("not-json")`: action output that is not JSON.
//! - `handle` with kind `bad-kind`: an event whose kind has spaces; `too-big`: a payload over the
//!   limit; `too-many`: more events than allowed.
//! - `on-webhook`: an HTTP status of 1000.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:connector/connector",
});

use exports::plugboard::connector::plugin::Guest;
use plugboard::connector::types::{ConnectorMetadata, Error, Event, NewEvent, WebhookReply, WebhookRequest};

struct Liar;

fn one(kind: &str, payload: Vec<u8>) -> NewEvent {
    NewEvent {
        kind: kind.into(),
        occurred_at_ms: None,
        content_type: "application/octet-stream".into(),
        payload,
        attributes: vec![],
    }
}

/// A `String` holding bytes that are not UTF-8. It is only lowered to the host (which copies the
/// bytes without reading them as text on this side), never inspected by Rust code here.
#[allow(unsafe_code)]
fn invalid_utf8() -> String {
    // SAFETY: see above.
    unsafe { String::from_utf8_unchecked(vec![b'{', 0xff, 0xfe, b'}']) }
}

impl Guest for Liar {
    fn metadata() -> ConnectorMetadata {
        ConnectorMetadata {
            name: "liar".into(),
            version: "0.1.0".into(),
            description: "Breaks the contract".into(),
            produces: vec![],
            actions: vec![],
            capabilities: vec![],
            webhook_verification: None,
        }
    }

    fn on_webhook(_request: WebhookRequest) -> Result<WebhookReply, Error> {
        Ok(WebhookReply { status: 1000, headers: vec![], body: vec![], events: vec![] })
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        Ok(match event.kind.as_str() {
            "bad-kind" => vec![one("not a kind", vec![])],
            "too-big" => vec![one("big/blob", vec![0; 2 << 20])],
            "too-many" => (0..5000).map(|_| one("many/things", vec![])).collect(),
            _ => vec![],
        })
    }

    fn invoke(action: String, _input_json: String) -> Result<String, Error> {
        match action.as_str() {
            "bad-utf8" => Ok(invalid_utf8()),
            "not-json" => Ok("this is not json".into()),
            _ => Ok("{}".into()),
        }
    }
}

export!(Liar);
