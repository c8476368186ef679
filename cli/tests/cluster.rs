//! Many nodes on NATS JetStream: three `plugboard up` processes share a three-server JetStream
//! cluster (every stream on all three). Senders post signed webhooks round-robin, moving to the
//! next node when one does not answer, as providers retry; during the load one plugboard node
//! and then one NATS server are killed with SIGKILL and restarted. Every acknowledged webhook is
//! stored exactly once and delivered at least once to a recording receiver (over real HTTP,
//! through a plugin's granted `http`); a schedule every node runs fires once per tick; every
//! node's admin API lists the whole cluster's events, and its live stream shows a webhook
//! another node took.

mod common;

use common::{Senders, shopify_signature, wait_healthy};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::runtime::keyvalue::KvStore as _;
use plugboard::store::nats::{NatsStore, QueueSettings};
use plugboard::store::{DeliveryStatus, EventFilter, ReadModel};
use plugboard_tests::ECHO;
use plugboard_tests::nats::{NatsServers, free_port};
use tokio::sync::Mutex;

const SECRET: &str = "shpss_cluster_test";
const ADMIN_TOKEN: &str = "cluster-admin-token";
const MCP_TOKEN: &str = "cluster-mcp-token-0123456789";
const NODES: usize = 3;

/// Node `i`'s configuration: its own port and local file, the shared cluster.
fn config(dir: &Path, i: usize, port: u16, nats: &[String], receiver: u16) -> PathBuf {
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.join("mcp-token"), MCP_TOKEN).unwrap();
    let path = dir.join(format!("node{i}.toml"));
    let servers: Vec<String> = nats.iter().map(|u| format!("{u:?}")).collect();
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"

[admin]
token = "file:admin-token"

[store]
backend = "nats"
path = "node{i}.db"

[store.nats]
servers = [{servers}]
replicas = 3
lease_secs = 3

# Retries outlast a restarted server's catching up: on a loaded two-core machine a bucket can
# have no leader for half a minute.
[retry]
schedule_ms = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000]

[[plugin]]
id = "shop"
wasm = {ECHO:?}
[plugin.webhook]
verify = {{ scheme = "shopify" }}
secrets = ["file:secret"]

[[plugin]]
id = "forward"
wasm = {ECHO:?}
[plugin.grants]
capabilities = ["http"]
[plugin.grants.http]
allow = ["http://127.0.0.1:{receiver}"]
allow_internal = ["127.0.0.1"]

[[route]]
name = "received-to-receiver"
from = "shop"
kind = "echo/received"
to = "forward"
action = "fetch"

[[plugin]]
id = "counter"
wasm = {ECHO:?}
grants = {{ capabilities = ["kv", "emit", "config", "log"] }}

[[route]]
name = "received-to-counter"
from = "shop"
kind = "echo/received"
to = "counter"

[[schedule]]
name = "tick"
cron = "*/2 * * * * *"
to = "forward"
action = "ping"
missed = "skip"

[mcp]
[[mcp.client]]
name = "agent"
token = "file:mcp-token"
tools = ["counter.kv-roundtrip"]
allow_destructive = true
"#,
            servers = servers.join(", ")
        ),
    )
    .unwrap();
    path
}

/// A `plugboard up` process, its output kept in a file for a failure message.
struct Node {
    config: PathBuf,
    log: PathBuf,
    base: String,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
            .args(["up", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("plugboard starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The recording receiver: counts each body it is sent.
async fn receiver() -> (u16, Arc<Mutex<HashMap<u32, u32>>>) {
    let received: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let record = received.clone();
    let app = axum::Router::new().route(
        "/record",
        axum::routing::post(move |body: String| {
            let record = record.clone();
            async move {
                if let Ok(n) = body.trim().parse::<u32>() {
                    *record.lock().await.entry(n).or_default() += 1;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

/// Sends webhook `n` (its delivery id `d-n`) to the nodes round-robin from node `first`, moving
/// on when a node is down or answers 503, until one acknowledges it or a minute passed.
async fn send(client: &reqwest::Client, bases: &[String], first: usize, n: u32, receiver: u16) -> bool {
    let body = serde_json::json!({
        "url": format!("http://127.0.0.1:{receiver}/record"),
        "method": "POST",
        "body": n.to_string(),
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut node = first;
    while Instant::now() < deadline {
        let sent = client
            .post(format!("{}/hooks/shop", bases[node % bases.len()]))
            .header("x-shopify-hmac-sha256", shopify_signature(SECRET, body.as_bytes()))
            .header("x-shopify-webhook-id", format!("d-{n}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        node += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// How many firings of the `tick` schedule the log holds for each tick it was for.
async fn schedule_ticks(reader: &NatsStore) -> BTreeMap<String, u32> {
    let ticks = reader
        .events(EventFilter { kind: Some("schedule/tick"), ..Default::default() }, 1_000_000)
        .await
        .unwrap();
    let mut per_tick: BTreeMap<String, u32> = BTreeMap::new();
    for (_, event) in &ticks {
        let tick = event
            .attributes
            .iter()
            .find(|(k, _)| k == plugboard::pipeline::SCHEDULED_FOR)
            .map(|(_, v)| v.clone());
        *per_tick.entry(tick.unwrap_or_default()).or_default() += 1;
    }
    per_tick
}

/// The ids of the events of `kind` a node's admin API lists, every page. A node still folding
/// the log answers 503 ("try again"): it is asked again, for up to a minute.
async fn admin_events(client: &reqwest::Client, base: &str, kind: &str) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/events?kind={kind}&limit=500");
        if let Some(cursor) = &before {
            url += &format!("&before={cursor}");
        }
        let started = Instant::now();
        let sent = client.get(&url).bearer_auth(ADMIN_TOKEN).timeout(Duration::from_secs(30)).send().await;
        let response = match sent {
            Ok(response) if response.status() == 200 => response,
            Ok(response) if response.status() == 503 && Instant::now() < deadline => {
                eprintln!(
                    "{url} after {:?}: {}",
                    started.elapsed(),
                    response.text().await.unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Ok(response) => return Err(format!("{url}: {}", response.text().await.unwrap_or_default())),
            Err(e) => return Err(format!("{url} after {:?}: {e}", started.elapsed())),
        };
        before = response.headers().get("x-next-cursor").map(|v| v.to_str().unwrap().to_owned());
        let page: Vec<serde_json::Value> = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        ids.extend(page.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        if before.is_none() {
            return Ok(ids);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_a_three_server_cluster_lose_nothing_under_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServers::start(3, true);
    let (receiver_port, received) = receiver().await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|i| {
            let port = free_port();
            Node {
                config: config(dir.path(), i, port, &nats.urls, receiver_port),
                log: dir.path().join(format!("node{i}.log")),
                base: format!("http://127.0.0.1:{port}"),
                child: None,
            }
        })
        .collect();
    let logs = |nodes: &[Node], nats: &NatsServers| {
        let mut text = nats.logs();
        for node in nodes {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" INFO ")).collect();
            text += &format!("\n--- {}\n{}", node.base, lines[lines.len().saturating_sub(40)..].join("\n"));
        }
        text
    };
    // The first node creates the streams while the cluster elects its leaders: it may need a
    // few tries.
    for i in 0..NODES {
        nodes[i].start();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = client.get(format!("{}/healthz", nodes[i].base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if nodes[i].child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_some()) {
                nodes[i].start();
            }
            assert!(Instant::now() < deadline, "node {i} never started:\n{}", logs(&nodes, &nats));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    // Four senders, round-robin over the nodes.
    let send = {
        let (client, bases) = (client.clone(), bases.clone());
        move |n: u32| {
            let (client, bases) = (client.clone(), bases.clone());
            async move { send(&client, &bases, (n as usize) % bases.len(), n, receiver_port).await }
        }
    };
    let senders = Senders::start(4, send);
    senders.reach(100).await;
    nodes[1].kill();
    senders.reach(200).await;
    nodes[1].start();
    wait_healthy(&client, &nodes[1].base).await;
    senders.reach(300).await;
    nats.kill(0);
    senders.reach(400).await;
    nats.restart(0);
    senders.reach(500).await;
    let acked = senders.stop().await;

    // Every acknowledged webhook reaches the receiver.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = received.lock().await.clone();
        let missing: Vec<u32> = acked.iter().copied().filter(|n| !got.contains_key(n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged webhooks never delivered, e.g. {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            logs(&nodes, &nats)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Stored exactly once: the log, as any node's read model shows it.
    let config = plugboard::config::Config::parse(&nodes[0].config).unwrap();
    let settings = plugboard::config::nats_settings(&config, dir.path()).unwrap();
    let reader = NatsStore::connect(
        &settings,
        QueueSettings { lease: Duration::from_secs(3), routes: vec![], fan_out: false },
    )
    .await
    .unwrap();
    let filter = EventFilter { kind: Some("echo/received"), ..Default::default() };
    let stored = reader.events(filter, 1_000_000).await.unwrap();
    let mut copies: HashMap<String, u32> = HashMap::new();
    for (_, event) in &stored {
        let payload = reader.payload(&event.id).await.unwrap().unwrap().1;
        let body: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        *copies.entry(body["body"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = copies.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "webhooks stored more than once: {twice:?}");
    for n in &acked {
        assert_eq!(copies.get(&n.to_string()), Some(&1), "acknowledged webhook {n} is not stored once");
    }

    // The schedule fired once per tick, though three nodes run it. A test that ran fast may
    // not have seen three ticks yet: the nodes go on firing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let per_tick = loop {
        let per_tick = schedule_ticks(&reader).await;
        if per_tick.len() >= 3 || Instant::now() > deadline {
            break per_tick;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(per_tick.len() >= 3, "the schedule fired too seldom: {per_tick:?}\n{}", logs(&nodes, &nats));
    assert!(per_tick.values().all(|c| *c == 1), "a tick fired more than once: {per_tick:?}");

    // The plugins' key-value data is the cluster's: the counter the `counter` instance keeps,
    // whichever node ran each delivery, counted every one (at least once each).
    let kv = plugboard::store::nats::NatsKv::connect(&settings).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let counted = loop {
        let counted: u64 = kv
            .get("counter", "events-seen")
            .await
            .unwrap()
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        if counted >= stored.len() as u64 || Instant::now() > deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if counted < stored.len() as u64 {
        let mut why = String::new();
        for status in [DeliveryStatus::Pending, DeliveryStatus::Dead, DeliveryStatus::Delivered] {
            let listed = reader.deliveries(status, None, 100_000).await.unwrap();
            let counter: Vec<_> = listed.iter().filter(|d| d.route == "received-to-counter").collect();
            why += &format!(
                "\n{status}: {} ({} to the counter), e.g. {:?}",
                listed.len(),
                counter.len(),
                counter.first()
            );
        }
        panic!("the shared counter saw {counted} of {} events{why}\n{}", stored.len(), logs(&nodes, &nats));
    }

    // Every node's admin API lists the whole cluster's events, whichever node stored them.
    let mut expected: Vec<String> = stored.iter().map(|(_, e)| e.id.clone()).collect();
    expected.sort();
    for node in &nodes {
        let listed = admin_events(&client, &node.base, "echo/received").await;
        let mut listed = listed.unwrap_or_else(|e| panic!("{e}\n{}", logs(&nodes, &nats)));
        listed.sort();
        assert_eq!(listed, expected, "{} lists other events than the cluster holds", node.base);
    }

    // A webhook stored through one node is in another node's live event stream.
    let mut live = client
        .get(format!("{}/v1/events/stream", nodes[2].base))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let sent = Instant::now();
    assert!(crate::send(&client, &bases[..1], 0, 1_000_000, receiver_port).await, "node 0 takes a webhook");
    let newest = admin_events(&client, &nodes[0].base, "echo/received").await;
    let newest = newest.unwrap_or_else(|e| panic!("{e}\n{}", logs(&nodes, &nats)));
    let fresh: Vec<&String> = newest.iter().filter(|id| !expected.contains(id)).collect();
    assert_eq!(fresh.len(), 1, "the new webhook is stored once");
    let mut streamed = String::new();
    while !streamed.contains(fresh[0].as_str()) {
        match tokio::time::timeout(Duration::from_secs(30), live.chunk()).await {
            Ok(Ok(Some(chunk))) => streamed.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("node 2's live stream never showed {}: {other:?}\n{streamed}", fresh[0]),
        }
    }
    eprintln!("a webhook sent to node 0 was in node 2's live stream {:?} later", sent.elapsed());

    // An AI client calls a tool through node 1 (MCP over Streamable HTTP, which keeps no
    // session on a node): the action runs with the counter's grants on the cluster's
    // key-value bucket, and the call's record is in node 0's admin API.
    let call = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "counter_kv-roundtrip", "arguments": {} } });
    let answer = client
        .post(format!("{}/mcp", nodes[1].base))
        .bearer_auth(MCP_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&call)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let records = admin_events(&client, &nodes[0].base, "mcp/tool-called").await;
    let records = records.unwrap_or_else(|e| panic!("{e}\n{}", logs(&nodes, &nats)));
    assert_eq!(records.len(), 1, "the call through node 1 is recorded once, listed by node 0");

    let got = received.lock().await.clone();
    let duplicates: u32 = got.values().map(|c| c - 1).sum();
    eprintln!(
        "{} webhooks acknowledged, each stored once; delivered at least once, {duplicates} deliveries \
         repeated (at-least-once after a kill); {} schedule ticks, each fired once",
        acked.len(),
        per_tick.len()
    );
}
