//! How an operator declares a plugin instance ([`PluginSpec`]), and what the host reports about
//! one it loaded ([`PluginInfo`]): plain data, for configuration files, the CLI and the admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::grants::{Capability, Grants};
use crate::limits::Limits;
pub use plugboard_manifest::{PREPARE_AHEAD_WITH_REUSE, PREPARED_IDLE_SECS, Precompiled, Record, Reuse};

/// How an operator declares one plugin instance. Unknown keys are refused.
///
/// ```
/// let spec: plugboard_runtime::PluginSpec = serde_json::from_str(r#"{
///     "id": "shop-eu",
///     "wasm": "plugins/shopify.wasm",
///     "grants": { "capabilities": ["http"], "http": { "allow": ["https://*.myshopify.com"] } },
///     "limits": { "memory_mib": 32 },
///     "config": { "api_version": "2025-07" }
/// }"#).unwrap();
/// assert_eq!(spec.limits.memory_mib, 32);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// The instance id: unique in the host, used in routes, logs and `/hooks/{id}`.
    pub id: String,
    /// The component file.
    pub wasm: PathBuf,
    /// What the operator grants it.
    #[serde(default)]
    pub grants: Grants,
    /// The limits it runs under.
    #[serde(default)]
    pub limits: Limits,
    /// Values the plugin reads through the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Compiled code for `wasm` (`plugboard plugin compile`), loaded instead of compiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precompiled: Option<Precompiled>,
    /// Which invocations are recorded for replay; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// Whether a connector's instances serve more than one invocation ([`Reuse`]); a fresh
    /// instance per invocation when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<Reuse>,
    /// Whether a connector keeps one fresh instance instantiated ahead of its next invocation
    /// (see [`PluginSpec::with_prepare_ahead`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepare_ahead: bool,
}

impl PluginSpec {
    /// An instance with no grants, default limits and no config.
    pub fn new(id: &str, wasm: impl AsRef<Path>) -> Self {
        PluginSpec {
            id: id.to_owned(),
            wasm: wasm.as_ref().to_owned(),
            grants: Grants::none(),
            limits: Limits::default(),
            config: BTreeMap::new(),
            precompiled: None,
            record: None,
            reuse: None,
            prepare_ahead: false,
        }
    }

    /// Sets the grants.
    pub fn with_grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Loads the pinned precompiled artifact instead of compiling the component.
    pub fn with_precompiled(mut self, precompiled: Precompiled) -> Self {
        self.precompiled = Some(precompiled);
        self
    }

    /// Records the invocations `record` selects, for replay.
    pub fn with_record(mut self, record: Record) -> Self {
        self.record = Some(record);
        self
    }

    /// Keeps the connector's instances for more than one invocation, as `reuse` says; what one
    /// invocation leaves in the plugin's memory is then seen by the next.
    pub fn with_reuse(mut self, reuse: Reuse) -> Self {
        self.reuse = Some(reuse);
        self
    }

    /// Keeps one fresh instance of the connector instantiated ahead of its next invocation, so
    /// that the invocation does not wait for instantiation: worth it where instantiating takes
    /// long (a Python component). Each invocation still runs in an instance no other invocation
    /// used; the prepared one holds an instance slot until it serves or has waited
    /// [`crate::spec::PREPARED_IDLE_SECS`]. Not with [`PluginSpec::with_reuse`], nor for
    /// recorded invocations, which instantiate their own.
    pub fn with_prepare_ahead(mut self) -> Self {
        self.prepare_ahead = true;
        self
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a config value.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// The `connector` world.
    Connector,
    /// The `ai-provider` world.
    AiProvider,
}

impl PluginKind {
    /// The world's name.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Connector => "connector",
            PluginKind::AiProvider => "ai-provider",
        }
    }

    /// How messages name the kind: "a connector", "an AI provider".
    pub fn article_name(self) -> &'static str {
        match self {
            PluginKind::Connector => "a connector",
            PluginKind::AiProvider => "an AI provider",
        }
    }
}

/// An action a connector offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionInfo {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// How it behaves, as the plugin declares (its `action-hints` export); none when the
    /// plugin does not say, and then a client must assume the worst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hints: Option<ActionHints>,
}

/// How an action behaves, as its plugin declares: the MCP tool annotations and output schema.
/// Hints are the plugin's word, not a guarantee; the operator's policy decides what runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionHints {
    /// A short title for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// It changes nothing outside the plugin.
    pub read_only: bool,
    /// It may delete or overwrite (when not read-only).
    pub destructive: bool,
    /// Running it again with the same input has no further effect.
    pub idempotent: bool,
    /// It reaches an open world rather than a closed domain.
    pub open_world: bool,
    /// The JSON Schema of its output, an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
}

impl ActionHints {
    /// Whether a client must treat the action as destructive: it says so, or says nothing.
    pub fn is_destructive(hints: Option<&ActionHints>) -> bool {
        hints.is_none_or(|h| !h.read_only && h.destructive)
    }
}

/// What a loaded (or inspected) plugin is and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// The instance id.
    pub id: String,
    /// Which world it implements.
    pub kind: PluginKind,
    /// Its name, from its metadata.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its description.
    pub description: String,
    /// Event kinds it produces (connectors).
    pub produces: Vec<String>,
    /// Actions it offers (connectors).
    pub actions: Vec<ActionInfo>,
    /// The webhook verification scheme it expects (connectors).
    pub webhook_verification: Option<String>,
    /// The model used when a request names none (AI providers).
    pub default_model: Option<String>,
    /// The capabilities it requests.
    pub requested: Vec<Capability>,
    /// Requested and granted: what it may actually use.
    pub effective: Vec<Capability>,
    /// The SHA-256 of the component, hex.
    pub sha256: String,
    /// The component's size in bytes.
    pub size_bytes: usize,
    /// Where this build came from: the component file's path, or [`UPLOADED`] for a build
    /// uploaded through the admin API (which a restart replaces with the file again).
    pub source: String,
    /// `name@version sha256:<12 hex>`, as attempts and webhook events record it.
    pub build: String,
    /// Whether its compiled code was loaded (from the compile cache, or the pinned precompiled
    /// artifact) rather than compiled now.
    pub compiled_from_cache: bool,
    /// The limits it runs under.
    pub limits: Limits,
    /// Whether its instances serve more than one invocation (state in its memory is shared
    /// between them); absent for a fresh instance per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<Reuse>,
    /// Whether a fresh instance is kept instantiated ahead of its next invocation
    /// (`prepare_ahead`); absent when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepare_ahead: bool,
}

/// [`PluginInfo::source`] of a build uploaded through the admin API: it lives in memory only,
/// and a restart loads the configured file again.
pub const UPLOADED: &str = "admin API upload (in memory only: a restart loads the configured file)";

impl PluginInfo {
    /// `name@version sha256:<12 hex>`: which build this is, as attempts record it.
    pub fn handler(&self) -> String {
        format!("{}@{} sha256:{}", self.name, self.version, &self.sha256[..self.sha256.len().min(12)])
    }
}
