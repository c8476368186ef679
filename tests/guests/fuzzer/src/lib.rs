//! The guest side of `fuzz/fuzz_targets/host_calls.rs`: every webhook body is a script. Each
//! step makes one host call (http, kv, log, emit, ai, config) with arguments read from the body,
//! through the raw bindings so that no SDK check stands between the fuzzer and the host; the
//! rest of the body becomes the webhook reply. The fuzz target then checks what the host let
//! through. Values the fuzzer cannot reach by chance (the echo server's address, a secret
//! placeholder, sizes and counts past the limits) come from small dictionaries; the counts are
//! just past the harness's small limits, so that each run stays fast.

use arbitrary::{Result, Unstructured};
use plugboard_sdk::wit::plugboard::connector::ai_types::{ChatRequest, Message, ResponseFormat, Role};
use plugboard_sdk::wit::plugboard::connector::types::{Fields, HttpRequest};
use plugboard_sdk::wit::plugboard::connector::{ai, config, emit, http, kv, log};
use plugboard_sdk::{Capability, Connector, Error, Metadata, NewEvent, WebhookReply, WebhookRequest};

/// Where the fuzz target's echo server listens, set as the instance's `echo` config value.
fn echo_base() -> String {
    config::get("echo").ok().flatten().unwrap_or_else(|| "http://127.0.0.1:9".into())
}

/// What the host reads from the guest's responses of the last http call, so that later steps
/// can hand it on (the path a secret read back would take).
#[derive(Default)]
struct Carried {
    last_response: Vec<u8>,
}

fn text(u: &mut Unstructured, dictionary: &[&str]) -> Result<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 => u.choose(dictionary)?.to_string(),
        1 => {
            // A long run of one character: sizes around the host's limits.
            let len = *u.choose(&[255usize, 256, 4096, 8193, 65_537, 300_000])?;
            let c = u.arbitrary::<char>()?;
            std::iter::repeat_n(c, len).collect()
        }
        _ => u.arbitrary::<String>()?,
    })
}

fn bytes(u: &mut Unstructured, carried: &Carried) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => carried.last_response.clone(),
        1 => vec![u.arbitrary::<u8>()?; *u.choose(&[0usize, 1, 65_536, 300_000])?],
        _ => u.arbitrary::<Vec<u8>>()?,
    })
}

const HEADER_NAMES: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "x-api-key",
    "set-cookie",
    "location",
    "upgrade",
    "caused_by",
    "plugboard.root",
    "plugboard.build",
    "x\r\ninjected",
    "",
];

const HEADER_VALUES: &[&str] = &[
    "Bearer {{secret:token}}",
    "{{secret:token}}",
    "{{secret:other}}",
    "{{oauth:nobody}}",
    "{{basic:token}}",
    "chunked",
    "close",
    "0",
    "99999999999999999999",
    "\x1b[8m",
    "a\r\nb: c",
];

fn fields(u: &mut Unstructured, names: &[&str], values: &[&str]) -> Result<Fields> {
    let n = *u.choose(&[0usize, 1, 2, 3, 8, 17, 65, 300])?;
    let mut out: Fields = Vec::new();
    for _ in 0..n {
        if u.is_empty() && !out.is_empty() {
            // Past the end of the input, repeat the first field: a large count costs the
            // fuzzer no bytes.
            out.push(out[0].clone());
            continue;
        }
        out.push((text(u, names)?, text(u, values)?));
    }
    Ok(out)
}

fn url(u: &mut Unstructured) -> Result<String> {
    let echo = echo_base();
    Ok(match u.int_in_range(0..=4)? {
        0 | 1 => format!("{echo}/{}", u.arbitrary::<&str>()?),
        2 => u
            .choose(&[
                "http://127.0.0.1:9/",
                "http://[::ffff:127.0.0.1]:9/",
                "http://[::127.0.0.1]/",
                "http://2130706433/",
                "http://0x7f.1/",
                "http://169.254.169.254/latest/meta-data/",
                "http://localhost/",
                "file:///etc/passwd",
                "https://api.openai.com/v1/chat/completions",
            ])?
            .to_string(),
        _ => u.arbitrary::<String>()?,
    })
}

fn new_event(u: &mut Unstructured, carried: &Carried) -> Result<NewEvent> {
    Ok(NewEvent {
        kind: text(u, &["fuzz/out", "", "a b", "job/completed", "\x1b]0;x\x07"])?,
        occurred_at_ms: u.arbitrary()?,
        content_type: text(u, &["application/json", "text/plain", ""])?,
        payload: bytes(u, carried)?,
        attributes: fields(u, &["caused_by", "plugboard.root", "plugboard.scheduled_for", "note"], &["x"])?,
    })
}

/// Sends the instance's secret to the echo server, where it is bound, and keeps what comes
/// back: what a plugin after the secret would try first. The host must have redacted it.
fn read_back_secret(u: &mut Unstructured, carried: &mut Carried) -> Result<()> {
    let request = HttpRequest {
        method: "GET".into(),
        url: format!("{}/read-back", echo_base()),
        headers: vec![
            ("authorization".into(), "Bearer {{secret:token}}".into()),
            ("x-api-key".into(), "{{secret:token}}".into()),
        ],
        body: vec![],
        retry: u.arbitrary()?,
    };
    if let Ok(response) = http::send(&request) {
        carried.last_response = response.body;
        for (name, value) in response.headers {
            carried.last_response.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
    }
    Ok(())
}

fn step(u: &mut Unstructured, carried: &mut Carried) -> Result<()> {
    match u.int_in_range(0..=10)? {
        10 => read_back_secret(u, carried)?,
        0 | 1 => {
            let request = HttpRequest {
                method: text(u, &["GET", "POST", "PUT", "DELETE", "CONNECT", "TRACE", "G ET", ""])?,
                url: url(u)?,
                headers: fields(u, HEADER_NAMES, HEADER_VALUES)?,
                body: bytes(u, carried)?,
                retry: u.arbitrary()?,
            };
            if let Ok(response) = http::send(&request) {
                let mut all = response.body;
                for (name, value) in response.headers {
                    all.extend_from_slice(name.as_bytes());
                    all.extend_from_slice(value.as_bytes());
                }
                carried.last_response = all;
            }
        }
        2 => {
            let key = text(u, &["k", "", "a/b", "\0"])?;
            let _ = match u.int_in_range(0..=3)? {
                0 => kv::get(&key).map(|v| v.map(|v| carried.last_response = v)).map(drop),
                1 => kv::set(&key, &bytes(u, carried)?, u.arbitrary()?),
                2 => kv::delete(&key).map(drop),
                _ => kv::increment(&key, u.arbitrary()?).map(drop),
            };
        }
        3 | 4 => {
            let level = *u.choose(&[
                log::Level::Trace,
                log::Level::Debug,
                log::Level::Info,
                log::Level::Warn,
                log::Level::Error,
            ])?;
            let message = text(u, &["hello", "\x1b[2J", "line\nforged line"])?;
            // Many writes per step: the host's per-invocation log budget is what is tested.
            let repeat = *u.choose(&[1usize, 2, 60])?;
            let fields = fields(u, &["event", "level", "target", "timestamp", "msg"], &["x", "\x1b[8m"])?;
            for _ in 0..repeat {
                let _ = log::write(level, &message, &fields);
            }
        }
        5 | 6 => {
            let event = new_event(u, carried)?;
            let repeat = *u.choose(&[1usize, 2, 25])?;
            for _ in 0..repeat {
                let _ = emit::publish(&event);
            }
        }
        7 => {
            let request = ChatRequest {
                model: u.arbitrary()?,
                messages: (0..*u.choose(&[0usize, 1, 2, 40])?)
                    .map(|_| {
                        Ok(Message {
                            role: *u.choose(&[Role::System, Role::User, Role::Assistant])?,
                            content: text(u, &["hi", "{{secret:token}}"])?,
                        })
                    })
                    .collect::<Result<_>>()?,
                temperature: u.arbitrary()?,
                max_tokens: u.arbitrary()?,
                response_format: if u.arbitrary()? {
                    ResponseFormat::Text
                } else {
                    ResponseFormat::JsonSchema(u.arbitrary()?)
                },
                stop: u.arbitrary()?,
            };
            if let Ok(answer) = ai::complete(&request) {
                carried.last_response = answer.content.into_bytes();
            }
        }
        _ => {
            if u.arbitrary()? {
                let _ = config::get(&u.arbitrary::<String>()?);
            } else {
                let _ = config::get_all();
            }
        }
    }
    Ok(())
}

fn reply(u: &mut Unstructured, carried: &Carried) -> Result<WebhookReply> {
    let status = match u.int_in_range(0..=2)? {
        0 => 200,
        1 => *u.choose(&[100u16, 101, 199, 204, 304, 599, 600, 0, 65535])?,
        _ => u.arbitrary()?,
    };
    let events = (0..*u.choose(&[0usize, 1, 3])?).map(|_| new_event(u, carried)).collect::<Result<_>>()?;
    Ok(WebhookReply {
        status,
        headers: fields(u, HEADER_NAMES, HEADER_VALUES)?,
        body: bytes(u, carried)?,
        events,
    })
}

struct Fuzzer;

impl Connector for Fuzzer {
    fn metadata() -> Metadata {
        Metadata::new("fuzzer", "0.1.0", "Turns its webhook body into arbitrary host calls")
            .requests(Capability::Http)
            .requests(Capability::Kv)
            .requests(Capability::Log)
            .requests(Capability::Emit)
            .requests(Capability::Ai)
            .requests(Capability::Config)
    }

    fn on_webhook(request: WebhookRequest) -> std::result::Result<WebhookReply, Error> {
        let mut u = Unstructured::new(&request.body);
        let mut carried = Carried::default();
        let steps = u.int_in_range(0..=8u8).unwrap_or(0);
        for _ in 0..steps {
            if step(&mut u, &mut carried).is_err() {
                break;
            }
        }
        reply(&mut u, &carried).map_err(|e| Error::InvalidInput(e.to_string()))
    }
}

plugboard_sdk::export_connector!(Fuzzer);
