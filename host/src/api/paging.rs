//! Listings a page at a time: the page size a request may ask for, and the `Link` header that
//! names the next page.

use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The largest page a listing answers.
const MAX_PAGE: usize = 1_000;

/// A listing's page size: `limit`, or 100, within 1 to [`MAX_PAGE`].
pub(super) fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}; page with the `before` cursor of the Link header"
        )));
    }
    Ok(limit)
}

/// `items` as a JSON page of `path`: when the page is full, more may follow, and the
/// `Link: <...>; rel="next"` header (and `X-Next-Cursor`, the `before` to pass) names the next.
pub(super) fn page<T: serde::Serialize>(
    items: &[T],
    cursor_of_last: Option<String>,
    limit: usize,
    path: &str,
    filters: &[(&str, &Option<String>)],
) -> Response {
    let mut response = axum::Json(items).into_response();
    let Some(cursor) = cursor_of_last.filter(|_| items.len() == limit) else { return response };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in filters {
        if let Some(v) = value {
            query.append_pair(key, v);
        }
    }
    query.append_pair("limit", &limit.to_string()).append_pair("before", &cursor.to_string());
    let link = format!("<{path}?{}>; rel=\"next\"", query.finish());
    if let Ok(v) = http::HeaderValue::from_str(&link) {
        response.headers_mut().insert(http::header::LINK, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&cursor) {
        response.headers_mut().insert("x-next-cursor", v);
    }
    response
}
