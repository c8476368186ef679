//! The one error type of the HTTP API: client errors say what was wrong; server errors say only
//! their kind to the client and are logged with their cause.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Why an API request was not answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{}", store_answer(.0).1)]
    Store(#[from] StoreError),
    #[error("the call log is unavailable")]
    CallLog(#[source] tokio::task::JoinError),
    #[error("the recordings are unavailable")]
    Recordings(#[source] tokio::task::JoinError),
    #[error(
        "the new build is not identical on {} of {} recordings ({} different, {} failed): not reloaded",
        .0.replayed - .0.identical, .0.replayed, .0.different, .0.failed
    )]
    ShadowFailed(Box<crate::runtime::replay::ShadowReport>),
    #[error("this API needs `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
}

/// The status and message a client gets for a store error (the log keeps the cause).
fn store_answer(e: &StoreError) -> (StatusCode, &'static str) {
    match e {
        StoreError::Conflict(_) => (StatusCode::CONFLICT, "the event store refused a conflicting write"),
        StoreError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the event store failed"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the event store is unavailable"),
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Store(e) => store_answer(e).0,
            ApiError::CallLog(_) | ApiError::Recordings(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ShadowFailed(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::ShadowFailed(report) = &self {
            // The report says which recordings differ and how: the operator's next step.
            let body = serde_json::json!({ "error": self.to_string(), "report": report });
            return (self.status(), axum::Json(body)).into_response();
        }
        crate::ingress::webhook::error_response("API request failed", self.status(), &self)
    }
}
