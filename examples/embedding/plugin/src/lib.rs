//! `crm-lookup`, the embedding example's plugin: for each `order/created` event it asks the
//! embedder's CRM for the customer's tier, through `acme:crm/lookup`, an import the embedder adds
//! to the host (plugboard knows nothing of it), and fetches the customer's past orders over HTTP,
//! which the embedder's outbound interceptor answers. It emits one `order/tiered` event.

/// The embedder's interface: what the plugin imports besides plugboard's own.
mod crm {
    wit_bindgen::generate!({
        inline: r#"
            package acme:crm;

            interface lookup {
                /// The customer's tier, as the embedder's CRM knows it.
                customer-tier: func(email: string) -> string;
            }

            world imports {
                import lookup;
            }
        "#,
    });
    pub use acme::crm::lookup::customer_tier;
}

use plugboard_sdk::http::Request;
use plugboard_sdk::{Capability, Connector, Error, Event, Metadata, NewEvent, VerificationScheme};
use serde_json::{Value, json};

struct CrmLookup;

impl Connector for CrmLookup {
    fn metadata() -> Metadata {
        Metadata::new("crm-lookup", env!("CARGO_PKG_VERSION"), "Tags orders with the customer's CRM tier")
            .produces("order/tiered")
            .requests(Capability::Http)
            .verifies_with(VerificationScheme::None)
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let order: Value = serde_json::from_slice(&event.payload)
            .map_err(|e| Error::InvalidInput(format!("the order is not JSON: {e}")))?;
        let email =
            order["email"].as_str().ok_or_else(|| Error::InvalidInput("the order has no email".into()))?;
        let tier = crm::customer_tier(email);
        let reply = Request::get(format!("https://crm.example.com/customers/{email}/orders")).send()?;
        let past_orders: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok(vec![NewEvent::json(
            "order/tiered",
            &json!({ "email": email, "tier": tier, "status": reply.status, "past_orders": past_orders }),
        )?])
    }
}

plugboard_sdk::export_connector!(CrmLookup);
