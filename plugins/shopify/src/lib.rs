//! Shopify: webhooks become events, and orders and customers are read and changed through the
//! Admin GraphQL API.
//!
//! Webhooks (verified by the host with `X-Shopify-Hmac-SHA256`): the event kind is the topic
//! from `X-Shopify-Topic` (`orders/create`, `orders/paid`, `refunds/create`, ...), the payload is
//! the body as sent, and the attributes carry `shop_domain`, `webhook_id`, `triggered_at`,
//! `api_version` and, for orders, `order_id`.
//!
//! Actions (`POST {base}/admin/api/{api_version}/graphql.json` with
//! `X-Shopify-Access-Token: {{secret:...}}`): `get-order`, `get-customer`, `add-order-tags`,
//! `add-order-note`. Cost throttling (`THROTTLED`) becomes `rate-limited` with the wait the
//! bucket's restore rate implies.
//!
//! Config: `shop` (`example.myshopify.com`), `api_version` (default `2025-07`), `base_url`
//! (default `https://{shop}`), `access_token_secret` (default `shopify_access_token`).

use plugboard_sdk::http::Request;
use plugboard_sdk::{
    ActionHints, Capability, Connector, Error, Metadata, NewEvent, VerificationScheme, WebhookReply,
    WebhookRequest, config,
};
use serde_json::{Value, json};

struct Shopify;

const TOPICS: [&str; 8] = [
    "orders/create",
    "orders/paid",
    "orders/updated",
    "refunds/create",
    "customers/create",
    "customers/update",
    "products/update",
    "app/uninstalled",
];

const GET_ORDER: &str = "query GetOrder($id: ID!) { order(id: $id) { id name email note tags \
    displayFinancialStatus totalPriceSet { shopMoney { amount currencyCode } } \
    customer { id email numberOfOrders } } }";
const GET_CUSTOMER: &str = "query GetCustomer($id: ID!) { customer(id: $id) { id email firstName lastName \
    numberOfOrders tags amountSpent { amount currencyCode } } }";
const ADD_TAGS: &str = "mutation AddTags($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) { \
    node { id } userErrors { field message } } }";
const ADD_NOTE: &str = "mutation AddNote($input: OrderInput!) { orderUpdate(input: $input) { \
    order { id note } userErrors { field message } } }";

/// A global id (`gid://shopify/Order/1`) from a numeric id or a global id.
fn gid(kind: &str, input: &Value) -> Result<String, Error> {
    let id = match &input["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(Error::InvalidInput("`id` (number or gid) is required".into())),
    };
    Ok(if id.starts_with("gid://") { id } else { format!("gid://shopify/{kind}/{id}") })
}

/// Runs one GraphQL operation and returns its `data`.
fn graphql(query: &str, variables: Value) -> Result<Value, Error> {
    let shop = config::get("shop")?;
    let base = match (config::get("base_url")?, shop) {
        (Some(base), _) => base,
        (None, Some(shop)) => format!("https://{shop}"),
        (None, None) => return Err(Error::InvalidInput("config `shop` or `base_url` is required".into())),
    };
    let version = config::get("api_version")?.unwrap_or_else(|| "2025-07".into());
    let secret = config::get("access_token_secret")?.unwrap_or_else(|| "shopify_access_token".into());
    let response = Request::post(format!("{}/admin/api/{version}/graphql.json", base.trim_end_matches('/')))
        .header("x-shopify-access-token", format!("{{{{secret:{secret}}}}}"))
        .json(&json!({ "query": query, "variables": variables }))?
        .send()?;
    let body: Value = response.json().unwrap_or(Value::Null);
    if let Some(throttled) = throttle_wait_ms(&body) {
        return Err(Error::RateLimited(Some(throttled)));
    }
    if !response.is_success() {
        let message = body["errors"].to_string();
        return Err(response.error(&message));
    }
    if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
        let messages: Vec<&str> = errors.iter().filter_map(|e| e["message"].as_str()).collect();
        return Err(Error::InvalidInput(format!("GraphQL errors: {}", messages.join("; "))));
    }
    Ok(body["data"].clone())
}

/// The wait before a throttled query can run: the points missing divided by the restore rate.
fn throttle_wait_ms(body: &Value) -> Option<u64> {
    let throttled = body["errors"]
        .as_array()?
        .iter()
        .any(|e| e["extensions"]["code"] == "THROTTLED" || e["message"] == "Throttled");
    if !throttled {
        return None;
    }
    let cost = &body["extensions"]["cost"];
    let requested = cost["requestedQueryCost"].as_f64().unwrap_or(0.0);
    let available = cost["throttleStatus"]["currentlyAvailable"].as_f64().unwrap_or(0.0);
    let restore = cost["throttleStatus"]["restoreRate"].as_f64().filter(|r| *r > 0.0).unwrap_or(50.0);
    Some((((requested - available).max(1.0) / restore) * 1000.0).ceil() as u64)
}

/// Fails with `invalid-input` when a mutation answered `userErrors`.
fn check_user_errors(payload: &Value) -> Result<(), Error> {
    match payload["userErrors"].as_array().filter(|e| !e.is_empty()) {
        Some(errors) => Err(Error::InvalidInput(format!(
            "Shopify refused: {}",
            errors.iter().filter_map(|e| e["message"].as_str()).collect::<Vec<_>>().join("; ")
        ))),
        None => Ok(()),
    }
}

impl Connector for Shopify {
    fn metadata() -> Metadata {
        let id_schema = json!({"type": "object", "required": ["id"], "properties": {"id": {"type": ["integer", "string"]}}});
        let mut m =
            Metadata::new("shopify", env!("CARGO_PKG_VERSION"), "Shopify webhooks and Admin GraphQL API")
                .action("get-order", "Reads an order", id_schema.clone())
                .action("get-customer", "Reads a customer", id_schema)
                .action(
                    "add-order-tags",
                    "Adds tags to an order",
                    json!({"type": "object", "required": ["id", "tags"], "properties": {
                    "id": {"type": ["integer", "string"]},
                    "tags": {"type": "array", "minItems": 1, "items": {"type": "string"}}}}),
                )
                .action(
                    "add-order-note",
                    "Sets an order's note",
                    json!({"type": "object", "required": ["id", "note"], "properties": {
                    "id": {"type": ["integer", "string"]}, "note": {"type": "string"}}}),
                )
                .requests(Capability::Http)
                .requests(Capability::Config)
                .verifies_with(VerificationScheme::Shopify);
        for topic in TOPICS {
            m = m.produces(topic);
        }
        m
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let topic = request
            .header("x-shopify-topic")
            .ok_or_else(|| Error::InvalidInput("X-Shopify-Topic is missing".into()))?
            .to_owned();
        if !topic.contains('/') || topic.len() > 64 {
            return Err(Error::InvalidInput(format!("unexpected topic {topic:?}")));
        }
        let payload: Value = request.json()?;
        let mut event = NewEvent {
            kind: topic.clone(),
            occurred_at_ms: None,
            content_type: "application/json".into(),
            payload: request.body.clone(),
            attributes: Vec::new(),
        };
        for (header, attribute) in [
            ("x-shopify-shop-domain", "shop_domain"),
            ("x-shopify-webhook-id", "webhook_id"),
            ("x-shopify-triggered-at", "triggered_at"),
            ("x-shopify-api-version", "api_version"),
        ] {
            if let Some(value) = request.header(header) {
                event = event.with_attribute(attribute, value);
            }
        }
        if topic.starts_with("orders/")
            && let Some(id) = payload["id"].as_u64()
        {
            event = event.with_attribute("order_id", &id.to_string());
        }
        Ok(WebhookReply::ok(vec![event]))
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "get-order" => Ok(graphql(GET_ORDER, json!({ "id": gid("Order", &input)? }))?["order"].clone()),
            "get-customer" => {
                Ok(graphql(GET_CUSTOMER, json!({ "id": gid("Customer", &input)? }))?["customer"].clone())
            }
            "add-order-tags" => {
                let tags = input["tags"]
                    .as_array()
                    .filter(|t| !t.is_empty() && t.iter().all(Value::is_string))
                    .ok_or_else(|| {
                        Error::InvalidInput("`tags` must be a non-empty list of strings".into())
                    })?;
                let data = graphql(ADD_TAGS, json!({ "id": gid("Order", &input)?, "tags": tags }))?;
                check_user_errors(&data["tagsAdd"])?;
                Ok(json!({ "id": data["tagsAdd"]["node"]["id"], "tags_added": tags }))
            }
            "add-order-note" => {
                let note =
                    input["note"].as_str().ok_or_else(|| Error::InvalidInput("`note` is required".into()))?;
                let data =
                    graphql(ADD_NOTE, json!({ "input": { "id": gid("Order", &input)?, "note": note } }))?;
                check_user_errors(&data["orderUpdate"])?;
                Ok(data["orderUpdate"]["order"].clone())
            }
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }

    fn action_hints() -> Vec<ActionHints> {
        vec![
            ActionHints::read_only("get-order").title("Read an order"),
            ActionHints::read_only("get-customer").title("Read a customer"),
            // Tagging twice leaves the same tags: nothing is removed or repeated.
            ActionHints::additive("add-order-tags").idempotent().title("Tag an order").output_schema(json!({
                "type": "object", "required": ["id", "tags_added"], "properties": {
                    "id": {"type": "string"}, "tags_added": {"type": "array", "items": {"type": "string"}}}})),
            // The note replaces the order's note.
            ActionHints::destructive("add-order-note").idempotent().title("Set an order's note"),
        ]
    }
}

plugboard_sdk::export_connector!(Shopify);
