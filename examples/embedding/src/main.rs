//! Embedding plugboard's runtime in another program, with nothing but `plugboard-runtime`: no
//! server, no database.
//!
//! 1. Loads a connector with a few capabilities granted and tight limits, feeds it one event,
//!    calls one of its actions, and sees an ungranted request refused.
//! 2. Extends the host: adds an import of its own (`acme:crm/lookup`) to the linker and an
//!    outbound interceptor that answers the plugin's requests to its CRM itself, then runs a
//!    plugin that uses both.
//!
//! `cargo run -p plugboard-embedding -- ECHO.wasm CRM_LOOKUP.wasm` (the `echo` plugin and
//! `examples/embedding/plugin`, built for wasm32-wasip2; `cargo test` builds both).

use std::sync::Arc;
use std::time::Duration;

use plugboard_runtime::egress::intercept::{Deciding, Interception, Outbound, OutboundInterceptor};
use plugboard_runtime::types::HttpResponse;
use plugboard_runtime::wasmtime::StoreContextMut;
use plugboard_runtime::{Capability, Event, Grants, Host, InstanceState, Limits, PluginSpec};

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let (Some(echo), Some(crm_lookup)) = (args.next(), args.next()) else {
        return Err("usage: plugboard-embedding ECHO.wasm CRM_LOOKUP.wasm".into());
    };
    run_a_plugin(&echo).await?;
    extend_the_host(&crm_lookup).await
}

async fn run_a_plugin(wasm: &str) -> Result<(), Failure> {
    // One host per process: it owns the engine, the compiled components and the instances.
    let host = Host::builder().max_memory_mib(64).build()?;
    let info = host
        .load(
            PluginSpec::new("echo", wasm)
                .with_grants(
                    Grants::none()
                        .with(Capability::Log)
                        .with(Capability::Kv)
                        .with(Capability::Emit)
                        .with(Capability::Config),
                )
                .with_limits(Limits::default().with_memory_mib(16).with_timeout(Duration::from_secs(2)))
                .with_config("greeting", "hello from the embedder"),
        )
        .await?;
    println!("loaded {} {} ({})", info.name, info.version, info.sha256);

    // Each invocation runs in a fresh instance: what the plugin logged and emitted comes back
    // with its answer, for the embedder to keep or drop.
    let event = Event::json("demo/ping", "embedder", &serde_json::json!({ "n": 1 }))?;
    let done = host.handle("echo", event).await?;
    for event in done.output.iter().chain(&done.emitted) {
        println!("event {} {}", event.kind, String::from_utf8_lossy(&event.payload));
    }
    for line in &done.logs {
        println!("log {} {}", line.level, line.message);
    }

    let answer = host.invoke("echo", "config", &serde_json::json!({})).await?;
    println!("config {}", answer.output);

    // Not granted, so refused with the contract's typed error, not a crash.
    match host.invoke("echo", "fetch", &serde_json::json!({ "url": "https://example.com" })).await {
        Ok(_) => Err("an ungranted request went out".into()),
        Err(refused) => {
            println!("refused {refused}");
            Ok(())
        }
    }
}

/// The embedder's CRM, answering the plugin's requests to it without a network.
struct CrmGateway;

impl OutboundInterceptor for CrmGateway {
    fn intercept<'a>(&'a self, outbound: Outbound<'a>) -> Deciding<'a> {
        Box::pin(async move {
            if !outbound.request.url.starts_with("https://crm.example.com/") {
                return Interception::Continue;
            }
            println!(
                "intercepted {} {} for {}",
                outbound.request.method, outbound.request.url, outbound.instance
            );
            Interception::Respond(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"[{"id": 1001}, {"id": 1002}]"#.to_vec(),
            })
        })
    }
}

async fn extend_the_host(wasm: &str) -> Result<(), Failure> {
    let spec = || {
        PluginSpec::new("crm", wasm)
            .with_grants(Grants::none().allow_http("https://crm.example.com"))
            .with_limits(Limits::default().with_memory_mib(16).with_timeout(Duration::from_secs(2)))
    };

    // A host without the import refuses the plugin when it loads, not when it runs.
    match Host::builder().build()?.load(spec()).await {
        Ok(_) => return Err("a plugin with an unknown import loaded".into()),
        Err(refused) => println!("without the import: {refused}"),
    }

    let host = Host::builder()
        .outbound_interceptor(Arc::new(CrmGateway))
        .link_instance("acme:crm/lookup", |lookup| {
            lookup.func_wrap(
                "customer-tier",
                |store: StoreContextMut<'_, InstanceState>, (email,): (String,)| {
                    // No grant covers the embedder's imports: it decides who may call them, and
                    // answers nothing while the component's metadata is read at load.
                    let state = store.data();
                    let tier = match (state.instance(), state.loading(), email.ends_with("@bigco.example")) {
                        ("crm", false, true) => "gold",
                        ("crm", false, false) => "standard",
                        _ => "unknown",
                    };
                    Ok((tier.to_owned(),))
                },
            )
        })
        .build()?;
    host.load(spec()).await?;
    let order = Event::json("order/created", "shop", &serde_json::json!({ "email": "ana@bigco.example" }))?;
    let done = host.handle("crm", order).await?;
    for event in &done.output {
        println!("event {} {}", event.kind, String::from_utf8_lossy(&event.payload));
    }
    for call in host.calls().query(&Default::default()) {
        println!("call {} {} {}{}", call.outcome, call.method, call.destination, call.path);
    }
    Ok(())
}
