//! One test per guest component (the build fails if a guest has none), each driving it through
//! the real host: the first plugin, the hostile guests, and the test AI provider.

mod common;
mod connectors;

use std::time::Duration;

use plugboard::types::Error as WitError;
use plugboard::{Capability, Event, Grants, InvokeError, Limits, PluginSpec};
use plugboard_tests::*;
use serde_json::json;

use common::{host, load};
use connectors::{anthropic, openai, order_agent, order_risk, review_digest, shopify, slack, support_triage};

macro_rules! assert_guest_tested {
    ($name:ident) => {
        const _: fn() = $name;
    };
}
foreach_guest!(assert_guest_tested);

#[tokio::test]
async fn echo() {
    let host = host();
    let info = host
        .load(
            PluginSpec::new("echo", ECHO)
                .with_grants(Grants::all())
                .with_config("greeting", "hej")
                .with_config("team", "ops"),
        )
        .await
        .unwrap();
    assert_eq!(info.name, "echo");
    assert_eq!(
        info.effective,
        Capability::ALL
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    // handle: returns a reply, emits an event, logs, counts in kv, reads config.
    let event = Event::json("orders/create", "shop", &json!({"order": 7})).unwrap();
    let done = host.handle("echo", event.clone()).await.unwrap();
    assert_eq!(done.output.len(), 1);
    let reply = &done.output[0];
    assert_eq!(reply.kind, "echo/replied");
    assert_eq!(reply.source, "echo", "the host, not the plugin, names the source");
    assert_ne!(reply.id, event.id);
    assert_eq!(reply.payload, event.payload);
    assert!(reply.attributes.contains(&("greeting".into(), "hej".into())));
    assert!(reply.attributes.contains(&("count".into(), "1".into())));
    assert_eq!(done.emitted.len(), 1);
    assert_eq!(done.emitted[0].kind, "echo/seen");
    assert_eq!(done.logs.len(), 1);
    assert_eq!(done.logs[0].level, "info");
    assert!(done.logs[0].fields.contains(&("event".into(), event.id.clone())));

    let again = host.handle("echo", event).await.unwrap();
    assert!(
        again.output[0].attributes.contains(&("count".into(), "2".into())),
        "kv persists across instances"
    );

    // on-webhook: the body becomes an event; the reply is the plugin's.
    let request = plugboard::types::WebhookRequest {
        method: "POST".into(),
        path: "/orders".into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"id":1}"#.to_vec(),
    };
    let hook = host.on_webhook("echo", request).await.unwrap();
    assert_eq!(hook.output.status, 200);
    assert_eq!(hook.output.body, br#"{"received":8}"#);
    assert_eq!(hook.output.events[0].kind, "echo/received");
    assert_eq!(hook.output.events[0].content_type, "application/json");

    // invoke: kv round trip and config.
    let kv = host.invoke("echo", "kv-roundtrip", &json!({"a": [1, 2]})).await.unwrap();
    assert_eq!(kv.output, json!({"read": {"a": [1, 2]}, "deleted": true}));
    let config = host.invoke("echo", "config", &json!({})).await.unwrap();
    assert_eq!(config.output, json!({"greeting": "hej", "team": "ops"}));
    let unknown = host.invoke("echo", "nope", &json!({})).await.unwrap_err();
    assert!(matches!(unknown, InvokeError::Plugin(WitError::NotFound(_))), "{unknown}");

    // Every invocation is a fresh instance: memory does not carry over...
    for _ in 0..3 {
        assert_eq!(host.invoke("echo", "calls", &json!({})).await.unwrap().output, json!(1));
    }
    // ...unless an embedder asks for a session.
    let mut session = host.session("echo").await.unwrap();
    for n in 1..=3 {
        assert_eq!(session.invoke("calls", "{}").await.unwrap(), n.to_string());
    }
}

#[tokio::test]
async fn echo_http_goes_only_where_granted() {
    let addr = common::http_server().await;
    let host = host();
    let origin = format!("http://127.0.0.1:{}", addr.port());
    load(
        &host,
        "echo",
        ECHO,
        Grants::none().allow_http(&origin).allow_internal("127.0.0.1"),
        Limits::default(),
    )
    .await;

    let ok = host.invoke("echo", "fetch", &json!({"url": format!("{origin}/hello")})).await.unwrap();
    assert_eq!(ok.output, json!({"status": 200, "body": "hi"}));

    // A redirect is followed only where the grant allows: this one leaves the allow-list.
    let err = host.invoke("echo", "fetch", &json!({"url": format!("{origin}/redirect")})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::Denied(m)) if m.contains("redirect") && m.contains("allow-list")),
        "{err}"
    );

    for url in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://localhost:{}/hello", addr.port()),
        format!("http://127.0.0.1:{}/hello", addr.port() + 1),
        format!("https://127.0.0.1:{}/hello", addr.port()),
    ] {
        let err = host.invoke("echo", "fetch", &json!({ "url": url })).await.unwrap_err();
        assert!(
            matches!(&err, InvokeError::Plugin(WitError::Denied(m)) if m.contains("allow-list")),
            "{url}: {err}"
        );
    }

    // A response larger than the limit is refused, not buffered.
    let small = Limits { max_http_response_bytes: 1024, ..Limits::default() };
    load(&host, "echo-small", ECHO, Grants::none().allow_http(&origin).allow_internal("127.0.0.1"), small)
        .await;
    let err = host.invoke("echo-small", "fetch", &json!({"url": format!("{origin}/big")})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::Upstream(u)) if u.message.contains("limit")),
        "{err}"
    );
}

#[tokio::test]
async fn panicker() {
    let host = host();
    load(&host, "panicker", PANICKER, Grants::none(), Limits::default()).await;
    load(&host, "echo", ECHO, Grants::none(), Limits::default()).await;
    let event = Event::json("orders/create", "t", &json!({})).unwrap();
    let err = host.handle("panicker", event.clone()).await.unwrap_err();
    match &err {
        InvokeError::Trap { message, backtrace } => {
            assert!(message.contains("boom while handling orders/create"), "{message}");
            assert!(backtrace.contains("panicker"), "backtrace names the guest: {backtrace}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert!(!err.is_retryable());
    // The host serves the next invocation, of this plugin and of others.
    assert!(host.handle("panicker", event).await.is_err());
    assert_eq!(host.invoke("echo", "ping", &json!({})).await.unwrap().output, json!({}));
}

// Two worker threads, as on the 2-core machines this runs on: spinning plugins must not take them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looper() {
    let host = host();
    // The loopers' deadline only has to outlast twenty pings, which on a loaded machine in a
    // debug build can take far longer than the pings themselves need.
    let limits = Limits::default().with_timeout(Duration::from_secs(3)).with_max_concurrency(4);
    load(&host, "looper", LOOPER, Grants::none(), limits).await;
    load(&host, "echo", ECHO, Grants::none(), Limits::default()).await;

    // Four loopers spin, more than there are worker threads, while echo keeps answering.
    let spinning: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.invoke("looper", "spin", &json!({})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut answered = 0;
    for _ in 0..20 {
        assert_eq!(host.invoke("echo", "ping", &json!({})).await.unwrap().output, json!({}));
        answered += 1;
    }
    assert_eq!(answered, 20);
    assert!(spinning.iter().all(|t| !t.is_finished()), "echo answered while the loopers still spun");
    for task in spinning {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, InvokeError::Timeout(d) if d == Duration::from_secs(3)), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looper_with_fuel_and_a_full_house() {
    let host = plugboard::Host::builder().fuel_metering(true).build().unwrap();
    let limits = Limits::default().with_fuel(5_000_000);
    load(&host, "looper", LOOPER, Grants::none(), limits).await;
    let err = host.invoke("looper", "spin", &json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::OutOfFuel(5_000_000)), "{err}");

    // With the only slot taken (here by a session, which holds it), a call waits for a slot
    // within its own deadline, then fails with a timeout rather than queueing forever.
    let host = common::host();
    let limits = Limits::default().with_timeout(Duration::from_millis(200)).with_max_concurrency(1);
    load(&host, "looper", LOOPER, Grants::none(), limits).await;
    let session = host.session("looper").await.unwrap();
    let waited = host.invoke("looper", "ping", &json!({})).await.unwrap_err();
    assert!(matches!(waited, InvokeError::Timeout(_)), "{waited}");
    drop(session);
    assert_eq!(host.invoke("looper", "ping", &json!({})).await.unwrap().output, json!({"n": 0}));
}

#[tokio::test]
async fn hog() {
    let host = host();
    load(&host, "hog", HOG, Grants::none(), Limits::default().with_memory_mib(16)).await;
    let err = host.invoke("hog", "eat", &json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::OutOfMemory { limit_mib: 16 }), "{err}");
    // Memory goes back to the pool: the next hungry call fails the same way, not worse.
    let err = host.invoke("hog", "eat", &json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::OutOfMemory { .. }), "{err}");
    load(&host, "echo", ECHO, Grants::none(), Limits::default()).await;
    assert!(host.invoke("echo", "ping", &json!({})).await.is_ok());
}

#[tokio::test]
async fn recurser() {
    let host = host();
    load(&host, "recurser", RECURSER, Grants::none(), Limits::default()).await;
    let err = host.invoke("recurser", "dive", &json!({})).await.unwrap_err();
    match err {
        InvokeError::StackOverflow { backtrace } => assert!(backtrace.contains("recurser"), "{backtrace}"),
        other => panic!("expected a stack overflow, got {other}"),
    }
    // Overflowing Rust's shadow stack in linear memory is a memory fault inside the sandbox.
    let err = host.invoke("recurser", "dive-with-frames", &json!({})).await.unwrap_err();
    match err {
        InvokeError::Trap { message, backtrace } => {
            assert!(message.contains("out of bounds"), "{message}");
            assert!(backtrace.contains("dive_with_frames"), "{backtrace}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    load(&host, "echo", ECHO, Grants::none(), Limits::default()).await;
    assert!(host.invoke("echo", "ping", &json!({})).await.is_ok());
}

#[tokio::test]
async fn liar() {
    let host = host();
    load(&host, "liar", LIAR, Grants::none(), Limits::default().with_memory_mib(64)).await;
    let invalid = |e: &InvokeError, what: &str| match e {
        InvokeError::InvalidOutput(m) => assert!(m.contains(what), "{what}: {m}"),
        other => panic!("expected invalid output about {what}, got {other}"),
    };
    invalid(&host.invoke("liar", "bad-utf8", &json!({})).await.unwrap_err(), "utf-8");
    invalid(&host.invoke("liar", "not-json", &json!({})).await.unwrap_err(), "not JSON");
    for (kind, what) in
        [("bad-kind", "printable"), ("too-big", "over the limit"), ("too-many", "over the limit")]
    {
        let event = Event::json(kind, "t", &json!({})).unwrap();
        invalid(&host.handle("liar", event).await.unwrap_err(), what);
    }
    let request = plugboard::types::WebhookRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    };
    invalid(&host.on_webhook("liar", request).await.unwrap_err(), "status");
    // A well-formed call still works after all that.
    assert_eq!(host.invoke("liar", "fine", &json!({})).await.unwrap().output, json!({}));
}

fn webhook_to(path: &str) -> plugboard::types::WebhookRequest {
    plugboard::types::WebhookRequest {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    }
}

fn invalid_output(e: &InvokeError, what: &str) {
    match e {
        InvokeError::InvalidOutput(m) => assert!(m.contains(what), "{what}: {m}"),
        other => panic!("expected invalid output about {what}, got {other}"),
    }
}

/// The host owns a webhook reply's status line and framing: a plugin's framing headers, 1xx
/// statuses, header floods and header injection are the plugin's error, and refuse its events.
#[tokio::test]
async fn liar_replies_are_checked_before_they_become_responses() {
    let host = host();
    load(&host, "liar", LIAR, Grants::none(), Limits::default()).await;
    for (path, what) in [
        ("/smuggle", "content-length"),
        ("/chunked", "transfer-encoding"),
        ("/headers", "headers"),
        ("/switching", "final"),
        ("/continue", "final"),
        ("/injection", "control characters"),
        ("/cookie", "whole origin"),
    ] {
        invalid_output(&host.on_webhook("liar", webhook_to(path)).await.unwrap_err(), what);
    }
    let fine = host.on_webhook("liar", webhook_to("/fine")).await.unwrap().output;
    assert_eq!(fine.status, 202);
    assert_eq!(fine.headers.iter().filter(|(k, _)| k == "x-tag").count(), 2);
    assert_eq!(fine.events.len(), 1);
}

/// What one invocation hands the host is bounded as a whole: the event (attributes included),
/// the sum over the invocation, what one call may make the host copy, and action outputs.
#[tokio::test]
async fn liar_cannot_make_the_host_hold_more_than_its_limits() {
    let host = host();
    let limits = Limits { max_event_bytes: 64 << 10, max_output_bytes: 4 << 20, ..Limits::default() };
    load(&host, "liar", LIAR, Grants::none().with(Capability::Emit), limits).await;
    let handle = |kind: &str| host.handle("liar", Event::json(kind, "t", &json!({})).unwrap());
    invalid_output(&handle("big-attributes").await.unwrap_err(), "over the limit of 65536");
    invalid_output(&handle("forged-lineage").await.unwrap_err(), "`caused_by` is the host's");
    match handle("hoard").await.unwrap_err() {
        InvokeError::Plugin(WitError::InvalidInput(m)) => assert!(m.contains("over the limit"), "{m}"),
        other => panic!("expected the emit to be refused, got {other}"),
    }
    invalid_output(&handle("amplify").await.unwrap_err(), "bytes in one call");
    match handle("long-error").await.unwrap_err() {
        InvokeError::Plugin(WitError::InvalidInput(m)) => {
            assert!(m.len() <= 4 << 10 && !m.contains('\u{1b}'), "{} bytes kept", m.len());
        }
        other => panic!("expected the plugin's error, bounded, got {other}"),
    }
    let output = async |bytes: usize| host.invoke("liar", "huge-output", &json!({ "bytes": bytes })).await;
    invalid_output(&output(5 << 20).await.unwrap_err(), "max_output_bytes");
    assert_eq!(output(1 << 20).await.unwrap().output.as_str().map(str::len), Some((1 << 20) - 2));
}

/// Metadata is untrusted input: bounded, and made safe to show before it reaches a terminal.
#[tokio::test]
async fn bloated() {
    let host = host();
    let refused = host.load(PluginSpec::new("bloated", BLOATED)).await.unwrap_err().to_string();
    assert!(refused.contains("100000 actions") && refused.contains("at most 256"), "{refused}");
    assert!(host.plugin("bloated").is_none());

    let info = load(&host, "liar", LIAR, Grants::none(), Limits::default()).await;
    let shown = serde_json::to_string(&info).unwrap();
    for raw in ['\u{1b}', '\r', '\u{202e}'] {
        assert!(!info.description.contains(raw) && !info.actions[0].description.contains(raw), "{shown}");
    }
    assert!(info.description.ends_with("contract\\u{1b}[8m"), "{}", info.description);
    assert_eq!(info.actions[0].description, "Answers {}\\u{d}\\u{202e}gnihton");
    assert_eq!(info.actions[0].input_schema["title"], "\\u{1b}[2J");
}

/// Log lines are bounded where they are written, not only where they are kept.
#[tokio::test]
async fn liar_cannot_flood_the_host_log() {
    let host = host();
    let limits = Limits { max_log_lines: 100, ..Limits::default() };
    load(&host, "liar", LIAR, Grants::none().with(Capability::Log), limits.clone()).await;
    let done = host.invoke("liar", "chatty", &json!({})).await.unwrap();
    let kept: usize = done
        .logs
        .iter()
        .map(|l| l.message.len() + l.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())
        .sum();
    assert!(kept <= limits.max_log_bytes as usize, "{kept} bytes kept");
    assert!(done.logs.iter().all(|l| l.fields.len() <= 16 && l.fields.iter().all(|(_, v)| v.len() <= 1024)));
    assert!(!done.logs.is_empty() && done.logs.len() <= 100);
    assert_eq!(done.logs.len() + done.logs_dropped as usize, 20_010);
    let dropped = host.metrics().render();
    assert!(dropped.contains("plugboard_plugin_log_lines_dropped_total{instance=\"liar\"}"), "{dropped}");
}

#[tokio::test]
async fn snoop() {
    let addr = common::http_server().await;
    let url = format!("http://127.0.0.1:{}/hello", addr.port());
    let host = host();
    load(&host, "canned", CANNED_AI, Grants::none(), Limits::default()).await;
    host.set_default_ai_provider(Some("canned"));
    // Granted nothing; then granted everything but requesting nothing: both must be denied.
    let everything = Grants::all()
        .allow_http(&format!("http://127.0.0.1:{}", addr.port()))
        .allow_internal("127.0.0.1")
        .with_ai_provider("canned");
    for (id, grants) in [("snoop", Grants::none()), ("snoop-granted", everything)] {
        let info = load(&host, id, SNOOP, grants, Limits::default()).await;
        assert!(info.effective.is_empty(), "requested nothing, so nothing is effective");
        let report = host.invoke(id, "probe", &json!({ "url": url })).await.unwrap().output;
        for capability in ["http", "kv", "log", "emit", "ai", "config"] {
            let denied = report[capability]["denied"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} {capability}: {report}"));
            assert!(denied.contains(capability), "{denied}");
        }
        let wasi = &report["wasi"];
        assert_eq!(wasi["env"], 0, "no environment");
        assert!(wasi["read_dir"].as_str().unwrap().starts_with("Err"), "no filesystem: {wasi}");
        assert!(wasi["read_file"].as_str().unwrap().starts_with("Err"), "no filesystem: {wasi}");
    }
}

#[tokio::test]
async fn canned_ai() {
    let host = host();
    let info = load(&host, "canned", CANNED_AI, Grants::none(), Limits::default()).await;
    assert_eq!(info.kind, plugboard::PluginKind::AiProvider);
    assert_eq!(info.default_model.as_deref(), Some("canned-1"));

    let request = plugboard::types::ChatRequest {
        model: None,
        messages: vec![plugboard::types::Message {
            role: plugboard::types::Role::User,
            content: "two words".into(),
        }],
        temperature: Some(0.0),
        max_tokens: None,
        response_format: plugboard::types::ResponseFormat::Text,
        stop: vec![],
    };
    let answer = host.complete("canned", request).await.unwrap().output;
    assert_eq!(answer.content, "canned: two words");
    assert_eq!(answer.usage.prompt_tokens, 2);

    // The `ai` capability routes a connector's call to the provider its grant names.
    load(&host, "echo", ECHO, Grants::none().with_ai_provider("canned"), Limits::default()).await;
    let asked = host.invoke("echo", "ask", &json!({"prompt": "risky?"})).await.unwrap();
    assert_eq!(asked.output, json!({"content": "canned: risky?", "model": "canned-1"}));

    // Without the grant, or with no provider configured, the call is denied.
    load(&host, "echo-no-ai", ECHO, Grants::none(), Limits::default()).await;
    let err = host.invoke("echo-no-ai", "ask", &json!({"prompt": "x"})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Plugin(WitError::Denied(_))), "{err}");
    load(&host, "echo-no-provider", ECHO, Grants::none().with(Capability::Ai), Limits::default()).await;
    let err = host.invoke("echo-no-provider", "ask", &json!({"prompt": "x"})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::Denied(m)) if m.contains("no AI provider")),
        "{err}"
    );

    // A provider is not a connector, and the reverse.
    assert!(matches!(host.invoke("canned", "ping", &json!({})).await, Err(InvokeError::WrongKind { .. })));
}

/// A connector built against the contract before action hints and tool calling (its own
/// frozen copy of the WIT) loads and runs unchanged; with no hints, its action counts as
/// destructive.
#[tokio::test]
async fn legacy() {
    let host = host();
    let info = load(&host, "legacy", LEGACY, Grants::none().with(Capability::Kv), Limits::default()).await;
    assert_eq!(info.actions.len(), 1);
    assert!(info.actions[0].hints.is_none());
    assert!(plugboard::runtime::ActionHints::is_destructive(info.actions[0].hints.as_ref()));
    let done = host.invoke("legacy", "remember", &json!({"value": 42})).await.unwrap();
    assert_eq!(done.output, json!({"value": 42}));
}

/// `ai-tools`: the model calls the actions the caller was granted as tools, each run as its
/// own instance; everything else is refused, and a model that will not stop is stopped.
#[tokio::test]
async fn ai_tools_run_granted_actions_as_tools_within_bounds() {
    let host = host();
    load(&host, "canned", CANNED_AI, Grants::none(), Limits::default()).await;
    // The tools: `target`'s `config` action answers its config (it may read it); `bare` may
    // not, although the agent may: a tool runs with its own instance's grants.
    let target = PluginSpec::new("target", ECHO)
        .with_grants(Grants::none().with(Capability::Config))
        .with_config("shop", "demo");
    host.load(target).await.unwrap();
    host.load(PluginSpec::new("bare", ECHO).with_config("shop", "demo")).await.unwrap();
    let mut grants = Grants::none().with(Capability::Ai).with(Capability::Config).with_ai_provider("canned");
    grants.ai_tools = vec!["target.config".into(), "target.ping".into(), "bare.config".into()];
    load(&host, "agent", ECHO, grants, Limits::default()).await;
    let agent = async |input: serde_json::Value| host.invoke("agent", "agent", &input).await;

    let done =
        agent(json!({"prompt": "what is the shop?", "tools": ["target.config"]})).await.unwrap().output;
    assert_eq!(done["content"], "canned: tools said {\"shop\":\"demo\"}", "{done}");
    assert_eq!(
        done["rounds"],
        json!([{ "name": "target_config", "output": "{\"shop\":\"demo\"}", "is_error": false }])
    );
    assert_eq!(done["tokens"], 4, "two turns of the provider, counted together");
    let done = agent(json!({"prompt": "what is the shop?", "tools": ["bare.config"]})).await.unwrap().output;
    let denied = &done["rounds"][0];
    assert_eq!(denied["is_error"], true, "{done}");
    assert!(
        denied["output"].as_str().unwrap().contains("capability `config` is not granted to instance `bare`")
    );

    // An action not in grants.ai_tools, a pattern, and a tool that is not loaded are refused
    // before the model is asked.
    for (tools, expected) in [
        (json!(["target.kv-roundtrip"]), "not in grants.ai_tools"),
        (json!(["target.*"]), "is not `instance.action`"),
        (json!([]), "name 1 to 32 tools"),
    ] {
        let err = agent(json!({"prompt": "x", "tools": tools})).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{tools}: {err}");
    }
    // The model asks for a tool it was not given: the call fails, the model is told, and answers.
    let done = agent(json!({"prompt": "unknown", "tools": ["target.ping"]})).await.unwrap().output;
    assert_eq!(done["rounds"][0]["is_error"], true, "{done}");
    assert!(done["content"].as_str().unwrap().contains("no tool named `nope`"), "{done}");
    // Arguments over 64 KiB, or not an object, never reach the tool: the model is told why.
    for (prompt, why) in [("big-args", "over 65536 bytes"), ("array-args", "not a JSON object")] {
        let done = agent(json!({"prompt": prompt, "tools": ["target.ping"]})).await.unwrap().output;
        assert_eq!(done["rounds"][0]["is_error"], true, "{done}");
        assert!(done["rounds"][0]["output"].as_str().unwrap().contains(why), "{done}");
    }
    // A model that keeps calling is stopped after the rounds asked for; one that asks for too
    // many calls at once is refused.
    let err = agent(json!({"prompt": "loop", "tools": ["target.ping"], "max_rounds": 2})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::QuotaExceeded(m)) if m.contains("after 2 rounds")),
        "{err}"
    );
    let err = agent(json!({"prompt": "loop", "tools": ["target.ping"], "max_rounds": 9})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Plugin(WitError::InvalidInput(_))), "{err}");
    let err = agent(json!({"prompt": "many", "tools": ["target.ping"]})).await.unwrap_err();
    assert!(err.to_string().contains("17 calls at once"), "{err}");

    // A wildcard covers only what adds or reads (echo's actions declare nothing, so count as
    // destructive); an instance cannot offer itself.
    let mut wild = Grants::none().with_ai_provider("canned");
    wild.ai_tools = vec!["target.*".into(), "agent-wild.ping".into()];
    load(&host, "agent-wild", ECHO, wild, Limits::default()).await;
    let wild = async |tools: serde_json::Value| {
        host.invoke("agent-wild", "agent", &json!({"prompt": "x", "tools": tools}))
            .await
            .unwrap_err()
            .to_string()
    };
    assert!(wild(json!(["target.ping"])).await.contains("a wildcard does not cover it"));
    assert!(wild(json!(["agent-wild.ping"])).await.contains("the calling instance itself"));
    // A plugin with tools of its own runs one turn at a time; the host runs nothing.
    let turn = host.invoke("agent", "turn", &json!({"prompt": "x"})).await.unwrap().output;
    assert_eq!(turn, json!({ "content": "", "calls": ["lookup"] }));

    // Without the ai capability, nothing.
    let mut no_ai = Grants::none().with(Capability::Config);
    no_ai.ai_tools = vec!["target.ping".into()];
    load(&host, "agent-no-ai", ECHO, no_ai, Limits::default()).await;
    let err = host
        .invoke("agent-no-ai", "agent", &json!({"prompt": "x", "tools": ["target.ping"]}))
        .await
        .unwrap_err();
    assert!(matches!(&err, InvokeError::Plugin(WitError::Denied(m)) if m.contains("`ai`")), "{err}");
}

#[tokio::test]
async fn echo_secrets_are_filled_in_only_where_bound() {
    let addr = common::http_server().await;
    let host = host();
    let bound = format!("http://127.0.0.1:{}", addr.port());
    let other = format!("http://localhost:{}", addr.port());
    host.set_secret(
        "api",
        plugboard::egress::secrets::Secret::new("s3cr3t-value", &[bound.as_str()]).unwrap(),
    );
    let grants = Grants::none()
        .allow_http(&bound)
        .allow_http(&other)
        .allow_internal("127.0.0.1")
        .with_secret("api")
        .with(Capability::Log);
    load(&host, "echo", ECHO, grants.clone(), Limits::default()).await;
    let fetch = |url: String| json!({ "url": url, "headers": { "authorization": "Bearer {{secret:api}}" } });

    let ok = host.invoke("echo", "fetch", &fetch(format!("{bound}/auth"))).await.unwrap();
    assert_eq!(ok.output["body"], "authorized", "the host filled the secret in");

    let mut refusals = Vec::new();
    // Granted and allowed, but the secret is not bound to that destination.
    refusals.push(host.invoke("echo", "fetch", &fetch(format!("{other}/auth"))).await.unwrap_err());
    // Not granted the secret.
    load(
        &host,
        "echo-no-secret",
        ECHO,
        Grants { secrets: Default::default(), ..grants.clone() },
        Limits::default(),
    )
    .await;
    refusals.push(host.invoke("echo-no-secret", "fetch", &fetch(format!("{bound}/auth"))).await.unwrap_err());
    // A secret that does not exist.
    let unknown = json!({ "url": format!("{bound}/auth"), "headers": { "x": "{{secret:nope}}" } });
    load(&host, "echo-nope", ECHO, grants.with_secret("nope"), Limits::default()).await;
    refusals.push(host.invoke("echo-nope", "fetch", &unknown).await.unwrap_err());
    for err in refusals {
        assert!(matches!(err, InvokeError::Plugin(WitError::Denied(_))), "{err}");
        assert!(!format!("{err} {err:?}").contains("s3cr3t"), "the value leaked: {err:?}");
    }
}

/// The inputs the `host_calls` fuzz target kept (fuzz/corpus/host_calls), replayed through the
/// real host on every test run: each script of arbitrary host calls ends in a reply or the
/// plugin's own error, never a host failure, and no secret the instance may send to an echoing
/// server comes back out of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzer() {
    const SECRET: &str = "fz-9c1e4b7a3d0f6e28";
    let addr = common::http_server().await;
    let echo = format!("http://127.0.0.1:{}", addr.port());
    let host = host();
    host.set_secret("token", plugboard::egress::secrets::Secret::new(SECRET, &[&echo]).unwrap());
    load(&host, "ai", CANNED_AI, Grants::none(), Limits::default()).await;
    let grants = Grants::all()
        .allow_http(&echo)
        .allow_internal("127.0.0.1")
        .with_secret("token")
        .with_ai_provider("ai");
    // The fuzz target's limits.
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
    let spec = PluginSpec::new("fuzz", FUZZER)
        .with_grants(grants)
        .with_limits(limits)
        .with_config("echo", &format!("{echo}/echo"));
    host.load(spec).await.unwrap();

    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/host_calls");
    let mut scripts: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    scripts.sort();
    assert!(scripts.len() >= 10, "the corpus in {} is missing", corpus.display());
    let (mut replies, mut redacted) = (0, 0);
    for path in scripts {
        let script = std::fs::read(&path).unwrap();
        // As in the fuzz target: a script that carries the secret itself is not run (it could
        // leave it in kv for a later script to reply with).
        if script.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) {
            continue;
        }
        let request = plugboard::types::WebhookRequest {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![],
            body: script.clone(),
        };
        match host.on_webhook("fuzz", request).await {
            Ok(done) => {
                replies += 1;
                let mut out = format!("{:?} {:?} {:?}", done.output.headers, done.logs, done.emitted);
                out.push_str(&String::from_utf8_lossy(&done.output.body));
                for event in done.output.events.iter().chain(&done.emitted) {
                    out.push_str(&String::from_utf8_lossy(&event.payload));
                }
                redacted += usize::from(out.contains(plugboard::egress::secrets::REDACTED));
                assert!(!out.contains(SECRET), "{}: the secret came back", path.display());
            }
            Err(e @ (InvokeError::Internal(_) | InvokeError::UnknownInstance(_))) => {
                panic!("{}: the host failed: {e}", path.display())
            }
            Err(_) => {}
        }
    }
    assert!(replies > 0, "no script of the corpus got as far as a reply");
    // Else the check above would pass without ever seeing the secret come back.
    assert!(redacted > 0, "no script of the corpus had the host redact an echoed secret");
}

/// The embedding example's plugin (`examples/embedding`): served by an embedder's own import and
/// outbound interceptor, within the host's bounds. What the interceptor answers is held to the
/// instance's response limit like a real answer; an embedder's imports cannot replace
/// plugboard's own interfaces; a plugin whose import nobody added does not load.
#[tokio::test]
async fn crm_lookup() {
    use std::sync::Arc;

    use plugboard::egress::intercept::{Deciding, Interception, Outbound, OutboundInterceptor};
    use plugboard::runtime::wasmtime::StoreContextMut;
    use plugboard::{Host, InstanceState};

    /// Answers every request with a body of `self.0` bytes.
    struct Answers(usize);
    impl OutboundInterceptor for Answers {
        fn intercept<'a>(&'a self, _: Outbound<'a>) -> Deciding<'a> {
            Box::pin(async move {
                Interception::Respond(plugboard::types::HttpResponse {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: format!("[{}]", "0,".repeat(self.0 / 2).trim_end_matches(',')).into_bytes(),
                })
            })
        }
    }
    let tier = |lookup: &mut plugboard::runtime::wasmtime::component::LinkerInstance<'_, InstanceState>| {
        lookup.func_wrap("customer-tier", |_: StoreContextMut<'_, InstanceState>, (_,): (String,)| {
            Ok(("silver".to_owned(),))
        })
    };
    let limits = Limits { max_http_response_bytes: 64 << 10, ..Limits::default() };
    let spec = PluginSpec::new("crm", CRM_LOOKUP)
        .with_grants(Grants::none().allow_http("https://crm.example.com"))
        .with_limits(limits);
    let order = || Event::json("order/created", "shop", &json!({ "email": "bo@small.example" })).unwrap();

    let within = Host::builder()
        .outbound_interceptor(Arc::new(Answers(1 << 10)))
        .link_instance("acme:crm/lookup", tier)
        .build()
        .unwrap();
    within.load(spec.clone()).await.unwrap();
    let done = within.handle("crm", order()).await.unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&done.output[0].payload).unwrap();
    assert_eq!(payload["tier"], "silver");
    assert_eq!(payload["past_orders"].as_array().map(Vec::len), Some(512));

    let oversized = Host::builder()
        .outbound_interceptor(Arc::new(Answers(1 << 20)))
        .link_instance("acme:crm/lookup", tier)
        .build()
        .unwrap();
    oversized.load(spec.clone()).await.unwrap();
    let err = oversized.handle("crm", order()).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::Internal(m)) if m.contains("larger than the limit")),
        "{err}"
    );
    let recorded = oversized.calls().query(&Default::default());
    assert_eq!(recorded.first().map(|c| c.outcome.as_str()), Some("failed"), "{recorded:?}");

    // The interceptor comes after the limits a real request meets: a rate limit of one
    // request holds, and an interceptor that never decides fails the request at the deadline.
    let mut limited = spec.clone();
    limited.grants.http.rate_limits.push(plugboard::egress::policy::DestinationLimit {
        destination: "https://crm.example.com".into(),
        per_second: 0.001,
        burst: 1.0,
        max_wait_ms: 0,
        scope: Default::default(),
    });
    let host = Host::builder()
        .outbound_interceptor(Arc::new(Answers(16)))
        .link_instance("acme:crm/lookup", tier)
        .build()
        .unwrap();
    host.load(limited).await.unwrap();
    host.handle("crm", order()).await.unwrap();
    let err = host.handle("crm", order()).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Plugin(WitError::RateLimited(_))), "{err}");

    struct Undecided;
    impl OutboundInterceptor for Undecided {
        fn intercept<'a>(&'a self, _: Outbound<'a>) -> Deciding<'a> {
            Box::pin(std::future::pending())
        }
    }
    let mut short = spec.clone();
    short.limits.timeout_ms = 300;
    let host = Host::builder()
        .outbound_interceptor(Arc::new(Undecided))
        .link_instance("acme:crm/lookup", tier)
        .build()
        .unwrap();
    host.load(short).await.unwrap();
    let err = host.handle("crm", order()).await.unwrap_err();
    assert!(err.to_string().contains("time"), "{err}");

    // Not plugboard's interfaces nor WASI, in any version or spelling.
    for name in ["plugboard:connector/kv@0.1.0", "plugboard:connector/kv@0.1.1", "WASI:http/outgoing-handler"]
    {
        let shadowing = Host::builder()
            .link_instance(name, |kv| {
                kv.func_wrap("get", |_: StoreContextMut<'_, InstanceState>, (_,): (String,)| {
                    Ok((None::<Vec<u8>>,))
                })
            })
            .build();
        assert!(shadowing.is_err(), "an embedder's import was added as {name}");
    }

    let err = Host::builder().build().unwrap().load(spec).await.unwrap_err();
    assert!(err.to_string().contains("acme:crm/lookup"), "{err}");
}

/// The replay tests' guest: the time, a random id and a count, published and answered.
#[tokio::test]
async fn dice() {
    let host = host();
    load(&host, "dice", DICE, Grants::none().with(Capability::Kv).with(Capability::Emit), Limits::default())
        .await;
    let first = host.invoke("dice", "roll", &json!({})).await.unwrap();
    let second = host.invoke("dice", "roll", &json!({})).await.unwrap();
    assert_eq!((first.output["count"].as_i64(), second.output["count"].as_i64()), (Some(1), Some(2)));
    assert_eq!(first.output["id"].as_str().unwrap().len(), 16);
    assert_ne!(first.output["id"], second.output["id"]);
    assert!(first.output["at_ms"].as_u64().unwrap() > 1_700_000_000_000, "the wall clock: {}", first.output);
    assert_eq!(first.emitted[0].kind, "dice/rolled");
    assert_eq!(first.output["tag"], "v1");
    let answered = host.handle("dice", Event::json("table/ready", "x", &json!({})).unwrap()).await.unwrap();
    assert_eq!(answered.output[0].kind, "dice/answered");
    match host.invoke("dice", "fail", &json!({})).await {
        Err(InvokeError::Plugin(WitError::Upstream(failure))) => assert_eq!(failure.status, 503),
        other => panic!("expected an upstream error, got {other:?}"),
    }
}

/// The dice guest's next build: another tag, and a `kv.get` before it publishes.
#[tokio::test]
async fn dice_next() {
    let host = host();
    load(
        &host,
        "dice",
        DICE_NEXT,
        Grants::none().with(Capability::Kv).with(Capability::Emit),
        Limits::default(),
    )
    .await;
    let rolled = host.invoke("dice", "roll", &json!({})).await.unwrap();
    assert_eq!((rolled.output["tag"].as_str(), rolled.output["count"].as_i64()), (Some("v2"), Some(1)));
    // Without kv, its extra read is refused like the count.
    load(&host, "dice", DICE_NEXT, Grants::none().with(Capability::Emit), Limits::default()).await;
    assert!(matches!(
        host.invoke("dice", "roll", &json!({})).await,
        Err(InvokeError::Plugin(WitError::Denied(_)))
    ));
}

/// The reuse tests' guest: a fresh instance per invocation remembers only what it was just told.
#[tokio::test]
async fn keeper() {
    let host = host();
    load(&host, "keeper", KEEPER, Grants::none().with(Capability::Log), Limits::default()).await;
    for value in ["a", "b"] {
        let done = host.invoke("keeper", "remember", &json!({ "value": value })).await.unwrap();
        assert_eq!(done.output["remembered"], json!([value]));
        assert_eq!(done.logs.len(), 1);
    }
    let grown = host.invoke("keeper", "grow", &json!({ "mib": 2 })).await.unwrap();
    assert_eq!(grown.output["held_mib"], 2);
    let crashed = host.invoke("keeper", "crash", &json!({})).await.unwrap_err();
    assert!(matches!(crashed, InvokeError::Trap { .. }), "{crashed}");
}
