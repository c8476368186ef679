//! `plugboard-demo`: runs example flow 1 for real on this machine, or only the stand-ins.
//!
//! - `plugboard-demo` (what `./dev demo` runs): starts the Shopify/Slack/OpenAI stand-ins on a
//!   loopback port, starts plugboard with `examples/order-risk/plugboard.toml` (pointed at the
//!   stand-ins, with the demo's credentials), sends two correctly signed Shopify `orders/create`
//!   webhooks (one risky, one not), and prints each event's path with timings: verified ->
//!   stored -> assessed by the AI provider -> Slack message posted -> Shopify order tagged.
//! - `plugboard-demo agent` (what `./dev demo agent` runs): example flow 4, a question about an
//!   order in Slack answered by a model that looks the order up with a tool call.
//! - `plugboard-demo fakes [ADDR]`: only the stand-ins (default `127.0.0.1:8788`), to run
//!   `plugboard up --config examples/order-risk/plugboard.toml` against by hand.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use plugboard_demo::fakes::Fakes;
use plugboard_demo::flow::Flow;
use plugboard_demo::specs::Specs;
use plugboard_demo::{SHOPIFY_WEBHOOK_SECRET, sample_order, shopify_headers};
use serde_json::Value;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn at(from: u64, at: u64) -> String {
    format!("+{:>5} ms", at.saturating_sub(from))
}

/// Prints one event's path: each delivery with its attempts and the outbound calls made for it,
/// then the events it produced, indented.
async fn print_trace(flow: &Flow, trace: &Value, start_ms: u64, depth: usize) -> anyhow::Result<()> {
    let pad = "  ".repeat(depth);
    let calls = flow.admin("/v1/calls?limit=1000").await?;
    for d in trace["deliveries"].as_array().into_iter().flatten() {
        let action = d["action"].as_str().unwrap_or("handle");
        for a in d["attempts"].as_array().into_iter().flatten() {
            // Attempts are recorded when they end; show when they began.
            let began = a["at_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(a["duration_us"].as_u64().unwrap_or(0) / 1000);
            println!(
                "  {}  {pad}route {} -> {} ({action}): {} in {:.1} ms (attempt {})",
                at(start_ms, began),
                d["route"].as_str().unwrap_or(""),
                d["target"].as_str().unwrap_or(""),
                a["outcome"].as_str().unwrap_or(""),
                a["duration_us"].as_f64().unwrap_or(0.0) / 1000.0,
                a["attempt"],
            );
        }
        let event_id = &trace["event"]["id"];
        let mut mine: Vec<&Value> =
            calls.as_array().into_iter().flatten().filter(|c| c["event_id"] == *event_id).collect();
        mine.sort_by_key(|c| c["at_ms"].as_u64());
        for c in mine {
            println!(
                "  {}  {pad}  {} called {} {}{} -> {} in {:.1} ms",
                at(start_ms, c["at_ms"].as_u64().unwrap_or(0)),
                c["instance"].as_str().unwrap_or(""),
                c["method"].as_str().unwrap_or(""),
                c["destination"].as_str().unwrap_or(""),
                c["path"].as_str().unwrap_or(""),
                c["status"],
                c["latency_us"].as_f64().unwrap_or(0.0) / 1000.0,
            );
        }
        for produced in d["produced"].as_array().into_iter().flatten() {
            let e = &produced["event"];
            println!(
                "  {}  {pad}  -> {} stored",
                at(start_ms, e["stored_at_ms"].as_u64().unwrap_or(0)),
                e["kind"].as_str().unwrap_or(""),
            );
            Box::pin(print_trace(flow, produced, start_ms, depth + 1)).await?;
        }
    }
    Ok(())
}

/// Sends a signed `orders/create` webhook, waits until its deliveries settled, prints its path.
async fn order(flow: &Flow, id: u64, note: &str, total: &str) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&sample_order(id, note, total))?;
    let headers = shopify_headers(SHOPIFY_WEBHOOK_SECRET, "orders/create", &format!("demo-{id}"), &body);
    println!("\n==> Shopify orders/create webhook for order #{id} ({total} USD), note {note:?}");
    let sent = now_ms();
    let started = Instant::now();
    let (status, _) = flow.webhook("shopify", headers, body).await?;
    println!(
        "  {}  POST /hooks/shopify -> {status} in {:.1} ms: signature verified, orders/create stored before the answer",
        at(sent, sent),
        started.elapsed().as_secs_f64() * 1000.0
    );
    if status != 200 {
        bail!("the webhook was refused: {status}");
    }
    let event = flow
        .find_event("orders/create", "order_id", &id.to_string())
        .await?
        .context("the webhook's event is not stored")?;
    let id = event["id"].as_str().unwrap_or("").to_owned();
    // Settled: every delivery of the event and of what it produced is delivered or dead.
    fn settled(t: &Value) -> bool {
        t["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|d| d["status"] != "pending" && d["produced"].as_array().into_iter().flatten().all(settled))
    }
    flow.wait_for("the flow to settle", async || {
        flow.admin(&format!("/v1/events/{id}")).await.is_ok_and(|t| settled(&t))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await; // the call log is written in batches
    print_trace(flow, &flow.admin(&format!("/v1/events/{id}")).await?, sent, 0).await
}

async fn flow_one() -> anyhow::Result<()> {
    let started = Instant::now();
    let flow = Flow::start("order-risk").await?;
    println!(
        "==> stand-ins for Shopify, Slack and OpenAI on {} (requests checked against the official API descriptions in demo/specs)",
        flow.fakes.origin()
    );
    println!(
        "==> plugboard serving examples/order-risk/plugboard.toml on {} (started in {:.0} ms)",
        flow.origin,
        started.elapsed().as_secs_f64() * 1000.0
    );
    for p in flow.host.plugins() {
        let caps: Vec<&str> = p.effective.iter().map(|c| c.name()).collect();
        println!("    {:<11} {} {} may use: {}", p.id, p.name, p.version, caps.join(", "));
    }
    flow.fakes.state.add_order(sample_order(1001, "", "1249.00"));
    flow.fakes.state.add_order(sample_order(1002, "", "35.00"));
    order(&flow, 1001, "Please ship to a different address than billing, card mismatch is fine", "1249.00")
        .await?;
    order(&flow, 1002, "Thanks, love your shop!", "35.00").await?;

    println!("\n==> what the stand-ins hold now");
    let messages = flow.fakes.state.messages.lock().map(|m| m.clone()).unwrap_or_default();
    for m in &messages {
        println!("    Slack {}: {}", m.channel, m.text);
    }
    let orders = flow.fakes.state.orders.lock().map(|o| o.clone()).unwrap_or_default();
    for (id, order) in &orders {
        println!("    Shopify order {id} tags: {:?}", order["tags"].as_str().unwrap_or(""));
    }
    let violations = flow.violations();
    println!(
        "    {} API requests, {} violations of the official API descriptions",
        flow.fakes.state.received().len(),
        violations.len()
    );
    for v in &violations {
        println!("      {v}");
    }
    let tagged = orders.get(&1001).is_some_and(|o| o["tags"] == "fraud-risk-high");
    if !violations.is_empty() || messages.len() != 1 || !tagged {
        bail!("the flow did not run as it should");
    }
    println!(
        "\nflow 1 ok: the risky order was announced in Slack and tagged in Shopify; the calm one was only assessed."
    );
    Ok(())
}

/// Flow 4: a signed Slack message asks about an order; the model calls Shopify's `get-order`
/// as a tool and the answer is posted in the message's thread.
async fn flow_four() -> anyhow::Result<()> {
    let started = Instant::now();
    let flow = Flow::start("order-agent").await?;
    println!(
        "==> stand-ins for Slack, Shopify and OpenAI on {} (requests checked against the official API descriptions)",
        flow.fakes.origin()
    );
    println!(
        "==> plugboard serving examples/order-agent/plugboard.toml on {} (started in {:.0} ms)",
        flow.origin,
        started.elapsed().as_secs_f64() * 1000.0
    );
    flow.fakes.state.add_order(sample_order(1001, "", "1249.00"));
    let text = "Hi! Where is my order 1001?";
    let message = serde_json::json!({ "type": "message", "channel": "C0SUPPORT", "user": "U7", "text": text, "ts": "1700000200.000100" });
    let body = serde_json::to_vec(&plugboard_demo::slack_event("EvDemo4", message))?;
    let headers =
        plugboard_demo::slack_headers(plugboard_demo::SLACK_SIGNING_SECRET, &body, "application/json");
    let sent = now_ms();
    let (status, _) = flow.webhook("slack", headers, body).await?;
    println!("\n==> a customer asks in Slack #C0SUPPORT: {text:?} (answered {status})");
    let state = flow.fakes.state.clone();
    flow.wait_for("the answer in the thread", async || state.messages.lock().is_ok_and(|m| !m.is_empty()))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await; // the call log is written in batches
    let event = flow.admin("/v1/events?kind=slack/message").await?;
    let id = event[0]["id"].as_str().unwrap_or("").to_owned();
    print_trace(&flow, &flow.admin(&format!("/v1/events/{id}")).await?, sent, 0).await?;
    let messages = state.messages.lock().map(|m| m.clone()).unwrap_or_default();
    for m in &messages {
        println!("\n==> posted in the thread: {:?}", m.text);
    }
    let violations = flow.violations();
    for v in &violations {
        println!("      {v}");
    }
    if !violations.is_empty() || messages.len() != 1 {
        bail!("the flow did not run as it should");
    }
    println!(
        "\nflow 4 ok: the model looked the order up with Shopify's get-order (run with Shopify's grants) and answered in the thread."
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("flow1") => flow_one().await,
        Some("agent") => flow_four().await,
        Some("fakes") => {
            let listen = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:8788").parse()?;
            let fakes = Fakes::start(listen, Specs::shared()?).await?;
            fakes.state.add_order(sample_order(1001, "", "1249.00"));
            println!(
                "stand-ins for Shopify, Slack, OpenAI and Anthropic on {}; Ctrl-C to stop",
                fakes.origin()
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Some(other) => {
            bail!("unknown command {other:?}: use no argument (flow 1), `agent` (flow 4) or `fakes [ADDR]`")
        }
    }
}
