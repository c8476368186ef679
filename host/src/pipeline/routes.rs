//! Routes: which events go to which instance.

use crate::store::QueuedDelivery;
use crate::types::Event;

pub use plugboard_manifest::{Filter, Route};

/// Glob match where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else { return false };
            (0..=rest.len()).filter(|i| rest.is_char_boundary(*i)).any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// Whether `event` takes `route`.
pub fn takes(route: &Route, event: &Event) -> bool {
    if !(glob(&route.from, &event.source) && glob(&route.kind, &event.kind)) {
        return false;
    }
    match &route.filter {
        None => true,
        Some(f) => serde_json::from_slice::<serde_json::Value>(&event.payload)
            .ok()
            .is_some_and(|v| v.pointer(&f.pointer) == Some(&f.equals)),
    }
}

/// The event's ordering key on `route`, if the route orders.
fn order_key(route: &Route, event: &Event) -> Option<String> {
    let pointer = route.ordering_key.as_ref()?;
    let payload: serde_json::Value = serde_json::from_slice(&event.payload).ok()?;
    // A missing key orders with the other missing ones rather than not at all.
    Some(payload.pointer(pointer).map(|v| v.to_string()).unwrap_or_default())
}

/// Every route of a host.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The given routes.
    pub fn new(routes: Vec<Route>) -> Self {
        Routes { routes }
    }

    /// The concurrency limit of the route named `name`, if it has one.
    pub fn concurrency(&self, name: &str) -> Option<usize> {
        self.routes.iter().find(|r| r.name == name).and_then(|r| r.concurrency)
    }

    /// The deliveries the routes make of `events`. An event never goes back to its own source
    /// (a loop no one wants).
    pub fn deliveries(&self, events: &[Event]) -> Vec<QueuedDelivery> {
        events
            .iter()
            .flat_map(|e| {
                self.routes.iter().filter(move |r| takes(r, e) && r.to != e.source).map(move |r| {
                    QueuedDelivery {
                        event_id: e.id.clone(),
                        route: r.name.clone(),
                        target: r.to.clone(),
                        action: r.action.clone(),
                        order_key: order_key(r, e),
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_ordering_keys_read_the_payload() {
        let route: Route = toml::from_str(
            "name = \"nl\"\nfrom = \"*\"\nto = \"t\"\nordering_key = \"/customer\"\nfilter = { pointer = \"/country\", equals = \"NL\" }",
        )
        .unwrap();
        let event = |payload: &str| Event {
            id: "e".into(),
            source: "s".into(),
            kind: "k".into(),
            occurred_at_ms: 0,
            content_type: "application/json".into(),
            payload: payload.as_bytes().to_vec(),
            attributes: vec![],
        };
        assert!(takes(&route, &event(r#"{"country":"NL","customer":7}"#)));
        assert!(!takes(&route, &event(r#"{"country":"DE"}"#)));
        assert!(!takes(&route, &event("not json")));
        let routes = Routes::new(vec![route]);
        let d = routes.deliveries(&[event(r#"{"country":"NL","customer":7}"#)]);
        assert_eq!(d[0].order_key.as_deref(), Some("7"));
    }

    #[test]
    fn globs() {
        assert!(glob("orders/*", "orders/create"));
        assert!(glob("*", ""));
        assert!(glob("*/create", "orders/create"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("orders/*", "refunds/create"));
        assert!(!glob("orders", "orders/create"));
    }
}
