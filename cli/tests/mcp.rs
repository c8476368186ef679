//! plugboard as an MCP server, driven by the official MCP clients: Python's `mcp` package and
//! the TypeScript SDK (`@modelcontextprotocol/sdk`), each over Streamable HTTP (`/mcp` of a
//! running server) and over stdio (`plugboard mcp`, launched by the client). The server runs
//! example flow 1's configuration against the stand-ins, so the tools are the real Shopify and
//! Slack connectors and their calls reach a Shopify that checks them against the official API
//! description.

use std::path::Path;
use std::process::Command;

use plugboard_demo::flow::{Flow, repo};
use plugboard_demo::sample_order;
use serde_json::{Value, json};

/// The support agent's token: it may read and tag orders and use Slack, nothing destructive.
const AGENT_TOKEN: &str = "mcp-agent-token-0123456789";
/// A client with a rate of one call now and then.
const SLOW_TOKEN: &str = "mcp-slow-token-0123456789";

/// Starts flow 1 with an `[mcp]` section: two clients whose tokens are files in `dir`.
async fn start(dir: &Path) -> Flow {
    std::fs::write(dir.join("agent-token"), AGENT_TOKEN).unwrap();
    std::fs::write(dir.join("slow-token"), SLOW_TOKEN).unwrap();
    let mcp = format!(
        r#"
[mcp]
allowed_origins = ["http://localhost:5173"]

[[mcp.client]]
name = "support-agent"
token = "file:{agent}"
tools = ["shopify.get-order", "shopify.add-order-tags", "shopify.add-order-note", "slack.*"]

[[mcp.client]]
name = "slow"
token = "file:{slow}"
tools = ["shopify.get-order"]
rate_limit = {{ per_second = 0.001, burst = 2 }}

[[route]]
name = "new-orders-assessed""#,
        agent = dir.join("agent-token").display(),
        slow = dir.join("slow-token").display(),
    );
    Flow::start_with("order-risk", &[("\n[[route]]\nname = \"new-orders-assessed\"", &mcp)]).await.unwrap()
}

/// Runs a client script and parses the JSON object it prints.
fn run_client(mut command: Command) -> Value {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn python(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg(repo().join("tests/mcp/client.py")).args(args);
    command
}

fn node(args: &[&str]) -> Command {
    let mut command = Command::new("node");
    command.arg(repo().join("tests/mcp/client.mjs")).args(args);
    command
}

/// The command an AI client launches for stdio: `plugboard mcp` on the flow's configuration,
/// with the compile cache the flow's server filled.
fn stdio_command(flow: &Flow) -> Vec<String> {
    vec![
        env!("CARGO_BIN_EXE_plugboard").to_owned(),
        "--cache-dir".into(),
        repo().join("target/plugboard-cache").display().to_string(),
        "mcp".into(),
        "--config".into(),
        flow.config_path().display().to_string(),
        "--client".into(),
        "support-agent".into(),
    ]
}

/// What every client must have seen, over either transport.
async fn check(flow: &Flow, who: &str, summary: &Value, order_id: u64) {
    assert_eq!(summary["server"], "plugboard", "{who}");
    // The agent's tools: what its patterns cover, less what may delete or overwrite.
    let tools = summary["tools"].as_object().unwrap();
    let names: Vec<&str> = tools.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["shopify_add-order-tags", "shopify_get-order", "slack_add-reaction", "slack_post-message"],
        "{who}"
    );
    let tag = &tools["shopify_add-order-tags"];
    assert_eq!(tag["description"], "Adds tags to an order", "{who}");
    assert_eq!(tag["input_schema"]["required"], json!(["id", "tags"]), "{who}");
    assert_eq!(tag["output_schema"]["type"], "object", "{who}");
    let hints = &tag["annotations"];
    assert_eq!(
        (&hints["title"], &hints["readOnlyHint"], &hints["destructiveHint"], &hints["idempotentHint"]),
        (&json!("Tag an order"), &json!(false), &json!(false), &json!(true)),
        "{who}: {hints}"
    );
    assert_eq!(tools["shopify_get-order"]["annotations"]["readOnlyHint"], true, "{who}");

    // The call ran the connector: the stand-in's order has the tags, and the request it got
    // matches Shopify's official API description.
    assert_eq!(
        summary["tagged"],
        json!({
            "is_error": false,
            "structured": { "id": format!("gid://shopify/Order/{order_id}"), "tags_added": ["vip", "mcp"] },
            "text": [json!({ "id": format!("gid://shopify/Order/{order_id}"), "tags_added": ["vip", "mcp"] }).to_string()],
            "error": null,
        }),
        "{who}"
    );
    let tags = flow.fakes.state.orders.lock().unwrap()[&order_id]["tags"].as_str().unwrap().to_owned();
    assert!(tags.contains("vip") && tags.contains("mcp"), "{who}: {tags}");
    assert_eq!(flow.violations(), Vec::<String>::new());

    // Refused before the plugin runs, each with the typed error.
    let refused = |what: &str, kind: &str| {
        let r = &summary[what];
        assert_eq!(r["is_error"], true, "{who} {what}: {r}");
        assert_eq!(r["error"]["kind"], kind, "{who} {what}: {r}");
        assert_eq!(r["structured"], Value::Null, "{who} {what}: {r}");
        r["text"][0].as_str().unwrap().to_owned()
    };
    let bad = refused("bad_input", "invalid-input");
    assert!(bad.contains("\"tags\" is a required property"), "{who}: {bad}");
    let destructive = refused("destructive", "denied");
    assert!(destructive.contains("no tool `shopify_add-order-note` is available"), "{who}: {destructive}");
    refused("unknown", "denied");
}

/// The records of `order_id`'s calls, oldest first, once all four are stored.
async fn records(flow: &Flow, client: &str, since: usize) -> Vec<Value> {
    let mut found = Vec::new();
    flow.wait_for("the tool calls' records", async || {
        let Ok(events) = flow.admin("/v1/events?kind=mcp/tool-called&limit=1000").await else { return false };
        let mut mine: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["attributes"].as_array().unwrap().contains(&json!(["plugboard.mcp.client", client]))
            })
            .cloned()
            .collect();
        mine.reverse();
        found = mine.split_off(since.min(mine.len()));
        found.len() >= 4
    })
    .await
    .unwrap();
    let mut payloads = Vec::new();
    for record in found {
        assert_eq!(record["source"], "mcp");
        let id = record["id"].as_str().unwrap();
        let payload = flow.client.get(format!("{}/v1/events/{id}/payload", flow.origin));
        let payload = payload.bearer_auth(plugboard_demo::flow::ADMIN_TOKEN).send().await.unwrap();
        let mut payload: Value = payload.json().await.unwrap();
        payload["id"] = json!(id);
        payloads.push(payload);
    }
    payloads
}

/// Every call is recorded: client, tool, a digest of the input (not the input), outcome, time;
/// the action's outbound request carries the record's id in the call log.
async fn check_records(flow: &Flow, records: &[Value]) {
    let outcomes: Vec<&str> = records.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["ok", "invalid-input", "denied", "denied"], "{records:?}");
    let ok = &records[0];
    assert_eq!(
        (&ok["client"], &ok["tool"], &ok["instance"], &ok["action"]),
        (
            &json!("support-agent"),
            &json!("shopify_add-order-tags"),
            &json!("shopify"),
            &json!("add-order-tags")
        )
    );
    assert_eq!(ok["input_sha256"].as_str().unwrap().len(), 64);
    assert!(!ok.to_string().contains("vip"), "the input itself is not recorded: {ok}");
    assert!(ok["build"].as_str().unwrap().starts_with("shopify@"), "{ok}");
    assert_eq!(records[1]["error"]["kind"], "invalid-input");
    let id = ok["id"].as_str().unwrap().to_owned();
    flow.wait_for("the call log to name the record", async || {
        let calls = flow.admin("/v1/calls?instance=shopify&limit=1000").await.unwrap_or_default();
        calls.as_array().into_iter().flatten().any(|c| c["event_id"] == id.as_str() && c["status"] == 200)
    })
    .await
    .unwrap();
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_clients_call_connector_actions_over_streamable_http() {
    let dir = temp_dir();
    let flow = start(dir.path()).await;
    let url = format!("{}/mcp", flow.origin);
    for (who, order_id, client) in
        [("python", 7001, python as fn(&[&str]) -> Command), ("typescript", 7002, node)]
    {
        flow.fakes.state.add_order(sample_order(order_id, "", "10.00"));
        let summary = tokio::task::spawn_blocking({
            let (url, id) = (url.clone(), order_id.to_string());
            move || run_client(client(&["http", &url, AGENT_TOKEN, &id]))
        })
        .await
        .unwrap();
        check(&flow, who, &summary, order_id).await;
        let wrong = summary["wrong_token"].as_str().unwrap();
        assert!(wrong.starts_with("refused"), "{who}: {wrong}");
        let since = if who == "python" { 0 } else { 4 };
        let records = records(&flow, "support-agent", since).await;
        check_records(&flow, &records).await;
    }
    let metrics =
        flow.client.get(format!("{}/metrics", flow.origin)).send().await.unwrap().text().await.unwrap();
    for line in [
        "plugboard_mcp_tool_calls_total{client=\"support-agent\",outcome=\"ok\"} 2",
        "plugboard_mcp_tool_calls_total{client=\"support-agent\",outcome=\"denied\"} 4",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_clients_call_connector_actions_over_stdio() {
    let dir = temp_dir();
    let flow = start(dir.path()).await;
    let command = stdio_command(&flow);
    for (who, order_id, client) in
        [("python", 7101, python as fn(&[&str]) -> Command), ("typescript", 7102, node)]
    {
        flow.fakes.state.add_order(sample_order(order_id, "", "10.00"));
        let summary = tokio::task::spawn_blocking({
            let mut args = vec!["stdio".to_owned(), order_id.to_string(), "--".into()];
            args.extend(command.clone());
            move || run_client(client(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        })
        .await
        .unwrap();
        check(&flow, who, &summary, order_id).await;
        // The stdio server stored its records where the running server reads them.
        let since = if who == "python" { 0 } else { 4 };
        let records = records(&flow, "support-agent", since).await;
        check_records(&flow, &records).await;
    }
}

/// One JSON-RPC request to `/mcp` with these headers: the status, and the body as JSON when
/// it is.
async fn post(flow: &Flow, headers: &[(&str, &str)], body: Value) -> (u16, Option<String>, Value) {
    let mut request = flow
        .client
        .post(format!("{}/mcp", flow.origin))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (status, challenge, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn call(name: &str, arguments: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": name, "arguments": arguments } })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_refuses_missing_tokens_foreign_origins_and_hosts_and_limits_each_client() {
    let dir = temp_dir();
    let flow = start(dir.path()).await;
    flow.fakes.state.add_order(sample_order(7201, "", "10.00"));
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let agent = format!("Bearer {AGENT_TOKEN}");

    let (status, challenge, _) = post(&flow, &[], list.clone()).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer realm=\"plugboard-mcp\"")));
    let (status, challenge, _) =
        post(&flow, &[("authorization", "Bearer nope-nope-nope-nope")], list.clone()).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("invalid_token"));

    // DNS rebinding: a page on another origin, or a request for another host name, is refused
    // even with a good token.
    let (status, _, _) =
        post(&flow, &[("authorization", &agent), ("origin", "http://evil.example")], list.clone()).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        post(&flow, &[("authorization", &agent), ("host", "evil.example")], list.clone()).await;
    assert_eq!(status, 403);
    let (status, _, body) =
        post(&flow, &[("authorization", &agent), ("origin", "http://localhost:5173")], list.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 4, "{body}");

    // The slow client's rate (two requests, then one in 1,000 s): a listing and a call, then
    // a rate-limited tool error with the wait, and a listing refused.
    let slow = format!("Bearer {SLOW_TOKEN}");
    let (_, _, listed) = post(&flow, &[("authorization", &slow)], list.clone()).await;
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 1, "{listed}");
    let (_, _, first) =
        post(&flow, &[("authorization", &slow)], call("shopify_get-order", json!({"id": 7201}))).await;
    assert_eq!(first["result"]["isError"], false, "{first}");
    assert_eq!(first["result"]["structuredContent"]["id"], "gid://shopify/Order/7201", "{first}");
    let (_, _, second) =
        post(&flow, &[("authorization", &slow)], call("shopify_get-order", json!({"id": 7201}))).await;
    let error = &second["result"]["_meta"]["plugboard/error"];
    assert_eq!(
        (&second["result"]["isError"], &error["kind"]),
        (&json!(true), &json!("rate-limited")),
        "{second}"
    );
    assert!(error["retry_after_ms"].as_u64().unwrap() > 1_000, "{second}");
    let (_, _, refused) = post(&flow, &[("authorization", &slow)], list.clone()).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("over this client's rate"), "{refused}");
    // The agent's own limits are untouched by the slow client's.
    let (_, _, other) =
        post(&flow, &[("authorization", &agent)], call("shopify_get-order", json!({"id": 7201}))).await;
    assert_eq!(other["result"]["isError"], false, "{other}");
}
