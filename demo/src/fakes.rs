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
            .route("/admin/api/{version}/graphql.json", post(shopify))
            .route("/api/{method}", post(slack))
            .route("/v1/chat/completions", post(openai))
            .route("/openai/deployments/{deployment}/chat/completions", post(azure_openai))
            .route("/v1/messages", post(anthropic))
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

// ---- Shopify Admin GraphQL ----

fn numeric(gid: &str) -> Option<u64> {
    gid.rsplit('/').next()?.parse().ok()
}

fn order_node(order: &Value, placed: usize) -> Value {
    let tags: Vec<String> = order["tags"]
        .as_str()
        .map(|t| t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    json!({
        "id": format!("gid://shopify/Order/{}", order["id"]),
        "name": order["name"],
        "email": order["email"],
        "note": order["note"],
        "tags": tags,
        "displayFinancialStatus": order["financial_status"].as_str().map(str::to_uppercase),
        "totalPriceSet": { "shopMoney": { "amount": order["total_price"], "currencyCode": order["currency"] } },
        "customer": order["customer"]["id"].as_u64().map(|id| json!({
            "id": format!("gid://shopify/Customer/{id}"),
            "email": order["customer"]["email"],
            "numberOfOrders": placed.to_string(),
        })),
    })
}

/// How many of the stand-in's orders the customer of `order` placed.
fn orders_placed(orders: &BTreeMap<u64, Value>, customer: &Value) -> usize {
    orders
        .values()
        .filter(|o| o["customer"]["id"].as_u64().is_some() && o["customer"]["id"] == *customer)
        .count()
}

async fn shopify(
    State(state): State<Arc<FakeState>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = format!("/admin/api/{version}/graphql.json");
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "errors": e }))).into_response(),
    };
    let mut violations = Vec::new();
    if !body["query"].is_string() {
        violations.push("`query` must be a string".into());
    }
    if header(&headers, "content-type").is_none_or(|c| !c.starts_with("application/json")) {
        violations.push("Content-Type must be application/json".into());
    }
    state.record("shopify", &path, &body, violations.clone());
    if header(&headers, "x-shopify-access-token") != Some(SHOPIFY_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
            })),
        )
            .into_response();
    }
    if !violations.is_empty() {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "errors": violations.join("; ") })))
            .into_response();
    }
    if let Some(script) = state.next_script("shopify") {
        return scripted(script);
    }
    let query = body["query"].as_str().unwrap_or("");
    let vars = &body["variables"];
    let cost = json!({ "cost": { "requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": { "maximumAvailable": 2000.0, "currentlyAvailable": 1990.0, "restoreRate": 100.0 } } });
    let Ok(mut orders) = state.orders.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let data = if query.contains("tagsAdd(") {
        let id = vars["id"].as_str().and_then(numeric);
        match id.and_then(|id| orders.get_mut(&id)) {
            Some(order) => {
                let mut tags: Vec<String> = order["tags"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                for t in vars["tags"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !tags.iter().any(|x| x == t) {
                        tags.push(t.to_owned());
                    }
                }
                order["tags"] = json!(tags.join(", "));
                json!({ "tagsAdd": { "node": { "id": vars["id"] }, "userErrors": [] } })
            }
            None => {
                json!({ "tagsAdd": { "node": null, "userErrors": [{ "field": ["id"], "message": "Order does not exist" }] } })
            }
        }
    } else if query.contains("orderUpdate(") {
        let id = vars["input"]["id"].as_str().and_then(numeric);
        match id.and_then(|id| orders.get_mut(&id)) {
            Some(order) => {
                order["note"] = vars["input"]["note"].clone();
                json!({ "orderUpdate": { "order": { "id": vars["input"]["id"], "note": order["note"] }, "userErrors": [] } })
            }
            None => {
                json!({ "orderUpdate": { "order": null, "userErrors": [{ "field": ["id"], "message": "Order does not exist" }] } })
            }
        }
    } else if query.contains("order(id") {
        let order = vars["id"]
            .as_str()
            .and_then(numeric)
            .and_then(|id| orders.get(&id))
            .map(|o| order_node(o, orders_placed(&orders, &o["customer"]["id"])));
        json!({ "order": order })
    } else if query.contains("customer(id") {
        let id = vars["id"].as_str().and_then(numeric);
        let theirs: Vec<&Value> =
            orders.values().filter(|o| id.is_some() && o["customer"]["id"].as_u64() == id).collect();
        let spent: f64 = theirs.iter().filter_map(|o| o["total_price"].as_str()?.parse::<f64>().ok()).sum();
        let customer = theirs.first().map(|o| json!({
            "id": format!("gid://shopify/Customer/{}", o["customer"]["id"]),
            "email": o["customer"]["email"], "firstName": o["customer"]["first_name"], "lastName": o["customer"]["last_name"],
            "numberOfOrders": theirs.len().to_string(), "tags": [],
            "amountSpent": { "amount": format!("{spent:.2}"), "currencyCode": o["currency"] },
        }));
        json!({ "customer": customer })
    } else {
        return axum::Json(json!({ "errors": [{ "message": "This stand-in knows order, customer, tagsAdd and orderUpdate" }] })).into_response();
    };
    axum::Json(json!({ "data": data, "extensions": cost })).into_response()
}

// ---- Slack Web API ----

async fn slack(
    State(state): State<Arc<FakeState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(_) => return axum::Json(json!({ "ok": false, "error": "invalid_json" })).into_response(),
    };
    let bearer = header(&headers, "authorization").and_then(|a| a.strip_prefix("Bearer "));
    let mut violations = state.specs.check_slack_call(&method, &body, bearer.is_some());
    if header(&headers, "content-type").is_none_or(|c| !c.starts_with("application/json")) {
        violations.push("Content-Type must be application/json".into());
    }
    state.record("slack", &format!("/api/{method}"), &body, violations.clone());
    if bearer != Some(SLACK_TOKEN) {
        return axum::Json(
            json!({ "ok": false, "error": if bearer.is_none() { "not_authed" } else { "invalid_auth" } }),
        )
        .into_response();
    }
    if !violations.is_empty() {
        return axum::Json(json!({ "ok": false, "error": "invalid_arguments", "response_metadata": { "messages": violations } })).into_response();
    }
    if let Some(script) = state.next_script("slack") {
        return scripted(script);
    }
    let channel = body["channel"].as_str().unwrap_or("");
    if !CHANNELS.contains(&channel) {
        return axum::Json(json!({ "ok": false, "error": "channel_not_found" })).into_response();
    }
    let ts = format!("1700000000.{:06}", state.clock.fetch_add(1, Ordering::SeqCst) + 100);
    match method.as_str() {
        "chat.postMessage" => {
            let message = SlackMessage {
                channel: channel.to_owned(),
                ts: ts.clone(),
                text: body["text"].as_str().unwrap_or("").to_owned(),
                thread_ts: body["thread_ts"].as_str().map(str::to_owned),
            };
            if let Ok(mut m) = state.messages.lock() {
                m.push(message.clone());
            }
            axum::Json(json!({ "ok": true, "channel": channel, "ts": ts,
                "message": { "type": "message", "subtype": "bot_message", "text": message.text, "ts": ts, "bot_id": "B0DEMO" } })).into_response()
        }
        "chat.update" => {
            let target = body["ts"].as_str().unwrap_or("");
            let Ok(mut messages) = state.messages.lock() else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            match messages.iter_mut().find(|m| m.channel == channel && m.ts == target) {
                Some(m) => {
                    m.text = body["text"].as_str().unwrap_or("").to_owned();
                    axum::Json(json!({ "ok": true, "channel": channel, "ts": target, "text": m.text }))
                        .into_response()
                }
                None => axum::Json(json!({ "ok": false, "error": "message_not_found" })).into_response(),
            }
        }
        "reactions.add" => {
            let entry = (
                channel.to_owned(),
                body["timestamp"].as_str().unwrap_or("").to_owned(),
                body["name"].as_str().unwrap_or("").to_owned(),
            );
            if let Ok(mut r) = state.reactions.lock() {
                if r.contains(&entry) {
                    return axum::Json(json!({ "ok": false, "error": "already_reacted" })).into_response();
                }
                r.push(entry);
            }
            axum::Json(json!({ "ok": true })).into_response()
        }
        _ => axum::Json(json!({ "ok": false, "error": "unknown_method" })).into_response(),
    }
}

// ---- the AI stand-ins ----

const RISK_WORDS: [&str; 6] =
    ["fraud", "stolen", "chargeback", "mismatch", "different address", "prepaid card"];
const NEGATIVE_WORDS: [&str; 8] =
    ["angry", "terrible", "worst", "broken", "late", "refund", "unacceptable", "never"];
const POSITIVE_WORDS: [&str; 5] = ["thanks", "great", "love", "excellent", "happy"];

/// The answer of the stand-in "model" to `text`, shaped by `schema` when one is given: each
/// declared property gets a value by keyword rules:
/// - `risk`: `high` when the text mentions fraud, a stolen card, a chargeback, an address
///   mismatch, a different address or a prepaid card; else `low`. `risk_score`: 0.92 or 0.08.
/// - `sentiment`: `negative` / `positive` / `neutral` by word lists.
/// - `category`: `billing`, `shipping`, `bug` or `general`; `team` follows the category.
/// - `summary`, `reasons`, `reply`: short texts naming the rules that fired.
///
/// Other properties get an empty value of their type. Without a schema: a one-line summary.
pub fn fake_answer(text: &str, schema: Option<&Value>) -> String {
    let lower = text.to_lowercase();
    let hits = |words: &[&str]| {
        words.iter().filter(|w| lower.contains(*w)).map(|w| (*w).to_owned()).collect::<Vec<_>>()
    };
    let risky = hits(&RISK_WORDS);
    let negative = hits(&NEGATIVE_WORDS);
    let positive = hits(&POSITIVE_WORDS);
    let sentiment = if !negative.is_empty() {
        "negative"
    } else if !positive.is_empty() {
        "positive"
    } else {
        "neutral"
    };
    let category = if ["refund", "charge", "invoice", "billing"].iter().any(|w| lower.contains(w)) {
        "billing"
    } else if ["delivery", "shipping", "package", "late"].iter().any(|w| lower.contains(w)) {
        "shipping"
    } else if ["error", "crash", "broken", "bug"].iter().any(|w| lower.contains(w)) {
        "bug"
    } else {
        "general"
    };
    let Some(schema) = schema else {
        return format!(
            "Summary: {} message(s), sentiment {sentiment}, category {category}.",
            text.lines().count().max(1)
        );
    };
    let mut answer = serde_json::Map::new();
    for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
        let value = match name.as_str() {
            "risk" => json!(if risky.is_empty() { "low" } else { "high" }),
            "risk_score" => json!(if risky.is_empty() { 0.08 } else { 0.92 }),
            "sentiment" => json!(sentiment),
            "category" => json!(category),
            "team" => json!(match category {
                "billing" => "finance",
                "shipping" => "logistics",
                "bug" => "engineering",
                _ => "support",
            }),
            "reasons" => json!(risky.iter().map(|w| format!("mentions {w}")).collect::<Vec<_>>()),
            "summary" | "reply" => json!(format!("Sentiment {sentiment}, category {category}.")),
            _ => match prop["type"].as_str() {
                Some("number") | Some("integer") => json!(0),
                Some("boolean") => json!(false),
                Some("array") => json!([]),
                Some("object") => json!({}),
                _ => json!(""),
            },
        };
        answer.insert(name.clone(), value);
    }
    Value::Object(answer).to_string()
}

fn tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

async fn openai(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let error = |status: StatusCode, kind: &str, message: String| {
        (
            status,
            axum::Json(json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })),
        )
            .into_response()
    };
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    let violations = state.specs.check_openai_request(&body);
    state.record("openai", "/v1/chat/completions", &body, violations.clone());
    if header(&headers, "authorization") != Some(&format!("Bearer {OPENAI_KEY}")) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided.".into(),
        );
    }
    if !violations.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", violations.join("; "));
    }
    if let Some(script) = state.next_script("openai") {
        return scripted(script);
    }
    let (answer, n) = chat_completion(&state, &body, body["model"].clone());
    let mut response = axum::Json(answer).into_response();
    if let Ok(id) = format!("req_demo{n}").parse() {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

/// Azure OpenAI's Chat Completions for a deployment: the key in `api-key`, a required
/// `api-version`, and the OpenAI request body (Azure's inference API takes the same
/// `CreateChatCompletionRequest`, checked against OpenAI's description); the deployment decides
/// the model.
async fn azure_openai(
    State(state): State<Arc<FakeState>>,
    Path(deployment): Path<String>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let error = |status: StatusCode, code: &str, message: String| {
        (status, axum::Json(json!({ "error": { "code": code, "message": message } }))).into_response()
    };
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequest", e),
    };
    let mut violations = state.specs.check_openai_request(&body);
    let version_ok = query.get("api-version").is_some_and(|v| {
        let date = v.strip_suffix("-preview").unwrap_or(v);
        date.len() == 10
            && date
                .bytes()
                .enumerate()
                .all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
    });
    if !version_ok {
        violations.push("query parameter `api-version` (YYYY-MM-DD[-preview]) is required".into());
    }
    if headers.contains_key("authorization") {
        violations.push("Azure OpenAI takes the key in `api-key`, not `Authorization`".into());
    }
    let path = format!("/openai/deployments/{deployment}/chat/completions");
    state.record("azure-openai", &path, &body, violations.clone());
    if header(&headers, "api-key") != Some(OPENAI_KEY) {
        return error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.".into(),
        );
    }
    if !violations.is_empty() {
        return error(StatusCode::BAD_REQUEST, "BadRequest", violations.join("; "));
    }
    if deployment != AZURE_DEPLOYMENT {
        return error(
            StatusCode::NOT_FOUND,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist.".into(),
        );
    }
    let (mut answer, n) = chat_completion(&state, &body, json!("gpt-4o-mini"));
    answer["prompt_filter_results"] = json!([]);
    let mut response = axum::Json(answer).into_response();
    for name in ["apim-request-id", "x-request-id"] {
        if let Ok(id) = format!("azreq-demo{n}").parse() {
            response.headers_mut().insert(name, id);
        }
    }
    response
}

/// The deployment the Azure OpenAI stand-in serves.
pub const AZURE_DEPLOYMENT: &str = "triage-gpt-4o-mini";

/// A Chat Completions answer to `body` (a structured answer when it asks for one), and its
/// number for ids.
fn chat_completion(state: &FakeState, body: &Value, model: Value) -> (Value, u64) {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let user: Vec<&str> =
        messages.iter().filter(|m| m["role"] == "user").filter_map(|m| m["content"].as_str()).collect();
    let schema = body["response_format"]["json_schema"]["schema"].clone();
    let content = fake_answer(&user.join("\n"), (!schema.is_null()).then_some(&schema));
    let prompt: u64 = messages.iter().filter_map(|m| m["content"].as_str()).map(tokens).sum();
    let n = state.clock.fetch_add(1, Ordering::SeqCst);
    let answer = json!({
        "id": format!("chatcmpl-demo{n}"),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content, "refusal": null, "annotations": [] },
                      "logprobs": null, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": prompt, "completion_tokens": tokens(&content), "total_tokens": prompt + tokens(&content) },
        "service_tier": "default",
        "system_fingerprint": "fp_demo",
    });
    (answer, n)
}

async fn anthropic(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let error = |status: StatusCode, kind: &str, message: String| {
        (status, axum::Json(json!({ "type": "error", "error": { "type": kind, "message": message } })))
            .into_response()
    };
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    // No official machine-readable description: the Messages API reference's rules.
    let mut violations = Vec::new();
    for key in ["model", "max_tokens", "messages"] {
        if body.get(key).is_none() {
            violations.push(format!("{key}: Field required"));
        }
    }
    for (i, m) in body["messages"].as_array().into_iter().flatten().enumerate() {
        if m["role"] != "user" && m["role"] != "assistant" {
            violations.push(format!("messages.{i}.role: must be user or assistant (system goes top-level)"));
        }
    }
    if body.get("system").is_some_and(|s| !s.is_string() && !s.is_array()) {
        violations.push("system: must be a string or a list of text blocks".into());
    }
    if header(&headers, "anthropic-version").is_none() {
        violations.push("anthropic-version: header is required".into());
    }
    state.record("anthropic", "/v1/messages", &body, violations.clone());
    if header(&headers, "x-api-key") != Some(ANTHROPIC_KEY) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key".into());
    }
    if !violations.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", violations.join("; "));
    }
    if let Some(script) = state.next_script("anthropic") {
        return scripted(script);
    }
    let user: Vec<&str> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .collect();
    // The connector puts a JSON Schema into the system prompt when it wants JSON.
    let system = body["system"].as_str().unwrap_or("");
    let schema = system.find('{').and_then(|at| serde_json::from_str::<Value>(&system[at..]).ok());
    let content = fake_answer(&user.join("\n"), schema.as_ref());
    let n = state.clock.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "id": format!("msg_demo{n}"), "type": "message", "role": "assistant", "model": body["model"],
        "content": [{ "type": "text", "text": content }],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": tokens(&user.join(" ")) + tokens(system), "output_tokens": tokens(&content) },
    }))
    .into_response()
}
