//! The operator's page, `/dashboard`.

use axum::response::{IntoResponse, Response};

/// `GET /dashboard`: the operator's page. It holds no data: the page asks for the admin token
/// and reads everything through the admin API with it.
pub(super) async fn dashboard() -> Response {
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
