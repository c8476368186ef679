//! Outbound HTTP through the host, end to end: a real plugin (echo's `fetch` sends whatever
//! request its input describes, so it can play a hostile plugin) against real HTTP servers on
//! loopback.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use base64::Engine as _;
use plugboard::egress::calls::CallFilter;
use plugboard::egress::oauth::OAuthClient;
use plugboard::egress::secrets::Secret;
use plugboard::types::Error as WitError;
use plugboard::{Capability, Grants, Host, HttpGrant, InvokeError, Limits};
use plugboard_tests::ECHO;
use serde_json::{Value, json};

use common::load;

const SECRET: &str = "sk-live-7f3a9c";

/// What the upstream saw and how it behaves.
#[derive(Default)]
struct Upstream {
    hits: AtomicU32,
    token_requests: AtomicU32,
    /// The access token the API accepts; bumped to revoke the current one.
    token_generation: AtomicU32,
    /// Every header value the upstream received, to search for the secret.
    seen: std::sync::Mutex<Vec<String>>,
}

type Shared = Arc<Upstream>;

/// Keeps every header value and `extra` (query, body) an endpoint received, prefixed by it.
fn remember(up: &Upstream, endpoint: &str, headers: &HeaderMap, extra: &str) {
    let mut seen = up.seen.lock().unwrap();
    seen.extend(headers.values().map(|v| format!("{endpoint} {}", String::from_utf8_lossy(v.as_bytes()))));
    seen.push(format!("{endpoint} {extra}"));
}

async fn upstream() -> (SocketAddr, Shared) {
    let state = Shared::default();
    let app = axum::Router::new()
        .route("/hello", get(|| async { "hi" }))
        // Echoes the request's credentials, as debugging endpoints and some error pages do.
        .route(
            "/echo",
            get(|headers: HeaderMap| async move {
                let auth =
                    headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let decoded = auth
                    .strip_prefix("Basic ")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let encoding = headers.get("accept-encoding").and_then(|v| v.to_str().ok()).unwrap_or("");
                let range = headers.get("range").and_then(|v| v.to_str().ok()).unwrap_or("none");
                (
                    [("x-echo", auth.clone())],
                    format!("you sent: {auth} ({decoded}) encoding={encoding} range={range}"),
                )
            }),
        )
        .route(
            "/auth",
            any(|State(up): State<Shared>, headers: HeaderMap| async move {
                remember(&up, "/auth", &headers, "");
                let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some(&format!("Bearer {SECRET}"));
                if ok { "authorized" } else { "anonymous" }
            }),
        )
        .route(
            "/basic",
            get(|headers: HeaderMap| async move {
                // base64("bot:pa55") per RFC 7617.
                let ok =
                    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic Ym90OnBhNTU=");
                if ok { "authorized" } else { "anonymous" }
            }),
        )
        .route(
            "/sink",
            any(
                |State(up): State<Shared>,
                 headers: HeaderMap,
                 q: Query<Vec<(String, String)>>,
                 body: String| async move {
                    let query: Vec<String> = q.0.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                    remember(&up, "/sink", &headers, &format!("{} {body}", query.join("&")));
                    "stored"
                },
            ),
        )
        .route(
            "/to",
            get(|Query(q): Query<Vec<(String, String)>>| async move {
                let to = q.into_iter().find(|(k, _)| k == "url").map(|(_, v)| v).unwrap_or_default();
                (StatusCode::FOUND, [("location", to)], "")
            }),
        )
        .route(
            "/flaky",
            get(|State(up): State<Shared>| async move {
                // 503 twice, then 200.
                if up.hits.fetch_add(1, Ordering::SeqCst) < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after-ms", "20")], "busy").into_response()
                } else {
                    "recovered".into_response()
                }
            }),
        )
        .route(
            "/throttled",
            any(|Query(q): Query<Vec<(String, String)>>| async move {
                let (name, value) = q.into_iter().next().unwrap_or(("retry-after-ms".into(), "20".into()));
                let mut headers = HeaderMap::new();
                headers.insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
                (StatusCode::TOO_MANY_REQUESTS, headers, "slow down")
            }),
        )
        .route(
            "/final",
            get(|| async {
                (StatusCode::SERVICE_UNAVAILABLE, [("x-should-retry", "false")], "down for good")
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "late"
            }),
        )
        .route(
            "/oauth/token",
            post(|State(up): State<Shared>, headers: HeaderMap, body: String| async move {
                up.token_requests.fetch_add(1, Ordering::SeqCst);
                // Client credentials with HTTP Basic client authentication (RFC 6749 4.4, 2.3.1).
                let client_ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Basic Y2xpZW50LTE6Y2xpZW50LXNlY3JldA==");
                if !client_ok || !body.contains("grant_type=client_credentials") {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})))
                        .into_response();
                }
                let token = format!("tok-{}", up.token_generation.load(Ordering::SeqCst));
                axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
                    .into_response()
            }),
        )
        .route(
            "/oauth/api",
            get(|State(up): State<Shared>, headers: HeaderMap| async move {
                remember(&up, "/oauth/api", &headers, "");
                let current = format!("Bearer tok-{}", up.token_generation.load(Ordering::SeqCst));
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&current) {
                    "granted".into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, state)
}

fn host() -> Host {
    Host::builder()
        .epoch_tick(Duration::from_millis(2))
        .pin_dns("metadata.test", &["169.254.169.254".parse::<IpAddr>().unwrap()])
        .build()
        .unwrap()
}

async fn fetch(host: &Host, id: &str, input: Value) -> Result<Value, InvokeError> {
    host.invoke(id, "fetch", &input).await.map(|i| i.output)
}

fn plugin_error(result: Result<Value, InvokeError>) -> WitError {
    match result {
        Err(InvokeError::Plugin(e)) => e,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hostile_plugin_is_refused_everywhere_and_the_secret_leaks_nowhere() {
    let (addr, up) = upstream().await;
    let port = addr.port();
    let bound = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plugboard.db");
    let calls = Arc::new(plugboard::store::SqliteCallLog::open(&db, 10_000).unwrap());
    let host = Host::builder()
        .epoch_tick(Duration::from_millis(2))
        .pin_dns("metadata.test", &["169.254.169.254".parse::<IpAddr>().unwrap()])
        .call_log(calls.clone())
        .kv_store(Arc::new(plugboard::store::SqliteKv::open(&db).unwrap()))
        .build()
        .unwrap();
    host.set_secret("api", Secret::new(SECRET, &[bound.as_str()]).unwrap());
    // Everything the plugin aims at is in its allow-list, so the refusals below come from the
    // other checks: the address policy, secret bindings, redirects and limits.
    let grants = Grants::none()
        .with(Capability::Log)
        .allow_http(&bound)
        .allow_http(&format!("http://localhost:{port}"))
        .allow_http("http://169.254.169.254")
        .allow_http("http://metadata.test")
        .allow_internal("127.0.0.1")
        .with_secret("api");
    load(&host, "hostile", ECHO, grants.clone(), Limits::default()).await;
    let with_secret =
        |url: String| json!({ "url": url, "headers": { "authorization": "Bearer {{secret:api}}" } });

    // The legitimate use works: the secret goes where it is bound.
    assert_eq!(
        fetch(&host, "hostile", with_secret(format!("{bound}/auth"))).await.unwrap()["body"],
        "authorized"
    );

    let mut refused: Vec<(String, WitError)> = Vec::new();
    let mut attempt = async |what: &str, input: Value| {
        let e = plugin_error(fetch(&host, "hostile", input).await);
        refused.push((what.to_owned(), e));
    };
    attempt("a host it was not granted", json!({ "url": "https://evil.example/collect" })).await;
    attempt(
        "a granted host that redirects to an ungranted one",
        json!({ "url": format!("{bound}/to?url=https://evil.example/steal") }),
    )
    .await;
    attempt(
        "a granted host that redirects to the metadata service",
        json!({ "url": format!("{bound}/to?url=http://169.254.169.254/latest/meta-data/") }),
    )
    .await;
    attempt(
        "a name that resolves to 127.0.0.1 (only the address is excepted)",
        json!({ "url": format!("http://localhost:{port}/hello") }),
    )
    .await;
    attempt(
        "a name that resolves to 169.254.169.254",
        json!({ "url": "http://metadata.test/latest/meta-data/" }),
    )
    .await;
    attempt("the metadata address itself", json!({ "url": "http://169.254.169.254/latest/meta-data/iam" }))
        .await;
    attempt(
        "its secret towards a host the secret is not bound to",
        with_secret(format!("http://localhost:{port}/sink")),
    )
    .await;
    attempt(
        "a secret it was not granted",
        json!({ "url": format!("{bound}/sink"), "headers": { "x-key": "{{secret:other}}" } }),
    )
    .await;
    attempt(
        "an OAuth2 token it was not granted",
        json!({ "url": format!("{bound}/sink"), "headers": { "authorization": "Bearer {{oauth:crm}}" } }),
    )
    .await;
    for (what, e) in &refused {
        assert!(matches!(e, WitError::Denied(_)), "{what}: expected denied, got {e:?}");
    }

    // A placeholder anywhere but a header value is not filled: the upstream gets the literal.
    let sneaky = json!({ "url": format!("{bound}/sink?k={{{{secret:api}}}}"), "method": "POST", "body": "{{secret:api}}" });
    assert_eq!(fetch(&host, "hostile", sneaky).await.unwrap()["body"], "stored");

    // A redirect from the bound origin to another origin drops the secret-bearing header.
    let hop = json!({
        "url": format!("{bound}/to?url=http://127.0.0.1:{port}/auth"),
        "headers": { "authorization": "Bearer {{secret:api}}" },
    });
    assert_eq!(fetch(&host, "hostile", hop).await.unwrap()["body"], "authorized", "same origin keeps it");
    load(&host, "hostile-2", ECHO, grants.clone().allow_internal("localhost"), Limits::default()).await;
    let cross = json!({
        "url": format!("{bound}/to?url=http://localhost:{port}/auth"),
        "headers": { "authorization": "Bearer {{secret:api}}" },
    });
    assert_eq!(fetch(&host, "hostile-2", cross).await.unwrap()["body"], "anonymous", "cross origin drops it");

    // Every limit, each with its own typed error.
    let limited = |limits: Limits| load(&host, "limited", ECHO, grants.clone(), limits);
    limited(Limits { max_http_requests: 0, ..Limits::default() }).await;
    assert!(
        matches!(plugin_error(fetch(&host, "limited", json!({"url": format!("{bound}/hello")})).await), WitError::Denied(m) if m.contains("at most 0"))
    );
    limited(Limits { max_http_request_bytes: 16, ..Limits::default() }).await;
    let big = json!({"url": format!("{bound}/sink"), "method": "POST", "body": "x".repeat(17)});
    assert!(
        matches!(plugin_error(fetch(&host, "limited", big).await), WitError::InvalidInput(m) if m.contains("limit"))
    );
    limited(Limits { max_http_response_bytes: 1, ..Limits::default() }).await;
    assert!(
        matches!(plugin_error(fetch(&host, "limited", json!({"url": format!("{bound}/hello")})).await), WitError::Upstream(u) if u.message.contains("limit"))
    );
    limited(Limits { http_timeout_ms: 100, ..Limits::default() }).await;
    assert!(matches!(
        plugin_error(fetch(&host, "limited", json!({"url": format!("{bound}/slow")})).await),
        WitError::Timeout(_)
    ));
    limited(Limits { max_http_concurrency: 1, timeout_ms: 300, ..Limits::default() }).await;
    let (a, b) = tokio::join!(
        fetch(&host, "limited", json!({"url": format!("{bound}/slow")})),
        fetch(&host, "limited", json!({"url": format!("{bound}/slow")}))
    );
    let timeouts = [a, b]
        .into_iter()
        .filter(|r| {
            matches!(r, Err(InvokeError::Plugin(WitError::Timeout(_))) | Err(InvokeError::Timeout(_)))
        })
        .count();
    assert_eq!(timeouts, 2, "one waits for the only slot, the other outlives its own deadline");
    let rate = HttpGrant {
        rate_limits: vec![plugboard::egress::policy::DestinationLimit {
            destination: bound.clone(),
            per_second: 0.5,
            burst: 1.0,
            max_wait_ms: 0,
            scope: Default::default(),
        }],
        ..grants.http.clone()
    };
    load(&host, "limited", ECHO, Grants { http: rate, ..grants.clone() }, Limits::default()).await;
    fetch(&host, "limited", json!({"url": format!("{bound}/hello")})).await.unwrap();
    assert!(
        matches!(plugin_error(fetch(&host, "limited", json!({"url": format!("{bound}/hello")})).await), WitError::RateLimited(Some(ms)) if ms > 0)
    );
    let host_header = json!({"url": format!("{bound}/hello"), "headers": {"Host": "admin.internal"}});
    assert!(matches!(plugin_error(fetch(&host, "hostile", host_header).await), WitError::InvalidInput(_)));

    // The secret's value is nowhere it should not be: errors, the call log, metrics, the
    // database (events, call log, kv), and what unbound destinations received.
    let errors: Vec<String> = refused.iter().map(|(w, e)| format!("{w}: {e:?}")).collect();
    let read_log = || {
        serde_json::to_string(
            &host.calls().query(&CallFilter { limit: Some(10_000), ..CallFilter::default() }),
        )
    };
    // The call log's writer thread commits in batches: wait (up to 30 s) for the refusals.
    let mut call_log = read_log().unwrap();
    for _ in 0..1500 {
        if call_log.contains("\"outcome\":\"denied\"") && call_log.contains("metadata.test") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        call_log = read_log().unwrap();
    }
    assert!(call_log.contains("\"outcome\":\"denied\""), "refusals are recorded: {call_log}");
    assert!(call_log.contains("metadata.test"), "{call_log}");
    let metrics = host.metrics().render();
    assert!(metrics.contains("plugboard_http_denied_total{instance=\"hostile\"}"), "{metrics}");
    let mut database = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        database.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for (place, text) in [
        ("errors", errors.join("\n")),
        ("call log", call_log),
        ("metrics", metrics),
        ("database", String::from_utf8_lossy(&database).into_owned()),
    ] {
        assert!(!text.contains(SECRET), "the secret leaked into the {place}");
    }
    // Only the /auth endpoint ever received it, though /sink was sent placeholders every way.
    let seen = up.seen.lock().unwrap();
    assert!(seen.iter().any(|v| v.starts_with("/sink ") && v.contains("{{secret:api}}")), "{seen:?}");
    let leaked: Vec<&String> =
        seen.iter().filter(|v| v.contains(SECRET) && !v.starts_with("/auth ")).collect();
    assert!(leaked.is_empty(), "the secret reached an unbound place: {leaked:?}");
}

#[tokio::test]
async fn the_host_retries_what_is_safe_and_hands_long_waits_back_as_rate_limited() {
    let (addr, up) = upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let host = host();
    let grants = Grants::none().allow_http(&origin).allow_internal("127.0.0.1");
    load(&host, "caller", ECHO, grants, Limits { timeout_ms: 5_000, ..Limits::default() }).await;
    let attempts = |path: &str| {
        host.calls()
            .query(&CallFilter { instance: Some("caller".into()), ..CallFilter::default() })
            .into_iter()
            .filter(|c| c.path.starts_with(path))
            .count()
    };

    // Without the opt-in the plugin sees the 503 as it came.
    let first = fetch(&host, "caller", json!({"url": format!("{origin}/flaky")})).await.unwrap();
    assert_eq!(first["status"], 503);
    // With it, the host waits as asked (retry-after-ms) and retries until it recovers.
    let second =
        fetch(&host, "caller", json!({"url": format!("{origin}/flaky"), "retry": true})).await.unwrap();
    assert_eq!(second, json!({"status": 200, "body": "recovered"}));
    assert_eq!(up.hits.load(Ordering::SeqCst), 3);
    assert_eq!(attempts("/flaky"), 3);

    // `x-should-retry: false` is obeyed.
    let fin = fetch(&host, "caller", json!({"url": format!("{origin}/final"), "retry": true})).await.unwrap();
    assert_eq!(fin["status"], 503);
    assert_eq!(attempts("/final"), 1);

    // A 429 that keeps coming is handed back as rate-limited with the server's wait, after
    // the attempts; one whose wait would outlast the deadline, at once.
    let short = fetch(
        &host,
        "caller",
        json!({"url": format!("{origin}/throttled?retry-after-ms=20"), "retry": true}),
    )
    .await;
    assert!(matches!(plugin_error(short), WitError::RateLimited(Some(20))));
    assert_eq!(attempts("/throttled"), 3);
    let long = fetch(
        &host,
        "caller",
        json!({"url": format!("{origin}/throttled?retry-after=120"), "method": "POST", "retry": true}),
    )
    .await;
    assert!(matches!(plugin_error(long), WitError::RateLimited(Some(120_000))));
    assert_eq!(attempts("/throttled"), 4);
    let date = "Wed, 21 Oct 2099 07:28:00 GMT";
    let dated = fetch(
        &host,
        "caller",
        json!({"url": format!("{origin}/throttled?retry-after={date}"), "retry": true}),
    )
    .await;
    assert!(matches!(plugin_error(dated), WitError::RateLimited(Some(ms)) if ms > 1_000_000));
    // The call log says what the upstream answered: a 429 is not `ok`, nor is a 503.
    let outcomes = |path: &str| {
        host.calls()
            .query(&CallFilter { instance: Some("caller".into()), ..CallFilter::default() })
            .into_iter()
            .filter(|c| c.path.starts_with(path))
            .map(|c| c.outcome)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(outcomes("/throttled"), ["rate-limited".to_string()].into());
    assert_eq!(outcomes("/final"), ["upstream-error".to_string()].into());

    // Connection failures: an idempotent GET is retried, a POST without the opt-in is not.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed_origin = format!("http://127.0.0.1:{closed}");
    load(
        &host,
        "caller-2",
        ECHO,
        Grants::none().allow_http(&closed_origin).allow_internal("127.0.0.1"),
        Limits::default(),
    )
    .await;
    let get = fetch(&host, "caller-2", json!({"url": format!("{closed_origin}/x")})).await;
    assert!(matches!(plugin_error(get), WitError::Upstream(u) if u.status == 0));
    let post = fetch(&host, "caller-2", json!({"url": format!("{closed_origin}/y"), "method": "POST"})).await;
    assert!(matches!(plugin_error(post), WitError::Upstream(_)));
    let tried = |path: &str| {
        host.calls()
            .query(&CallFilter { instance: Some("caller-2".into()), ..CallFilter::default() })
            .into_iter()
            .filter(|c| c.path == path)
            .count()
    };
    assert_eq!((tried("/x"), tried("/y")), (3, 1));

    // Each attempt is in the metrics, by instance, host and status.
    let metrics = host.metrics().render();
    assert!(
        metrics.contains("plugboard_http_calls_total{instance=\"caller\",host=\"127.0.0.1\",status=\"503\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plugboard_http_retries_total{instance=\"caller\",host=\"127.0.0.1\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn oauth_tokens_are_fetched_once_reused_and_renewed_after_a_401() {
    let (addr, up) = upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let host = host();
    let client =
        OAuthClient::new(&format!("{origin}/oauth/token"), "client-1", "client-secret", &[origin.as_str()])
            .unwrap();
    host.set_oauth_client("crm", client);
    host.set_secret("bot", Secret::new("bot:pa55", &[origin.as_str()]).unwrap());
    let grants =
        Grants::none().allow_http(&origin).allow_internal("127.0.0.1").with_oauth("crm").with_secret("bot");
    load(&host, "crm", ECHO, grants, Limits::default()).await;
    let call =
        json!({"url": format!("{origin}/oauth/api"), "headers": {"authorization": "Bearer {{oauth:crm}}"}});

    for _ in 0..3 {
        assert_eq!(
            fetch(&host, "crm", call.clone()).await.unwrap(),
            json!({"status": 200, "body": "granted"})
        );
    }
    assert_eq!(up.token_requests.load(Ordering::SeqCst), 1, "one token serves every call until it expires");

    // The provider revokes the token: the API answers 401, the host fetches a new token and
    // sends the request again; the plugin only sees the success.
    up.token_generation.fetch_add(1, Ordering::SeqCst);
    assert_eq!(fetch(&host, "crm", call.clone()).await.unwrap()["status"], 200);
    assert_eq!(up.token_requests.load(Ordering::SeqCst), 2);

    // Basic credentials from a `user:password` secret.
    let basic = json!({"url": format!("{origin}/basic"), "headers": {"authorization": "{{basic:bot}}"}});
    assert_eq!(fetch(&host, "crm", basic).await.unwrap()["body"], "authorized");

    // A client whose credentials the token endpoint refuses gives `unauthorized`.
    let wrong =
        OAuthClient::new(&format!("{origin}/oauth/token"), "client-1", "wrong", &[origin.as_str()]).unwrap();
    host.set_oauth_client("crm", wrong);
    host.set_oauth_client(
        "crm",
        OAuthClient::new(&format!("{origin}/oauth/token"), "client-1", "nope", &[origin.as_str()]).unwrap(),
    );
    let err = plugin_error(fetch(&host, "crm", call).await);
    assert!(matches!(&err, WitError::Unauthorized(m) if m.contains("invalid_client")), "{err:?}");
    assert!(!format!("{err:?}").contains("nope"));
}

#[tokio::test]
async fn ai_answers_at_temperature_zero_are_cached_and_budgets_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let with_store = || {
        let kv = plugboard::store::SqliteKv::open(&dir.path().join("kv.db")).unwrap();
        Host::builder().kv_store(Arc::new(kv)).build().unwrap()
    };
    let host = with_store();
    load(&host, "canned", plugboard_tests::CANNED_AI, Grants::none(), Limits::default()).await;
    let grants = Grants::none().with_ai_provider("canned");
    load(&host, "asker", ECHO, grants.clone(), Limits::default()).await;

    let first = host.invoke("asker", "ask", &json!({"prompt": "is order 1 risky?"})).await.unwrap();
    let second = host.invoke("asker", "ask", &json!({"prompt": "is order 1 risky?"})).await.unwrap();
    assert_eq!(first.output, second.output);
    let usage = host.ai_usage().await;
    assert_eq!(usage.len(), 1);
    let (plugin, provider, u) = &usage[0];
    assert_eq!((plugin.as_str(), provider.as_str(), u.calls, u.cache_hits), ("asker", "canned", 1, 1));
    assert!(u.prompt_tokens > 0 && u.completion_tokens > 0);
    // The totals are kept in the store: a restarted host reports them.
    assert_eq!(with_store().ai_usage().await, usage);
    let metrics = host.metrics().render();
    assert!(
        metrics.contains("plugboard_ai_cache_hits_total{plugin=\"asker\",provider=\"canned\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plugboard_ai_cache_misses_total{plugin=\"asker\",provider=\"canned\"} 1"),
        "{metrics}"
    );

    // An answer the plugin could not use is not cached: its retry asks the provider again,
    // and only the answer that was used is served from the cache afterwards.
    let rejected = json!({"prompt": "is order 2 risky?", "reject": true});
    host.invoke("asker", "ask", &rejected).await.unwrap_err();
    host.invoke("asker", "ask", &json!({"prompt": "is order 2 risky?"})).await.unwrap();
    host.invoke("asker", "ask", &json!({"prompt": "is order 2 risky?"})).await.unwrap();
    let u = host.ai_usage().await[0].2;
    assert_eq!((u.calls, u.cache_hits), (3, 2), "{u:?}");

    // An answer counts against what the asking invocation may hold: past `max_output_bytes`
    // the `ai` call itself is refused (before the plugin can make an output of it).
    let small = Limits { max_output_bytes: 1_000, ..Limits::default() };
    load(&host, "cramped-asker", ECHO, grants.clone(), small).await;
    let long = json!({"prompt": "x".repeat(2_000)});
    let err = host.invoke("cramped-asker", "ask", &long).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::QuotaExceeded(m)) if m.contains("max_output_bytes")),
        "{err}"
    );

    // A budget smaller than one answer: the first call spends it, the next is refused.
    let budget = Grants { ai_daily_tokens: Some(1), ..grants };
    load(&host, "thrifty", ECHO, budget, Limits::default()).await;
    host.invoke("thrifty", "ask", &json!({"prompt": "one"})).await.unwrap();
    let err = host.invoke("thrifty", "ask", &json!({"prompt": "two"})).await.unwrap_err();
    assert!(matches!(&err, InvokeError::Plugin(WitError::QuotaExceeded(m)) if m.contains("budget")), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn kv_quotas_give_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::builder()
        .kv_store(Arc::new(plugboard::store::SqliteKv::open(&dir.path().join("kv.db")).unwrap()))
        .build()
        .unwrap();
    let grants = Grants::none().with(Capability::Kv);
    load(&host, "roomy", ECHO, grants.clone(), Limits::default()).await;
    host.invoke("roomy", "kv-roundtrip", &json!({"n": 1})).await.unwrap();
    load(&host, "cramped", ECHO, grants, Limits { kv_max_bytes: 8, ..Limits::default() }).await;
    let err = host.invoke("cramped", "kv-roundtrip", &json!({"n": 1})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Plugin(WitError::QuotaExceeded(m)) if m.contains("8 bytes")),
        "{err}"
    );
}

/// What the host filled into a request (a secret, Basic credentials, an OAuth2 token) never
/// comes back to the plugin, even from an upstream that echoes it.
#[tokio::test]
async fn an_upstream_that_echoes_credentials_hands_back_none_of_them() {
    let (addr, _up) = upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let host = host();
    host.set_secret("api", Secret::new(SECRET, &[origin.as_str()]).unwrap());
    host.set_secret("bot", Secret::new("bot:pa55word", &[origin.as_str()]).unwrap());
    let client =
        OAuthClient::new(&format!("{origin}/oauth/token"), "client-1", "client-secret", &[origin.as_str()])
            .unwrap();
    host.set_oauth_client("crm", client);
    let grants = Grants::none()
        .allow_http(&origin)
        .allow_internal("127.0.0.1")
        .with_secret("api")
        .with_secret("bot")
        .with_oauth("crm");
    load(&host, "nosy", ECHO, grants, Limits::default()).await;
    // The plugin asks for a compressed, partial answer, which redaction could not read whole.
    let echo = |auth: &str| {
        json!({ "url": format!("{origin}/echo"), "headers": {
            "authorization": auth, "accept-encoding": "gzip", "range": "bytes=0-9"
        } })
    };
    for (placeholder, leaks) in [
        ("Bearer {{secret:api}}", vec![SECRET]),
        ("{{basic:bot}}", vec!["bot:pa55word", "Ym90OnBhNTV3b3Jk"]),
        ("Bearer {{oauth:crm}}", vec!["tok-0"]),
    ] {
        let answer = fetch(&host, "nosy", echo(placeholder)).await.unwrap();
        let body = answer["body"].as_str().unwrap();
        assert!(body.starts_with("you sent: ") && body.contains("[REDACTED]"), "{placeholder}: {body}");
        assert!(body.ends_with("encoding=identity range=none"), "{placeholder}: {body}");
        for leak in leaks {
            assert!(!body.contains(leak), "{placeholder}: {leak} came back in {body}");
        }
    }
}

/// Two nodes (two hosts, each with its own connection to one NATS server's key-value bucket)
/// whose instance sends to one destination: with the limit's scope `cluster` they share it, so
/// the destination sees the limit's rate, not twice it; with `node` each counts its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_scoped_rate_limit_holds_across_nodes() {
    use plugboard::egress::policy::{DestinationLimit, LimitScope};
    use plugboard::store::nats::{NatsKv, NatsSettings};
    let servers = plugboard_tests::nats::NatsServers::start(1, true);
    let settings = NatsSettings::new(&servers.urls[0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let connect = async || loop {
        match NatsKv::connect(&settings).await {
            Ok(kv) => return Arc::new(kv),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("NATS not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("nats-server never became ready: {e}\n{}", servers.logs()),
        }
    };
    let (up, _) = upstream().await;
    let origin = format!("http://{up}");
    let request = || plugboard::types::HttpRequest {
        method: "GET".into(),
        url: format!("{origin}/hello"),
        headers: vec![],
        body: Vec::new(),
        retry: false,
    };
    // 2 per second with a burst of 4: a window of 2 s that allows 4.
    let (per_second, burst) = (2.0, 4.0);
    for (scope, id) in [(LimitScope::Cluster, "shared"), (LimitScope::Node, "apart")] {
        let mut grants = Grants::none().allow_http(&origin).allow_internal("127.0.0.1");
        let limit =
            DestinationLimit { destination: origin.clone(), per_second, burst, max_wait_ms: 0, scope };
        grants.http.rate_limits.push(limit);
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let host = Host::builder().kv_store(connect().await).build().unwrap();
            load(&host, id, ECHO, grants.clone(), Limits::default()).await;
            nodes.push(host);
        }
        let started = std::time::Instant::now();
        let mut allowed = 0;
        for i in 0..12 {
            match nodes[i % 2].send_as(id, request()).await {
                Ok(response) => {
                    assert_eq!(response.status, 200);
                    allowed += 1;
                }
                Err(WitError::RateLimited(Some(ms))) => assert!(ms > 0),
                Err(e) => panic!("{scope:?}: {e:?}"),
            }
        }
        // Counted in the shared store, not in a node's bucket standing in for it.
        for node in &nodes {
            let metrics = node.metrics().render();
            assert!(!metrics.contains("operation=\"rate-limit\""), "{metrics}");
        }
        // What the rate allows in the time the requests took, beyond the first burst.
        let refilled = (started.elapsed().as_secs_f64() * per_second).ceil() as usize;
        match scope {
            LimitScope::Cluster => assert!(
                (4..=4 + refilled + 1).contains(&allowed),
                "{allowed} of 12 went through two nodes sharing a limit of 4 (+{refilled} refilled)"
            ),
            LimitScope::Node => assert!(allowed >= 8, "{allowed}: each node lets its own burst of 4 through"),
        }

        // What counting in the cluster costs per request: a limit never reached, 200 requests
        // (printed, not asserted: the node scope is the baseline of the same run).
        let mut roomy = Grants::none().allow_http(&origin).allow_internal("127.0.0.1");
        roomy.http.rate_limits.push(DestinationLimit { per_second: 1e6, burst: 1e6, ..limit_of(&grants) });
        let fast = format!("{id}-fast");
        load(&nodes[0], &fast, ECHO, roomy, Limits::default()).await;
        let started = std::time::Instant::now();
        for _ in 0..200 {
            nodes[0].send_as(&fast, request()).await.unwrap();
        }
        eprintln!(
            "{scope:?}-scoped limit: {:.0} us per request",
            started.elapsed().as_micros() as f64 / 200.0
        );
    }
}

fn limit_of(grants: &Grants) -> plugboard::egress::policy::DestinationLimit {
    grants.http.rate_limits[0].clone()
}
