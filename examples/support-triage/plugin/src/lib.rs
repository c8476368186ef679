//! Flow 2's decision step. It handles `slack/message` events from the Slack connector: asks the
//! AI provider for the message's sentiment, category, the team it belongs to and a short reply;
//! files a ticket in its key-value store (`ticket/{channel}/{ts}`, and a per-team counter
//! `open/{team}`), and returns `replies/slack`, which the route hands to the Slack connector's
//! `post-message` as a threaded reply.
//!
//! Config: `support_channel` (only messages there are triaged).
//! Action `ticket` (`{"channel", "ts"}`): the ticket filed for a message.

use plugboard_sdk::ai::Chat;
use plugboard_sdk::{Capability, Connector, Error, Event, Metadata, NewEvent, config, info, kv};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct SupportTriage;

#[derive(Debug, Deserialize, Serialize)]
struct Triage {
    sentiment: String,
    category: String,
    team: String,
    reply: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct Ticket {
    channel: String,
    ts: String,
    user: String,
    text: String,
    team: String,
    category: String,
    sentiment: String,
}

fn schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["sentiment", "category", "team", "reply"],
        "properties": {
            "sentiment": { "type": "string", "enum": ["positive", "neutral", "negative"] },
            "category": { "type": "string", "enum": ["billing", "shipping", "bug", "general"] },
            "team": { "type": "string", "enum": ["finance", "logistics", "engineering", "support"] },
            "reply": { "type": "string" }
        }
    })
}

fn ticket_key(channel: &str, ts: &str) -> String {
    format!("ticket/{channel}/{ts}")
}

impl Connector for SupportTriage {
    fn metadata() -> Metadata {
        Metadata::new("support-triage", env!("CARGO_PKG_VERSION"), "Triages Slack support messages with AI")
            .produces("replies/slack")
            .action(
                "ticket",
                "The ticket filed for a message",
                json!({"type": "object", "required": ["channel", "ts"], "properties": {
                    "channel": {"type": "string"}, "ts": {"type": "string"}}}),
            )
            .requests(Capability::Ai)
            .requests(Capability::Kv)
            .requests(Capability::Config)
            .requests(Capability::Log)
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let message: Value = event.json()?;
        let channel = message["channel"].as_str().unwrap_or_default().to_owned();
        let support = config::require("support_channel")?;
        // Thread replies are part of a conversation already triaged.
        if event.kind != "slack/message" || channel != support || message.get("thread_ts").is_some() {
            return Ok(Vec::new());
        }
        let ts = message["ts"]
            .as_str()
            .ok_or_else(|| Error::InvalidInput("a message without ts".into()))?
            .to_owned();
        let text = message["text"].as_str().unwrap_or_default().to_owned();
        // Delivery is at-least-once: a ticket already filed means this is a redelivery.
        if kv::get::<Ticket>(&ticket_key(&channel, &ts))?.is_some() {
            return Ok(Vec::new());
        }
        let triage: Triage = Chat::new()
            .system("You triage customer support messages. Pick the team that should handle it and draft a one-line reply.")
            .user(&text)
            .temperature(0.0)
            .json_schema(&schema())
            .send()?
            .json()?;
        let ticket = Ticket {
            channel: channel.clone(),
            ts: ts.clone(),
            user: message["user"].as_str().unwrap_or_default().to_owned(),
            text,
            team: triage.team.clone(),
            category: triage.category.clone(),
            sentiment: triage.sentiment.clone(),
        };
        kv::set(&ticket_key(&channel, &ts), &ticket, None)?;
        let open = kv::increment(&format!("open/{}", triage.team), 1)?;
        info!("ticket filed for {} ({}, {})", triage.team, triage.category, triage.sentiment; "event" => event.id, "open" => open);
        let reply =
            format!("{} I've filed this for the {} team ({}).", triage.reply, triage.team, triage.category);
        Ok(vec![NewEvent::json(
            "replies/slack",
            &json!({ "channel": channel, "thread_ts": ts, "text": reply }),
        )?])
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "ticket" => {
                let field = |k: &str| {
                    input[k].as_str().ok_or_else(|| Error::InvalidInput(format!("`{k}` is required")))
                };
                let ticket: Option<Ticket> = kv::get(&ticket_key(field("channel")?, field("ts")?))?;
                let ticket = ticket.ok_or_else(|| Error::NotFound("no ticket for that message".into()))?;
                let open = kv::get::<i64>(&format!("open/{}", ticket.team))?.unwrap_or(0);
                Ok(json!({ "ticket": ticket, "open_for_team": open }))
            }
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }
}

plugboard_sdk::export_connector!(SupportTriage);
