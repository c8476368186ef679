//! Slack: the Events API, slash commands and interactivity payloads become events; messages and
//! reactions go out through the Web API.
//!
//! Webhooks (verified by the host with `X-Slack-Signature`):
//! - `url_verification`: answered with the challenge, no event.
//! - `event_callback` with a `message`, `app_mention` or `reaction_added` event: event
//!   `slack/message`, `slack/app_mention` or `slack/reaction_added` whose payload is the inner
//!   event; attributes `team_id`, `event_id`, `channel`, `user`, `ts`, `thread_ts`, and
//!   `retry_num` when Slack is retrying (the host drops retries of a stored `event_id` as
//!   duplicates). Messages from bots (ours included) and edits are acknowledged, not stored.
//! - a slash command (form-encoded): `slack/command`, the form as a JSON object.
//! - an interactivity payload (form field `payload`): `slack/interaction`.
//!
//! Actions (`POST {base_url}/api/...`, `Authorization: Bearer {{secret:...}}`): `post-message`
//! (`chat.postMessage`: `channel`, `text`, `blocks`, `thread_ts`), `update-message`
//! (`chat.update`), `add-reaction` (`reactions.add`). `ok: false` answers become typed errors.
//!
//! Config: `base_url` (default `https://slack.com`), `bot_token_secret` (default
//! `slack_bot_token`).

use plugboard_sdk::http::{Request, Response};
use plugboard_sdk::{
    ActionHints, Capability, Connector, Error, Metadata, NewEvent, UpstreamFailure, VerificationScheme,
    WebhookReply, WebhookRequest, config,
};
use serde_json::{Map, Value, json};

struct Slack;

const EVENT_TYPES: [&str; 3] = ["message", "app_mention", "reaction_added"];

fn form(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect()
}

fn event(kind: &str, payload: &Value) -> Result<NewEvent, Error> {
    NewEvent::json(kind, payload)
}

/// The contract error for Slack's `ok: false` error code.
fn slack_error(code: &str, response: &Response) -> Error {
    let message = format!("Slack answered `{code}`");
    match code {
        "ratelimited" | "rate_limited" => Error::RateLimited(response.retry_after_ms()),
        "invalid_auth"
        | "not_authed"
        | "token_revoked"
        | "token_expired"
        | "account_inactive"
        | "missing_scope"
        | "not_allowed_token_type"
        | "no_permission"
        | "ekm_access_denied" => Error::Unauthorized(message),
        "fatal_error" | "internal_error" | "service_unavailable" | "request_timeout" => {
            Error::Upstream(UpstreamFailure { status: response.status, message })
        }
        _ => Error::InvalidInput(message),
    }
}

/// Calls Web API `method` with a JSON body and returns the answer.
fn call(method: &str, body: &Value) -> Result<Value, Error> {
    let base = config::get("base_url")?.unwrap_or_else(|| "https://slack.com".into());
    let secret = config::get("bot_token_secret")?.unwrap_or_else(|| "slack_bot_token".into());
    let bytes = serde_json::to_vec(body).map_err(|e| Error::Internal(e.to_string()))?;
    let response = Request::post(format!("{}/api/{method}", base.trim_end_matches('/')))
        .bearer(&format!("{{{{secret:{secret}}}}}"))
        .header("content-type", "application/json; charset=utf-8")
        .body(bytes)
        .send()?;
    if response.status == 429 {
        return Err(Error::RateLimited(response.retry_after_ms()));
    }
    if !response.is_success() {
        return Err(response.error("Slack Web API"));
    }
    let answer: Value = response.json()?;
    if answer["ok"] != true {
        return Err(slack_error(answer["error"].as_str().unwrap_or("unknown_error"), &response));
    }
    Ok(answer)
}

fn text_field(input: &Value, key: &str) -> Result<String, Error> {
    input[key].as_str().map(str::to_owned).ok_or_else(|| Error::InvalidInput(format!("`{key}` is required")))
}

impl Connector for Slack {
    fn metadata() -> Metadata {
        Metadata::new("slack", env!("CARGO_PKG_VERSION"), "Slack Events API, commands and Web API")
            .produces("slack/message")
            .produces("slack/app_mention")
            .produces("slack/reaction_added")
            .produces("slack/command")
            .produces("slack/interaction")
            .action(
                "post-message",
                "Posts a message (chat.postMessage)",
                json!({"type": "object", "required": ["channel"], "properties": {
                    "channel": {"type": "string"}, "text": {"type": "string"}, "blocks": {"type": "array"},
                    "thread_ts": {"type": "string"}}}),
            )
            .action(
                "update-message",
                "Updates a message (chat.update)",
                json!({"type": "object", "required": ["channel", "ts"], "properties": {
                    "channel": {"type": "string"}, "ts": {"type": "string"}, "text": {"type": "string"},
                    "blocks": {"type": "array"}}}),
            )
            .action(
                "add-reaction",
                "Adds an emoji reaction (reactions.add)",
                json!({"type": "object", "required": ["channel", "timestamp", "name"], "properties": {
                    "channel": {"type": "string"}, "timestamp": {"type": "string"}, "name": {"type": "string"}}}),
            )
            .requests(Capability::Http)
            .requests(Capability::Config)
            .verifies_with(VerificationScheme::Slack)
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let content_type = request.header("content-type").unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let fields = form(&request.body);
            if let Some(payload) = fields.get("payload").and_then(Value::as_str) {
                let payload: Value = serde_json::from_str(payload)
                    .map_err(|e| Error::InvalidInput(format!("interactivity payload: {e}")))?;
                let kind = payload["type"].as_str().unwrap_or("unknown").to_owned();
                let e = event("slack/interaction", &payload)?.with_attribute("type", &kind);
                return Ok(WebhookReply::ok(vec![e]));
            }
            if !fields.contains_key("command") {
                return Err(Error::InvalidInput("a form without `command` or `payload`".into()));
            }
            let command = Value::Object(fields);
            let mut e = event("slack/command", &command)?;
            for key in ["command", "channel_id", "user_id", "team_id"] {
                if let Some(v) = command[key].as_str() {
                    e = e.with_attribute(key, v);
                }
            }
            return Ok(WebhookReply::ok(vec![e]));
        }
        let envelope: Value = request.json()?;
        match envelope["type"].as_str() {
            Some("url_verification") => {
                let challenge = envelope["challenge"]
                    .as_str()
                    .ok_or_else(|| Error::InvalidInput("url_verification without a challenge".into()))?;
                Ok(WebhookReply {
                    status: 200,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    body: challenge.as_bytes().to_vec(),
                    events: Vec::new(),
                })
            }
            Some("event_callback") => {
                let inner = &envelope["event"];
                let kind = inner["type"].as_str().unwrap_or("");
                let from_bot = inner.get("bot_id").is_some() || inner.get("subtype").is_some();
                if !EVENT_TYPES.contains(&kind) || from_bot {
                    return Ok(WebhookReply::ok(Vec::new()));
                }
                let mut e = event(&format!("slack/{kind}"), inner)?;
                for (attribute, value) in [
                    ("team_id", &envelope["team_id"]),
                    ("event_id", &envelope["event_id"]),
                    ("channel", &inner["channel"]),
                    ("user", &inner["user"]),
                    ("ts", &inner["ts"]),
                    ("thread_ts", &inner["thread_ts"]),
                ] {
                    if let Some(v) = value.as_str() {
                        e = e.with_attribute(attribute, v);
                    }
                }
                if let Some(retry) = request.header("x-slack-retry-num") {
                    e = e.with_attribute("retry_num", retry);
                }
                Ok(WebhookReply::ok(vec![e]))
            }
            other => Err(Error::InvalidInput(format!("unexpected Events API type {other:?}"))),
        }
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "post-message" | "update-message" => {
                let mut body = json!({ "channel": text_field(&input, "channel")? });
                if input["text"].is_null() && input["blocks"].is_null() {
                    return Err(Error::InvalidInput("`text` or `blocks` is required".into()));
                }
                for key in ["text", "blocks", "thread_ts"] {
                    if !input[key].is_null() {
                        body[key] = input[key].clone();
                    }
                }
                let method = if action == "post-message" {
                    "chat.postMessage"
                } else {
                    body["ts"] = json!(text_field(&input, "ts")?);
                    body.as_object_mut().map(|b| b.remove("thread_ts"));
                    "chat.update"
                };
                let answer = call(method, &body)?;
                Ok(json!({ "channel": answer["channel"], "ts": answer["ts"] }))
            }
            "add-reaction" => {
                let body = json!({
                    "channel": text_field(&input, "channel")?,
                    "timestamp": text_field(&input, "timestamp")?,
                    "name": text_field(&input, "name")?.trim_matches(':'),
                });
                call("reactions.add", &body)?;
                Ok(json!({ "ok": true }))
            }
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }

    fn action_hints() -> Vec<ActionHints> {
        vec![
            ActionHints::additive("post-message").title("Post a message"),
            // An update replaces the message's text.
            ActionHints::destructive("update-message").idempotent().title("Update a message"),
            ActionHints::additive("add-reaction").idempotent().title("React to a message"),
        ]
    }
}

plugboard_sdk::export_connector!(Slack);
