//! The one error type of the HTTP API: client errors say what was wrong; server errors say only
//! their kind to the client and are logged with their cause.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Why an API request was not answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    #[error("the call log is unavailable")]
    CallLog(#[source] tokio::task::JoinError),
    #[error("this API needs `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
}

/// What a client is told about a store error (the log keeps the cause).
fn store_message(e: &StoreError) -> &'static str {
    match e {
        StoreError::Conflict(_) => "the event store refused a conflicting write",
        StoreError::Failed(_) => "the event store failed",
        _ => "the event store is unavailable",
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            ApiError::Store(StoreError::Failed(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(_) | ApiError::CallLog(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::ingress::webhook::error_response("API request failed", self.status(), &self)
    }
}
