//! `GET /v1/events/stream`: stored events as they are committed, as Server-Sent Events, for the
//! dashboard's live list and for operators' tools (`curl -N -H 'Authorization: Bearer ...'`).
//!
//! Each message is `event: event`, `id: <position>`, `data: <the event's summary as JSON>`.
//! Positions only grow, so a client that reconnects with `Last-Event-ID` gets exactly what it
//! missed; without it the stream starts with the next event stored. The stream wakes when the
//! store's writer commits (no polling), and ends when the server shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use crate::store::{EventLog, EventSummary};

/// Flips to `true` when the server starts shutting down, so that open streams end and the
/// graceful shutdown does not wait for them.
#[derive(Clone)]
pub struct Closing(pub watch::Receiver<bool>);

/// How many events one read of the store takes.
const BATCH: usize = 100;

struct Follower {
    store: Arc<dyn EventLog>,
    commits: watch::Receiver<u64>,
    closing: Option<watch::Receiver<bool>>,
    after: i64,
    ready: VecDeque<(i64, EventSummary)>,
}

pub(super) async fn events_stream(
    _: Admin,
    State(state): State<Arc<AppState>>,
    closing: Option<Extension<Closing>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resume =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let after = match resume {
        Some(position) => position,
        None => state.store.last_position().await?,
    };
    let follower = Follower {
        commits: state.store.commits(),
        store: state.store.clone(),
        closing: closing.map(|Extension(c)| c.0),
        after,
        ready: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(follower, next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// The next message, waiting for a commit when there is none; `None` ends the stream.
async fn next(mut f: Follower) -> Option<(Result<SseEvent, Infallible>, Follower)> {
    loop {
        if let Some((position, event)) = f.ready.pop_front() {
            let message =
                SseEvent::default().event("event").id(position.to_string()).json_data(&event).ok()?;
            return Some((Ok(message), f));
        }
        // Marked seen before reading: a commit after the read wakes the wait below.
        f.commits.borrow_and_update();
        let events = f.store.events_after(f.after, BATCH).await.ok()?;
        if let Some((last, _)) = events.last() {
            f.after = *last;
            f.ready.extend(events);
            continue;
        }
        let closing = async {
            match &mut f.closing {
                Some(c) => drop(c.wait_for(|closing| *closing).await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = f.commits.changed() => changed.ok()?,
            () = closing => return None,
        }
    }
}
