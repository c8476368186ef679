//! Embedding plugboard's runtime in another program, with nothing but `plugboard-runtime`: no
//! server, no database. Loads a connector component with a few capabilities granted and tight
//! limits, feeds it one event, and calls one of its actions.
//!
//! `cargo run -p plugboard-embedding -- target/guests/echo.wasm` (any connector component whose
//! metadata asks only for what is granted here).

use std::time::Duration;

use plugboard_runtime::{Capability, Event, Grants, Host, Limits, PluginSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let wasm = std::env::args().nth(1).ok_or("usage: plugboard-embedding PLUGIN.wasm")?;

    // One host per process: it owns the engine, the compiled components and the instances.
    let host = Host::builder().max_memory_mib(64).build()?;
    let info = host
        .load(
            PluginSpec::new("echo", &wasm)
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
        Ok(_) => return Err("an ungranted request went out".into()),
        Err(refused) => println!("refused {refused}"),
    }
    Ok(())
}
