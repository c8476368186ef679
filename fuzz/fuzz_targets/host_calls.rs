//! A hostile plugin's host calls: the `fuzzer` guest (tests/guests/fuzzer) turns each input into
//! a script of http, kv, log, emit, ai and config calls with arbitrary arguments, then a webhook
//! reply, through the raw bindings. The host must answer every call with a value or an error
//! (a panic anywhere in the host is a crash here), keep what the plugin makes it hold within the
//! instance's limits, and never hand the plugin a secret: the instance may send `{{secret:token}}`
//! to an echo server that sends every header back, so the secret's value reaches the plugin
//! unless the host redacts it.
//!
//! Needs the guests built for wasm first (`cargo test --no-run` in the workspace, which
//! `./dev fuzz` does); `PLUGBOARD_FUZZ_GUESTS` points elsewhere.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use plugboard::egress::secrets::Secret;
use plugboard::types::WebhookRequest;
use plugboard::{Capability, Grants, Host, InvokeError, Limits, PluginSpec};

const SECRET: &str = "fz-9c1e4b7a3d0f6e28";

struct Harness {
    runtime: tokio::runtime::Runtime,
    host: Host,
    limits: Limits,
}

/// Answers every request with its own headers and body, as a misbehaving API may.
async fn echo(request: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 8 << 20).await.unwrap_or_default();
    let mut text = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    let mut response =
        axum::response::Response::new(axum::body::Body::from([text.into_bytes(), body.to_vec()].concat()));
    for (name, value) in &parts.headers {
        if let Ok(name) = http::HeaderName::from_bytes(format!("x-echo-{name}").as_bytes()) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let guests = std::env::var_os("PLUGBOARD_FUZZ_GUESTS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-guests/wasm32-wasip2/guest")
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let echo_base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, axum::Router::new().fallback(echo)).await });
    let host = Host::builder()
        .compile_cache_dir(std::env::temp_dir().join("plugboard-fuzz-compile-cache"))
        .build()
        .unwrap();
    host.set_secret("token", Secret::new(SECRET, &[&echo_base]).unwrap());
    // Small limits, so that the guest's counts go past them in few steps and each run stays
    // fast; the same as the `fuzzer` test's.
    let limits = Limits {
        max_events: 20,
        max_event_bytes: 256 << 10,
        max_output_bytes: 2 << 20,
        max_log_lines: 50,
        max_log_bytes: 16 << 10,
        max_http_requests: 8,
        http_max_attempts: 2,
        ..Limits::default().with_timeout(Duration::from_secs(5))
    };
    runtime.block_on(async {
        host.load(PluginSpec::new("ai", guests.join("canned_ai.wasm"))).await.unwrap();
        let mut grants =
            Grants::all().allow_http(&echo_base).allow_internal("127.0.0.1").with_secret("token");
        grants.ai_provider = Some("ai".into());
        assert!(grants.capabilities.contains(&Capability::Kv));
        let spec = PluginSpec::new("fuzz", guests.join("fuzzer.wasm"))
            .with_grants(grants)
            .with_limits(limits.clone())
            .with_config("echo", &echo_base);
        host.load(spec).await.unwrap_or_else(|e| panic!("load {}: {e}", guests.display()))
    });
    Harness { runtime, host, limits }
});

fn assert_no_secret(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret reached the plugin and left through its {what}"
    );
}

fuzz_target!(|script: &[u8]| {
    // The fuzzer may learn the secret's bytes from the redaction's comparisons and write it
    // itself. Such a script is not run at all: it could leave the secret in the instance's kv
    // namespace, where a later run would find it and look like a leak.
    if script.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) {
        return;
    }
    let h = &*HARNESS;
    let request = WebhookRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![],
        body: script.to_vec(),
    };
    let done = match h.runtime.block_on(h.host.on_webhook("fuzz", request)) {
        Ok(done) => done,
        Err(e @ (InvokeError::Internal(_) | InvokeError::UnknownInstance(_))) => {
            panic!("the host failed: {e}")
        }
        // The plugin's own failures (errors, traps, limits, invalid output) are answers.
        Err(_) => return,
    };
    let reply = &done.output;
    assert!((200..=599).contains(&reply.status), "status {}", reply.status);
    assert_no_secret("reply body", &reply.body);
    for (name, value) in &reply.headers {
        assert_no_secret("reply headers", format!("{name}{value}").as_bytes());
    }
    for event in reply.events.iter().chain(&done.emitted) {
        assert_no_secret("events", &event.payload);
        for (k, v) in &event.attributes {
            assert_no_secret("event attributes", format!("{k}{v}").as_bytes());
        }
        assert!(event.payload.len() <= h.limits.max_event_bytes as usize);
    }
    for line in &done.logs {
        assert_no_secret("logs", line.message.as_bytes());
        for (k, v) in &line.fields {
            assert_no_secret("log fields", format!("{k}{v}").as_bytes());
        }
    }
    assert!(done.emitted.len() + reply.events.len() <= h.limits.max_events as usize);
    assert!(done.logs.len() <= h.limits.max_log_lines as usize);
    assert!(done.output_bytes <= h.limits.max_output_bytes as usize, "{} bytes held", done.output_bytes);
});
