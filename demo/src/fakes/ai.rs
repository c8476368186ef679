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

/// What breaks the Messages API reference's rules for tool use: each tool has a name of 1 to
/// 64 of `[A-Za-z0-9_-]` and an object `input_schema`; `tool_use` blocks (an `id`, a `name`
/// and an object `input`) only in assistant turns; `tool_result` blocks only in user turns,
/// first in them, each naming a `tool_use` of the assistant turn just before.
pub fn anthropic_tool_violations(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, tool) in body["tools"].as_array().into_iter().flatten().enumerate() {
        let name_ok = tool["name"].as_str().is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        });
        if !name_ok {
            problems.push(format!("tools.{i}.name: must match ^[a-zA-Z0-9_-]{{1,64}}$"));
        }
        if tool["input_schema"]["type"] != "object" {
            problems.push(format!("tools.{i}.input_schema: must be a JSON Schema of type object"));
        }
        if tool.get("description").is_some_and(|d| !d.is_string()) {
            problems.push(format!("tools.{i}.description: must be a string"));
        }
    }
    let mut previous_uses: Vec<String> = Vec::new();
    for (i, m) in body["messages"].as_array().into_iter().flatten().enumerate() {
        let blocks = m["content"].as_array().cloned().unwrap_or_default();
        let mut uses = Vec::new();
        let mut seen_other = false;
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("tool_use") => {
                    if m["role"] != "assistant" {
                        problems.push(format!("messages.{i}.content.{j}: tool_use only in assistant turns"));
                    }
                    if !b["id"].is_string() || !b["name"].is_string() || !b["input"].is_object() {
                        problems.push(format!(
                            "messages.{i}.content.{j}: tool_use needs id, name and an object input"
                        ));
                    }
                    uses.extend(b["id"].as_str().map(str::to_owned));
                }
                Some("tool_result") => {
                    if m["role"] != "user" {
                        problems.push(format!("messages.{i}.content.{j}: tool_result only in user turns"));
                    }
                    if seen_other {
                        problems
                            .push(format!("messages.{i}.content.{j}: tool_result blocks must come first"));
                    }
                    let named =
                        b["tool_use_id"].as_str().is_some_and(|id| previous_uses.iter().any(|u| u == id));
                    if !named {
                        problems.push(format!(
                            "messages.{i}.content.{j}: tool_use_id must name a tool_use of the previous assistant turn"
                        ));
                    }
                    if b.get("is_error").is_some_and(|e| !e.is_boolean()) {
                        problems.push(format!("messages.{i}.content.{j}.is_error: must be a boolean"));
                    }
                }
                Some("text") => seen_other = true,
                other => problems.push(format!("messages.{i}.content.{j}: unknown block type {other:?}")),
            }
        }
        previous_uses = uses;
    }
    problems
}

/// The deployment the Azure OpenAI stand-in serves.
pub const AZURE_DEPLOYMENT: &str = "triage-gpt-4o-mini";

/// The stand-in "model" with tools: while no tool has answered, it calls the first tool whose
/// input requires an `id` with the first number of three or more digits in the user's words
/// (`"where is order 1001?"`); once a tool has answered, it answers from the result: an order's
/// `name`, financial status and tags. `None`: no tool fits, answer as without tools.
pub fn fake_tool_turn(
    user: &str,
    tools: &[Value],
    results: &[Value],
) -> Option<Result<String, (String, Value)>> {
    if let Some(last) = results.last() {
        let Ok(order) = serde_json::from_str::<Value>(last.as_str().unwrap_or("")) else {
            return Some(Ok(format!("The lookup failed: {}", last.as_str().unwrap_or(""))));
        };
        let status = order["displayFinancialStatus"].as_str().unwrap_or("unknown").to_lowercase();
        let tags = order["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
        return Some(Ok(format!(
            "Order {} is {status}{}.",
            order["name"].as_str().unwrap_or("?"),
            tags.filter(|t| !t.is_empty()).map(|t| format!(" (tags: {t})")).unwrap_or_default()
        )));
    }
    let number = user
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() >= 3)
        .and_then(|w| w.parse::<u64>().ok())?;
    let tool = tools.iter().find(|t| {
        t["required"].as_array().is_some_and(|r| r.contains(&json!("id")))
            || t["parameters"]["required"].as_array().is_some_and(|r| r.contains(&json!("id")))
            || t["input_schema"]["required"].as_array().is_some_and(|r| r.contains(&json!("id")))
    })?;
    let name = tool["name"].as_str().unwrap_or_default().to_owned();
    Some(Err((name, json!({ "id": number }))))
}

/// A Chat Completions answer to `body` (a structured answer when it asks for one; a tool call
/// or an answer from tool results when it offers tools), and its number for ids.
fn chat_completion(state: &FakeState, body: &Value, model: Value) -> (Value, u64) {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let user: Vec<&str> =
        messages.iter().filter(|m| m["role"] == "user").filter_map(|m| m["content"].as_str()).collect();
    let schema = body["response_format"]["json_schema"]["schema"].clone();
    let mut content = fake_answer(&user.join("\n"), (!schema.is_null()).then_some(&schema));
    let prompt: u64 = messages.iter().filter_map(|m| m["content"].as_str()).map(tokens).sum();
    let n = state.clock.fetch_add(1, Ordering::SeqCst);
    let mut message = json!({ "role": "assistant", "content": null, "refusal": null, "annotations": [] });
    let mut finish = "stop";
    let tools: Vec<Value> =
        body["tools"].as_array().into_iter().flatten().map(|t| t["function"].clone()).collect();
    let results: Vec<Value> =
        messages.iter().filter(|m| m["role"] == "tool").map(|m| m["content"].clone()).collect();
    match (!tools.is_empty()).then(|| fake_tool_turn(&user.join("\n"), &tools, &results)).flatten() {
        Some(Err((name, arguments))) => {
            content = String::new();
            finish = "tool_calls";
            message["tool_calls"] = json!([{ "id": format!("call_demo{n}"), "type": "function",
                "function": { "name": name, "arguments": arguments.to_string() } }]);
        }
        Some(Ok(text)) => content = text,
        None => {}
    }
    if !content.is_empty() {
        message["content"] = json!(content);
    }
    let answer = json!({
        "id": format!("chatcmpl-demo{n}"),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
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
    violations.extend(anthropic_tool_violations(&body));
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
    let mut content = fake_answer(&user.join("\n"), schema.as_ref());
    let n = state.clock.fetch_add(1, Ordering::SeqCst);
    let tools: Vec<Value> = body["tools"].as_array().cloned().unwrap_or_default();
    let results: Vec<Value> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].clone())
        .collect();
    let mut blocks = vec![];
    let mut stop = "end_turn";
    match (!tools.is_empty()).then(|| fake_tool_turn(&user.join("\n"), &tools, &results)).flatten() {
        Some(Err((name, input))) => {
            content = String::new();
            stop = "tool_use";
            blocks.push(
                json!({ "type": "tool_use", "id": format!("toolu_demo{n}"), "name": name, "input": input }),
            );
        }
        Some(Ok(text)) => content = text,
        None => {}
    }
    if !content.is_empty() {
        blocks.insert(0, json!({ "type": "text", "text": content }));
    }
    axum::Json(json!({
        "id": format!("msg_demo{n}"), "type": "message", "role": "assistant", "model": body["model"],
        "content": blocks,
        "stop_reason": stop, "stop_sequence": null,
        "usage": { "input_tokens": tokens(&user.join(" ")) + tokens(system), "output_tokens": tokens(&content) },
    }))
    .into_response()
}
