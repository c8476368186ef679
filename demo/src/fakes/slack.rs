//! The Slack Web API stand-in: `chat.postMessage`, reactions, the known channels.

use super::*;

pub(super) async fn web_api(
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
