//! Routes: which events go to which instance.

use serde::Deserialize;

use crate::bindings::types::Event;
use crate::store::QueuedDelivery;

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
        glob(&self.from, &event.source) && glob(&self.kind, &event.kind)
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
    fn globs() {
        assert!(glob("orders/*", "orders/create"));
        assert!(glob("*", ""));
        assert!(glob("*/create", "orders/create"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("orders/*", "refunds/create"));
        assert!(!glob("orders", "orders/create"));
    }
}
