//! Routes: which events go to which instance.

use serde::Deserialize;

use crate::store::QueuedDelivery;
use crate::types::Event;

/// One route, as configured. Unknown keys are refused.
///
/// ```
/// let r: plugboard::pipeline::Route =
///     toml::from_str("name = \"orders\"\nfrom = \"shop\"\nkind = \"orders/*\"\nto = \"assess\"").unwrap();
/// assert_eq!(r.kind, "orders/*");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A name for logs and the dead-letter list.
    pub name: String,
    /// The source instance; `*` for any.
    pub from: String,
    /// The event kind; `*` matches any run of characters, e.g. `orders/*`.
    #[serde(default = "any")]
    pub kind: String,
    /// The target instance.
    pub to: String,
    /// Invoke this action with the payload as input, instead of `handle`.
    #[serde(default)]
    pub action: Option<String>,
    /// Only events whose JSON payload has this value at this JSON Pointer take the route.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// A JSON Pointer into the payload: events with the same value there are delivered one at a
    /// time, in order (FIFO per key, e.g. per customer).
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// The most deliveries of this route running at once.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// A condition on an event's JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A JSON Pointer, e.g. `/customer/country`.
    pub pointer: String,
    /// The value it must equal.
    pub equals: serde_json::Value,
}

fn any() -> String {
    "*".into()
}

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

impl Route {
    /// Whether `event` takes this route.
    pub fn matches(&self, event: &Event) -> bool {
        if !(glob(&self.from, &event.source) && glob(&self.kind, &event.kind)) {
            return false;
        }
        match &self.filter {
            None => true,
            Some(f) => serde_json::from_slice::<serde_json::Value>(&event.payload)
                .ok()
                .is_some_and(|v| v.pointer(&f.pointer) == Some(&f.equals)),
        }
    }

    /// The event's ordering key on this route, if the route orders.
    fn order_key(&self, event: &Event) -> Option<String> {
        let pointer = self.ordering_key.as_ref()?;
        let payload: serde_json::Value = serde_json::from_slice(&event.payload).ok()?;
        // A missing key orders with the other missing ones rather than not at all.
        Some(payload.pointer(pointer).map(|v| v.to_string()).unwrap_or_default())
    }
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
                self.routes.iter().filter(move |r| r.matches(e) && r.to != e.source).map(move |r| {
                    QueuedDelivery {
                        event_id: e.id.clone(),
                        route: r.name.clone(),
                        target: r.to.clone(),
                        action: r.action.clone(),
                        order_key: r.order_key(e),
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
        assert!(route.matches(&event(r#"{"country":"NL","customer":7}"#)));
        assert!(!route.matches(&event(r#"{"country":"DE"}"#)));
        assert!(!route.matches(&event("not json")));
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
