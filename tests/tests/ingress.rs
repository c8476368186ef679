//! The webhook endpoint on a real server on loopback: a signed delivery is verified, handled by
//! the connector and stored before the 200; forged, duplicate, oversized and misaddressed
//! requests get a clear 4xx and store nothing.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use plugboard::api::{AppState, serve};
use plugboard::config::{ConfigError, Resolved};
use plugboard::store::SqliteStore;
use plugboard_tests::{ECHO, LIAR};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn shopify_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("shopify.secret"), "shpss_test_secret\n").unwrap();
    let path = dir.join("plugboard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096

[store]
path = "events.db"

[[plugin]]
id = "shop"
wasm = {ECHO:?}
grants = {{ capabilities = ["log", "kv", "emit"] }}

[plugin.webhook]
verify = {{ scheme = "shopify" }}
secrets = ["file:shopify.secret"]
{extra}
"#
        ),
    )
    .unwrap();
    path
}

async fn start(dir: &Path, extra: &str) -> (String, Arc<SqliteStore>) {
    let (base, store, _) = start_until(dir, extra, std::future::pending()).await;
    (base, store)
}

/// [`start`], serving until `shutdown` completes, with the admin API on (token `admin`).
async fn start_until(
    dir: &Path,
    extra: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (String, Arc<SqliteStore>, tokio::task::JoinHandle<std::io::Result<()>>) {
    start_with_timeout(dir, extra, std::time::Duration::from_secs(10), shutdown).await
}

/// [`start_until`] with the webhook request timeout `request_timeout`.
async fn start_with_timeout(
    dir: &Path,
    extra: &str,
    request_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (String, Arc<SqliteStore>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let resolved = Resolved::load(&write_config(dir, extra)).unwrap();
    let host = plugboard::Host::builder().build().unwrap();
    for spec in resolved.specs {
        host.load(spec).await.unwrap();
    }
    let store = Arc::new(SqliteStore::open(&resolved.store_path).unwrap());
    let state = AppState::builder(host, store.clone())
        .admin_token(Some(b"admin".to_vec()))
        .endpoints(resolved.endpoints)
        .request_timeout(request_timeout)
        .dedup_window_ms(60_000)
        .max_body_bytes(resolved.config.server.max_body_bytes)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(serve(listener, state, shutdown));
    (base, store, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_ends_open_event_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (base, _store, served) = start_until(dir.path(), "", async move { drop(stopped.await) }).await;
    let mut stream = reqwest::Client::new()
        .get(format!("{base}/v1/events/stream"))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stop.send(()).unwrap();
    // The graceful shutdown completes although a client still follows the stream, which ends.
    let finished = tokio::time::timeout(std::time::Duration::from_secs(30), served).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
    while let Ok(Some(_)) = stream.chunk().await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_are_stored_and_everything_else_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), "").await;
    let client = reqwest::Client::new();
    let body = br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00"}"#;
    let post = |path: &str, body: &[u8], sig: &str, id: &str| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-hmac-sha256", sig)
            .header("x-shopify-webhook-id", id)
            .body(body.to_vec())
            .send()
    };
    let good = shopify_signature("shpss_test_secret", body);

    let ok = post("/hooks/shop/orders", body, &good, "d-1").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), format!(r#"{{"received":{}}}"#, body.len()));
    let stored = store.recent(10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].kind, "echo/received");
    assert_eq!(stored[0].source, "shop");
    assert_eq!(stored[0].payload, body);
    assert!(stored[0].attributes.contains(&("path".into(), "/orders".into())));
    // The build of the plugin that made the event is recorded with it.
    let build = stored[0].attributes.iter().find(|(k, _)| k == plugboard::ingress::BUILD);
    assert!(build.is_some_and(|(_, b)| b.starts_with("echo@0.1.0 sha256:")), "{:?}", stored[0].attributes);

    // The same delivery again (a provider retry): acknowledged, not stored twice.
    let dup = post("/hooks/shop/orders", body, &good, "d-1").await.unwrap();
    assert_eq!(dup.status(), 200);
    assert_eq!(store.count().unwrap(), 1);

    // Forged: wrong secret, tampered body, no signature.
    let forged = shopify_signature("guessed", body);
    assert_eq!(post("/hooks/shop", body, &forged, "d-2").await.unwrap().status(), 401);
    assert_eq!(post("/hooks/shop", b"{\"total_price\":\"0.00\"}", &good, "d-3").await.unwrap().status(), 401);
    let unsigned = client.post(format!("{base}/hooks/shop")).body("{}").send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert!(unsigned.text().await.unwrap().contains("missing header x-shopify-hmac-sha256"));
    let garbage = post("/hooks/shop", body, "%%%not-base64%%%", "d-4").await.unwrap();
    assert_eq!(garbage.status(), 401);

    // Oversized, and addressed to nobody.
    let big = vec![b'x'; 5000];
    let sig = shopify_signature("shpss_test_secret", &big);
    let too_large = post("/hooks/shop", &big, &sig, "d-5").await.unwrap();
    assert_eq!(too_large.status(), 413);
    assert!(too_large.text().await.unwrap().contains("length limit"));
    let metrics = client.get(format!("{base}/metrics")).bearer_auth("admin").send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("plugboard_webhooks_total{instance=\"shop\",outcome=\"too-large\"} 1"),
        "{metrics}"
    );
    // Refused before the instance is looked up: a made-up instance name mints no label.
    assert_eq!(post("/hooks/made-up-name", &big, &sig, "d-5b").await.unwrap().status(), 413);
    let metrics = client.get(format!("{base}/metrics")).bearer_auth("admin").send().await.unwrap();
    assert!(!metrics.text().await.unwrap().contains("made-up-name"));
    assert_eq!(post("/hooks/nobody", body, &good, "d-6").await.unwrap().status(), 404);

    assert_eq!(store.count().unwrap(), 1, "nothing refused was stored");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = |extra: &str| match Resolved::load(&write_config(dir.path(), extra)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted: {extra}"),
    };
    // The README's "use the real services" step moved the allow-list but not the bucket or the
    // secret: both would silently stop applying.
    let moved = "[[plugin]]\nid = \"risk\"\nwasm = \"x.wasm\"\n\
                 grants = { secrets = [\"token\"], http = { allow = [\"https://*.myshopify.com\"], \
                 rate_limits = [RATE] } }\n\
                 [secret.token]\nvalue = \"file:shopify.secret\"\nhosts = [\"HOSTS\"]";
    let bucket = err(&moved
        .replace("RATE", r#"{ destination = "http://127.0.0.1:8788", per_second = 2, burst = 40 }"#)
        .replace("HOSTS", "https://*.myshopify.com"));
    assert!(
        bucket.contains("plugin[risk].grants.http.rate_limits[0]") && bucket.contains("never apply"),
        "{bucket}"
    );
    let secret = err(&moved
        .replace("RATE", r#"{ destination = "https://*.myshopify.com", per_second = 2, burst = 40 }"#)
        .replace("HOSTS", "http://127.0.0.1:8788"));
    assert!(secret.contains("plugin[risk].grants.secrets") && secret.contains("[secret.token]"), "{secret}");
    let fixed = moved
        .replace("RATE", r#"{ destination = "https://*.myshopify.com", per_second = 2, burst = 40 }"#)
        .replace("HOSTS", "https://*.myshopify.com");
    assert!(Resolved::load(&write_config(dir.path(), &fixed)).is_ok());
    let typo = err("tolerance_sec = 5");
    assert!(typo.contains("tolerance_sec"), "{typo}");
    let missing = err(
        "[[plugin]]\nid = \"slack\"\nwasm = \"x.wasm\"\n[plugin.webhook]\nverify = { scheme = \"slack\" }\nsecrets = [\"env:PLUGBOARD_TEST_UNSET_SECRET\"]",
    );
    assert!(
        missing.contains("plugin[slack].webhook.secrets[0]")
            && missing.contains("PLUGBOARD_TEST_UNSET_SECRET"),
        "{missing}"
    );
    let inline = err(
        "[[plugin]]\nid = \"gh\"\nwasm = \"x.wasm\"\n[plugin.webhook]\nverify = { scheme = \"github\" }\nsecrets = [\"hunter2\"]",
    );
    assert!(inline.contains("a secret must be a reference") && !inline.contains("hunter2"), "{inline}");
    let secret = err("[[plugin]]\nid = \"b\"\nwasm = \"x.wasm\"\ngrants = { secrets = [\"openai_key\"] }");
    assert!(secret.contains("plugin[b].grants.secrets") && secret.contains("openai_key"), "{secret}");
    let provider = err("[[plugin]]\nid = \"a\"\nwasm = \"x.wasm\"\ngrants = { ai_provider = \"openai\" }");
    assert!(provider.contains("plugin[a].grants.ai_provider") && provider.contains("openai"), "{provider}");
    let oauth = err("[[plugin]]\nid = \"c\"\nwasm = \"x.wasm\"\ngrants = { oauth = [\"crm\"] }");
    assert!(oauth.contains("plugin[c].grants.oauth") && oauth.contains("[oauth.crm]"), "{oauth}");
    let internal = err(
        "[[plugin]]\nid = \"d\"\nwasm = \"x.wasm\"\ngrants = { http = { allow_internal = [\"10.0.0.0/99\"] } }",
    );
    assert!(internal.contains("10.0.0.0/99"), "{internal}");
    let selfish =
        err("[[plugin]]\nid = \"e\"\nwasm = \"x.wasm\"\n[[route]]\nname = \"r\"\nfrom = \"e\"\nto = \"e\"");
    assert!(selfish.contains("route[0].to") && selfish.contains("never delivered back"), "{selfish}");
    let reserved = err(
        "[[plugin]]\nid = \"e\"\nwasm = \"x.wasm\"\n[[route]]\nname = \"job-callback\"\nfrom = \"shop\"\nto = \"e\"",
    );
    assert!(reserved.contains("route[0].name") && reserved.contains("host's own routes"), "{reserved}");
    let reserved = err(
        "[[plugin]]\nid = \"e\"\nwasm = \"x.wasm\"\n[[route]]\nname = \"webhook\"\nfrom = \"shop\"\nto = \"e\"",
    );
    assert!(reserved.contains("route[0].name") && reserved.contains("host's own routes"), "{reserved}");
    let mode = err(
        "[[plugin]]\nid = \"e\"\nwasm = \"x.wasm\"\n[plugin.webhook]\nverify = { scheme = \"none\" }\nacknowledge = \"later\"",
    );
    assert!(mode.contains("acknowledge") && mode.contains("on-receipt"), "{mode}");
    assert!(matches!(Resolved::load(&dir.path().join("absent.toml")), Err(ConfigError::Read { .. })));
}

async fn post_signed(base: &str, body: &[u8], id: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/hooks/shop"))
        .header("x-shopify-hmac-sha256", shopify_signature("shpss_test_secret", body))
        .body(body.to_vec());
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), "rate_limit = { per_second = 0.5, burst = 2 }").await;
    assert_eq!(post_signed(&base, b"{}", None).await.status(), 200);
    assert_eq!(post_signed(&base, b"{}", None).await.status(), 200);
    let limited = post_signed(&base, b"{}", None).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(store.count().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_addresses_outside_the_allow_list_get_403() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), "allow_ips = [\"10.0.0.0/8\", \"2001:db8::/32\"]").await;
    let refused = post_signed(&base, b"{}", None).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("127.0.0.1"));
    assert_eq!(store.count().unwrap(), 0);

    let dir = tempfile::tempdir().unwrap();
    let (base, _) = start(dir.path(), "allow_ips = [\"127.0.0.0/8\"]").await;
    assert_eq!(post_signed(&base, b"{}", None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_delivery_id_header_deduplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), "delivery_id_header = \"X-Request-Id\"").await;
    for _ in 0..3 {
        assert_eq!(post_signed(&base, b"{\"a\":1}", Some("req-7")).await.status(), 200);
    }
    assert_eq!(post_signed(&base, b"{\"a\":1}", Some("req-8")).await.status(), 200);
    assert_eq!(store.count().unwrap(), 2);

    // Providers' ids are short (a UUID, `evt_...`); a sender that signs its body but makes up
    // the id (it is not signed) cannot have the host keep kilobytes per webhook for the window.
    let longest = "i".repeat(256);
    assert_eq!(post_signed(&base, b"{\"a\":2}", Some(&longest)).await.status(), 200);
    let too_long = post_signed(&base, b"{\"a\":3}", Some(&format!("{longest}i"))).await;
    assert_eq!(too_long.status(), 400);
    assert!(too_long.text().await.unwrap().contains("longer than 256 bytes"));
    assert_eq!(store.count().unwrap(), 3, "the refused webhook was not stored");
}

const LIAR_ENDPOINT: &str = "[[plugin]]\nid = \"liar\"\nwasm = \"LIAR\"\ngrants = { capabilities = [\"emit\"] }\n\
[plugin.webhook]\nverify = { scheme = \"none\" }\n";

/// Sends raw HTTP/1.1 bytes on one keep-alive connection and reads until the server closes it.
async fn exchange(base: &str, raw: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    socket.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(60), socket.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server did not close the connection; got {:?}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// A plugin's reply cannot frame the response: a forged `content-length` would make the next
/// request on a keep-alive connection read a response the plugin wrote. Every invalid reply is
/// a 502 with nothing stored, and the connection stays in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_replies_cannot_split_or_break_responses() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), &LIAR_ENDPOINT.replace("LIAR", LIAR)).await;
    for path in ["smuggle", "chunked", "headers", "switching", "continue", "injection", "cookie"] {
        let raw = format!(
            "POST /hooks/liar/{path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}\
             GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        );
        let answer = exchange(&base, &raw).await;
        let statuses: Vec<&str> =
            answer.match_indices("HTTP/1.1 ").filter_map(|(at, _)| answer.get(at..at + 12)).collect();
        assert_eq!(statuses, ["HTTP/1.1 502", "HTTP/1.1 200"], "{path}: {answer}");
        assert!(!answer.contains("forged"), "{path}: {answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{path}: {answer}");
    }
    assert_eq!(store.count().unwrap(), 0, "no refused reply stored its events");
    let fine =
        reqwest::Client::new().post(format!("{base}/hooks/liar/fine")).body("{}").send().await.unwrap();
    assert_eq!(fine.status(), 202);
    assert_eq!(fine.headers()["content-type"], "text/plain");
    assert_eq!(fine.headers().get_all("x-tag").iter().count(), 2);
    assert_eq!(fine.headers()["content-security-policy"], "sandbox; default-src 'none'");
    assert_eq!(fine.headers()["x-content-type-options"], "nosniff");
    assert_eq!(fine.text().await.unwrap(), "accepted");
    assert_eq!(store.count().unwrap(), 1);
}

/// `limits.fuel` in plugboard.toml: the host `plugboard up` builds meters fuel when a plugin
/// has a budget, so the budget loads and is enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuel_budget_in_the_config_loads_and_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugboard.toml");
    let config = |fuel: u64| {
        format!(
            "[store]\npath = \"events.db\"\n[[plugin]]\nid = \"echo\"\nwasm = {ECHO:?}\nlimits = {{ fuel = {fuel} }}\n"
        )
    };
    std::fs::write(&path, config(500_000_000)).unwrap();
    let resolved = Resolved::load(&path).unwrap();
    let host = plugboard::run::host_for(plugboard::Host::builder(), &resolved).unwrap();
    for spec in resolved.specs {
        host.load(spec).await.unwrap();
    }
    assert!(host.invoke("echo", "ping", &serde_json::json!({})).await.is_ok());

    std::fs::write(&path, config(10)).unwrap();
    let resolved = Resolved::load(&path).unwrap();
    let host = plugboard::run::host_for(plugboard::Host::builder(), &resolved).unwrap();
    let starved = host.load(resolved.specs[0].clone()).await.unwrap_err().to_string();
    assert!(starved.contains("fuel"), "{starved}");
}

/// A deploy that keeps the file's modification time (`cp -p`, `rsync -a`, Nix, reproducible
/// tarballs) still reloads the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_file_replaced_with_its_old_modification_time_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("plugin.wasm");
    std::fs::copy(ECHO, &wasm).unwrap();
    let path = dir.path().join("plugboard.toml");
    std::fs::write(&path, "[store]\npath = \"events.db\"\n[[plugin]]\nid = \"p\"\nwasm = \"plugin.wasm\"\n")
        .unwrap();
    let resolved = Resolved::load(&path).unwrap();
    let host = plugboard::run::host_for(plugboard::Host::builder(), &resolved).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = host.clone();
    let server = tokio::spawn(async move {
        plugboard::run::run(&running, resolved, listener, std::future::pending()).await
    });
    // Generous: the watcher polls each second, then compiles the new build, on a loaded machine.
    let named = async |wanted: &str| {
        for _ in 0..2400 {
            if host.plugin("p").is_some_and(|p| p.name == wanted) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    };
    assert!(named("echo").await, "the server did not load the plugin");
    let stamp = std::fs::metadata(&wasm).unwrap().modified().unwrap();
    // The new build lands under a temporary name with the old file's time, then replaces it.
    let staged = dir.path().join("plugin.wasm.new");
    std::fs::copy(plugboard_tests::SHOPIFY, &staged).unwrap();
    std::fs::File::options().write(true).open(&staged).unwrap().set_modified(stamp).unwrap();
    std::fs::rename(&staged, &wasm).unwrap();
    assert_eq!(std::fs::metadata(&wasm).unwrap().modified().unwrap(), stamp);
    let reloaded = named("shopify").await;
    server.abort();
    assert!(reloaded, "the replaced file was not reloaded");
}

/// `GET /v1/events` pages with a cursor instead of capping silently: every event once, newest
/// first, and an oversized page is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_list_pages_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store, _served) = start_until(dir.path(), "", std::future::pending()).await;
    for n in 0..5 {
        assert_eq!(post_signed(&base, format!("{{\"n\":{n}}}").as_bytes(), None).await.status(), 200);
    }
    let newest_first: Vec<String> = store.recent(10).unwrap().into_iter().map(|e| e.id).collect();
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    let mut next = Some(format!("{base}/v1/events?limit=2"));
    while let Some(url) = next.take() {
        let page = client.get(&url).bearer_auth("admin").send().await.unwrap();
        assert_eq!(page.status(), 200);
        next = page.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            format!("{base}{}", &l[l.find('<').unwrap() + 1..l.find('>').unwrap()])
        });
        let events: Vec<serde_json::Value> = page.json().await.unwrap();
        assert!(events.len() <= 2);
        seen.extend(events.into_iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        assert!(seen.len() <= 6, "paging does not end: {seen:?}");
    }
    assert_eq!(seen, newest_first);
    let too_many =
        client.get(format!("{base}/v1/events?limit=5000")).bearer_auth("admin").send().await.unwrap();
    assert_eq!(too_many.status(), 400);
    assert!(too_many.text().await.unwrap().contains("1 to 1000"));
}

/// `/readyz` says not ready once the event store's writer has stopped, though reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_notices_a_stopped_store_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), "").await;
    let ready = || async { reqwest::get(format!("{base}/readyz")).await.unwrap().status() };
    assert_eq!(ready().await, 200);
    store.close();
    let mut status = ready().await;
    for _ in 0..200 {
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        status = ready().await;
    }
    assert_eq!(status, 503);
    assert_eq!(post_signed(&base, b"{}", None).await.status(), 503, "a webhook is not acknowledged");
}

/// Operators can read an event's payload: escaped and capped in the trace, whole (and never
/// rendered) as a download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_payload_is_shown_escaped_and_served_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = start(dir.path(), "").await;
    let body = format!("{{\"note\":\"\u{1b}[2J<script>alert(1)</script>{}\"}}", "x".repeat(3000));
    assert_eq!(post_signed(&base, body.as_bytes(), None).await.status(), 200);
    let id = store.recent(1).unwrap()[0].id.clone();
    let client = reqwest::Client::new();
    let trace: serde_json::Value = client
        .get(format!("{base}/v1/events/{id}"))
        .bearer_auth("admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payload = &trace["payload"];
    assert_eq!(payload["bytes"], body.len());
    assert_eq!(payload["truncated"], false);
    let text = payload["text"].as_str().unwrap();
    assert!(text.starts_with("{\"note\":\"\\u{1b}[2J<script>") && !text.contains('\u{1b}'), "{text}");
    let raw = client.get(format!("{base}/v1/events/{id}/payload")).bearer_auth("admin").send().await.unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["content-type"], "application/octet-stream");
    assert_eq!(raw.headers()["content-disposition"], "attachment");
    assert_eq!(raw.bytes().await.unwrap(), body.as_bytes());
    let anonymous = client.get(format!("{base}/v1/events/{id}/payload")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// The request timeout covers the connector, not the append: a webhook whose events are still
/// being committed when it runs out is answered with what happened to them (stored), not a 503
/// that makes the provider send it again (and, without a delivery id, store it twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_append_past_the_request_timeout_still_answers_stored() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = std::time::Duration::from_secs(1);
    let (base, store, _) = start_with_timeout(dir.path(), "", timeout, std::future::pending()).await;
    // Another writer holds the database's write lock for three request timeouts.
    let blocker = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let body = br#"{"id":1}"#;
    let posted = tokio::spawn({
        let base = base.clone();
        async move { post_signed(&base, body, None).await }
    });
    tokio::time::sleep(3 * timeout).await;
    assert!(!posted.is_finished(), "the webhook is answered only once its events are committed");
    blocker.execute_batch("COMMIT").unwrap();
    let answer = posted.await.unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    assert_eq!(store.count().unwrap(), 1);
}

/// `acknowledge = "on-receipt"`: a verified webhook is stored as it came (credentials left out)
/// and answered before its connector runs; the connector then turns it into events, linked to
/// the stored request, as a delivery with the pipeline's retries. Duplicates are still dropped,
/// Slack's URL verification still gets the connector's reply, and a connector that fails leaves
/// a dead letter, not a lost webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_acknowledged_on_receipt_is_processed_after_the_answer() {
    use plugboard::store::DeliveryStatus;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shopify.secret"), "shpss_test_secret").unwrap();
    std::fs::write(dir.path().join("slack.secret"), "slack_signing_secret").unwrap();
    let path = dir.path().join("plugboard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[retry]
schedule_ms = [10]
[store]
path = "events.db"
[[plugin]]
id = "shop"
wasm = {ECHO:?}
[plugin.webhook]
verify = {{ scheme = "shopify" }}
secrets = ["file:shopify.secret"]
acknowledge = "on-receipt"
[[plugin]]
id = "slack"
wasm = {SLACK:?}
[plugin.webhook]
verify = {{ scheme = "slack" }}
secrets = ["file:slack.secret"]
acknowledge = "on-receipt"
[[plugin]]
id = "liar"
wasm = {LIAR:?}
grants = {{ capabilities = ["emit"] }}
[plugin.webhook]
verify = {{ scheme = "none" }}
acknowledge = "on-receipt"
"#,
            SLACK = plugboard_tests::SLACK
        ),
    )
    .unwrap();
    let resolved = Resolved::load(&path).unwrap();
    let store_path = resolved.store_path.clone();
    let host = plugboard::run::host_for(plugboard::Host::builder(), &resolved).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(
            async move { plugboard::run::run(&host, resolved, listener, std::future::pending()).await },
        );
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..600 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the server did not start");

    let body = br#"{"id":820982911946154508,"total_price":"199.00"}"#;
    let post = || {
        client
            .post(format!("{base}/hooks/shop/orders"))
            .header("content-type", "application/json")
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-hmac-sha256", shopify_signature("shpss_test_secret", body))
            .header("x-shopify-webhook-id", "d-1")
            .header("authorization", "Bearer sender-credential")
            .header("cookie", "session=sender-cookie")
            .body(body.to_vec())
            .send()
    };
    let accepted = post().await.unwrap();
    assert_eq!(accepted.status(), 200);
    let answer: serde_json::Value = accepted.json().await.unwrap();
    let request_id = answer["accepted"].as_str().expect("the stored request's id").to_owned();
    // Answered with the request stored: it is there, before or whatever the connector did.
    let read = || SqliteStore::open_read_only(&store_path).unwrap();
    let request = read().recent(10).unwrap().into_iter().find(|e| e.id == request_id).expect("stored");
    assert_eq!((request.kind.as_str(), request.source.as_str()), ("webhook/received", "shop"));
    let kept = String::from_utf8_lossy(&request.payload).into_owned();
    assert!(kept.contains("x-shopify-topic") && kept.contains("orders/create"), "{kept}");
    // Neither the sender's credentials nor the signature (which, kept with its body, would let
    // a reader of the store send the webhook again once its id is forgotten).
    let signature = shopify_signature("shpss_test_secret", body);
    for secret in ["sender-credential", "sender-cookie", signature.as_str()] {
        assert!(!kept.contains(secret), "{secret} kept: {kept}");
    }

    // The connector runs after the answer; its event names the request it came from and the
    // build that made it.
    let produced = async |kind: &str| {
        for _ in 0..600 {
            if let Some(e) = read().recent(50).unwrap().into_iter().find(|e| e.kind == kind) {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no {kind} event");
    };
    let echoed = produced("echo/received").await;
    assert_eq!(echoed.payload, body);
    assert!(echoed.attributes.contains(&("path".into(), "/orders".into())), "{:?}", echoed.attributes);
    assert!(echoed.attributes.contains(&("caused_by".into(), request_id.clone())), "{:?}", echoed.attributes);
    // It starts its own lineage, as it would have after processing: the request is no hop.
    assert!(!echoed.attributes.iter().any(|(k, _)| k.starts_with("plugboard.hops") || k == "plugboard.root"));
    let build = echoed.attributes.iter().find(|(k, _)| k == plugboard::ingress::BUILD);
    assert!(build.is_some_and(|(_, b)| b.starts_with("echo@")), "{:?}", echoed.attributes);

    // The provider sends it again: acknowledged, stored and processed once.
    let again = post().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["duplicate"], true);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = read().recent(50).unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "webhook/received" && e.source == "shop").count(), 1);
    assert_eq!(events.iter().filter(|e| e.kind == "echo/received").count(), 1);

    // Slack's URL verification is answered by the connector itself, at once.
    let challenge = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"slack_signing_secret").unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(challenge);
    let signature = format!("v0={}", hex(&mac.finalize().into_bytes()));
    let verified = client
        .post(format!("{base}/hooks/slack"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", signature)
        .body(challenge.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(verified.text().await.unwrap(), "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");

    // A connector whose reply is invalid: the sender was answered, the request is kept, and
    // the failure is a dead letter an operator can see and replay.
    let liar = client.post(format!("{base}/hooks/liar/switching")).body("{}").send().await.unwrap();
    assert_eq!(liar.status(), 200);
    let mut dead = Vec::new();
    for _ in 0..600 {
        dead = read().deliveries_before(DeliveryStatus::Dead, None, 10).unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].route.as_str(), dead[0].target.as_str()), ("webhook", "liar"));
    assert!(dead[0].last_error.as_deref().unwrap_or("").contains("101"), "{:?}", dead[0].last_error);
    assert_eq!(dead[0].attempts, 1, "an invalid reply is not retried");

    // A connector that replies 503 failed as the sender would have seen it: tried again on the
    // retry schedule (two attempts here), then a dead letter.
    let unavailable = client.post(format!("{base}/hooks/liar/unavailable")).body("{}").send().await.unwrap();
    assert_eq!(unavailable.status(), 200);
    for _ in 0..600 {
        dead = read().deliveries_before(DeliveryStatus::Dead, None, 10).unwrap();
        if dead.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    let retried = dead.iter().find(|d| d.last_error.as_deref().unwrap_or("").contains("replied 503"));
    assert!(retried.is_some_and(|d| d.attempts == 2), "{dead:?}");
    server.abort();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
