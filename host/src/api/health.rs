//! What monitoring reads, without a token: `/metrics` (Prometheus), `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// `GET /metrics`: Prometheus text format: the host's counters and histograms, and the
/// delivery queue's gauges read from the store.
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.host.metrics().render();
    if let Ok(q) = state.store.queue_stats(crate::runtime::clock::now_ms()).await {
        text.push_str(&format!(
            "# HELP plugboard_queue_depth Deliveries waiting (pending).\n# TYPE plugboard_queue_depth gauge\nplugboard_queue_depth {}\n\
             # HELP plugboard_queue_lag_seconds How overdue the oldest due delivery is.\n# TYPE plugboard_queue_lag_seconds gauge\nplugboard_queue_lag_seconds {}\n\
             # HELP plugboard_dead_letters Deliveries in the dead-letter queue.\n# TYPE plugboard_dead_letters gauge\nplugboard_dead_letters {}\n",
            q.pending,
            q.lag_ms as f64 / 1000.0,
            q.dead
        ));
    }
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// `GET /readyz`: 200 once the store answers; 503 otherwise.
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.store.writable() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the event store's writer has stopped").into_response();
    }
    match state.store.queue_stats(crate::runtime::clock::now_ms()).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the event store is unavailable").into_response(),
    }
}
