//! Flow 1's decision step. It handles `orders/create` events from the Shopify connector:
//! asks the AI provider for a structured assessment (fraud risk, a score, the customer's
//! sentiment, reasons), returns `orders/assessed`, and for a risky order also returns
//! `alerts/slack` (routed to the Slack connector's `post-message`) and `alerts/shopify-tag`
//! (routed to the Shopify connector's `add-order-tags`). It calls no API itself: the routes and
//! connectors do, with their own grants.
//!
//! Config: `alert_channel` (Slack channel id), `risk_tag` (default `fraud-risk-high`),
//! `min_score` (default 0.7: a `high` risk or a score at least this high is risky).

use plugboard_sdk::ai::Chat;
use plugboard_sdk::{Capability, Connector, Error, Event, Metadata, NewEvent, config, info};
use serde::Deserialize;
use serde_json::{Value, json};

struct OrderRisk;

#[derive(Debug, Deserialize)]
struct Assessment {
    risk: String,
    risk_score: f64,
    sentiment: String,
    reasons: Vec<String>,
}

fn schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["risk", "risk_score", "sentiment", "reasons"],
        "properties": {
            "risk": { "type": "string", "enum": ["low", "medium", "high"] },
            "risk_score": { "type": "number" },
            "sentiment": { "type": "string", "enum": ["positive", "neutral", "negative"] },
            "reasons": { "type": "array", "items": { "type": "string" } }
        }
    })
}

/// What the model sees: the order's facts that bear on fraud, and the customer's own words.
fn describe(order: &Value) -> String {
    let address = |a: &Value| {
        format!(
            "{}, {} {}",
            a["address1"].as_str().unwrap_or("?"),
            a["zip"].as_str().unwrap_or(""),
            a["city"].as_str().unwrap_or("")
        )
    };
    format!(
        "Order {} for {} {} by {} (customer with {} previous orders).\nBilling address: {}\nShipping address: {}\nCustomer note: {}",
        order["name"].as_str().unwrap_or("?"),
        order["total_price"].as_str().unwrap_or("?"),
        order["currency"].as_str().unwrap_or(""),
        order["email"].as_str().unwrap_or("unknown email"),
        order["customer"]["orders_count"].as_u64().unwrap_or(0).saturating_sub(1),
        address(&order["billing_address"]),
        address(&order["shipping_address"]),
        order["note"].as_str().unwrap_or("(none)"),
    )
}

impl Connector for OrderRisk {
    fn metadata() -> Metadata {
        Metadata::new(
            "order-risk",
            env!("CARGO_PKG_VERSION"),
            "Assesses new orders with AI and raises risky ones",
        )
        .produces("orders/assessed")
        .produces("alerts/slack")
        .produces("alerts/shopify-tag")
        .requests(Capability::Ai)
        .requests(Capability::Config)
        .requests(Capability::Log)
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        if event.kind != "orders/create" {
            return Ok(Vec::new());
        }
        let order: Value = event.json()?;
        let id = order["id"].as_u64().ok_or_else(|| Error::InvalidInput("the order has no id".into()))?;
        let answer = Chat::new()
            .system(
                "You review e-commerce orders for a fraud team. Judge the fraud risk from the order's facts and \
                 the customer's sentiment from their note. Be terse.",
            )
            .user(&describe(&order))
            .temperature(0.0)
            .json_schema(&schema())
            .send()?;
        let assessment: Assessment = answer.json()?;
        let min_score = config::get("min_score")?.and_then(|s| s.parse().ok()).unwrap_or(0.7);
        let risky = assessment.risk == "high" || assessment.risk_score >= min_score;
        info!("order {} assessed: risk {} ({:.2}), sentiment {}", id, assessment.risk, assessment.risk_score, assessment.sentiment;
            "event" => event.id, "model" => answer.model);
        let name = order["name"].as_str().unwrap_or("?").to_owned();
        let mut out = vec![NewEvent::json(
            "orders/assessed",
            &json!({
                "order_id": id, "name": name, "risk": assessment.risk, "risk_score": assessment.risk_score,
                "sentiment": assessment.sentiment, "reasons": assessment.reasons, "risky": risky, "model": answer.model,
            }),
        )?
        .with_attribute("order_id", &id.to_string())];
        if risky {
            let channel = config::require("alert_channel")?;
            let tag = config::get("risk_tag")?.unwrap_or_else(|| "fraud-risk-high".into());
            let why = if assessment.reasons.is_empty() {
                "no reason given".into()
            } else {
                assessment.reasons.join(", ")
            };
            let text = format!(
                ":rotating_light: Order {name} ({} {}) looks risky: {} risk, score {:.2}; customer sentiment {}. Reasons: {why}.",
                order["total_price"].as_str().unwrap_or("?"),
                order["currency"].as_str().unwrap_or(""),
                assessment.risk,
                assessment.risk_score,
                assessment.sentiment,
            );
            out.push(NewEvent::json("alerts/slack", &json!({ "channel": channel, "text": text }))?);
            out.push(NewEvent::json("alerts/shopify-tag", &json!({ "id": id, "tags": [tag] }))?);
        }
        Ok(out)
    }
}

plugboard_sdk::export_connector!(OrderRisk);
