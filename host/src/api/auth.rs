//! The bearer tokens that guard the admin and jobs APIs, as extractors: a handler that takes
//! [`Admin`] (or [`Jobs`]) runs only for a caller who presented that API's token. An API whose
//! token is not configured is off and answers 404.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;

/// A caller of the admin API.
pub(crate) struct Admin;

/// A caller of the jobs API.
pub(crate) struct Jobs;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let token = state
            .admin_token
            .as_deref()
            .ok_or_else(|| ApiError::NotFound("(the admin API is off)".into()))?;
        check_bearer(token, &parts.headers).map(|()| Admin)
    }
}

impl FromRequestParts<Arc<AppState>> for Jobs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let token =
            state.jobs_token.as_deref().ok_or_else(|| ApiError::NotFound("(the jobs API is off)".into()))?;
        check_bearer(token, &parts.headers).map(|()| Jobs)
    }
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
