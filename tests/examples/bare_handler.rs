//! The ceilings for the webhook load test (`tests/load/run.sh`), on the same runtime settings as
//! `plugboard up` (tokio's multi-threaded runtime, one worker per core):
//!
//! - `bare_handler ADDR`: a bare axum handler that reads a POST's body and answers 200. It
//!   verifies, runs and stores nothing: the ceiling the ratio is taken against.
//! - `bare_handler ADDR --durable FILE`: the same handler, answered only after the body is on
//!   disk: one thread appends the bodies waiting (each after its length) to FILE in one write,
//!   `fdatasync`s it, then answers them. The least any handler that acknowledges after a durable
//!   write must do (a thread hand-off, a group commit, the wait for the disk), with none of a
//!   store's work (no index, no page written twice, no checksum).
//!
//! Usage: `bare_handler 127.0.0.1:PORT [--durable FILE]`

use std::io::Write;
use std::sync::mpsc;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::oneshot;

/// A body to make durable, and where to say that it is.
type Job = (Bytes, oneshot::Sender<bool>);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let app = match (args.next().as_deref(), args.next()) {
        (None, _) => Router::new()
            .route("/hooks/{instance}", post(|body: Bytes| async move { body.len().to_string() })),
        (Some("--durable"), Some(path)) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            let (jobs, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new().name("durable-writer".into()).spawn(move || append_loop(file, rx))?;
            Router::new().route(
                "/hooks/{instance}",
                post(move |body: Bytes| async move {
                    let len = body.len();
                    let (done, synced) = oneshot::channel();
                    if jobs.send((body, done)).is_err() || synced.await != Ok(true) {
                        return Err(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(len.to_string())
                }),
            )
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "usage: bare_handler ADDR [--durable FILE]",
            ));
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}

/// Takes the bodies waiting, appends them to `file` in one write, syncs it, answers each (false
/// when the write or the sync failed).
fn append_loop(mut file: std::fs::File, rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::new();
    let mut bytes = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        bytes.clear();
        for (body, _) in &batch {
            bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
            bytes.extend_from_slice(body);
        }
        let synced = file.write_all(&bytes).and_then(|()| file.sync_data()).is_ok();
        for (_, done) in batch.drain(..) {
            let _ = done.send(synced);
        }
    }
}
