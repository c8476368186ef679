//! The operator's side of a running server: the admin API against its OpenAPI description,
//! health and metrics, hot reload, and the dashboard driven in headless Chromium.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plugboard_demo::fakes::Script;
use plugboard_demo::flow::{ADMIN_TOKEN, Flow};
use plugboard_demo::{SHOPIFY_WEBHOOK_SECRET, sample_order, shopify_headers};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(METHOD, /path/{param})` of every route the server's routers declare (the API's and the
/// webhook endpoint's), read from their source.
fn server_routes() -> BTreeSet<(String, String)> {
    let source = ["host/src/api/mod.rs", "host/src/ingress/webhook.rs"]
        .map(|file| std::fs::read_to_string(repo().join(file)).unwrap())
        .concat();
    let mut routes = BTreeSet::new();
    for part in source.split(".route(").skip(1) {
        let Some(part) = part.trim_start().strip_prefix('"') else { continue };
        let (path, rest) = part.split_once('"').unwrap();
        let handler = rest.trim_start_matches([',', ' ', '\n']);
        let method = handler.split('(').next().unwrap().rsplit("::").next().unwrap().trim();
        // `any` takes every method; webhooks are POSTed.
        let method = if method == "any" { "post" } else { method };
        routes.insert((method.to_uppercase(), path.replace("{*", "{")));
    }
    routes
}

fn documented_routes() -> BTreeSet<(String, String)> {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/admin-api.openapi.json")).unwrap())
            .unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn risky_order(flow: &Flow, id: u64) -> String {
    flow.fakes.state.add_order(sample_order(id, "", "900.00"));
    let body = serde_json::to_vec(&sample_order(id, "card mismatch, ship to a different address", "900.00"))
        .unwrap();
    let headers = shopify_headers(SHOPIFY_WEBHOOK_SECRET, "orders/create", &format!("admin-{id}"), &body);
    assert_eq!(flow.webhook("shopify", headers, body).await.unwrap().0, 200);
    let event = flow.find_event("orders/create", "order_id", &id.to_string()).await.unwrap().unwrap();
    event["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_openapi_description_matches_the_server_routes() {
    let (served, documented) = (server_routes(), documented_routes());
    assert!(served.len() > 15, "the route reader found {served:?}");
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not in docs/admin-api.openapi.json"
    );
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );

    // And the running server answers each documented operation from a handler (not with the
    // router's bare 404/405), with the token, and refuses the admin ones without it.
    let flow = Flow::start("order-risk").await.unwrap();
    for (method, path) in &documented {
        let concrete = path
            .replace("{instance}", "shopify")
            .replace("{rest}", "sub")
            .replace("/v1/dlq/{id}", "/v1/dlq/999999")
            .replace("{id}", "no-such-id");
        let url = format!("{}{concrete}", flow.origin);
        let request = flow.client.request(method.parse().unwrap(), &url);
        let response = request.try_clone().unwrap().bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = response.status().as_u16();
        // The live stream never ends: its headers answer for it.
        let streams = response.headers().get("content-type").is_some_and(|t| t == "text/event-stream");
        let body = if streams { "(a stream)".into() } else { response.text().await.unwrap() };
        assert!(status != 405 && !(status == 404 && body.is_empty()), "{method} {concrete}: {status} {body}");
        // The example turns the admin API on and the jobs API off (404, saying so).
        if path.starts_with("/v1/") && !path.starts_with("/v1/jobs") {
            let anonymous = request.send().await.unwrap().status().as_u16();
            assert_eq!(anonymous, 401, "{method} {concrete} without the token");
        }
    }
}

#[tokio::test]
async fn health_metrics_and_hot_reload() {
    let flow = Flow::start("order-risk").await.unwrap();
    assert_eq!(flow.client.get(format!("{}/readyz", flow.origin)).send().await.unwrap().status(), 200);
    let first = risky_order(&flow, 2001).await;
    let state = flow.fakes.state.clone();
    flow.wait_for("the tag", async || state.orders.lock().unwrap()[&2001]["tags"] == "fraud-risk-high")
        .await
        .unwrap();

    let series = [
        "plugboard_webhooks_total{instance=\"shopify\",outcome=\"stored\"} 1",
        "plugboard_invocations_total{instance=\"order-risk\",outcome=\"ok\"}",
        "plugboard_invocation_seconds_bucket{instance=\"order-risk\",le=\"+Inf\"}",
        "plugboard_deliveries_total{route=\"risky-orders-to-slack\",outcome=\"delivered\"} 1",
        "plugboard_events_stored_total{source=\"order-risk\"} 3",
        "plugboard_http_calls_total{instance=\"openai\"",
        "plugboard_ai_tokens_total{plugin=\"order-risk\",provider=\"openai\",kind=\"prompt\"}",
        "plugboard_queue_depth 0",
        "plugboard_dead_letters 0",
    ];
    // The tag can land before the Slack delivery finishes: wait for the queue to drain.
    let mut metrics = String::new();
    let drained = flow
        .wait_for("every series", async || {
            metrics = flow
                .client
                .get(format!("{}/metrics", flow.origin))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            series.iter().all(|s| metrics.contains(s))
        })
        .await;
    for s in series {
        assert!(metrics.contains(s), "{s} missing ({drained:?}) from\n{metrics}");
    }
    let forged = shopify_headers("wrong", "orders/create", "x", b"{}");
    assert_eq!(flow.webhook("shopify", forged, b"{}".to_vec()).await.unwrap().0, 401);
    let metrics =
        flow.client.get(format!("{}/metrics", flow.origin)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("plugboard_webhook_verification_failures_total{instance=\"shopify\"} 1"),
        "{metrics}"
    );

    // Hot reload through the admin API: the next event is handled by the new build, and each
    // attempt records which build handled it.
    let replacement = std::fs::read(plugboard_tests::REVIEW_DIGEST).unwrap();
    let url = format!("{}/v1/plugins/order-risk/wasm", flow.origin);
    let reloaded = json_of(flow.client.put(&url).bearer_auth(ADMIN_TOKEN).body(replacement)).await;
    assert_eq!(reloaded["name"], "review-digest");
    // The admin API says the running build is an upload that a restart would replace.
    let shown = flow.admin("/v1/plugins/order-risk").await.unwrap();
    assert_eq!(shown["source"], plugboard::UPLOADED, "{shown}");
    assert!(shown["build"].as_str().unwrap().starts_with("review-digest@0.1.0 sha256:"), "{shown}");
    let shopify = flow.admin("/v1/plugins/shopify").await.unwrap();
    assert!(shopify["source"].as_str().unwrap().ends_with(".wasm"), "{shopify}");
    assert_eq!(
        reloaded["effective"],
        serde_json::json!(["ai", "config"]),
        "the instance's grants still apply"
    );
    let refused =
        flow.client.put(&url).bearer_auth(ADMIN_TOKEN).body(b"not wasm".to_vec()).send().await.unwrap();
    assert_eq!(refused.status(), 400, "a broken component is refused and the running one kept");
    let second = risky_order(&flow, 2002).await;
    let handler = async |id: &str| -> String {
        let mut found = String::new();
        for _ in 0..500 {
            let trace = flow.admin(&format!("/v1/events/{id}")).await.unwrap();
            if let Some(h) = trace["deliveries"][0]["attempts"][0]["handler"].as_str() {
                found = h.to_owned();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        found
    };
    assert!(handler(&first).await.starts_with("order-risk@0.1.0 sha256:"));
    assert!(handler(&second).await.starts_with("review-digest@0.1.0 sha256:"));
    assert_eq!(flow.host.plugin("order-risk").unwrap().name, "review-digest");
}

/// A server whose `/slow` answers "late" after 400 ms: an invocation that is still running.
async fn slow_server() -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "late"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (format!("http://{addr}"), tokio::spawn(async move { axum::serve(listener, app).await }))
}

#[tokio::test]
async fn in_flight_invocations_finish_on_the_build_they_started_with() {
    let (origin, _server) = slow_server().await;
    let host = plugboard::Host::builder().build().unwrap();
    let grants = plugboard::Grants::none().allow_http(&origin).allow_internal("127.0.0.1");
    host.load(plugboard::PluginSpec::new("swap", plugboard_tests::ECHO).with_grants(grants)).await.unwrap();
    let running = tokio::spawn({
        let host = host.clone();
        async move { host.invoke("swap", "fetch", &serde_json::json!({ "url": format!("{origin}/slow") })).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    host.reload_bytes("swap", &std::fs::read(plugboard_tests::SHOPIFY).unwrap()).await.unwrap();
    let finished = running.await.unwrap().unwrap();
    assert_eq!(finished.output["body"], "late");
    assert!(finished.handler.starts_with("echo@"), "{}", finished.handler);
    let after = host.invoke("swap", "get-order", &serde_json::json!({})).await.unwrap_err();
    assert!(after.to_string().contains("invalid input"), "the new build answers: {after}");
}

#[tokio::test]
async fn a_reloaded_instance_keeps_its_concurrency_limit() {
    let (origin, _server) = slow_server().await;
    let host = plugboard::Host::builder().build().unwrap();
    let grants = plugboard::Grants::none().allow_http(&origin).allow_internal("127.0.0.1");
    let spec = plugboard::PluginSpec::new("serial", plugboard_tests::ECHO)
        .with_grants(grants)
        .with_limits(plugboard::Limits::default().with_max_concurrency(1));
    host.load(spec).await.unwrap();
    let running = tokio::spawn({
        let host = host.clone();
        async move {
            host.invoke("serial", "fetch", &serde_json::json!({ "url": format!("{origin}/slow") })).await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    host.reload_bytes("serial", &std::fs::read(plugboard_tests::ECHO).unwrap()).await.unwrap();
    // One at a time across builds: the new build's call waits for the old build's to finish.
    host.invoke("serial", "ping", &serde_json::json!({})).await.unwrap();
    assert!(running.is_finished(), "the second invocation ran beside the first");
    assert_eq!(running.await.unwrap().unwrap().output["body"], "late");
}

#[tokio::test]
async fn the_dashboard_in_headless_chromium() {
    let record = ("id = \"order-risk\"\n", "id = \"order-risk\"\nrecord = \"all\"\n");
    let flow = Flow::start_with("order-risk", &[record]).await.unwrap();
    // The first Slack post fails for good: a dead letter to replay from the page.
    flow.fakes.state.script("slack", Script::SlackError("channel_not_found"));
    let event = risky_order(&flow, 3001).await;
    flow.wait_for("a dead letter", async || {
        flow.admin("/v1/dlq").await.is_ok_and(|d| d.as_array().is_some_and(|a| a.len() == 1))
    })
    .await
    .unwrap();

    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard.png");
    let script = repo().join("tests/dashboard/check.mjs");
    // The candidate for the shadow run: the DICE test guest, which is not order-risk at all.
    let args = [
        flow.origin.clone(),
        ADMIN_TOKEN.to_owned(),
        screenshot.display().to_string(),
        event.clone(),
        plugboard_tests::DICE.to_owned(),
    ];
    let mut node = std::process::Command::new("node")
        .arg(&script)
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (./dev setup installs Node's playwright-core and Chromium)");
    let (said, mut hear) = tokio::sync::mpsc::unbounded_channel();
    let stdout = node.stdout.take().unwrap();
    // Off the runtime's thread: the server under test runs on it.
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    let mut printed = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(120), hear.recv()).await {
        let connected = line == "connected";
        printed.push(line);
        if connected {
            // An ordinary order: stored, assessed, nothing for Slack.
            flow.fakes.state.add_order(sample_order(3002, "", "35.00"));
            let body = serde_json::to_vec(&sample_order(3002, "Thanks, love your shop!", "35.00")).unwrap();
            let headers = shopify_headers(SHOPIFY_WEBHOOK_SECRET, "orders/create", "admin-3002", &body);
            assert_eq!(flow.webhook("shopify", headers, body).await.unwrap().0, 200);
            let live = flow.find_event("orders/create", "order_id", "3002").await.unwrap().unwrap();
            let mut stdin = node.stdin.take().unwrap();
            std::io::Write::write_all(&mut stdin, format!("{}\n", live["id"].as_str().unwrap()).as_bytes())
                .unwrap();
        }
    }
    let out = tokio::task::spawn_blocking(move || node.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}\n{printed:?}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(printed.first().map(String::as_str), Some("connected"), "{printed:?}");
    let seen: Value = serde_json::from_str(printed.last().unwrap()).unwrap();
    assert_eq!(seen["live"], "live", "{seen}");
    assert!(seen["liveEvent"].as_str().is_some_and(|id| !id.is_empty()), "{seen}");
    assert!(seen["wrongToken"].as_str().unwrap().contains("refused"), "{seen}");
    let plugins = seen["plugins"].as_array().unwrap();
    let ids: Vec<&str> = plugins.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["openai", "order-risk", "shopify", "slack"]);
    assert_eq!(plugins[1]["caps"], "http, log, ai, config");
    let timeline = seen["timeline"].as_str().unwrap();
    for part in [
        "orders/create",
        "new-orders-assessed",
        "order-risk",
        "risky-orders-to-slack",
        "channel_not_found",
        "risky-orders-tagged",
    ] {
        assert!(timeline.contains(part), "{part} not in the timeline: {timeline}");
    }
    assert!(seen["hops"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!((seen["deadBefore"].as_u64(), seen["deadAfter"].as_u64()), (Some(1), Some(0)));
    assert!(
        seen["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("/v1/chat/completions")),
        "{seen}"
    );
    assert!(
        seen["chartPoints"].as_u64().unwrap() >= 1 && seen["throughput"].as_str().unwrap() != "0",
        "{seen}"
    );
    let replay = seen["replay"].as_str().unwrap();
    assert!(replay.contains("identical: recording") && replay.contains("order-risk@0.1.0"), "{seen}");
    let shadow = seen["shadow"].as_str().unwrap();
    assert!(shadow.contains("0 identical") && shadow.contains("left the recording at call 1"), "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "no script errors on the page");
    // The replay button really redelivered: Slack got the alert.
    let state = flow.fakes.state.clone();
    flow.wait_for("the replayed alert", async || state.messages.lock().unwrap().len() == 1).await.unwrap();
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a screenshot is kept at {}",
        screenshot.display()
    );
}

/// `target/debug/plugboard`, which `cargo test` in the workspace builds before running any test
/// (the CLI crate's own tests use it); `cargo test -p plugboard-tests` alone does not, hence the
/// check.
fn plugboard_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().and_then(Path::parent).unwrap().join("plugboard");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    // The sources it was built from, as cargo listed them (`plugboard.d`): feature-gated code
    // the binary does not contain (the store's NATS backend) does not make it stale.
    let listed = std::fs::read_to_string(binary.with_extension("d")).unwrap_or_default();
    let sources = listed.split_once(": ").map(|(_, s)| s).unwrap_or_default();
    let newest_source = sources
        .split_whitespace()
        .filter(|p| repo().canonicalize().is_ok_and(|root| Path::new(p).starts_with(root)))
        .filter_map(|p| Path::new(p).metadata().ok()?.modified().ok())
        .max();
    assert!(
        built.is_some_and(|b| newest_source.is_none_or(|s| s <= b)),
        "{} is missing or older than its sources: run `cargo build -p plugboard-cli` (or `cargo test` for the whole workspace)",
        binary.display()
    );
    binary
}

/// The `plugboard` binary with `--log-format json`, running flow 1: every log line is one JSON
/// object; the lines about an event carry its id and the instance; no secret's value appears,
/// not even at debug level.
#[tokio::test]
async fn the_binary_logs_json_lines_with_event_and_instance_and_no_secrets() {
    use plugboard_demo::fakes::{self, Fakes};
    let fakes = Fakes::start("127.0.0.1:0".parse().unwrap(), plugboard_demo::specs::Specs::shared().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let example = repo().join("examples/order-risk/plugboard.toml");
    let config = plugboard_demo::flow::prepare(&example, &fakes.origin(), dir.path(), &[]).unwrap();
    let mut child = std::process::Command::new(plugboard_binary())
        .args(["up", "--config"])
        .arg(&config)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info,plugboard=debug,plugin=debug")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = std::thread::spawn({
        let lines = lines.clone();
        let stderr = child.stderr.take().unwrap();
        move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        }
    });
    let parsed = |lines: &[String]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
            .collect()
    };
    let client = reqwest::Client::new();
    let mut origin = None;
    let mut ready = false;
    for _ in 0..6000 {
        if origin.is_none() {
            origin = parsed(&lines.lock().unwrap())
                .iter()
                .find(|l| l["message"] == "plugboard listening")
                .and_then(|l| l["address"].as_str().map(str::to_owned));
        }
        if let Some(o) = &origin {
            ready = client.get(format!("{o}/healthz")).send().await.is_ok_and(|r| r.status() == 200);
        }
        if ready || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "plugboard did not start: {:#?}", lines.lock().unwrap());
    let origin = origin.unwrap();

    fakes.state.add_order(sample_order(4001, "", "900.00"));
    let body =
        serde_json::to_vec(&sample_order(4001, "card mismatch, ship to a different address", "900.00"))
            .unwrap();
    let post = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut request = client.post(format!("{origin}/hooks/shopify")).body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send()
    };
    let signed = shopify_headers(SHOPIFY_WEBHOOK_SECRET, "orders/create", "logs-4001", &body);
    assert_eq!(post(signed, body.clone()).await.unwrap().status(), 200);
    let forged = shopify_headers("not-the-secret", "orders/create", "logs-4002", &body);
    assert_eq!(post(forged, body).await.unwrap().status(), 401);
    let mut settled = false;
    for _ in 0..1500 {
        let tagged = fakes.state.orders.lock().unwrap()[&4001]["tags"] == "fraud-risk-high";
        let metrics = client.get(format!("{origin}/metrics")).send().await.unwrap().text().await.unwrap();
        if tagged && metrics.lines().any(|l| l == "plugboard_queue_depth 0") {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events =
        json_of(client.get(format!("{origin}/v1/events?kind=orders/create")).bearer_auth(ADMIN_TOKEN)).await;
    // Stopped as an operator stops it, so that its log is whole: info lines go out in batches,
    // and a `kill -9` may lose those of the last few milliseconds.
    plugboard_tests::terminate(&child);
    child.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(settled, "flow 1 did not finish: {lines:#?}");
    let event = events[0]["id"].as_str().unwrap();
    let logged = parsed(&lines);

    let find = |message: &str, instance: &str| {
        let matches = |l: &&Value| l["message"].as_str().is_some_and(|m| m.starts_with(message));
        logged
            .iter()
            .filter(matches)
            .find(|l| l["instance"] == instance)
            .unwrap_or_else(|| panic!("no `{message}` line for instance {instance} in {lines:#?}"))
    };
    assert_eq!(find("webhook stored", "shopify")["event"], event);
    assert_eq!(find("delivered", "order-risk")["event"], event);
    assert!(find("webhook refused", "shopify")["error"].as_str().unwrap().contains("signature"));
    assert!(find("outbound call", "openai")["event"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(find("outbound call", "slack")["status"] == 200);
    // A plugin's own fields stay JSON fields, not one string.
    let assessed = find("order 4001 assessed", "order-risk");
    assert_eq!(assessed["fields"]["event"], event, "{assessed}");
    assert!(assessed["fields"]["model"].is_string(), "{assessed}");
    assert_eq!(assessed["target"], "plugin");
    for line in &logged {
        if line.get("event").is_some_and(|e| e.as_str() != Some("")) {
            assert!(line["instance"].as_str().is_some_and(|i| !i.is_empty()), "no instance: {line}");
        }
    }
    for (name, secret) in [
        ("the Shopify access token", fakes::SHOPIFY_TOKEN),
        ("the Shopify webhook secret", SHOPIFY_WEBHOOK_SECRET),
        ("the Slack bot token", fakes::SLACK_TOKEN),
        ("the OpenAI key", fakes::OPENAI_KEY),
        ("the admin token", ADMIN_TOKEN),
    ] {
        assert!(!lines.iter().any(|l| l.contains(secret)), "{name} is in the logs");
    }
}

/// Reads Server-Sent Events from `response` until `enough` holds for what was read (or 30 s
/// pass): `(id, data)` of each message.
async fn read_events(
    response: &mut reqwest::Response,
    enough: impl Fn(&[(i64, Value)]) -> bool,
) -> Vec<(i64, Value)> {
    let mut buffer = String::new();
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !enough(&messages) {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await else { break };
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| message.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            if let (Some(id), Some(data)) = (field("id:"), field("data:")) {
                messages.push((id.parse().unwrap(), serde_json::from_str(data).unwrap()));
            }
        }
    }
    messages
}

#[tokio::test]
async fn the_event_stream_pushes_each_stored_event_and_resumes_after_the_last_seen() {
    let flow = Flow::start("order-risk").await.unwrap();
    let url = format!("{}/v1/events/stream", flow.origin);
    assert_eq!(flow.client.get(&url).send().await.unwrap().status(), 401);
    let mut stream = flow.client.get(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    // The order webhook, then what its deliveries produced: pushed as they are stored.
    let order = risky_order(&flow, 5001).await;
    let seen = read_events(&mut stream, |m| m.len() >= 4).await;
    let kinds: Vec<&str> = seen.iter().map(|(_, e)| e["kind"].as_str().unwrap()).collect();
    assert_eq!(seen.first().map(|(_, e)| e["id"].as_str().unwrap()), Some(order.as_str()), "{kinds:?}");
    assert_eq!(seen.len(), 4, "orders/create and the three events its assessment produced: {kinds:?}");
    assert!(seen[1..].iter().all(|(_, e)| e["caused_by"] == order.as_str()), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "positions grow: {seen:?}");

    // A client that lost the connection after the first message resumes with Last-Event-ID.
    let mut resumed = flow
        .client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("Last-Event-ID", seen[0].0)
        .send()
        .await
        .unwrap();
    let again = read_events(&mut resumed, |m| m.len() >= 3).await;
    assert_eq!(again, seen[1..].to_vec());
}

#[tokio::test]
async fn a_reload_cannot_change_the_kind_of_an_instance() {
    let host = plugboard::Host::builder().build().unwrap();
    host.load(plugboard::PluginSpec::new("shop", plugboard_tests::ECHO)).await.unwrap();
    let provider = std::fs::read(plugboard_tests::CANNED_AI).unwrap();
    let refused = host.reload_bytes("shop", &provider).await.unwrap_err().to_string();
    assert!(refused.contains("it is an AI provider, but instance `shop` is a connector"), "{refused}");
    assert_eq!(host.plugin("shop").unwrap().name, "echo", "the running build stays");
    assert!(host.invoke("shop", "ping", &serde_json::json!({})).await.is_ok());
}

/// `plugin call --ai-provider` grants the provider what it needs on the command line (its
/// destinations, its API key from the environment, its config), so a plugin's `ai` calls are
/// answered, here by the official-description-checked OpenAI stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_call_grants_an_ai_provider_what_it_needs() {
    use plugboard_demo::fakes::{self, Fakes};
    let fakes = Fakes::start("127.0.0.1:0".parse().unwrap(), plugboard_demo::specs::Specs::shared().unwrap())
        .await
        .unwrap();
    let origin = fakes.origin();
    let call = |extra: &[&str]| {
        let mut command = std::process::Command::new(plugboard_binary());
        command
            .args(["plugin", "call", plugboard_tests::ECHO, "--ai-provider", plugboard_tests::OPENAI])
            .args(extra)
            .args(["invoke", "ask", "--input", r#"{"prompt": "is order 7 risky?"}"#])
            .env("PLUGBOARD_TEST_OPENAI_KEY", fakes::OPENAI_KEY);
        command.output().unwrap()
    };
    let granted = call(&[
        "--provider-allow-http",
        &origin,
        "--provider-allow-internal",
        "127.0.0.1",
        "--provider-config",
        &format!("base_url={origin}"),
        "--provider-secret",
        "openai_api_key=env:PLUGBOARD_TEST_OPENAI_KEY",
    ]);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&granted.stdout), String::from_utf8_lossy(&granted.stderr));
    assert!(granted.status.success(), "{stdout}\n{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(answer["model"], "gpt-4o-mini", "{answer}");
    let sent = fakes.state.received();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].violations.is_empty(), "{:?}", sent[0].violations);
    assert!(!stdout.contains(fakes::OPENAI_KEY) && !stderr.contains(fakes::OPENAI_KEY));

    // Without the provider's grants the call is refused, saying why.
    let bare = call(&[]);
    assert!(!bare.status.success());
    assert!(String::from_utf8_lossy(&bare.stderr).contains("denied"), "{bare:?}");
    assert_eq!(fakes.state.received().len(), 1);
}
