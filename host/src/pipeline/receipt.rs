//! Webhooks acknowledged on receipt (`acknowledge = "on-receipt"`): the ingress verifies the
//! request, stores it as an event of its own and answers at once; the dispatcher hands it to
//! the connector's `on-webhook` later, as a delivery on the host's [`WEBHOOK_ROUTE`] with the
//! pipeline's retries. This module says which requests may be answered that way, and how a
//! request is kept in an event (both sides use it).

use serde::{Deserialize, Serialize};

use crate::manifest::pipeline::{WEBHOOK_RECEIVED, WEBHOOK_ROUTE};
use crate::manifest::webhook::Scheme;
use crate::store::QueuedDelivery;
use crate::types::{Event, WebhookRequest};

/// Headers that carry credentials of the sender or the user, or the provider's signature: not
/// kept in the store (where anyone who reads events would see them, and a signature kept with its
/// body could be sent again once the delivery id is forgotten), so not shown to the connector
/// either.
const NOT_KEPT: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// Parts of header names that mark a secret, a token or a signature (`x-gitlab-token`,
/// `x-hub-signature-256`, `x-api-key`, `stripe-signature`, ...): such headers are not kept.
const NOT_KEPT_PARTS: [&str; 6] = ["signature", "hmac", "token", "secret", "api-key", "apikey"];

/// Whether header `name` is kept with a stored request; `signature_header` is the header a
/// generic HMAC scheme reads.
fn kept(name: &str, signature_header: Option<&str>) -> bool {
    let name = name.to_ascii_lowercase();
    !NOT_KEPT.contains(&name.as_str())
        && !NOT_KEPT_PARTS.iter().any(|part| name.contains(part))
        && signature_header.is_none_or(|h| !h.eq_ignore_ascii_case(&name))
}

/// The content type of a stored request.
pub const CONTENT_TYPE: &str = "application/vnd.plugboard.webhook-request+json";

/// A request as stored: the body as text when it is UTF-8, else in base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// Whether the connector's reply is the answer the sender waits for, so that the request must
/// run at once even when its instance acknowledges on receipt: anything but a POST (the GET
/// handshakes of Meta, Dropbox or Twitter echo a challenge); for Slack, its URL verification (the
/// reply echoes the challenge), slash commands and interactivity (form bodies whose reply the
/// user sees): only Events API callbacks are acknowledged early.
pub fn needs_connector_reply(scheme: Option<&Scheme>, method: &str, body: &[u8]) -> bool {
    if !method.eq_ignore_ascii_case("POST") {
        return true;
    }
    match scheme {
        Some(Scheme::Slack) => {
            let kind = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
            kind.as_deref() != Some("event_callback")
        }
        _ => false,
    }
}

/// The event that keeps `request` for `instance` until its connector runs, and the delivery
/// that will run it; `signature_header` is the header a generic HMAC scheme reads.
pub fn request_event(
    instance: &str,
    request: &WebhookRequest,
    signature_header: Option<&str>,
) -> (Event, QueuedDelivery) {
    use base64::Engine as _;
    let (body, body_base64) = match std::str::from_utf8(&request.body) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&request.body))),
    };
    let stored = StoredRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request.headers.iter().filter(|(name, _)| kept(name, signature_header)).cloned().collect(),
        body,
        body_base64,
    };
    // Serialising strings and a list of string pairs cannot fail.
    let payload = serde_json::to_vec(&stored).unwrap_or_default();
    let event = Event {
        id: crate::capabilities::emit::new_event_id(),
        source: instance.into(),
        kind: WEBHOOK_RECEIVED.into(),
        occurred_at_ms: crate::runtime::clock::now_ms(),
        content_type: CONTENT_TYPE.into(),
        payload,
        attributes: Vec::new(),
    };
    let delivery = QueuedDelivery {
        event_id: event.id.clone(),
        route: WEBHOOK_ROUTE.into(),
        target: instance.into(),
        action: None,
        order_key: None,
    };
    (event, delivery)
}

/// The request kept in `event` by [`request_event`] for `instance`. Only such an event is one:
/// its kind, content type and source say so (a delivery on the webhook route whose event is
/// anything else is refused, whoever queued it).
pub fn stored_request(event: &Event, instance: &str) -> Result<WebhookRequest, String> {
    use base64::Engine as _;
    if event.kind != WEBHOOK_RECEIVED || event.content_type != CONTENT_TYPE || event.source != instance {
        return Err(format!(
            "event {} is not a webhook request stored for `{instance}` (kind `{}`, source `{}`)",
            event.id,
            crate::runtime::printable(&event.kind),
            crate::runtime::printable(&event.source)
        ));
    }
    let stored: StoredRequest =
        serde_json::from_slice(&event.payload).map_err(|e| format!("not a stored webhook request: {e}"))?;
    let body = match (stored.body, stored.body_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("not a stored webhook request: body_base64: {e}"))?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => return Err("not a stored webhook request: two bodies".into()),
    };
    Ok(WebhookRequest {
        method: stored.method,
        path: stored.path,
        query: stored.query,
        headers: stored.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8]) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            path: "/orders".into(),
            query: "a=1".into(),
            headers: vec![
                ("x-shopify-topic".into(), "orders/create".into()),
                ("Authorization".into(), "Bearer sk_live_secret".into()),
                ("cookie".into(), "session=1".into()),
                ("X-Shopify-Hmac-Sha256".into(), "c2lnbmF0dXJl".into()),
                ("x-gitlab-token".into(), "shared-secret".into()),
                ("x-signature".into(), "abc".into()),
                ("x-my-sig".into(), "configured".into()),
            ],
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_request_comes_back_as_stored_without_credentials() {
        for body in [&b"{\"id\":1}"[..], &[0xff, 0x00, 0xfe][..], b""] {
            let (event, delivery) = request_event("shop", &request(body), Some("X-My-Sig"));
            assert_eq!((event.kind.as_str(), event.source.as_str()), (WEBHOOK_RECEIVED, "shop"));
            assert_eq!((delivery.route.as_str(), delivery.target.as_str()), (WEBHOOK_ROUTE, "shop"));
            assert_eq!(delivery.event_id, event.id);
            let back = stored_request(&event, "shop").unwrap();
            assert_eq!(back.body, body);
            assert_eq!(
                (back.method.as_str(), back.path.as_str(), back.query.as_str()),
                ("POST", "/orders", "a=1")
            );
            assert_eq!(back.headers, vec![("x-shopify-topic".to_owned(), "orders/create".to_owned())]);
            let kept = String::from_utf8_lossy(&event.payload).into_owned();
            for secret in
                ["sk_live_secret", "session=1", "c2lnbmF0dXJl", "shared-secret", "abc", "configured"]
            {
                assert!(!kept.contains(secret), "{secret} kept: {kept}");
            }
        }
    }

    #[test]
    fn only_slack_event_callbacks_are_acknowledged_early() {
        let slack = Some(&Scheme::Slack);
        assert!(!needs_connector_reply(slack, "POST", br#"{"type":"event_callback","event":{}}"#));
        assert!(needs_connector_reply(slack, "POST", br#"{"type":"url_verification","challenge":"c"}"#));
        assert!(needs_connector_reply(slack, "POST", b"command=%2Fhelp&text="));
        assert!(!needs_connector_reply(Some(&Scheme::Shopify), "POST", b"{}"));
        assert!(!needs_connector_reply(None, "post", b"anything"));
        assert!(needs_connector_reply(None, "GET", b""), "GET handshakes echo a challenge");
    }

    #[test]
    fn a_payload_that_is_not_a_stored_request_is_refused() {
        let (mut event, _) = request_event("shop", &request(b""), None);
        let other = stored_request(&event, "other").unwrap_err();
        assert!(other.contains("not a webhook request stored for `other`"), "{other}");
        let mut emitted = event.clone();
        emitted.kind = "orders/create".into();
        assert!(stored_request(&emitted, "shop").unwrap_err().contains("kind `orders/create`"));
        event.payload = b"{\"method\":1}".to_vec();
        assert!(stored_request(&event, "shop").unwrap_err().contains("not a stored webhook request"));
        event.payload =
            br#"{"method":"POST","path":"/","query":"","headers":[],"body":"a","body_base64":"YQ=="}"#
                .to_vec();
        assert!(stored_request(&event, "shop").unwrap_err().contains("two bodies"));
    }
}
