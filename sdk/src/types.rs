//! The contract's shared types, with constructors that keep plugin code short.

use serde::{Serialize, de::DeserializeOwned};

use crate::wit::plugboard::connector::types as raw;

pub use raw::{
    Action, Capability, ConnectorMetadata as Metadata, Error, Event, NewEvent, UpstreamFailure,
    VerificationScheme, WebhookReply, WebhookRequest,
};

/// What an AI provider is and what it asks for.
#[derive(Debug, Clone)]
pub struct ProviderMetadata {
    /// A short machine name, e.g. `openai`.
    pub name: String,
    /// The provider plugin's version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// The model used when a request names none.
    pub default_model: String,
    /// The capabilities it requests.
    pub capabilities: Vec<Capability>,
}

impl Metadata {
    /// Starts a description with a name, a version and one line for humans.
    ///
    /// ```
    /// use plugboard_sdk::{Capability, Metadata, VerificationScheme};
    /// let m = Metadata::new("shopify", "0.1.0", "Shopify orders")
    ///     .produces("orders/create")
    ///     .requests(Capability::Http)
    ///     .verifies_with(VerificationScheme::Shopify);
    /// assert_eq!(m.produces, ["orders/create"]);
    /// ```
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Metadata {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            produces: Vec::new(),
            actions: Vec::new(),
            capabilities: Vec::new(),
            webhook_verification: None,
        }
    }

    /// Adds an event kind this connector produces.
    pub fn produces(mut self, kind: &str) -> Self {
        self.produces.push(kind.into());
        self
    }

    /// Adds an action, with the JSON Schema of its input.
    pub fn action(mut self, name: &str, description: &str, input_schema: serde_json::Value) -> Self {
        self.actions.push(Action {
            name: name.into(),
            description: description.into(),
            input_schema: input_schema.to_string(),
        });
        self
    }

    /// Requests a host capability. The operator's grant decides whether the plugin gets it.
    pub fn requests(mut self, capability: Capability) -> Self {
        if !self.capabilities.contains(&capability) {
            self.capabilities.push(capability);
        }
        self
    }

    /// Names the webhook verification scheme the host must apply before `on_webhook`.
    pub fn verifies_with(mut self, scheme: VerificationScheme) -> Self {
        self.webhook_verification = Some(scheme);
        self
    }
}

/// How an action behaves, declared by [`Connector::action_hints`](crate::Connector::action_hints):
/// the annotations an AI client sees for the action as a tool, and its output's schema.
///
/// ```
/// use plugboard_sdk::ActionHints;
/// let h = ActionHints::read_only("get-order").title("Read an order");
/// assert!(h.read_only && !h.destructive && h.idempotent);
/// let tag = ActionHints::additive("add-order-tags").idempotent();
/// assert!(!tag.read_only && !tag.destructive && tag.idempotent);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ActionHints {
    /// The action, by its name in the metadata.
    pub action: String,
    /// A short title for people.
    pub title: Option<String>,
    /// It changes nothing outside the plugin.
    pub read_only: bool,
    /// It may delete or overwrite.
    pub destructive: bool,
    /// Running it again with the same input has no further effect.
    pub idempotent: bool,
    /// It reaches an open world (the internet, other people) rather than a closed domain.
    pub open_world: bool,
    /// The JSON Schema of its output (an object).
    pub output_schema: Option<serde_json::Value>,
}

impl ActionHints {
    fn new(action: &str, read_only: bool, destructive: bool, idempotent: bool) -> Self {
        ActionHints {
            action: action.into(),
            title: None,
            read_only,
            destructive,
            idempotent,
            open_world: true,
            output_schema: None,
        }
    }

    /// An action that only reads (and so may be repeated).
    pub fn read_only(action: &str) -> Self {
        Self::new(action, true, false, true)
    }

    /// An action that adds or changes things but deletes and overwrites nothing.
    pub fn additive(action: &str) -> Self {
        Self::new(action, false, false, false)
    }

    /// An action that may delete or overwrite.
    pub fn destructive(action: &str) -> Self {
        Self::new(action, false, true, false)
    }

    /// Running it again with the same input has no further effect.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// It works within a closed domain (this plugin's own data), not the open world.
    pub fn closed_world(mut self) -> Self {
        self.open_world = false;
        self
    }

    /// A short title for people.
    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.into());
        self
    }

    /// The JSON Schema of the action's output, an object.
    pub fn output_schema(mut self, schema: serde_json::Value) -> Self {
        self.output_schema = Some(schema);
        self
    }
}

impl Event {
    /// Parses the payload as JSON into `T`.
    ///
    /// Fails with [`Error::InvalidInput`] when the payload is not valid JSON of that shape, which
    /// the host treats as not retryable.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::InvalidInput(format!("event {} payload: {e}", self.id)))
    }

    /// Returns the first attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl NewEvent {
    /// A new event with a JSON payload.
    ///
    /// ```
    /// let e = plugboard_sdk::NewEvent::json("orders/assessed", &serde_json::json!({"risk": 0.1})).unwrap();
    /// assert_eq!(e.content_type, "application/json");
    /// ```
    pub fn json<T: Serialize + ?Sized>(kind: &str, payload: &T) -> Result<Self, Error> {
        let payload = serde_json::to_vec(payload).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(NewEvent {
            kind: kind.into(),
            occurred_at_ms: None,
            content_type: "application/json".into(),
            payload,
            attributes: Vec::new(),
        })
    }

    /// Adds an attribute.
    pub fn with_attribute(mut self, name: &str, value: &str) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }
}

impl WebhookReply {
    /// A `200 OK` reply with an empty body that stores `events`.
    pub fn ok(events: Vec<NewEvent>) -> Self {
        WebhookReply { status: 200, headers: Vec::new(), body: Vec::new(), events }
    }

    /// Replaces the body with `body` as JSON.
    pub fn with_json_body<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, Error> {
        self.body = serde_json::to_vec(body).map_err(|e| Error::Internal(e.to_string()))?;
        self.headers.push(("content-type".into(), "application/json".into()));
        Ok(self)
    }
}

impl WebhookRequest {
    /// Returns the first header named `name` (names are lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Parses the body as JSON into `T`; [`Error::InvalidInput`] otherwise.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidInput(format!("webhook body: {e}")))
    }
}

impl Error {
    /// Whether the host should retry the operation that failed with this error
    /// (`quota-exceeded`, `denied`, `invalid-input` and `unauthorized` never succeed on retry).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited(_) | Error::Timeout(_) | Error::Upstream(_))
    }
}
