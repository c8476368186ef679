//! `/hooks/{instance}`: a webhook's way in. The source address and rate limit are checked first,
//! then the provider's signature on the raw body ([`super::verify`]), the delivery id against
//! those already stored; then the connector turns the request into events and a reply, and the
//! events are stored (and queued for their routes) before the reply goes out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::ingress::verify::{Scheme, Verifier};
use crate::manifest::address::Cidr;
use crate::manifest::webhook::Acknowledge;
use crate::pipeline::{Routes, receipt};
use crate::rate_limit::Bucket;
use crate::store::{Append, Appended, EventLog, QueuedDelivery, StoreError};
use crate::types::{Error as WitError, WebhookRequest};
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
    /// When the sender is answered.
    pub acknowledge: Acknowledge,
}

/// What the webhook endpoint needs.
pub struct Webhooks {
    /// The plugin host.
    pub host: Host,
    /// The event log.
    pub store: Arc<dyn EventLog>,
    /// The instances that receive webhooks, with their checks.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The longest a connector may take over one webhook.
    pub request_timeout: Duration,
    /// How long delivery ids are remembered.
    pub dedup_window_ms: u64,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// Where stored events go next.
    pub routes: Arc<Routes>,
    /// Woken when new deliveries are queued.
    pub dispatcher: Option<Arc<tokio::sync::Notify>>,
}

/// The webhook endpoint's routes.
pub fn router(webhooks: Arc<Webhooks>) -> Router {
    let limit = webhooks.max_body_bytes;
    Router::new()
        .route("/hooks/{instance}", any(hook))
        .route("/hooks/{instance}/{*rest}", any(hook))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(webhooks)
}

/// Why a webhook was refused; client errors say what was wrong, server errors say nothing
/// beyond their kind and are logged with their cause.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
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
    #[error("the delivery id is longer than {MAX_DELIVERY_ID_BYTES} bytes")]
    DeliveryIdTooLong,
    #[error("the event store is unavailable")]
    Store(#[source] StoreError),
}

/// The longest delivery id accepted. Providers' are short (a UUID, Stripe's `evt_...`), and
/// Shopify's and GitHub's signatures do not cover theirs: a sender holding one signed body could
/// otherwise have each webhook's id kept, kilobytes long, for the whole deduplication window.
const MAX_DELIVERY_ID_BYTES: usize = 256;

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        WebhookError::Store(e)
    }
}

impl WebhookError {
    /// The outcome label of a refused webhook.
    fn outcome(&self) -> &'static str {
        match self {
            WebhookError::UnknownInstance(_) => "unknown-instance",
            WebhookError::Unverified(_) => "unverified",
            WebhookError::Forbidden(_) => "forbidden",
            WebhookError::RateLimited(_) => "rate-limited",
            WebhookError::TimedOut => "timeout",
            WebhookError::Body(_, StatusCode::PAYLOAD_TOO_LARGE) => "too-large",
            WebhookError::Body(..) => "unreadable-body",
            WebhookError::Plugin(..) => "plugin-failed",
            WebhookError::DeliveryIdTooLong => "bad-delivery-id",
            WebhookError::Store(_) => "store-unavailable",
        }
    }
}

impl WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            WebhookError::UnknownInstance(_) => StatusCode::NOT_FOUND,
            WebhookError::Unverified(_) => StatusCode::UNAUTHORIZED,
            WebhookError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebhookError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            WebhookError::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            WebhookError::Body(_, status) => *status,
            WebhookError::Plugin(_, status) => *status,
            WebhookError::DeliveryIdTooLong => StatusCode::BAD_REQUEST,
            WebhookError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A JSON `{"error": ...}` answer with `status`. A server error says only its kind to the
/// client; it is logged with its cause, `context` first.
pub(crate) fn error_response(context: &str, status: StatusCode, error: &dyn std::error::Error) -> Response {
    if status.is_server_error() {
        match error.source() {
            Some(cause) => tracing::error!(%status, "{context}: {error}: {cause}"),
            None => tracing::error!(%status, "{context}: {error}"),
        }
    }
    (status, axum::Json(serde_json::json!({ "error": error.to_string() }))).into_response()
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let mut response = error_response("webhook failed", self.status(), &self);
        if let WebhookError::RateLimited(secs) = self {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

fn plugin_failure(e: InvokeError) -> WebhookError {
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
    WebhookError::Plugin(message, status)
}

pub use crate::pipeline::BUILD;

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
    State(webhooks): State<Arc<Webhooks>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(params): Path<BTreeMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, WebhookError> {
    let deadline = tokio::time::Instant::now() + webhooks.request_timeout;
    let instance = params.get("instance").cloned().unwrap_or_default();
    let result = match body {
        Ok(body) => {
            let request = IncomingHook { peer, params, method, uri, headers, body, deadline };
            handle_hook(webhooks.clone(), request).await
        }
        // Too large (or unreadable): refused before anything else, and counted like any refusal.
        Err(rejection) => Err(WebhookError::Body(rejection.body_text(), rejection.status())),
    };
    let outcome = match &result {
        Ok((_, outcome)) => *outcome,
        Err(e) => e.outcome(),
    };
    let metrics = webhooks.host.metrics();
    // Only configured instances are labelled by name: anyone could mint label values with
    // others (an oversized body is refused before the instance is looked up).
    let label = if webhooks.endpoints.contains_key(&instance) { instance.as_str() } else { "" };
    metrics.add("plugboard_webhooks_total", &[("instance", label), ("outcome", outcome)], 1);
    if outcome == "unverified" {
        metrics.add("plugboard_webhook_verification_failures_total", &[("instance", label)], 1);
    }
    // Server-side failures are logged where they are answered (WebhookError::into_response).
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
/// `accepted` (on receipt), `duplicate`).
async fn handle_hook(
    webhooks: Arc<Webhooks>,
    hook: IncomingHook,
) -> Result<(Response, &'static str), WebhookError> {
    let IncomingHook { peer, params, method, uri, headers, body, deadline } = hook;
    let instance = params.get("instance").cloned().unwrap_or_default();
    let endpoint =
        webhooks.endpoints.get(&instance).ok_or_else(|| WebhookError::UnknownInstance(instance.clone()))?;
    if !endpoint.allow_ips.is_empty() && !endpoint.allow_ips.iter().any(|c| c.contains(peer.ip())) {
        return Err(WebhookError::Forbidden(peer.ip()));
    }
    if let Some(bucket) = &endpoint.rate {
        bucket.take().map_err(|wait| WebhookError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64))?;
    }
    let mut delivery_id = match &endpoint.verifier {
        Some(v) => {
            let verified = v
                .verify(&headers, &body, SystemTime::now())
                .map_err(|e| WebhookError::Unverified(e.to_string()))?;
            verified.delivery_id.or_else(|| delivery_id_in_body(v.scheme(), &body))
        }
        None => None,
    };
    if let Some(name) = &endpoint.delivery_id_header {
        delivery_id = headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned).or(delivery_id);
    }
    if delivery_id.as_ref().is_some_and(|id| id.len() > MAX_DELIVERY_ID_BYTES) {
        return Err(WebhookError::DeliveryIdTooLong);
    }
    if let Some(id) = &delivery_id
        && webhooks.store.is_duplicate(&instance, id).await?
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
    let scheme = endpoint.verifier.as_ref().map(Verifier::scheme);
    if endpoint.acknowledge == Acknowledge::OnReceipt
        && !receipt::needs_connector_reply(scheme, &request.method, &body)
    {
        let signature_header = match scheme {
            Some(Scheme::Hmac(hmac)) => Some(hmac.header.as_str()),
            _ => None,
        };
        return accept_on_receipt(&webhooks, instance, delivery_id, &request, signature_header).await;
    }
    // The deadline covers the connector, not the append after it: a webhook whose events are
    // being committed is answered with what happened to them, never a 503 that would make the
    // provider send it again.
    let done = tokio::time::timeout_at(deadline, webhooks.host.on_webhook(&instance, request))
        .await
        .map_err(|_| WebhookError::TimedOut)?
        .map_err(plugin_failure)?;
    // Deliveries record the build that ran each attempt; a webhook's events record the build
    // that made them.
    let reply = done.output;
    let events = crate::pipeline::webhook_events(reply.events, done.emitted, &done.handler);
    let stored = events.len() as u64;
    // Only when the line will be written: this is the webhook's hot path.
    let logged = tracing::enabled!(tracing::Level::INFO).then(|| {
        let join = |f: fn(&crate::Event) -> &str| events.iter().map(f).collect::<Vec<_>>().join(",");
        (join(|e| e.id.as_str()), join(|e| e.kind.as_str()))
    });
    let deliveries = webhooks.routes.deliveries(&events);
    if store(&webhooks, &instance, delivery_id, events, deliveries).await? == Appended::Duplicate {
        return Ok((duplicate(), "duplicate"));
    }
    if let Some((ids, kinds)) = logged {
        tracing::info!(instance, event = ids, kinds, "webhook stored");
    }
    webhooks.host.metrics().add("plugboard_events_stored_total", &[("source", &instance)], stored);
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

/// Appends a webhook's events and their deliveries, unless its delivery id was stored already
/// (then the answer is [`Appended::Duplicate`], logged), and wakes the dispatcher when it queued
/// any: a claim that finds nothing is a query per webhook.
async fn store(
    webhooks: &Webhooks,
    instance: &str,
    delivery_id: Option<String>,
    events: Vec<crate::Event>,
    deliveries: Vec<QueuedDelivery>,
) -> Result<Appended, WebhookError> {
    let queued = !deliveries.is_empty();
    let append = Append {
        instance: instance.to_owned(),
        delivery_id: delivery_id.clone(),
        dedup_window_ms: webhooks.dedup_window_ms,
        deliveries,
        events,
    };
    let appended = webhooks.store.append(append).await?;
    if appended == Appended::Duplicate {
        tracing::info!(instance, delivery = delivery_id.as_deref(), "duplicate webhook: already stored");
    } else if queued && let Some(notify) = &webhooks.dispatcher {
        notify.notify_one();
    }
    Ok(appended)
}

/// Stores the verified request for its connector to run later, and answers at once.
async fn accept_on_receipt(
    webhooks: &Webhooks,
    instance: String,
    delivery_id: Option<String>,
    request: &WebhookRequest,
    signature_header: Option<&str>,
) -> Result<(Response, &'static str), WebhookError> {
    let (event, delivery) = receipt::request_event(&instance, request, signature_header);
    let id = event.id.clone();
    if store(webhooks, &instance, delivery_id, vec![event], vec![delivery]).await? == Appended::Duplicate {
        return Ok((duplicate(), "duplicate"));
    }
    tracing::debug!(instance, event = id, "webhook accepted on receipt");
    Ok(((StatusCode::OK, axum::Json(serde_json::json!({ "accepted": id }))).into_response(), "accepted"))
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
