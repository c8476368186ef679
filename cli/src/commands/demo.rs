//! `plugboard demo`: the first thing a new user runs. Loads a connector with every capability,
//! sends it a sample event, and shows each step; then shows what the sandbox refuses.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use plugboard::{Capability, Event, Grants, Host, Limits, PluginSpec};
use serde_json::json;

use crate::commands::render::{permission_prompt, print_events, print_logs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The connector component (the `echo` plugin).
    connector: PathBuf,
    /// An AI provider component for the `ai` capability.
    #[arg(long)]
    ai_provider: Option<PathBuf>,
}

pub async fn run(host: &Host, args: DemoArgs) -> anyhow::Result<()> {
    say!("== 1. inspect: what the plugin asks for, before installing it");
    let started = Instant::now();
    let info = host.inspect(&args.connector).await?;
    say_raw!("{}", permission_prompt(&info));
    say!("  (compiled and described in {:?})", started.elapsed());

    let mut grants = Grants::all().with(Capability::Log);
    if let Some(provider) = &args.ai_provider {
        let p = host
            .load(PluginSpec::new("canned-ai", provider).with_grants(Grants::none().with(Capability::Log)))
            .await?;
        say!(
            "  AI provider `{}`: {} {} (default model {})",
            p.id,
            p.name,
            p.version,
            p.default_model.unwrap_or_default()
        );
        grants = grants.with_ai_provider(&p.id);
    }

    say!("\n== 2. load it with every capability, 16 MiB of memory and a 2 s deadline");
    let spec = PluginSpec::new("echo", &args.connector)
        .with_grants(grants)
        .with_limits(Limits::default().with_memory_mib(16).with_timeout(std::time::Duration::from_secs(2)))
        .with_config("greeting", "hello from the demo");
    let info = host.load(spec).await?;
    let effective: Vec<&str> = info.effective.iter().map(|c| c.name()).collect();
    say!("  loaded `{}`; effective capabilities: {}", info.id, effective.join(", "));

    say!("\n== 3. send it a sample event");
    let event =
        Event::json("orders/create", "demo", &json!({"order": 1001, "total": "49.90", "currency": "EUR"}))?;
    say!("  sent      {} {} {}", event.kind, event.id, String::from_utf8_lossy(&event.payload));
    let done = host.handle("echo", event.clone()).await?;
    print_logs(&done.logs)?;
    print_events("emitted", &done.emitted)?;
    print_events("returned", &done.output)?;
    say!("  handled in {:?} on a fresh instance", done.elapsed);
    let again = host.handle("echo", event).await?;
    let count = again
        .output
        .first()
        .and_then(|e| e.attributes.iter().find(|(k, _)| k == "count"))
        .map(|(_, v)| v.clone());
    say!(
        "  sent again: kv counter is now {} (kv outlives instances; memory does not)",
        count.unwrap_or_default()
    );

    if args.ai_provider.is_some() {
        say!("\n== 4. ask the AI provider through the `ai` capability");
        let done = host.invoke("echo", "ask", &json!({"prompt": "Is order 1001 risky?"})).await?;
        say!("  answer    {}", done.output);
    }

    say!("\n== 5. the same plugin with only `log` granted: every other capability is denied");
    let spec =
        PluginSpec::new("echo-locked", &args.connector).with_grants(Grants::none().with(Capability::Log));
    host.load(spec).await?;
    let event = Event::json("orders/create", "demo", &json!({"order": 1002}))?;
    match host.handle("echo-locked", event).await {
        Ok(done) => say!("  unexpectedly succeeded: {:?}", done.output),
        Err(e) => say!("  refused: {e}"),
    }
    match host
        .invoke("echo-locked", "fetch", &json!({"url": "http://169.254.169.254/latest/meta-data"}))
        .await
    {
        Ok(done) => say!("  unexpectedly fetched: {}", done.output),
        Err(e) => say!("  refused: {e}"),
    }
    Ok(())
}
