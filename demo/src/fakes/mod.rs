//! Local stand-ins for Shopify's Admin GraphQL API, Slack's Web API, OpenAI's Chat Completions
//! and Anthropic's Messages API, on one loopback port. They speak the real wire formats (paths,
//! auth headers, bodies, error shapes, rate-limit headers), check every request against the
//! official descriptions where one exists ([`crate::specs`]), and record what they received.
//!
//! The "models" behind the AI stand-ins are keyword rules, documented at [`fake_answer`]: enough
//! to drive the example flows deterministically, nothing more.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::specs::Specs;

mod ai;
mod shopify;
mod slack;

pub use ai::{AZURE_DEPLOYMENT, fake_answer};

/// The credentials the stand-ins accept.
pub const SHOPIFY_TOKEN: &str = "shpat_demo_0123456789";
/// See [`SHOPIFY_TOKEN`].
pub const SLACK_TOKEN: &str = "xoxb-demo-0123456789";
/// See [`SHOPIFY_TOKEN`].
pub const OPENAI_KEY: &str = "sk-demo-0123456789";
/// See [`SHOPIFY_TOKEN`].
pub const ANTHROPIC_KEY: &str = "sk-ant-demo-0123456789";
/// The channels the Slack stand-in knows.
pub const CHANNELS: [&str; 3] = ["C0FRAUD", "C0SUPPORT", "C0REVIEWS"];

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `shopify`, `slack`, `openai`, `azure-openai` or `anthropic`.
    pub provider: &'static str,
    /// The path.
    pub path: String,
    /// The JSON body.
    pub body: Value,
    /// What the official description says is wrong with it (empty: nothing).
    pub violations: Vec<String>,
}

/// An answer scripted for a provider's next request, for error paths.
#[derive(Debug, Clone)]
pub enum Script {
    /// HTTP status with these headers and body.
    Status(u16, Vec<(&'static str, String)>, Value),
    /// Slack's `{"ok": false, "error": code}` with HTTP 200.
    SlackError(&'static str),
    /// Shopify's cost throttling: `THROTTLED` with this much available and this restore rate.
    ShopifyThrottled {
        /// Points available now.
        available: f64,
        /// Points restored per second.
        restore_rate: f64,
    },
}

/// A message the Slack stand-in stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// The channel.
    pub channel: String,
    /// Its `ts`.
    pub ts: String,
    /// The text.
    pub text: String,
    /// The thread it replies to.
    pub thread_ts: Option<String>,
}

/// What the stand-ins hold.
pub struct FakeState {
    specs: Arc<Specs>,
    received: Mutex<Vec<Received>>,
    scripts: Mutex<BTreeMap<&'static str, VecDeque<Script>>>,
    /// Shopify orders by numeric id.
    pub orders: Mutex<BTreeMap<u64, Value>>,
    /// Messages posted to Slack, in order.
    pub messages: Mutex<Vec<SlackMessage>>,
    /// Reactions added: (channel, ts, name).
    pub reactions: Mutex<Vec<(String, String, String)>>,
    clock: AtomicU64,
}

impl FakeState {
    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Answers `provider`'s next request with `script` instead of normally.
    pub fn script(&self, provider: &'static str, script: Script) {
        if let Ok(mut s) = self.scripts.lock() {
            s.entry(provider).or_default().push_back(script);
        }
    }

    fn next_script(&self, provider: &'static str) -> Option<Script> {
        self.scripts.lock().ok()?.get_mut(provider)?.pop_front()
    }

    fn record(&self, provider: &'static str, path: &str, body: &Value, violations: Vec<String>) {
        if let Ok(mut r) = self.received.lock() {
            r.push(Received { provider, path: path.to_owned(), body: body.clone(), violations });
        }
    }

    /// Adds a Shopify order (the REST webhook shape) that GraphQL calls can then read and change.
    pub fn add_order(&self, order: Value) {
        if let (Some(id), Ok(mut orders)) = (order["id"].as_u64(), self.orders.lock()) {
            orders.insert(id, order);
        }
    }
}

/// The stand-ins, running.
pub struct Fakes {
    /// Where they listen.
    pub addr: SocketAddr,
    /// What they hold and received.
    pub state: Arc<FakeState>,
}

impl Fakes {
    /// `http://127.0.0.1:port`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the stand-ins on `listen` (port 0 for any), checking requests against `specs`.
    pub async fn start(listen: SocketAddr, specs: Arc<Specs>) -> anyhow::Result<Fakes> {
        let state = Arc::new(FakeState {
            specs,
            received: Mutex::new(Vec::new()),
            scripts: Mutex::new(BTreeMap::new()),
            orders: Mutex::new(BTreeMap::new()),
            messages: Mutex::new(Vec::new()),
            reactions: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/admin/api/{version}/graphql.json", post(shopify::graphql))
            .route("/api/{method}", post(slack::web_api))
            .route("/v1/chat/completions", post(ai::openai))
            .route("/openai/deployments/{deployment}/chat/completions", post(ai::azure_openai))
            .route("/v1/messages", post(ai::anthropic))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Fakes { addr, state })
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn scripted(script: Script) -> Response {
    match script {
        Script::Status(status, headers, body) => {
            let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response();
            for (k, v) in headers {
                if let Ok(v) = v.parse() {
                    response.headers_mut().insert(k, v);
                }
            }
            response
        }
        Script::SlackError(code) => axum::Json(json!({ "ok": false, "error": code })).into_response(),
        Script::ShopifyThrottled { available, restore_rate } => axum::Json(json!({
            "errors": [{ "message": "Throttled", "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits"
            }}],
            "extensions": { "cost": {
                "requestedQueryCost": 10,
                "actualQueryCost": null,
                "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": available, "restoreRate": restore_rate }
            }}
        }))
        .into_response(),
    }
}

fn parse(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
}
