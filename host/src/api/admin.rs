//! The admin API under `/v1/`: dead letters and replay, events and their traces, the outbound
//! call log, AI usage, plugins (with hot reload) and activity stats. The admin token guards
//! every route.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::paging::{page, page_size};
use crate::store::{DeliveryId, EventFilter};

/// Query of `GET /v1/dlq`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DlqQuery {
    limit: Option<usize>,
    before: Option<DeliveryId>,
}

/// `GET /v1/dlq?limit=&before=`: dead letters, newest first, a page at a time (see [`page`]).
pub(super) async fn dlq_list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<DlqQuery>,
) -> Result<Response, ApiError> {
    let limit = page_size(q.limit)?;
    let dead = state.store.deliveries(crate::store::DeliveryStatus::Dead, q.before, limit).await?;
    Ok(page(&dead, dead.last().map(|d| d.id.to_string()), limit, "/v1/dlq", &[]))
}

/// `GET /v1/dlq/{id}`: one delivery with its event and attempts.
pub(super) async fn dlq_show(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<DeliveryId>,
) -> Result<Response, ApiError> {
    let detail = state.store.delivery(id.clone()).await?;
    let detail = detail.ok_or_else(|| ApiError::NotFound(format!("delivery {id}")))?;
    Ok(axum::Json(detail).into_response())
}

async fn replay(state: &AppState, id: Option<DeliveryId>) -> Result<Response, ApiError> {
    let n = state.store.replay(id).await?;
    state.wake_dispatcher();
    Ok(axum::Json(serde_json::json!({ "replayed": n })).into_response())
}

/// `POST /v1/dlq/{id}/replay`: put one dead letter back in the queue, same event id.
pub(super) async fn dlq_replay_one(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<DeliveryId>,
) -> Result<Response, ApiError> {
    replay(&state, Some(id)).await
}

/// `POST /v1/dlq/replay`: put every dead letter back in the queue.
pub(super) async fn dlq_replay_all(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    replay(&state, None).await
}

/// `GET /v1/calls?instance=&host=&status=&outcome=&limit=`: the outbound call log, newest first.
pub(super) async fn calls_list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    axum::extract::Query(filter): axum::extract::Query<crate::egress::calls::CallFilter>,
) -> Result<Response, ApiError> {
    let host = state.host.clone();
    let calls =
        tokio::task::spawn_blocking(move || host.calls().query(&filter)).await.map_err(ApiError::CallLog)?;
    Ok(axum::Json(calls).into_response())
}

/// `GET /v1/ai/usage`: AI tokens used since start, by plugin and provider.
pub(super) async fn ai_usage(_: Admin, State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let usage: Vec<serde_json::Value> = state
        .host
        .ai_usage()
        .await
        .into_iter()
        .map(
            |(plugin, provider, u)| serde_json::json!({ "plugin": plugin, "provider": provider, "usage": u }),
        )
        .collect();
    Ok(axum::Json(usage).into_response())
}

/// Query of `GET /v1/events`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    kind: Option<String>,
    source: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

/// `GET /v1/events?kind=&source=&limit=&before=`: the newest events, newest first, a page at a
/// time (see [`page`]).
pub(super) async fn events_list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let limit = page_size(q.limit)?;
    let filter = EventFilter { kind: q.kind.as_deref(), source: q.source.as_deref(), before: q.before };
    let found = state.store.events(filter, limit).await?;
    let cursor = found.last().map(|(position, _)| position.to_string());
    let events: Vec<_> = found.into_iter().map(|(_, e)| e).collect();
    Ok(page(&events, cursor, limit, "/v1/events", &[("kind", &q.kind), ("source", &q.source)]))
}

/// `GET /v1/events/{id}/payload`: the event's payload, byte for byte, as a download: a payload
/// is a provider's or a plugin's content, served from the dashboard's origin, so it is never
/// rendered (`attachment`, `nosniff`, CSP sandbox); its content type is in
/// `x-plugboard-content-type`.
pub(super) async fn event_payload(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found = state.store.payload(&id).await?;
    let (content_type, payload) = found.ok_or_else(|| ApiError::NotFound(format!("event {id}")))?;
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
pub(super) async fn event_trace(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let trace = state.store.trace(&id).await?;
    let trace = trace.ok_or_else(|| ApiError::NotFound(format!("event {id}")))?;
    Ok(axum::Json(trace).into_response())
}

/// `GET /v1/plugins`: every instance, its grants' effect and its limits.
pub(super) async fn plugins_list(_: Admin, State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    Ok(axum::Json(state.host.plugins()).into_response())
}

/// `GET /v1/plugins/{id}`: one instance.
pub(super) async fn plugin_show(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let info = state.host.plugin(&id).ok_or_else(|| ApiError::NotFound(format!("instance {id}")))?;
    Ok(axum::Json(info).into_response())
}

/// Query of `PUT /v1/plugins/{id}/wasm`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReloadQuery {
    /// Replay the instance's newest N recordings on the new build first, and reload only if
    /// every one is identical.
    require_shadow: Option<usize>,
}

/// `PUT /v1/plugins/{id}/wasm` with a component as the body: hot reload, same grants, limits
/// and config. Running invocations finish on the old build. With `?require_shadow=N`, only
/// after a clean shadow run over the newest N recordings (else 409 with the report).
pub(super) async fn plugin_reload(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ReloadQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if state.host.plugin(&id).is_none() {
        return Err(ApiError::NotFound(format!("instance {id}")));
    }
    if let Some(last) = query.require_shadow {
        let report =
            super::recordings::shadow_run(&state, &id, &body, super::recordings::shadow_size(Some(last))?)
                .await?;
        if !report.clean() {
            return Err(ApiError::ShadowFailed(Box::new(report)));
        }
    }
    let info = state.host.reload_bytes(&id, &body).await.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    tracing::info!(instance = %id, version = %info.version, sha256 = %info.sha256, "plugin reloaded");
    Ok(axum::Json(info).into_response())
}

/// `GET /v1/stats`: activity per minute over the last hour.
pub(super) async fn stats(_: Admin, State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let since = crate::runtime::clock::now_ms().saturating_sub(3_600_000);
    let minutes = state.store.stats(since).await?;
    Ok(axum::Json(minutes).into_response())
}
