//! Flow 1's decision step. It handles `orders/create` events from the Shopify connector:
//! looks up how many orders the customer has placed (the Admin GraphQL API's
//! `Customer.numberOfOrders`: the webhook's customer object has had no order count since API
//! version 2022-04), asks the AI provider for a structured assessment (fraud risk, a score, the
//! customer's sentiment, reasons), returns `orders/assessed`, and for a risky order also
//! returns `alerts/slack` (routed to the Slack connector's `post-message`) and
//! `alerts/shopify-tag` (routed to the Shopify connector's `add-order-tags`).
//!
//! Config: `alert_channel` (Slack channel id), `risk_tag` (default `fraud-risk-high`),
//! `min_score` (default 0.7: a `high` risk or a score at least this high is risky), and for the
//! order count `shop` (`example.myshopify.com`) or `shopify_base_url`, `api_version` (default
//! `2025-07`), `access_token_secret` (default `shopify_access_token`). Without `shop` or
//! `shopify_base_url`, or when the lookup fails (logged), the model is told the customer's
//! history is unknown. The lookup needs only `read_customers`: give this step a token of its
//! own with that scope (`access_token_secret`) rather than the Shopify connector's.
//! Grants: `ai`, `config`, `log`, and for the order count `http` to the shop with the secret.

use plugboard_sdk::ai::Chat;
use plugboard_sdk::http::Request;
use plugboard_sdk::{Capability, Connector, Error, Event, Metadata, NewEvent, config, info, warn};
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

/// How many orders the order's customer has placed, this one included, from the Admin GraphQL
/// API; `None` when no shop is configured or the order has no customer.
fn orders_placed(order: &Value) -> Result<Option<u64>, Error> {
    let customer =
        match (order["customer"]["admin_graphql_api_id"].as_str(), order["customer"]["id"].as_u64()) {
            (Some(gid), _) => gid.to_owned(),
            (None, Some(id)) => format!("gid://shopify/Customer/{id}"),
            (None, None) => return Ok(None),
        };
    let base = match (config::get("shopify_base_url")?, config::get("shop")?) {
        (Some(base), _) => base,
        (None, Some(shop)) => format!("https://{shop}"),
        (None, None) => return Ok(None),
    };
    let version = config::get("api_version")?.unwrap_or_else(|| "2025-07".into());
    let secret = config::get("access_token_secret")?.unwrap_or_else(|| "shopify_access_token".into());
    let query = "query CustomerOrders($id: ID!) { customer(id: $id) { numberOfOrders } }";
    let response = Request::post(format!("{}/admin/api/{version}/graphql.json", base.trim_end_matches('/')))
        .header("x-shopify-access-token", format!("{{{{secret:{secret}}}}}"))
        .json(&json!({ "query": query, "variables": { "id": customer } }))?
        // A query: safe to repeat on a 429 or 5xx.
        .retry()
        .send()?;
    if !response.is_success() {
        return Err(response.error("the customer's order count"));
    }
    let body: Value = response.json()?;
    // `UnsignedInt64` is a string in GraphQL's JSON.
    Ok(body["data"]["customer"]["numberOfOrders"].as_str().and_then(|n| n.parse().ok()))
}

/// What the model sees: the order's facts that bear on fraud, and the customer's own words.
fn describe(order: &Value, orders_placed: Option<u64>) -> String {
    let address = |a: &Value| {
        format!(
            "{}, {} {}",
            a["address1"].as_str().unwrap_or("?"),
            a["zip"].as_str().unwrap_or(""),
            a["city"].as_str().unwrap_or("")
        )
    };
    let history = match orders_placed {
        Some(n) => format!("customer with {} previous orders", n.saturating_sub(1)),
        None => "customer's order history unknown".into(),
    };
    format!(
        "Order {} for {} {} by {} ({history}).\nBilling address: {}\nShipping address: {}\nCustomer note: {}",
        order["name"].as_str().unwrap_or("?"),
        order["total_price"].as_str().unwrap_or("?"),
        order["currency"].as_str().unwrap_or(""),
        order["email"].as_str().unwrap_or("unknown email"),
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
        .requests(Capability::Http)
        .requests(Capability::Config)
        .requests(Capability::Log)
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        if event.kind != "orders/create" {
            return Ok(Vec::new());
        }
        let order: Value = event.json()?;
        let id = order["id"].as_u64().ok_or_else(|| Error::InvalidInput("the order has no id".into()))?;
        // Without the count the model is told the history is unknown: an assessment without it
        // beats none, and the reason is logged for the operator (a missing grant, say).
        let history = orders_placed(&order).unwrap_or_else(|e| {
            warn!("the customer's order count is unavailable: {:?}", e; "event" => event.id);
            None
        });
        let answer = Chat::new()
            .system(
                "You review e-commerce orders for a fraud team. Judge the fraud risk from the order's facts and \
                 the customer's sentiment from their note. Be terse.",
            )
            .user(&describe(&order, history))
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
