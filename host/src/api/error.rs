//! The one error type of the HTTP API: client errors say what was wrong; server errors say only
//! their kind to the client and are logged with their cause.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Why an API request was not answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("the event store is unavailable")]
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

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
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
