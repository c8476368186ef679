//! Local stand-ins for the services plugboard's connectors talk to, the providers' official API
//! descriptions to check them against, and signed sample webhooks: what the tests of the
//! connectors and flows use, and what `./dev demo` runs.

pub mod fakes;
pub mod flow;
pub mod specs;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The secrets of the demo: webhook signing secrets the stand-ins sign with, and the API
/// credentials they accept ([`fakes::SHOPIFY_TOKEN`], ...).
pub const SHOPIFY_WEBHOOK_SECRET: &str = "shpss_demo_webhook_secret";
/// See [`SHOPIFY_WEBHOOK_SECRET`].
pub const SLACK_SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// See [`SHOPIFY_WEBHOOK_SECRET`].
pub const REVIEWS_HMAC_SECRET: &str = "reviews-demo-secret";

/// An `orders/create` payload shaped like Shopify's documented webhook example.
pub fn sample_order(id: u64, note: &str, total: &str) -> Value {
    json!({
        "id": id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
        "name": format!("#{id}"),
        "order_number": id,
        "email": "jon@example.com",
        "created_at": "2026-11-28T09:12:45-05:00",
        "currency": "USD",
        "total_price": total,
        "subtotal_price": total,
        "financial_status": "paid",
        "fulfillment_status": null,
        "note": note,
        "tags": "",
        // The customer object of API version 2025-07: no `orders_count` or `total_spent` (removed
        // in 2022-04); the order count is the Admin GraphQL API's `Customer.numberOfOrders`.
        "customer": { "id": 115310627314723954u64, "email": "jon@example.com", "first_name": "Jon", "last_name": "Snow",
                      "state": "enabled", "verified_email": true, "currency": "USD", "tax_exempt": false, "phone": null,
                      "created_at": "2026-11-28T09:10:00-05:00", "updated_at": "2026-11-28T09:12:45-05:00",
                      "admin_graphql_api_id": "gid://shopify/Customer/115310627314723954" },
        "billing_address": { "address1": "123 Billing Street", "city": "Billtown", "country_code": "US", "zip": "K2P0B0" },
        "shipping_address": { "address1": "123 Shipping Street", "city": "Shippington", "country_code": "US", "zip": "K2P0S0" },
        "line_items": [{ "id": 866550311766439020u64, "title": "IPod Nano - 8GB", "quantity": 1, "price": total, "sku": "IPOD2008PINK" }],
    })
}

/// Headers Shopify sends with a webhook, signed with `secret` (`X-Shopify-Hmac-SHA256`: base64
/// HMAC-SHA256 of the raw body).
pub fn shopify_headers(secret: &str, topic: &str, webhook_id: &str, body: &[u8]) -> Vec<(String, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-shopify-topic".into(), topic.into()),
        ("x-shopify-hmac-sha256".into(), signature),
        ("x-shopify-shop-domain".into(), "plugboard-demo.myshopify.com".into()),
        ("x-shopify-api-version".into(), "2025-07".into()),
        ("x-shopify-webhook-id".into(), webhook_id.into()),
        ("x-shopify-triggered-at".into(), chrono::Utc::now().to_rfc3339()),
        ("x-shopify-event-id".into(), format!("evt-{webhook_id}")),
    ]
}

/// Headers Slack sends, signed with `secret` (`v0=` hex HMAC-SHA256 of `v0:{timestamp}:{body}`).
pub fn slack_headers(secret: &str, body: &[u8], content_type: &str) -> Vec<(String, String)> {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("content-type".into(), content_type.into()),
        ("x-slack-request-timestamp".into(), timestamp),
        ("x-slack-signature".into(), format!("v0={signature}")),
    ]
}

/// A generic `X-Signature: sha256=<hex>` HMAC header over the body, as the review service of
/// the third example flow sends it.
pub fn hmac_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-signature".into(), format!("sha256={signature}")),
    ]
}

/// An Events API `event_callback` envelope with `event`, as Slack documents it (the inner
/// event's `event_ts` defaults to its `ts`).
pub fn slack_event(event_id: &str, mut event: Value) -> Value {
    if event.get("event_ts").is_none() {
        event["event_ts"] = event["ts"].clone();
    }
    json!({
        "token": "XXYYZZ",
        "team_id": "T0DEMO",
        "api_app_id": "A0DEMO",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": chrono::Utc::now().timestamp(),
        "authed_users": ["U0BOT"],
        "authorizations": [{ "enterprise_id": null, "team_id": "T0DEMO", "user_id": "U0BOT", "is_bot": true, "is_enterprise_install": false }],
        "is_ext_shared_channel": false,
        "event_context": "4-demo",
    })
}
