//! Flow 4's agent step. It handles `slack/message` events from the Slack connector: a customer
//! asks about an order in the support channel; the model, given the Shopify connector's
//! `get-order` action as a tool, looks the order up (the host runs the call with the Shopify
//! instance's grants, not this plugin's) and answers; the answer goes back as `replies/slack`,
//! which the route hands to the Slack connector's `post-message` as a threaded reply.
//!
//! Config: `support_channel` (only messages there are answered).
//! Grants it needs: `ai`, `config`, `log`, and `grants.ai_tools = ["shopify.get-order"]`.

use plugboard_sdk::ai::Agent;
use plugboard_sdk::{Capability, Connector, Error, Event, Metadata, NewEvent, config, info};
use serde_json::{Value, json};

struct OrderAgent;

const INSTRUCTIONS: &str = "You answer customers' questions about their orders in one or two sentences. \
    Look the order up with the tool; never guess its status.";

impl Connector for OrderAgent {
    fn metadata() -> Metadata {
        Metadata::new(
            "order-agent",
            env!("CARGO_PKG_VERSION"),
            "Answers questions about orders, looking them up",
        )
        .produces("replies/slack")
        .requests(Capability::Ai)
        .requests(Capability::Config)
        .requests(Capability::Log)
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let message: Value = event.json()?;
        let channel = message["channel"].as_str().unwrap_or_default().to_owned();
        // Thread replies (its own included) are part of a conversation already answered.
        if event.kind != "slack/message"
            || channel != config::require("support_channel")?
            || message.get("thread_ts").is_some()
            || message.get("bot_id").is_some()
        {
            return Ok(Vec::new());
        }
        let ts = message["ts"].as_str().ok_or_else(|| Error::InvalidInput("a message without ts".into()))?;
        let text = message["text"].as_str().unwrap_or_default();
        let answer =
            Agent::new().system(INSTRUCTIONS).user(text).tool("shopify.get-order").max_rounds(3).send()?;
        for round in &answer.rounds {
            info!("tool call {} ({})", round.call.name, if round.is_error { "failed" } else { "ok" };
                "event" => &event.id, "arguments" => &round.call.arguments);
        }
        Ok(vec![NewEvent::json(
            "replies/slack",
            &json!({ "channel": channel, "thread_ts": ts, "text": answer.content }),
        )?])
    }
}

plugboard_sdk::export_connector!(OrderAgent);
