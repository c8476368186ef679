//! Recorded invocations under `/v1/recordings` (list, read, replay on the loaded build), and
//! shadow runs: a candidate build replayed on an instance's newest recordings before it serves
//! (`POST /v1/plugins/{id}/shadow`, and `PUT /v1/plugins/{id}/wasm?require_shadow=N`). Replays
//! answer every host call from the recording: they send nothing and store nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::paging::page_size;
use crate::runtime::recording::Recording;
use crate::runtime::replay::ShadowReport;

/// Query of `GET /v1/recordings`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    instance: Option<String>,
    limit: Option<usize>,
}

/// Query of `POST /v1/plugins/{id}/shadow`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShadowQuery {
    last: Option<usize>,
}

/// How many recordings a shadow run replays unless told, and at most: one request runs them one
/// after the other.
const DEFAULT_SHADOW: usize = 20;
const MAX_SHADOW: usize = 200;

async fn recent(
    state: &AppState,
    instance: Option<String>,
    limit: usize,
) -> Result<Vec<Recording>, ApiError> {
    let host = state.host.clone();
    tokio::task::spawn_blocking(move || host.recordings().recent(instance.as_deref(), limit))
        .await
        .map_err(ApiError::Recordings)
}

async fn one(state: &AppState, id: String) -> Result<Recording, ApiError> {
    let host = state.host.clone();
    let found = tokio::task::spawn_blocking({
        let id = id.clone();
        move || host.recordings().get(&id)
    })
    .await
    .map_err(ApiError::Recordings)?;
    found.ok_or_else(|| ApiError::NotFound(format!("recording {id}")))
}

/// `GET /v1/recordings?instance=&limit=`: the newest recordings' summaries.
pub(super) async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = page_size(query.limit)?;
    let host = state.host.clone();
    let summaries =
        tokio::task::spawn_blocking(move || host.recordings().summaries(query.instance.as_deref(), limit))
            .await
            .map_err(ApiError::Recordings)?;
    Ok(axum::Json(summaries).into_response())
}

/// `GET /v1/recordings/{id}`: one recording (or an event's newest), whole.
pub(super) async fn show(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(one(&state, id).await?).into_response())
}

/// `POST /v1/recordings/{id}/replay`: runs it again on the instance's loaded build and answers
/// both outcomes and whether they are identical.
pub(super) async fn replay(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let recording = one(&state, id).await?;
    let replayed = state
        .host
        .replay(&recording.instance, &recording)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let identical = replayed.identical_to(&recording);
    let answer =
        serde_json::json!({ "identical": identical, "recorded": recording.outcome, "replayed": replayed });
    Ok(axum::Json(answer).into_response())
}

/// How many recordings a shadow run replays: `last`, or 20, within 1 to 200.
pub(super) fn shadow_size(last: Option<usize>) -> Result<usize, ApiError> {
    let last = last.unwrap_or(DEFAULT_SHADOW);
    if !(1..=MAX_SHADOW).contains(&last) {
        return Err(ApiError::BadRequest(format!("a shadow run replays 1 to {MAX_SHADOW} recordings")));
    }
    Ok(last)
}

/// Replays instance `id`'s newest `last` recordings on `component`; refuses when it has none.
pub(super) async fn shadow_run(
    state: &AppState,
    id: &str,
    component: &[u8],
    last: usize,
) -> Result<ShadowReport, ApiError> {
    if state.host.plugin(id).is_none() {
        return Err(ApiError::NotFound(format!("instance {id}")));
    }
    let recordings = recent(state, Some(id.to_owned()), last).await?;
    if recordings.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "instance {id} has no recordings to replay (record with `record = \"all\"`, \"failures\" or a rate)"
        )));
    }
    let candidate =
        state.host.candidate(id, component).await.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(state.host.shadow(&candidate, &recordings).await)
}

/// `POST /v1/plugins/{id}/shadow?last=N` with a component as the body: the candidate replayed
/// on the instance's newest `last` (default 20) recordings; nothing is installed.
pub(super) async fn shadow(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<ShadowQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let last = shadow_size(query.last)?;
    let report = shadow_run(&state, &id, &body, last).await?;
    Ok(axum::Json(report).into_response())
}
