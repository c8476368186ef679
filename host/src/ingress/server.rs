//! The webhook endpoint, `POST /hooks/{instance}` (subpaths allowed): size limit, signature
//! check, duplicate check, the connector's `on-webhook`, then durable storage, and only then the
//! reply. A request that fails any step gets a clear 4xx and nothing is stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use crate::bindings::types::{Error as WitError, WebhookRequest};
use std::net::{IpAddr, SocketAddr};

use crate::cidr::Cidr;
use crate::ingress::verify::{Scheme, Verifier};
use crate::pipeline::Routes;
use crate::rate_limit::Bucket;
use crate::store::{Append, Appended, EventFilter, EventStore};
use crate::{Host, InvokeError};

/// One instance's webhook checks.
#[derive(Debug)]
pub struct Endpoint {
    /// The signature check (`None`: scheme `none`).
    pub verifier: Option<Verifier>,
    /// Source addresses allowed; any when empty.
    pub allow_ips: Vec<Cidr>,
    /// The rate limit.
    pub rate: Option<Bucket>,
    /// A header with the delivery id, lower case.
    pub delivery_id_header: Option<String>,
}

/// Everything the endpoint needs.
pub struct Ingress {
    /// The plugin host.
    pub host: Host,
    /// The event log.
    pub store: Arc<dyn EventStore>,
    /// The instances that receive webhooks, with their checks.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The longest a webhook request may take.
    pub request_timeout: std::time::Duration,
    /// How long delivery ids are remembered.
    pub dedup_window_ms: u64,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// Where stored events go next.
    pub routes: Arc<Routes>,
    /// Woken when new deliveries are queued.
    pub dispatcher: Option<Arc<tokio::sync::Notify>>,
    /// The bearer token of the async jobs API; the API is off without one.
    pub jobs_token: Option<Vec<u8>>,
    /// The bearer token of the admin API (dead letters); the API is off without one.
    pub admin_token: Option<Vec<u8>>,
}

/// The errors the endpoint answers with; client errors say what was wrong, server errors say
/// nothing beyond their kind and are logged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("no instance `{0}` receives webhooks here")]
    UnknownInstance(String),
    #[error("webhook refused: {0}")]
    Unverified(String),
    #[error("source address {0} is not allowed to deliver to this instance")]
    Forbidden(IpAddr),
    #[error("too many webhooks for this instance; retry after {0} s")]
    RateLimited(u64),
    #[error("the webhook took too long to process")]
    TimedOut,
    #[error("{0}")]
    Body(String, StatusCode),
    #[error("{0}")]
    Plugin(String, StatusCode),
    #[error("the event store is unavailable")]
    Store,
    #[error("this API needs `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("{0}")]
    BadJob(String),
    #[error("not found: {0}")]
    UnknownJob(String),
}

impl ApiError {
    /// The outcome label of a refused webhook.
    fn outcome(&self) -> &'static str {
        match self {
            ApiError::UnknownInstance(_) => "unknown-instance",
            ApiError::Unverified(_) => "unverified",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited(_) => "rate-limited",
            ApiError::TimedOut => "timeout",
            ApiError::Body(_, StatusCode::PAYLOAD_TOO_LARGE) => "too-large",
            ApiError::Body(..) => "unreadable-body",
            ApiError::Plugin(..) => "plugin-failed",
            ApiError::Store => "store-unavailable",
            _ => "refused",
        }
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownInstance(_) => StatusCode::NOT_FOUND,
            ApiError::Unverified(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Body(_, status) => *status,
            ApiError::Plugin(_, status) => *status,
            ApiError::Store => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadJob(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownJob(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(%status, "webhook failed: {self}");
        }
        let mut response =
            (status, axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if let ApiError::RateLimited(secs) = self {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

/// The router: the webhook endpoint and a health check.
pub fn router(ingress: Arc<Ingress>) -> Router {
    let limit = ingress.max_body_bytes;
    Router::new()
        .route("/hooks/{instance}", any(hook))
        .route("/hooks/{instance}/{*rest}", any(hook))
        .route("/v1/dlq", get(dlq_list))
        .route("/v1/dlq/replay", post(dlq_replay_all))
        .route("/v1/dlq/{id}", get(dlq_show))
        .route("/v1/dlq/{id}/replay", post(dlq_replay_one))
        .route("/v1/jobs", post(create_job))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/plugins", get(plugins_list))
        .route("/v1/plugins/{id}", get(plugin_show))
        // Components are larger than webhooks: up to 256 MiB here.
        .route(
            "/v1/plugins/{id}/wasm",
            axum::routing::put(plugin_reload).layer(DefaultBodyLimit::max(256 << 20)),
        )
        .route("/v1/events", get(events_list))
        .route("/v1/events/stream", get(super::stream::events_stream))
        .route("/v1/events/{id}", get(event_trace))
        .route("/v1/events/{id}/payload", get(event_payload))
        .route("/v1/calls", get(calls_list))
        .route("/v1/stats", get(stats))
        .route("/dashboard", get(dashboard))
        .route("/v1/ai/usage", get(ai_usage))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingress)
}

fn plugin_failure(e: InvokeError) -> ApiError {
    let status = match &e {
        InvokeError::Plugin(WitError::InvalidInput(_)) => StatusCode::BAD_REQUEST,
        InvokeError::Plugin(WitError::Unauthorized(_)) => StatusCode::UNAUTHORIZED,
        InvokeError::Plugin(WitError::NotFound(_)) => StatusCode::NOT_FOUND,
        InvokeError::Plugin(WitError::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
        InvokeError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let message = if status.is_client_error() { e.to_string() } else { "the connector failed".into() };
    if !status.is_client_error() {
        tracing::error!("connector failed on a webhook: {e}");
    }
    ApiError::Plugin(message, status)
}

/// Serves `ingress` on `listener` until `shutdown` completes, with source addresses available
/// to the allow-lists.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingress: Arc<Ingress>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing, closed) = tokio::sync::watch::channel(false);
    let app = router(ingress).layer(axum::Extension(super::stream::Closing(closed)));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open event streams end now, or the graceful shutdown would wait for them.
            let _ = closing.send(true);
        })
        .await
}

/// The attribute of a webhook's events that names the plugin build that made them
/// (`name@version sha256:...`, as attempts record it).
pub const BUILD: &str = "plugboard.build";

/// The provider's delivery id from the body, for schemes that carry it there (after the
/// signature check, so the body is the provider's).
fn delivery_id_in_body(scheme: &Scheme, body: &[u8]) -> Option<String> {
    let key = match scheme {
        Scheme::Slack => "event_id",
        Scheme::Stripe => "id",
        _ => return None,
    };
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
}

async fn hook(
    State(ingress): State<Arc<Ingress>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(params): Path<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + ingress.request_timeout;
    let instance = params.get("instance").cloned().unwrap_or_default();
    let result = match body {
        Ok(body) => {
            let request = IncomingHook { peer, params, method, uri, headers, body, deadline };
            handle_hook(ingress.clone(), request).await
        }
        // Too large (or unreadable): refused before anything else, and counted like any refusal.
        Err(rejection) => Err(ApiError::Body(rejection.body_text(), rejection.status())),
    };
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(e) => e.outcome(),
    };
    let metrics = ingress.host.metrics();
    // Only configured instances are labelled by name: anyone could mint label values with
    // others (an oversized body is refused before the instance is looked up).
    let label = if ingress.endpoints.contains_key(&instance) { instance.as_str() } else { "" };
    metrics.add("plugboard_webhooks_total", &[("instance", label), ("outcome", outcome)], 1);
    if outcome == "unverified" {
        metrics.add("plugboard_webhook_verification_failures_total", &[("instance", label)], 1);
    }
    // Server-side failures are logged where they are answered (ApiError::into_response).
    if let Err(e) = &result
        && !e.status().is_server_error()
    {
        tracing::warn!(instance = label, outcome, error = %e, "webhook refused");
    }
    result.map(|(response, _)| response)
}

/// One webhook request, as extracted.
struct IncomingHook {
    peer: SocketAddr,
    params: BTreeMap<String, String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// When the connector must have answered (`server.request_timeout_ms`).
    deadline: tokio::time::Instant,
}

/// Handles one webhook; answers the response and the outcome for metrics (`stored`,
/// `duplicate`).
async fn handle_hook(
    ingress: Arc<Ingress>,
    hook: IncomingHook,
) -> Result<(Response, &'static str), ApiError> {
    let IncomingHook { peer, params, method, uri, headers, body, deadline } = hook;
    let instance = params.get("instance").cloned().unwrap_or_default();
    let endpoint =
        ingress.endpoints.get(&instance).ok_or_else(|| ApiError::UnknownInstance(instance.clone()))?;
    if !endpoint.allow_ips.is_empty() && !endpoint.allow_ips.iter().any(|c| c.contains(peer.ip())) {
        return Err(ApiError::Forbidden(peer.ip()));
    }
    if let Some(bucket) = &endpoint.rate {
        bucket.take().map_err(|wait| ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64))?;
    }
    let mut delivery_id = match &endpoint.verifier {
        Some(v) => {
            let verified = v
                .verify(&headers, &body, SystemTime::now())
                .map_err(|e| ApiError::Unverified(e.to_string()))?;
            verified.delivery_id.or_else(|| delivery_id_in_body(v.scheme(), &body))
        }
        None => None,
    };
    if let Some(name) = &endpoint.delivery_id_header {
        delivery_id = headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned).or(delivery_id);
    }
    if let Some(id) = &delivery_id
        && ingress.store.is_duplicate(&instance, id).await.map_err(|_| ApiError::Store)?
    {
        tracing::info!(instance, delivery = id, "duplicate webhook: already stored");
        return Ok((duplicate(), "duplicate"));
    }

    let request = WebhookRequest {
        method: method.to_string(),
        path: params.get("rest").map(|r| format!("/{r}")).unwrap_or_else(|| "/".into()),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    };
    // The deadline covers the connector, not the append after it: a webhook whose events are
    // being committed is answered with what happened to them, never a 503 that would make the
    // provider send it again.
    let done = tokio::time::timeout_at(deadline, ingress.host.on_webhook(&instance, request))
        .await
        .map_err(|_| ApiError::TimedOut)?
        .map_err(plugin_failure)?;
    let reply = done.output;
    let mut events = reply.events;
    events.extend(done.emitted);
    // Deliveries record the build that ran each attempt; a webhook's events record the build
    // that made them.
    for event in &mut events {
        event.attributes.push((BUILD.into(), done.handler.clone()));
    }
    let stored = events.len() as u64;
    // Only when the line will be written: this is the webhook's hot path.
    let logged = tracing::enabled!(tracing::Level::INFO).then(|| {
        let join = |f: fn(&crate::Event) -> &str| events.iter().map(f).collect::<Vec<_>>().join(",");
        (join(|e| e.id.as_str()), join(|e| e.kind.as_str()))
    });
    let appended = ingress
        .store
        .append(Append {
            instance: instance.clone(),
            delivery_id: delivery_id.clone(),
            dedup_window_ms: ingress.dedup_window_ms,
            deliveries: ingress.routes.deliveries(&events),
            events,
        })
        .await
        .map_err(|_| ApiError::Store)?;
    if let Some(notify) = &ingress.dispatcher {
        notify.notify_one();
    }
    if appended == Appended::Duplicate {
        tracing::info!(instance, delivery = delivery_id.as_deref(), "duplicate webhook: already stored");
        return Ok((duplicate(), "duplicate"));
    }
    if let Some((ids, kinds)) = logged {
        tracing::info!(instance, event = ids, kinds, "webhook stored");
    }
    ingress.host.metrics().add("plugboard_events_stored_total", &[("source", &instance)], stored);
    // The runtime checked the reply (a final status, bounded ordinary headers, none that frame
    // the message), so nothing here is dropped; the server frames the body itself.
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = (status, reply.body).into_response();
    let mut named = HeaderMap::new();
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value))
        {
            named.append(n, v);
        }
    }
    // A name the plugin set replaces the server's default (`content-type`); repeated names
    // (`set-cookie`) all go out.
    for name in named.keys() {
        response.headers_mut().remove(name);
    }
    response.headers_mut().extend(named);
    // The reply is the plugin's content, served from the origin of the dashboard and the
    // admin API: a browser that opens it runs nothing and sniffs nothing.
    response.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    response
        .headers_mut()
        .insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    Ok((response, "stored"))
}

fn duplicate() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({ "duplicate": true }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_and_stripe_delivery_ids_come_from_the_body() {
        let slack = br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{}}"#;
        assert_eq!(delivery_id_in_body(&Scheme::Slack, slack).as_deref(), Some("Ev08MFMKH6"));
        let stripe = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event"}"#;
        assert_eq!(
            delivery_id_in_body(&Scheme::Stripe, stripe).as_deref(),
            Some("evt_1NG8Du2eZvKYlo2CUI79vXWy")
        );
        assert_eq!(delivery_id_in_body(&Scheme::Slack, b"command=%2Fhelp"), None, "slash commands have none");
        assert_eq!(delivery_id_in_body(&Scheme::Github, slack), None, "GitHub's is a header");
    }
}

/// A request for an async job.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    instance: String,
    action: String,
    #[serde(default)]
    input: serde_json::Value,
    #[serde(default)]
    callback_url: Option<String>,
}

fn authorize_jobs(ingress: &Ingress, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &ingress.jobs_token else {
        return Err(ApiError::UnknownJob("(the jobs API is off)".into()));
    };
    check_bearer(token, headers)
}

pub(crate) fn authorize_admin(ingress: &Ingress, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &ingress.admin_token else {
        return Err(ApiError::UnknownJob("(the admin API is off)".into()));
    };
    check_bearer(token, headers)
}

/// Compares a bearer token in constant time.
fn check_bearer(token: &[u8], headers: &HeaderMap) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token)) { Ok(()) } else { Err(ApiError::Unauthorized) }
}

/// `POST /v1/jobs`: queue an action for long work; 202 with the job id at once.
async fn create_job(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_jobs(&ingress, &headers)?;
    let job: JobRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadJob(format!("bad job request: {e}")))?;
    let info = ingress
        .host
        .plugin(&job.instance)
        .ok_or_else(|| ApiError::BadJob(format!("no instance `{}`", job.instance)))?;
    if !info.actions.iter().any(|a| a.name == job.action) {
        return Err(ApiError::BadJob(format!(
            "instance `{}` offers no action `{}`",
            job.instance, job.action
        )));
    }
    let mut event = crate::Event::json("job/requested", "jobs", &job.input)
        .map_err(|e| ApiError::BadJob(e.to_string()))?;
    if let Some(url) = &job.callback_url {
        let parsed = url::Url::parse(url).map_err(|e| ApiError::BadJob(format!("callback_url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ApiError::BadJob("callback_url must be http or https".into()));
        }
        // The parsed form: no control characters (the parser drops tabs and line breaks), so
        // error messages that quote it cannot forge log lines.
        event.attributes.push(("callback_url".into(), parsed.as_str().to_owned()));
    }
    let id = event.id.clone();
    let delivery = crate::store::QueuedDelivery {
        event_id: id.clone(),
        route: crate::pipeline::JOB_ROUTE.into(),
        target: job.instance,
        action: Some(job.action),
        order_key: None,
    };
    ingress
        .store
        .append(Append {
            instance: "jobs".into(),
            delivery_id: None,
            dedup_window_ms: 0,
            events: vec![event],
            deliveries: vec![delivery],
        })
        .await
        .map_err(|_| ApiError::Store)?;
    if let Some(notify) = &ingress.dispatcher {
        notify.notify_one();
    }
    let mut response =
        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "id": id, "status": "pending" })))
            .into_response();
    if let Ok(location) = http::HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        response.headers_mut().insert(http::header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/jobs/{id}`: a job's status and, once done, its output or error.
async fn job_status(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_jobs(&ingress, &headers)?;
    let job = ingress.store.job(&id).await.map_err(|_| ApiError::Store)?.ok_or(ApiError::UnknownJob(id))?;
    Ok(axum::Json(job).into_response())
}

/// `GET /v1/dlq`: dead letters, newest first.
async fn dlq_list(State(ingress): State<Arc<Ingress>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let dead = ingress.store.deliveries("dead", 1000).await.map_err(|_| ApiError::Store)?;
    Ok(axum::Json(dead).into_response())
}

/// `GET /v1/dlq/{id}`: one delivery with its event and attempts.
async fn dlq_show(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let detail = ingress.store.delivery(id).await.map_err(|_| ApiError::Store)?;
    let detail = detail.ok_or_else(|| ApiError::UnknownJob(format!("delivery {id}")))?;
    Ok(axum::Json(detail).into_response())
}

async fn replay(ingress: &Ingress, id: Option<i64>) -> Result<Response, ApiError> {
    let n = ingress.store.replay(id).await.map_err(|_| ApiError::Store)?;
    if let Some(notify) = &ingress.dispatcher {
        notify.notify_one();
    }
    Ok(axum::Json(serde_json::json!({ "replayed": n })).into_response())
}

/// `POST /v1/dlq/{id}/replay`: put one dead letter back in the queue, same event id.
async fn dlq_replay_one(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    replay(&ingress, Some(id)).await
}

/// `POST /v1/dlq/replay`: put every dead letter back in the queue.
async fn dlq_replay_all(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    replay(&ingress, None).await
}

/// `GET /v1/calls?instance=&host=&status=&outcome=&limit=`: the outbound call log, newest first.
async fn calls_list(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    axum::extract::Query(filter): axum::extract::Query<crate::egress::calls::CallFilter>,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let host = ingress.host.clone();
    let calls = tokio::task::spawn_blocking(move || host.calls().query(&filter))
        .await
        .map_err(|_| ApiError::Store)?;
    Ok(axum::Json(calls).into_response())
}

/// `GET /v1/ai/usage`: AI tokens used since start, by plugin and provider.
async fn ai_usage(State(ingress): State<Arc<Ingress>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let usage: Vec<serde_json::Value> = ingress
        .host
        .ai_usage()
        .into_iter()
        .map(
            |(plugin, provider, u)| serde_json::json!({ "plugin": plugin, "provider": provider, "usage": u }),
        )
        .collect();
    Ok(axum::Json(usage).into_response())
}

/// `GET /metrics`: Prometheus text format: the host's counters and histograms, and the
/// delivery queue's gauges read from the store.
async fn metrics(State(ingress): State<Arc<Ingress>>) -> Response {
    let mut text = ingress.host.metrics().render();
    if let Ok(q) = ingress.store.queue_stats(crate::capabilities::emit::now_ms()).await {
        text.push_str(&format!(
            "# HELP plugboard_queue_depth Deliveries waiting (pending).\n# TYPE plugboard_queue_depth gauge\nplugboard_queue_depth {}\n\
             # HELP plugboard_queue_lag_seconds How overdue the oldest due delivery is.\n# TYPE plugboard_queue_lag_seconds gauge\nplugboard_queue_lag_seconds {}\n\
             # HELP plugboard_dead_letters Deliveries in the dead-letter queue.\n# TYPE plugboard_dead_letters gauge\nplugboard_dead_letters {}\n",
            q.pending,
            q.lag_ms as f64 / 1000.0,
            q.dead
        ));
    }
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /readyz`: 200 once the store answers; 503 otherwise.
async fn readyz(State(ingress): State<Arc<Ingress>>) -> Response {
    if !ingress.store.writable() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the event store's writer has stopped").into_response();
    }
    match ingress.store.queue_stats(crate::capabilities::emit::now_ms()).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the event store is unavailable").into_response(),
    }
}

/// Query of `GET /v1/events`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    kind: Option<String>,
    source: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

/// The largest page `GET /v1/events` answers.
const MAX_EVENTS_PAGE: usize = 1_000;

/// `GET /v1/events?kind=&source=&limit=&before=`: the newest events, newest first, a page at a
/// time. When more may follow, the answer's `Link: <...>; rel="next"` header (and
/// `X-Next-Cursor`, the `before` to pass) names the next page.
async fn events_list(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::BadJob(format!(
            "limit must be 1 to {MAX_EVENTS_PAGE}; page with the `before` cursor of the Link header"
        )));
    }
    let filter = EventFilter { kind: q.kind.as_deref(), source: q.source.as_deref(), before: q.before };
    let page = ingress.store.events(filter, limit).await.map_err(|_| ApiError::Store)?;
    let next = (page.len() == limit).then(|| page.last().map(|(position, _)| *position)).flatten();
    let events: Vec<_> = page.into_iter().map(|(_, e)| e).collect();
    let mut response = axum::Json(events).into_response();
    if let Some(cursor) = next {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [("kind", &q.kind), ("source", &q.source)] {
            if let Some(v) = value {
                query.append_pair(key, v);
            }
        }
        query.append_pair("limit", &limit.to_string()).append_pair("before", &cursor.to_string());
        let link = format!("</v1/events?{}>; rel=\"next\"", query.finish());
        if let Ok(v) = http::HeaderValue::from_str(&link) {
            response.headers_mut().insert(http::header::LINK, v);
        }
        response.headers_mut().insert("x-next-cursor", http::HeaderValue::from(cursor));
    }
    Ok(response)
}

/// `GET /v1/events/{id}/payload`: the event's payload, byte for byte, as a download: a payload
/// is a provider's or a plugin's content, served from the dashboard's origin, so it is never
/// rendered (`attachment`, `nosniff`, CSP sandbox); its content type is in
/// `x-plugboard-content-type`.
async fn event_payload(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let found = ingress.store.payload(&id).await.map_err(|_| ApiError::Store)?;
    let (content_type, payload) = found.ok_or_else(|| ApiError::UnknownJob(format!("event {id}")))?;
    let mut response = payload.into_response();
    let set = response.headers_mut();
    set.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/octet-stream"));
    set.insert(http::header::CONTENT_DISPOSITION, http::HeaderValue::from_static("attachment"));
    set.insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    set.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&content_type) {
        set.insert("x-plugboard-content-type", v);
    }
    Ok(response)
}

/// `GET /v1/events/{id}`: the event, its deliveries with every attempt, and what they produced.
async fn event_trace(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let trace = ingress.store.trace(&id).await.map_err(|_| ApiError::Store)?;
    let trace = trace.ok_or_else(|| ApiError::UnknownJob(format!("event {id}")))?;
    Ok(axum::Json(trace).into_response())
}

/// `GET /v1/plugins`: every instance, its grants' effect and its limits.
async fn plugins_list(State(ingress): State<Arc<Ingress>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    Ok(axum::Json(ingress.host.plugins()).into_response())
}

/// `GET /v1/plugins/{id}`: one instance.
async fn plugin_show(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let info = ingress.host.plugin(&id).ok_or_else(|| ApiError::UnknownJob(format!("instance {id}")))?;
    Ok(axum::Json(info).into_response())
}

/// `PUT /v1/plugins/{id}/wasm` with a component as the body: hot reload, same grants, limits
/// and config. Running invocations finish on the old build.
async fn plugin_reload(
    State(ingress): State<Arc<Ingress>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    if ingress.host.plugin(&id).is_none() {
        return Err(ApiError::UnknownJob(format!("instance {id}")));
    }
    let info = ingress.host.reload_bytes(&id, &body).await.map_err(|e| ApiError::BadJob(e.to_string()))?;
    tracing::info!(instance = %id, version = %info.version, sha256 = %info.sha256, "plugin reloaded");
    Ok(axum::Json(info).into_response())
}

/// `GET /v1/stats`: activity per minute over the last hour.
async fn stats(State(ingress): State<Arc<Ingress>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize_admin(&ingress, &headers)?;
    let since = crate::capabilities::emit::now_ms().saturating_sub(3_600_000);
    let minutes = ingress.store.stats(since).await.map_err(|_| ApiError::Store)?;
    Ok(axum::Json(minutes).into_response())
}

/// `GET /dashboard`: the operator's page. It holds no data: the page asks for the admin token
/// and reads everything through the admin API with it.
async fn dashboard() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}
