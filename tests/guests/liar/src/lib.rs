//! Answers with data that breaks the contract; the host must refuse each as invalid output and
//! lose nothing else. Written against raw bindings, as a plugin without the SDK would be.
//!
//! - `invoke("bad-utf8")`: a string that is not UTF-8 (the canonical ABI forbids it).
//! - `invoke("not-json")`: action output that is not JSON.
//! - `handle` with kind `bad-kind`: an event whose kind has spaces; `too-big`: a payload over the
//!   limit; `too-many`: more events than allowed.
//! - `handle` with kind `big-attributes`: a 2-byte payload with a 512 KiB attribute;
//!   `forged-lineage`: an event claiming to be caused by another (`caused_by`); `hoard`: emits
//!   900 KiB events until the host says no, then returns that error; `amplify`: one emit whose
//!   64 attributes all point at the same 960 KiB string, so lifting it would copy 60 MiB;
//!   `long-error`: an error whose message is 1 MiB and ends in a terminal escape.
//! - `invoke("huge-output")`: an action output of `input.bytes` bytes; `invoke("chatty")`: 10 log
//!   lines of 32 fields of 8 KiB each, then 20,000 lines of 1 KiB.
//! - `metadata`: terminal escapes, a carriage return and a right-to-left override in its
//!   descriptions and schema.
//! - `on-webhook`, by request path: `/smuggle` sets `content-length: 0` and carries a second,
//!   forged response in its body; `/chunked` sets `transfer-encoding`; `/headers` has 100,000
//!   headers; `/switching` and `/continue` answer 101 and 100; `/injection` puts CR LF in a header
//!   value; `/cookie` sets a cookie on the host's origin; `/fine` is a valid 202 with a repeated
//!   header; anything else answers status 1000. Each reply also carries one event, which must
//!   not be stored when the reply is refused.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:connector/connector",
});

use exports::plugboard::connector::plugin::Guest;
use plugboard::connector::types::{
    Action, Capability, ConnectorMetadata, Error, Event, NewEvent, WebhookReply, WebhookRequest,
};
use plugboard::connector::{emit, log};

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
            // An escape sequence that hides what a terminal prints after it (the permission
            // list), and a right-to-left override in an action's description.
            description: "Breaks the contract\u{1b}[8m".into(),
            produces: vec![],
            actions: vec![Action {
                name: "fine".into(),
                description: "Answers {}\r\u{202e}gnihton".into(),
                input_schema: r#"{"title": "\u001b[2J"}"#.into(),
            }],
            capabilities: vec![Capability::Log, Capability::Emit],
            webhook_verification: None,
        }
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let header = |k: &str, v: &str| (k.to_string(), v.to_string());
        let (status, headers, body) = match request.path.as_str() {
            "/smuggle" => (
                200,
                vec![header("content-length", "0")],
                b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nx-forged: yes\r\n\r\nforged".to_vec(),
            ),
            "/chunked" => (200, vec![header("transfer-encoding", "chunked")], b"ok".to_vec()),
            "/headers" => (200, (0..100_000).map(|i| header(&format!("x-h{i}"), "v")).collect(), vec![]),
            "/switching" => (101, vec![header("upgrade", "websocket")], vec![]),
            "/continue" => (100, vec![], vec![]),
            "/injection" => (200, vec![header("x-a", "1\r\nx-injected: 2")], vec![]),
            "/cookie" => (200, vec![header("set-cookie", "admin=stolen; Path=/")], vec![]),
            "/unavailable" => (503, vec![], b"try later".to_vec()),
            "/fine" => (
                202,
                vec![header("content-type", "text/plain"), header("x-tag", "a"), header("x-tag", "b")],
                b"accepted".to_vec(),
            ),
            _ => (1000, vec![], vec![]),
        };
        Ok(WebhookReply { status, headers, body, events: vec![one("liar/replied", vec![])] })
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        Ok(match event.kind.as_str() {
            "bad-kind" => vec![one("not a kind", vec![])],
            "too-big" => vec![one("big/blob", vec![0; 2 << 20])],
            "too-many" => (0..5000).map(|_| one("many/things", vec![])).collect(),
            "big-attributes" => {
                let mut e = one("small/payload", vec![1, 2]);
                e.attributes.push(("note".into(), "x".repeat(512 << 10)));
                vec![e]
            }
            "forged-lineage" => {
                let mut e = one("forged/child", vec![]);
                e.attributes.push(("caused_by".into(), "01900000-0000-7000-8000-000000000000".into()));
                vec![e]
            }
            "hoard" => {
                for _ in 0..100 {
                    emit::publish(&one("hoard/blob", vec![7; 900 << 10]))?;
                }
                vec![]
            }
            "long-error" => {
                return Err(Error::InvalidInput(format!("{}\u{1b}[2J", "e".repeat(1 << 20))));
            }
            "amplify" => {
                amplify()?;
                vec![]
            }
            _ => vec![],
        })
    }

    fn invoke(action: String, input_json: String) -> Result<String, Error> {
        match action.as_str() {
            "bad-utf8" => Ok(invalid_utf8()),
            "not-json" => Ok("this is not json".into()),
            "huge-output" => {
                let bytes = input_json
                    .split(|c: char| !c.is_ascii_digit())
                    .find_map(|n| n.parse::<usize>().ok())
                    .unwrap_or(1 << 20);
                Ok(format!("\"{}\"", "x".repeat(bytes.saturating_sub(2))))
            }
            "chatty" => {
                let value = "v".repeat(8 << 10);
                let fat: Vec<(String, String)> = (0..32).map(|i| (format!("f{i}"), value.clone())).collect();
                for i in 0..10 {
                    log::write(log::Level::Info, &format!("fat line {i}"), &fat)?;
                }
                let filler = "x".repeat(1 << 10);
                for i in 0..20_000 {
                    log::write(log::Level::Info, &format!("line {i} {filler}"), &[])?;
                }
                Ok("{}".into())
            }
            _ => Ok("{}".into()),
        }
    }
}

/// Publishes one event whose 64 attribute values are the same 960 KiB of guest memory: 60 MiB
/// once lifted by the host, from under 1 MiB here.
#[allow(unsafe_code)]
fn amplify() -> Result<(), Error> {
    let mut shared = std::mem::ManuallyDrop::new("x".repeat(960 << 10));
    let (ptr, len, cap) = (shared.as_mut_ptr(), shared.len(), shared.capacity());
    let attributes = (0..64)
        // SAFETY: every alias is only read (lowered) and never dropped: the event is forgotten
        // below, and `shared` is never dropped either.
        .map(|i| (format!("a{i}"), unsafe { String::from_raw_parts(ptr, len, cap) }))
        .collect();
    let event = NewEvent {
        kind: "amplified/event".into(),
        occurred_at_ms: None,
        content_type: "text/plain".into(),
        payload: vec![],
        attributes,
    };
    let result = emit::publish(&event);
    std::mem::forget(event);
    result.map(|_| ())
}

export!(Liar);
