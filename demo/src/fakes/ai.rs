//! The AI stand-ins: OpenAI's Chat Completions (also as Azure OpenAI) and Anthropic's Messages
//! API, answered by the keyword "model" of [`fake_answer`].

use super::*;

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

pub(super) async fn openai(
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
pub(super) async fn azure_openai(
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

pub(super) async fn anthropic(
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
