//! `/mcp` over Streamable HTTP. A request passes three checks before the protocol handler
//! sees it: its bearer token must be a configured client's (401 otherwise, with the
//! `WWW-Authenticate` challenge the MCP authorization spec asks for), and rmcp's own checks
//! refuse an `Origin` not allowed (DNS rebinding) and a `Host` not allowed. The server runs
//! stateless (no sessions), so any node of a cluster can answer any request.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::server::{McpServer, McpState};
use crate::manifest::McpConfig;

/// The path AI clients connect to.
pub const PATH: &str = "/mcp";

/// `/mcp`, serving `state`'s clients within `config`'s Origin and Host rules, and bodies up
/// to `max_body_bytes`.
pub fn router(state: Arc<McpState>, config: &McpConfig, max_body_bytes: usize) -> Router {
    let rules = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_allowed_origins(config.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(max_body_bytes);
    let handler_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpServer::for_requests(handler_state.clone())),
        Arc::new(NeverSessionManager::default()),
        rules,
    );
    Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// Names the request's client from its bearer token, or answers 401.
async fn authenticate(State(state): State<Arc<McpState>>, mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match state.clients().by_token(given.as_bytes()) {
        Some(client) => {
            request.extensions_mut().insert(client);
            next.run(request).await
        }
        None => {
            let challenge = if given.is_empty() {
                r#"Bearer realm="plugboard-mcp""#
            } else {
                r#"Bearer realm="plugboard-mcp", error="invalid_token""#
            };
            (
                StatusCode::UNAUTHORIZED,
                [(http::header::WWW_AUTHENTICATE, challenge)],
                "a bearer token of a configured MCP client is required\n",
            )
                .into_response()
        }
    }
}
