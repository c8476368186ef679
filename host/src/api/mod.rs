//! The HTTP server: the webhook endpoint ([`crate::ingress`]) and, next to it, the operator's
//! API (`admin`), the async jobs API (`jobs`), the live event stream (`stream`), the dashboard
//! and what monitoring reads (`health`). One [`AppState`] serves them all.

mod admin;
mod auth;
mod dashboard;
mod error;
mod health;
mod jobs;
mod paging;
mod recordings;
mod stream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use crate::Host;
use crate::config::{ServerConfig, StoreConfig};
use crate::ingress::{Endpoint, Webhooks};
use crate::pipeline::Routes;
use crate::store::EventStore;

/// What the server's handlers share. Made only by [`AppState::builder`], which gives the
/// webhook endpoint the same host, store and dispatcher.
pub struct AppState {
    /// The plugin host.
    host: Host,
    /// The event log.
    store: Arc<dyn EventStore>,
    /// Woken when new deliveries are queued.
    dispatcher: Option<Arc<tokio::sync::Notify>>,
    /// The bearer token of the async jobs API; the API is off without one.
    jobs_token: Option<Vec<u8>>,
    /// The bearer token of the admin API; the API is off without one.
    admin_token: Option<Vec<u8>>,
    /// The webhook endpoint's own state.
    webhooks: Arc<Webhooks>,
    /// The MCP server at `/mcp`, when `[mcp]` is configured.
    mcp: Option<(Arc<crate::mcp::McpState>, crate::manifest::McpConfig)>,
}

impl AppState {
    /// Starts a server's state: no webhook endpoints, no routes, no dispatcher, both APIs off,
    /// and the configuration file's defaults for timeouts and sizes.
    pub fn builder(host: Host, store: Arc<dyn EventStore>) -> AppStateBuilder {
        let server = ServerConfig::default();
        AppStateBuilder {
            host,
            store,
            routes: Arc::default(),
            dispatcher: None,
            endpoints: BTreeMap::new(),
            request_timeout: Duration::from_millis(server.request_timeout_ms),
            dedup_window_ms: StoreConfig::default().dedup_window_secs.saturating_mul(1000),
            max_body_bytes: server.max_body_bytes,
            jobs_token: None,
            admin_token: None,
            mcp: None,
        }
    }

    /// Tells the dispatcher that deliveries were queued.
    fn wake_dispatcher(&self) {
        if let Some(notify) = &self.dispatcher {
            notify.notify_one();
        }
    }
}

/// Builds an [`AppState`]; see [`AppState::builder`].
pub struct AppStateBuilder {
    host: Host,
    store: Arc<dyn EventStore>,
    routes: Arc<Routes>,
    dispatcher: Option<Arc<tokio::sync::Notify>>,
    endpoints: BTreeMap<String, Endpoint>,
    request_timeout: Duration,
    dedup_window_ms: u64,
    max_body_bytes: usize,
    jobs_token: Option<Vec<u8>>,
    admin_token: Option<Vec<u8>>,
    mcp: Option<(crate::mcp::McpClients, crate::manifest::McpConfig)>,
}

impl AppStateBuilder {
    /// Turns the MCP server on at `/mcp` for `clients`, within `config`'s Origin and Host rules.
    pub fn mcp(mut self, clients: crate::mcp::McpClients, config: crate::manifest::McpConfig) -> Self {
        self.mcp = Some((clients, config));
        self
    }

    /// Where stored events go next.
    pub fn routes(mut self, routes: Arc<Routes>) -> Self {
        self.routes = routes;
        self
    }

    /// The dispatcher to wake when deliveries are queued.
    pub fn dispatcher(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.dispatcher = Some(notify);
        self
    }

    /// The instances that receive webhooks, with their checks.
    pub fn endpoints(mut self, endpoints: BTreeMap<String, Endpoint>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The longest a connector may take over one webhook.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long delivery ids are remembered, in milliseconds.
    pub fn dedup_window_ms(mut self, ms: u64) -> Self {
        self.dedup_window_ms = ms;
        self
    }

    /// The largest request body accepted (webhooks and the API; component uploads may be
    /// larger).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Turns the jobs API on, guarded by this bearer token.
    pub fn jobs_token(mut self, token: Option<Vec<u8>>) -> Self {
        self.jobs_token = token;
        self
    }

    /// Turns the admin API on, guarded by this bearer token.
    pub fn admin_token(mut self, token: Option<Vec<u8>>) -> Self {
        self.admin_token = token;
        self
    }

    /// The state, ready for [`router`] or [`serve`].
    pub fn build(self) -> Arc<AppState> {
        let webhooks = Arc::new(Webhooks {
            host: self.host.clone(),
            store: self.store.clone(),
            endpoints: self.endpoints,
            request_timeout: self.request_timeout,
            dedup_window_ms: self.dedup_window_ms,
            max_body_bytes: self.max_body_bytes,
            routes: self.routes,
            dispatcher: self.dispatcher.clone(),
        });
        // Tool calls' records and what actions emit take the webhooks' routes.
        let mcp = self.mcp.map(|(clients, config)| {
            let state = crate::mcp::McpState::new(self.host.clone(), self.store.clone(), clients)
                .with_routes(webhooks.routes.clone(), self.dispatcher.clone());
            (Arc::new(state), config)
        });
        Arc::new(AppState {
            host: self.host,
            store: self.store,
            dispatcher: self.dispatcher,
            jobs_token: self.jobs_token,
            admin_token: self.admin_token,
            webhooks,
            mcp,
        })
    }
}

/// Every route: the webhook endpoint, the APIs, the dashboard and the health checks.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.webhooks.max_body_bytes;
    let api = Router::new()
        .route("/v1/dlq", get(admin::dlq_list))
        .route("/v1/dlq/replay", post(admin::dlq_replay_all))
        .route("/v1/dlq/{id}", get(admin::dlq_show))
        .route("/v1/dlq/{id}/replay", post(admin::dlq_replay_one))
        .route("/v1/jobs", post(jobs::create_job))
        .route("/v1/jobs/{id}", get(jobs::job_status))
        .route("/v1/plugins", get(admin::plugins_list))
        .route("/v1/plugins/{id}", get(admin::plugin_show))
        // Components are larger than webhooks: up to 256 MiB here.
        .route("/v1/plugins/{id}/wasm", put(admin::plugin_reload).layer(DefaultBodyLimit::max(256 << 20)))
        .route("/v1/plugins/{id}/shadow", post(recordings::shadow).layer(DefaultBodyLimit::max(256 << 20)))
        .route("/v1/recordings", get(recordings::list))
        .route("/v1/recordings/{id}", get(recordings::show))
        .route("/v1/recordings/{id}/replay", post(recordings::replay))
        .route("/v1/events", get(admin::events_list))
        .route("/v1/events/stream", get(stream::events_stream))
        .route("/v1/events/{id}", get(admin::event_trace))
        .route("/v1/events/{id}/payload", get(admin::event_payload))
        .route("/v1/calls", get(admin::calls_list))
        .route("/v1/stats", get(admin::stats))
        .route("/v1/ai/usage", get(admin::ai_usage))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    let mut app = crate::ingress::router(state.webhooks.clone()).merge(api);
    if let Some((mcp, config)) = &state.mcp {
        app = app.merge(crate::mcp::http::router(mcp.clone(), config, limit));
    }
    app
}

/// Serves `state` on `listener` until `shutdown` completes, with source addresses available
/// to the webhook allow-lists.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing, closed) = tokio::sync::watch::channel(false);
    let app = router(state).layer(axum::Extension(stream::Closing(closed)));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open event streams end now, or the graceful shutdown would wait for them.
            let _ = closing.send(true);
        })
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::store::{SqliteStore, StoreError};

    fn app(admin_token: Option<&str>) -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let host = Host::builder().build().unwrap();
        let state =
            AppState::builder(host, store).admin_token(admin_token.map(|t| t.as_bytes().to_vec())).build();
        // What `serve` gives every request: the peer's address, for webhook allow-lists.
        let peer = axum::extract::connect_info::MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        (router(state).layer(peer), dir)
    }

    async fn status(app: &Router, path: &str, authorization: Option<&str>) -> StatusCode {
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_admin_api_answers_only_its_token_and_is_off_without_one() {
        let (admin, _dir) = app(Some("s3cret"));
        for path in ["/v1/plugins", "/v1/dlq", "/v1/events", "/v1/stats", "/v1/calls", "/v1/ai/usage"] {
            assert_eq!(status(&admin, path, Some("Bearer s3cret")).await, StatusCode::OK, "{path}");
            assert_eq!(status(&admin, path, None).await, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(status(&admin, path, Some("Bearer s3cre")).await, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(status(&admin, path, Some("s3cret")).await, StatusCode::UNAUTHORIZED, "{path}");
        }
        // Monitoring reads without a token.
        assert_eq!(status(&admin, "/metrics", None).await, StatusCode::OK);
        assert_eq!(status(&admin, "/readyz", None).await, StatusCode::OK);
        let (off, _dir) = app(None);
        assert_eq!(status(&off, "/v1/plugins", Some("Bearer s3cret")).await, StatusCode::NOT_FOUND);
        assert_eq!(status(&off, "/v1/jobs/x", Some("Bearer s3cret")).await, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_missing_event_says_not_found_and_a_bad_page_size_says_why() {
        let (admin, _dir) = app(Some("t"));
        assert_eq!(status(&admin, "/v1/events/nope", Some("Bearer t")).await, StatusCode::NOT_FOUND);
        assert_eq!(status(&admin, "/v1/events?limit=0", Some("Bearer t")).await, StatusCode::BAD_REQUEST);
        assert_eq!(status(&admin, "/hooks/nobody", None).await, StatusCode::NOT_FOUND);
        // Delivery ids are opaque: one this store never made finds nothing, whatever it spells.
        for id in ["%1b%5b31m", "01", "%2B1", "99999999999999999999999"] {
            let path = format!("/v1/dlq/{id}");
            assert_eq!(status(&admin, &path, Some("Bearer t")).await, StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(status(&admin, "/v1/dlq?before=%1bx", Some("Bearer t")).await, StatusCode::OK);
    }

    /// The API runs over any backend of the ports (here the in-memory one), and a store that
    /// fails answers by kind, never with its cause: a closed store is 503 and not ready.
    #[tokio::test]
    async fn a_failing_store_answers_its_kind_not_its_cause() {
        let store = Arc::new(crate::store::MemoryStore::new());
        let state = AppState::builder(Host::builder().build().unwrap(), store.clone())
            .admin_token(Some(b"t".to_vec()))
            .build();
        let app = router(state);
        assert_eq!(status(&app, "/v1/dlq", Some("Bearer t")).await, StatusCode::OK);
        assert_eq!(status(&app, "/readyz", None).await, StatusCode::OK);
        store.close();
        let replay = Request::post("/v1/dlq/replay").header("authorization", "Bearer t").body(Body::empty());
        let response = app.clone().oneshot(replay.unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("unavailable"), "{body:?}");
        assert_eq!(status(&app, "/readyz", None).await, StatusCode::SERVICE_UNAVAILABLE);
        for (e, expected) in [
            (StoreError::Conflict("UNIQUE constraint failed: events.id".into()), StatusCode::CONFLICT),
            (
                StoreError::Failed("database disk image is malformed".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (StoreError::Unavailable("database is locked".into()), StatusCode::SERVICE_UNAVAILABLE),
            (StoreError::Closed, StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let cause = e.to_string();
            let response = axum::response::IntoResponse::into_response(error::ApiError::from(e));
            assert_eq!(response.status(), expected, "{cause}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(
                !body.contains("constraint") && !body.contains("malformed") && !body.contains("locked"),
                "{body}"
            );
        }
    }

    /// Dead letters come a page at a time, each page naming the next until the last, and
    /// together they are every dead letter once.
    #[tokio::test]
    async fn dead_letters_are_listed_a_page_at_a_time() {
        use crate::store::{Append, Attempt, Outcome, QueuedDelivery};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let events: Vec<crate::types::Event> = (0..5)
            .map(|n| crate::Event::json("t/x", "src", &serde_json::json!({ "n": n })).unwrap())
            .collect();
        let deliveries = events
            .iter()
            .map(|e| QueuedDelivery {
                event_id: e.id.clone(),
                route: "r".into(),
                target: "sink".into(),
                action: None,
                order_key: None,
            })
            .collect();
        let append =
            Append { instance: "src".into(), delivery_id: None, dedup_window_ms: 0, events, deliveries };
        store.append(append).await.unwrap();
        let now = crate::runtime::clock::now_ms() + 1_000;
        for due in store.claim(now, 10, std::time::Duration::from_secs(60), &mut |_| true).unwrap() {
            let attempt = Attempt { number: 1, duration_us: 1, handler: None };
            let dead = Outcome::Dead { error: "no".into(), events: Vec::new(), deliveries: Vec::new() };
            store.settle(&due.claim_id(), attempt, dead).await.unwrap();
        }
        let state = AppState::builder(Host::builder().build().unwrap(), store.clone())
            .admin_token(Some(b"t".to_vec()))
            .build();
        let app = router(state);
        let mut seen = Vec::new();
        let mut path = "/v1/dlq?limit=2".to_owned();
        for expected in [2, 2, 1] {
            let request =
                Request::get(&path).header("authorization", "Bearer t").body(Body::empty()).unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let next = response.headers().get("link").map(|l| l.to_str().unwrap().to_owned());
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let page: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            assert_eq!(page.len(), expected, "{path}: {page:?}");
            seen.extend(page.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
            match next {
                Some(link) => path = link.trim_start_matches('<').split('>').next().unwrap().to_owned(),
                None => break,
            }
        }
        // The pages together are the whole list, newest first, each once.
        let all = store.deliveries(crate::store::DeliveryStatus::Dead, 10).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(seen, all.iter().map(|d| d.id.to_string()).collect::<Vec<_>>());
        assert_eq!(status(&app, "/v1/dlq?limit=1001", Some("Bearer t")).await, StatusCode::BAD_REQUEST);
    }

    /// The token is checked before the body is read: a caller without it cannot make the
    /// server buffer an upload (up to 256 MiB for a component).
    #[tokio::test]
    async fn an_upload_without_the_token_is_refused_before_its_body_is_read() {
        let (admin, _dir) = app(Some("t"));
        let unreadable = || {
            let failing = futures_util::stream::once(async {
                Err::<axum::body::Bytes, _>(std::io::Error::other("the body must not be read"))
            });
            Request::put("/v1/plugins/echo/wasm").body(Body::from_stream(failing)).unwrap()
        };
        let refused = admin.clone().oneshot(unreadable()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        // With the token, the body is read (and here fails to be).
        let mut read = unreadable();
        read.headers_mut().insert("authorization", "Bearer t".parse().unwrap());
        assert_eq!(admin.clone().oneshot(read).await.unwrap().status(), StatusCode::BAD_REQUEST);
    }
}
