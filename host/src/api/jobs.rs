//! The async jobs API: `POST /v1/jobs` queues a connector action for long work and answers at
//! once; `GET /v1/jobs/{id}` tells how it went. The jobs token guards both.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Jobs;
use super::error::ApiError;
use crate::store::Append;

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

/// `POST /v1/jobs`: queue an action for long work; 202 with the job id at once.
pub(super) async fn create_job(
    _: Jobs,
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let job: JobRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("bad job request: {e}")))?;
    let info = state
        .host
        .plugin(&job.instance)
        .ok_or_else(|| ApiError::BadRequest(format!("no instance `{}`", job.instance)))?;
    if !info.actions.iter().any(|a| a.name == job.action) {
        return Err(ApiError::BadRequest(format!(
            "instance `{}` offers no action `{}`",
            job.instance, job.action
        )));
    }
    let mut event = crate::Event::json("job/requested", crate::pipeline::JOBS_SOURCE, &job.input)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(url) = &job.callback_url {
        let parsed = url::Url::parse(url).map_err(|e| ApiError::BadRequest(format!("callback_url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ApiError::BadRequest("callback_url must be http or https".into()));
        }
        // The parsed form: no control characters (the parser drops tabs and line breaks), so
        // error messages that quote it cannot forge log lines.
        event.attributes.push((crate::pipeline::CALLBACK_URL.into(), parsed.as_str().to_owned()));
    }
    let id = event.id.clone();
    let delivery = crate::store::QueuedDelivery {
        event_id: id.clone(),
        route: crate::pipeline::JOB_ROUTE.into(),
        target: job.instance,
        action: Some(job.action),
        order_key: None,
    };
    state
        .store
        .append(Append {
            instance: crate::pipeline::JOBS_SOURCE.into(),
            delivery_id: None,
            dedup_window_ms: 0,
            events: vec![event],
            deliveries: vec![delivery],
        })
        .await?;
    state.wake_dispatcher();
    let mut response =
        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "id": id, "status": "pending" })))
            .into_response();
    if let Ok(location) = http::HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        response.headers_mut().insert(http::header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/jobs/{id}`: a job's status and, once done, its output or error.
pub(super) async fn job_status(
    _: Jobs,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.store.job(&id).await?.ok_or(ApiError::NotFound(id))?;
    Ok(axum::Json(job).into_response())
}
