//! The webhook endpoint, `POST /hooks/{instance}` (subpaths allowed): size limit, signature
//! check, duplicate check, the connector's `on-webhook`, then durable storage, and only then the
//! reply. A request that fails any step gets a clear 4xx and nothing is stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::bindings::types::{Error as WitError, WebhookRequest};
use crate::ingress::verify::Verifier;
use crate::pipeline::Routes;
use crate::store::{Append, Appended, SqliteStore};
use crate::{Host, InvokeError};

/// Everything the endpoint needs.
pub struct Ingress {
    /// The plugin host.
    pub host: Host,
    /// The event log.
    pub store: Arc<SqliteStore>,
    /// The instances that receive webhooks, with their verifier (`None`: scheme `none`).
    pub verifiers: BTreeMap<String, Option<Verifier>>,
    /// How long delivery ids are remembered.
    pub dedup_window_ms: u64,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// Where stored events go next.
    pub routes: Arc<Routes>,
    /// Woken when new deliveries are queued.
    pub dispatcher: Option<Arc<tokio::sync::Notify>>,
}

/// The errors the endpoint answers with; client errors say what was wrong, server errors say
/// nothing beyond their kind and are logged.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("no instance `{0}` receives webhooks here")]
    UnknownInstance(String),
    #[error("webhook refused: {0}")]
    Unverified(String),
    #[error("{0}")]
    Plugin(String, StatusCode),
    #[error("the event store is unavailable")]
    Store,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::UnknownInstance(_) => StatusCode::NOT_FOUND,
            ApiError::Unverified(_) => StatusCode::UNAUTHORIZED,
            ApiError::Plugin(_, status) => *status,
            ApiError::Store => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status.is_server_error() {
            tracing::error!(%status, "webhook failed: {self}");
        }
        (status, axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// The router: the webhook endpoint and a health check.
pub fn router(ingress: Arc<Ingress>) -> Router {
    let limit = ingress.max_body_bytes;
    Router::new()
        .route("/hooks/{instance}", any(hook))
        .route("/hooks/{instance}/{*rest}", any(hook))
        .route("/healthz", get(|| async { "ok" }))
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

async fn hook(
    State(ingress): State<Arc<Ingress>>,
    Path(params): Path<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let instance = params.get("instance").cloned().unwrap_or_default();
    let verifier =
        ingress.verifiers.get(&instance).ok_or_else(|| ApiError::UnknownInstance(instance.clone()))?;
    let delivery_id = match verifier {
        Some(v) => {
            v.verify(&headers, &body, SystemTime::now())
                .map_err(|e| ApiError::Unverified(e.to_string()))?
                .delivery_id
        }
        None => None,
    };
    if let Some(id) = &delivery_id
        && ingress.store.is_duplicate(&instance, id).map_err(|_| ApiError::Store)?
    {
        return Ok((StatusCode::OK, axum::Json(serde_json::json!({ "duplicate": true }))).into_response());
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
    let done = ingress.host.on_webhook(&instance, request).await.map_err(plugin_failure)?;
    let reply = done.output;
    let mut events = reply.events;
    events.extend(done.emitted);
    let appended = ingress
        .store
        .append(Append {
            instance: instance.clone(),
            delivery_id,
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
        return Ok((StatusCode::OK, axum::Json(serde_json::json!({ "duplicate": true }))).into_response());
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value))
        {
            response.headers_mut().insert(n, v);
        }
    }
    Ok(response)
}
