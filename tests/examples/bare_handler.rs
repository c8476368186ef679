//! The ceiling for the webhook load test (`tests/load/run.sh`): a bare axum handler that reads a
//! POST's body and answers 200, on the same runtime settings as `plugboard up` (tokio's
//! multi-threaded runtime, one worker per core). It verifies, runs and stores nothing.
//!
//! Usage: `bare_handler 127.0.0.1:PORT`

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let app =
        Router::new().route("/hooks/{instance}", post(|body: Bytes| async move { body.len().to_string() }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
