//! What an operator grants one plugin instance: the capabilities it may use and where its
//! outbound HTTP may go. Plain data, read from `plugboard.toml` or built in code, and checked
//! here for being well formed; the runtime enforces it, call by call.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::address::Cidr;
use crate::pattern::{Pattern, is_host_name};

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

/// What an operator grants one plugin instance. Unknown keys are refused.
///
/// The instance's effective capabilities are the ones its metadata requests *and* this grant
/// lists; anything else answers `denied`.
///
/// ```
/// let grants: plugboard_manifest::Grants = serde_json::from_str(r#"{
///     "capabilities": ["log", "http"],
///     "http": { "allow": ["https://*.myshopify.com"] }
/// }"#).unwrap();
/// assert!(grants.capabilities.contains(&plugboard_manifest::Capability::Http));
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
    /// Connector actions the model may call as tools in this plugin's `ai-tools` calls, as
    /// `instance.action` or `instance.*` (with the `ai` capability). Each runs with its own
    /// instance's grants, not this plugin's.
    pub ai_tools: Vec<String>,
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

/// Where an instance's outbound HTTP may go.
///
/// ```
/// let grant: plugboard_manifest::HttpGrant = toml::from_str(r#"
///     allow = ["https://*.myshopify.com", "http://127.0.0.1:9000"]
///     allow_internal = ["127.0.0.1"]
///     rate_limits = [{ destination = "https://*.myshopify.com", per_second = 2, burst = 40 }]
/// "#).unwrap();
/// assert!(grant.validate().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpGrant {
    /// Allowed destinations as `scheme://host[:port]`. `*.` at the start of the host matches any
    /// subdomain (not the bare domain); a missing port means the scheme's default port.
    pub allow: Vec<String>,
    /// Allowed methods, upper case; empty allows every method.
    pub methods: Vec<String>,
    /// Internal destinations (loopback, private, link-local, metadata) this instance may reach
    /// anyway, each named explicitly: an address or CIDR block lets URLs that spell such an
    /// address through (`http://127.0.0.1:9000`); a host name lets that name resolve to internal
    /// addresses (`crm.corp.local`). Empty by default, and an address exception never extends
    /// to names: a granted name that resolves to an internal address is refused unless listed.
    pub allow_internal: Vec<String>,
    /// Token buckets per destination that keep this instance within the operator's quotas.
    pub rate_limits: Vec<DestinationLimit>,
}

/// A token bucket for requests to one destination pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationLimit {
    /// The destination, as an allow-list pattern.
    pub destination: String,
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
    /// How long a request may wait for a token before it fails with `rate-limited`, in ms.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Where the limit is counted: in each plugboard process (`node`, the default), or across
    /// every node sharing the store (`cluster`).
    #[serde(default)]
    pub scope: LimitScope,
}

/// Where a destination's rate limit is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// A token bucket in each plugboard process: exact and free, but on N nodes the
    /// destination may see N times the rate.
    #[default]
    Node,
    /// Counters in the host's key-value store, which every node on a NATS cluster shares: the
    /// rate holds across the cluster, at two store round trips per request (a sliding window
    /// of `max(burst / per_second, 1 s)`, so bursts are approximate).
    Cluster,
}

impl HttpGrant {
    /// Checks that every pattern and address block is well formed, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.allow.iter().try_for_each(|p| Pattern::parse(p).map(|_| ()))?;
        for entry in &self.allow_internal {
            if entry.parse::<Cidr>().is_err() && !is_host_name(entry) {
                return Err(format!(
                    "allow_internal `{entry}`: neither an address, a CIDR block nor a host name"
                ));
            }
        }
        for limit in &self.rate_limits {
            Pattern::parse(&limit.destination)?;
            let sound = crate::RateLimit { per_second: limit.per_second, burst: limit.burst }.is_sound();
            if !sound {
                return Err(format!(
                    "rate limit for `{}`: per_second must be > 0 and burst >= 1, both finite",
                    limit.destination
                ));
            }
        }
        Ok(())
    }

    /// Whether some request this grant allows could go to a destination matching `pattern`
    /// (an allow-list pattern, e.g. a rate limit's or a secret's destination). A pattern no
    /// `allow` entry reaches is a configuration mistake: the bucket never applies, the secret
    /// is never sent.
    pub fn reaches(&self, pattern: &str) -> bool {
        let Ok(other) = Pattern::parse(pattern) else { return false };
        self.allow.iter().filter_map(|p| Pattern::parse(p).ok()).any(|p| p.overlaps(&other))
    }
}

fn default_max_wait_ms() -> u64 {
    1_000
}
