//! Host capabilities: one module per interface a plugin may import, and the grants that decide
//! whether a call goes through.
//!
//! Every capability call starts with [`InstanceState::require`], so a plugin that reaches for a
//! capability its operator did not grant gets `error::denied`, a value it can handle, rather than
//! a trap that looks like a bug.

pub(crate) mod ai;
pub(crate) mod config;
pub mod emit;
pub(crate) mod http;
pub mod kv;
pub mod log;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InstanceState;
use crate::bindings::types::{Capability as WitCapability, Error as WitError};

pub use crate::egress::policy::HttpGrant;

/// A host capability, as operators name it in grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Outbound HTTP through the host.
    Http,
    /// The instance's own key-value namespace.
    Kv,
    /// Structured logs.
    Log,
    /// Publishing events into the router.
    Emit,
    /// Chat completions through an AI provider.
    Ai,
    /// Reading the instance's configuration values.
    Config,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 6] = [
        Capability::Http,
        Capability::Kv,
        Capability::Log,
        Capability::Emit,
        Capability::Ai,
        Capability::Config,
    ];

    /// The name operators use.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Http => "http",
            Capability::Kv => "kv",
            Capability::Log => "log",
            Capability::Emit => "emit",
            Capability::Ai => "ai",
            Capability::Config => "config",
        }
    }

    /// What the capability lets a plugin do, for permission prompts.
    pub fn describe(self) -> &'static str {
        match self {
            Capability::Http => "send HTTP requests to the hosts you allow",
            Capability::Kv => "store data in its own key-value namespace",
            Capability::Log => "write to the host's logs",
            Capability::Emit => "publish new events into the router",
            Capability::Ai => "run chat completions on your AI provider (costs tokens)",
            Capability::Config => "read the configuration values you set for it",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Capability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown capability `{s}` (known: http, kv, log, emit, ai, config)"))
    }
}

impl From<WitCapability> for Capability {
    fn from(c: WitCapability) -> Self {
        match c {
            WitCapability::Http => Capability::Http,
            WitCapability::Kv => Capability::Kv,
            WitCapability::Log => Capability::Log,
            WitCapability::Emit => Capability::Emit,
            WitCapability::Ai => Capability::Ai,
            WitCapability::Config => Capability::Config,
        }
    }
}

/// What an operator grants one plugin instance. Unknown keys are refused.
///
/// The instance's effective capabilities are the ones its metadata requests *and* this grant
/// lists; anything else answers `denied`.
///
/// ```
/// let grants: plugboard_runtime::Grants = serde_json::from_str(r#"{
///     "capabilities": ["log", "http"],
///     "http": { "allow": ["https://*.myshopify.com"] }
/// }"#).unwrap();
/// assert!(grants.capabilities.contains(&plugboard_runtime::Capability::Http));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// The capabilities granted.
    pub capabilities: BTreeSet<Capability>,
    /// Where outbound HTTP may go (with the `http` capability).
    pub http: HttpGrant,
    /// The AI provider instance that serves this plugin's `ai` calls; the host's default when
    /// absent.
    pub ai_provider: Option<String>,
    /// Secrets the host may fill into this plugin's outbound requests (`{{secret:NAME}}`), each
    /// only towards the destinations it is bound to.
    pub secrets: BTreeSet<String>,
    /// OAuth2 clients whose access tokens the host fills into this plugin's requests
    /// (`{{oauth:NAME}}`), each only towards the destinations it is bound to.
    pub oauth: BTreeSet<String>,
    /// The most AI tokens (prompt and completion) this plugin may use per UTC day; further
    /// `ai` calls fail with `quota-exceeded`. No budget when absent.
    pub ai_daily_tokens: Option<u64>,
    /// Let the plugin write to stdout and stderr (into the host's own streams). Off by default:
    /// use the `log` capability instead.
    pub stdio: bool,
}

impl Grants {
    /// No capabilities at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every capability (HTTP still only to the hosts in `http.allow`).
    pub fn all() -> Self {
        Grants { capabilities: Capability::ALL.into_iter().collect(), ..Self::default() }
    }

    /// Adds a capability.
    pub fn with(mut self, capability: Capability) -> Self {
        self.capabilities.insert(capability);
        self
    }

    /// Grants `http` and allows requests to `pattern` (`scheme://host[:port]`, `*.` wildcards).
    pub fn allow_http(mut self, pattern: &str) -> Self {
        self.capabilities.insert(Capability::Http);
        self.http.allow.push(pattern.to_owned());
        self
    }

    /// Lets the host fill secret `name` into this plugin's requests.
    pub fn with_secret(mut self, name: &str) -> Self {
        self.secrets.insert(name.to_owned());
        self
    }

    /// Lets the host fill tokens of OAuth2 client `name` into this plugin's requests.
    pub fn with_oauth(mut self, name: &str) -> Self {
        self.oauth.insert(name.to_owned());
        self
    }

    /// Allows requests to these internal addresses or CIDR blocks (loopback, private, ...).
    pub fn allow_internal(mut self, block: &str) -> Self {
        self.http.allow_internal.push(block.to_owned());
        self
    }

    /// Routes `ai` calls to the provider instance `id`.
    pub fn with_ai_provider(mut self, id: &str) -> Self {
        self.capabilities.insert(Capability::Ai);
        self.ai_provider = Some(id.to_owned());
        self
    }
}

/// The error a capability call answers when its capability is not in the effective set.
pub(crate) fn denied(capability: Capability, instance: &str) -> WitError {
    WitError::Denied(format!("capability `{capability}` is not granted to instance `{instance}`"))
}

impl InstanceState {
    /// Fails with `denied` unless `capability` is in the instance's effective set.
    pub(crate) fn require(&self, capability: Capability) -> Result<(), WitError> {
        if self.plugin.effective.contains(&capability) {
            Ok(())
        } else {
            Err(denied(capability, &self.plugin.id))
        }
    }
}

// The shared-type interfaces have no functions; wasmtime still wants them implemented.
impl crate::bindings::types_host::Host for InstanceState {}
impl crate::bindings::ai_types_host::Host for InstanceState {}
