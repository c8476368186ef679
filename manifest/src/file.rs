//! What `plugboard.toml` says: one serde type per table, each refusing unknown keys, with the
//! defaults an omitted key takes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ai::AiSettings;
use crate::grants::{Grants, HttpGrant};
use crate::limits::Limits;
use crate::pipeline::{RetryPolicy, Route, Schedule};
use crate::record::{Record, RecordingsConfig};
use crate::reuse::Reuse;
use crate::webhook::WebhookConfig;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// The event store.
    #[serde(default)]
    pub store: StoreConfig,
    /// The plugin instances.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<InstanceConfig>,
    /// Where events go.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Secrets the host fills into outbound requests, by name.
    #[serde(default, rename = "secret")]
    pub secrets: BTreeMap<String, SecretConfig>,
    /// OAuth2 clients the host runs for plugins, by name (`{{oauth:NAME}}`).
    #[serde(default, rename = "oauth")]
    pub oauth: BTreeMap<String, OAuthConfig>,
    /// How AI answers are cached.
    #[serde(default)]
    pub ai: AiSettings,
    /// The outbound call log.
    #[serde(default)]
    pub calls: CallsConfig,
    /// Recorded invocations, for `plugboard replay`.
    #[serde(default)]
    pub recordings: RecordingsConfig,
    /// The async jobs API.
    #[serde(default)]
    pub jobs: Option<JobsConfig>,
    /// The admin API (dead letters, for now).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The MCP server for AI clients; off when absent.
    #[serde(default)]
    pub mcp: Option<crate::mcp::McpConfig>,
    /// Cron-style triggers.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<Schedule>,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How many deliveries run at once.
    #[serde(default = "default_concurrency")]
    pub delivery_concurrency: usize,
}

fn default_concurrency() -> usize {
    64
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The largest webhook body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// The longest a webhook request may take before it is answered 503.
    pub request_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1 << 20,
            request_timeout_ms: 10_000,
        }
    }
}

/// One secret: a reference to its value, and where it may be sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretConfig {
    /// `env:NAME` or `file:PATH`.
    pub value: String,
    /// Destinations (`scheme://host[:port]`) the secret may be sent to.
    pub hosts: Vec<String>,
}

/// One OAuth2 client (client credentials, or a refresh token when given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// A reference to the client secret (`env:NAME` or `file:PATH`).
    pub client_secret: String,
    /// A reference to a refresh token; the refresh-token grant is used when set.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Scopes to ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// How the client authenticates to the token endpoint: `basic` (default) or `post`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Destinations (`scheme://host[:port]`) the tokens may be sent to.
    pub hosts: Vec<String>,
}

/// How the client authenticates to the token endpoint (RFC 6749, section 2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (the default every server must support).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// The outbound call log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// How many of the newest records are kept.
    pub retain: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig { retain: 100_000 }
    }
}

/// The admin API (`/v1/dlq...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// A reference to the bearer token operators must send.
    pub token: String,
}

/// The async jobs API (`POST /v1/jobs`, `GET /v1/jobs/{id}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// A reference to the bearer token callers must send.
    pub token: String,
    /// A reference to the `whsec_` secret that signs completion callbacks (Standard Webhooks).
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// Where completion callbacks may go, as `scheme://host[:port]` patterns like a plugin's
    /// `http.allow`. A job whose `callback_url` matches none is refused; empty: no callbacks.
    #[serde(default)]
    pub callback_allow: Vec<String>,
    /// Internal addresses (CIDR blocks or host names) callbacks may reach, like a plugin's
    /// `http.allow_internal`; none by default.
    #[serde(default)]
    pub callback_allow_internal: Vec<String>,
}

impl JobsConfig {
    /// The callback destinations, as a grant the egress policy checks.
    pub fn callback_destinations(&self) -> HttpGrant {
        HttpGrant {
            allow: self.callback_allow.clone(),
            allow_internal: self.callback_allow_internal.clone(),
            ..HttpGrant::default()
        }
    }
}

/// Where events are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One SQLite file: one node, nothing to set up.
    #[default]
    Sqlite,
    /// A NATS JetStream cluster shared by several nodes (`[store.nats]`).
    Nats,
}

/// The event store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where events, deliveries and their history live: `sqlite` (the default) or `nats`.
    pub backend: StoreBackend,
    /// The NATS cluster, when `backend = "nats"`.
    pub nats: NatsConfig,
    /// The SQLite file (relative paths are relative to the config file). With `nats`, it holds
    /// what stays on each node: the plugins' key-value data and the call log.
    pub path: PathBuf,
    /// How long delivery ids are remembered to drop duplicate deliveries, in seconds.
    pub dedup_window_secs: u64,
    /// Events (with their deliveries and attempts) older than this many days are deleted once
    /// none of their deliveries is pending; 0 keeps them whatever their age.
    pub retain_days: u64,
    /// At most this many events are kept (the oldest finished ones go first); 0: no limit.
    pub retain_events: u64,
    /// How often retention runs, in seconds.
    pub retention_interval_secs: u64,
}

/// The NATS cluster a `nats` store lives on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Its servers (`nats://host:port`, `tls://host:port` for TLS); any one reachable is enough.
    pub servers: Vec<String>,
    /// A reference (`env:NAME` or `file:PATH`) to the user's credentials (a `.creds` file's
    /// content: JWT and NKey seed), when the cluster asks for them.
    pub credentials: Option<String>,
    /// A CA certificate file (PEM) to verify the servers' TLS certificates with, when they are
    /// not signed by a CA the system trusts; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// How many servers store each message: 1, 3 or 5 (at most the cluster's size).
    pub replicas: usize,
    /// The event log's stream; the queue's stream and buckets are named after it.
    pub stream: String,
    /// The first token of every subject plugboard uses.
    pub subject_prefix: String,
    /// How long a node holds a delivery it runs without renewing its claim (it renews every
    /// third of it), in seconds: after a node dies, how long its deliveries wait for another.
    pub lease_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            credentials: None,
            tls_ca: None,
            replicas: 3,
            stream: "PLUGBOARD".into(),
            subject_prefix: "plugboard".into(),
            lease_secs: 30,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            nats: NatsConfig::default(),
            path: PathBuf::from("plugboard.db"),
            dedup_window_secs: 7 * 24 * 3600,
            retain_days: 30,
            retain_events: 1_000_000,
            retention_interval_secs: 300,
        }
    }
}

/// One plugin instance.
///
/// It repeats the fields of the runtime's `PluginSpec` rather than flattening one into it: serde cannot
/// refuse unknown keys through `#[serde(flatten)]`, and refusing them is the point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The instance id; webhooks arrive at `/hooks/{id}`.
    pub id: String,
    /// The component file (relative to the config file).
    pub wasm: PathBuf,
    /// What the operator grants.
    #[serde(default)]
    pub grants: Grants,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Values for the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// How its webhooks are verified; without it the instance receives no webhooks.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Compiled code for `wasm` made by `plugboard plugin compile`, loaded instead of compiling.
    #[serde(default)]
    pub precompiled: Option<Precompiled>,
    /// Which invocations are recorded for `plugboard replay`; none when absent.
    #[serde(default)]
    pub record: Option<Record>,
    /// Whether its instances serve more than one invocation (see [`Reuse`]); a fresh instance
    /// per invocation when absent.
    #[serde(default)]
    pub reuse: Option<Reuse>,
    /// Keep one fresh instance of a connector instantiated ahead of its next invocation, so
    /// that an event does not wait for instantiation (see "Preparing instances ahead" in the
    /// README). Each invocation still runs in an instance no other invocation used; off when
    /// absent, and refused with `reuse`.
    #[serde(default)]
    pub prepare_ahead: bool,
}

/// A precompiled artifact of an instance's component (`plugboard plugin compile`), so that its
/// first load does not compile it. Compiled code is native code: the host runs it without
/// validating it again, so it loads only the exact file the operator pinned here, and only when
/// the file says it was compiled from the instance's component by this engine configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precompiled {
    /// The artifact file (relative to the config file).
    pub path: PathBuf,
    /// The SHA-256 of the artifact file, as `plugboard plugin compile` prints it: the operator's
    /// statement that they trust this file (their own build compiled it).
    pub sha256: String,
}

impl Precompiled {
    /// Whether `sha256` is a SHA-256 digest written in lower-case hex.
    pub fn pin_is_well_formed(&self) -> bool {
        self.sha256.len() == 64
            && self.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}
