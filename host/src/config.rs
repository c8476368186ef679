//! The operator's configuration file (`plugboard.toml`): the server, the store, and the plugin
//! instances with their grants, limits, config values and webhook verification. Unknown keys are
//! refused with their name and line; secrets are references (`env:NAME`, `file:PATH`), resolved
//! at start, and a missing one is an error that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cidr::Cidr;
use crate::egress::ai::AiSettings;
use crate::egress::oauth::{ClientAuth, OAuthClient};
use crate::ingress::Endpoint;
use crate::ingress::verify::{Scheme, Verifier};
use crate::pipeline::{RetryPolicy, Route, Schedule};
use crate::rate_limit::{Bucket, RateLimit};
use crate::{Grants, Limits, PluginSpec};

/// Why a configuration file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What and where.
        message: String,
    },
    /// A value is wrong; `key` is its path in the file.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key's path, e.g. `plugin[shop].webhook.secrets[0]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

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
    /// The async jobs API.
    #[serde(default)]
    pub jobs: Option<JobsConfig>,
    /// The admin API (dead letters, for now).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
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
    pub fn callback_destinations(&self) -> crate::HttpGrant {
        crate::HttpGrant {
            allow: self.callback_allow.clone(),
            allow_internal: self.callback_allow_internal.clone(),
            ..crate::HttpGrant::default()
        }
    }
}

/// The event store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file (relative paths are relative to the config file).
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

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("plugboard.db"),
            dedup_window_secs: 7 * 24 * 3600,
            retain_days: 30,
            retain_events: 1_000_000,
            retention_interval_secs: 300,
        }
    }
}

impl StoreConfig {
    /// The retention these settings ask for.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            max_age_ms: self.retain_days.saturating_mul(24 * 3600 * 1000),
            max_events: self.retain_events,
            chunk: 5_000,
        }
    }
}

/// One plugin instance.
///
/// It repeats the fields of [`PluginSpec`] rather than flattening one into it: serde cannot
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
}

/// Webhook verification for one instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The scheme, e.g. `{ scheme = "shopify" }`.
    pub verify: Scheme,
    /// Secret references (`env:NAME`, `file:PATH`); several during a rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The window for timestamped schemes, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// Only these source addresses (CIDR blocks) may deliver; any when empty. Others get 403.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// A rate limit for this instance's webhooks; over it, 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// A header carrying the provider's delivery id, for providers the scheme does not know.
    #[serde(default)]
    pub delivery_id_header: Option<String>,
}

fn default_tolerance() -> u64 {
    300
}

/// A configuration checked and resolved: paths absolute, secrets read, verifiers built.
pub struct Resolved {
    /// The file as written.
    pub config: Config,
    /// The store file.
    pub store_path: PathBuf,
    /// Each instance's spec.
    pub specs: Vec<PluginSpec>,
    /// Each webhook-receiving instance's checks.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The jobs API's token, when it is on.
    pub jobs_token: Option<Vec<u8>>,
    /// The key that signs job callbacks (decoded from `whsec_`).
    pub callback_key: Option<Vec<u8>>,
    /// The admin API's token, when it is on.
    pub admin_token: Option<Vec<u8>>,
    /// The secrets, resolved.
    pub secrets: BTreeMap<String, crate::egress::secrets::Secret>,
    /// The OAuth2 clients, resolved.
    pub oauth: BTreeMap<String, OAuthClient>,
}

impl Resolved {
    /// Whether any instance has a fuel budget, which needs a host built with fuel metering.
    pub fn uses_fuel(&self) -> bool {
        self.specs.iter().any(|s| s.limits.fuel.is_some())
    }
}

/// Reads the secret `reference` (`env:NAME`, or `file:PATH` relative to the working directory)
/// as text; `key` names it in errors.
pub fn read_secret(key: &str, reference: &str) -> Result<String, ConfigError> {
    let raw = resolve_secret(key, reference, Path::new("."))?;
    String::from_utf8(raw)
        .map_err(|_| ConfigError::Invalid { key: key.to_owned(), reason: "not UTF-8".into() })
}

fn resolve_secret(key: &str, reference: &str, base: &Path) -> Result<Vec<u8>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { key: key.to_owned(), reason };
    if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name)
            .map(String::into_bytes)
            .map_err(|_| invalid(format!("environment variable {name} is not set")))
    } else if let Some(path) = reference.strip_prefix("file:") {
        let path = base.join(path);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        Ok(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
    } else {
        Err(invalid("a secret must be a reference: env:NAME or file:PATH".into()))
    }
}

impl Config {
    /// Reads and checks `path`, resolving secrets.
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let config = Self::parse(path)?;
        config.resolve(&Self::base(path))
    }

    /// Reads `path` without resolving anything (for tools that only need the store).
    pub fn parse(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
    }

    /// The directory relative paths in `path` are resolved against.
    pub fn base(path: &Path) -> PathBuf {
        path.parent().unwrap_or(Path::new(".")).to_owned()
    }

    /// Checks cross-references and resolves paths and secrets relative to `base`.
    pub fn resolve(self, base: &Path) -> Result<Resolved, ConfigError> {
        let mut specs = Vec::new();
        let mut endpoints = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.plugins {
            let key = format!("plugin[{}]", p.id);
            if !seen.insert(p.id.clone()) {
                return Err(ConfigError::Invalid { key, reason: "the id is used twice".into() });
            }
            // The host's own sources: an instance named so could pass its events off as
            // schedule firings or job notices.
            if [crate::pipeline::SCHEDULE_SOURCE, crate::pipeline::JOBS_SOURCE].contains(&p.id.as_str()) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.id"),
                    reason: format!("`{}` is the source name of the host's own events", p.id),
                });
            }
            if let Some(provider) = &p.grants.ai_provider
                && !self.plugins.iter().any(|q| &q.id == provider)
            {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.grants.ai_provider"),
                    reason: format!("no instance named `{provider}`"),
                });
            }
            p.grants
                .http
                .validate()
                .map_err(|reason| ConfigError::Invalid { key: format!("{key}.grants.http"), reason })?;
            for (i, limit) in p.grants.http.rate_limits.iter().enumerate() {
                if !p.grants.http.reaches(&limit.destination) {
                    return Err(ConfigError::Invalid {
                        key: format!("{key}.grants.http.rate_limits[{i}]"),
                        reason: format!(
                            "no http.allow entry reaches `{}`, so this limit would never apply",
                            limit.destination
                        ),
                    });
                }
            }
            if let Some(hook) = &p.webhook {
                let secrets = hook
                    .secrets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| resolve_secret(&format!("{key}.webhook.secrets[{i}]"), s, base))
                    .collect::<Result<Vec<_>, _>>()?;
                let verifier = if hook.verify == Scheme::None {
                    None
                } else {
                    if secrets.is_empty() {
                        return Err(ConfigError::Invalid {
                            key: format!("{key}.webhook.secrets"),
                            reason: "at least one secret is needed to verify webhooks".into(),
                        });
                    }
                    let v = Verifier::new(hook.verify.clone(), secrets).map_err(|e| {
                        ConfigError::Invalid { key: format!("{key}.webhook.secrets"), reason: e.to_string() }
                    })?;
                    Some(v.with_tolerance(std::time::Duration::from_secs(hook.tolerance_secs)))
                };
                let allow_ips = hook
                    .allow_ips
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        c.parse::<Cidr>().map_err(|reason| ConfigError::Invalid {
                            key: format!("{key}.webhook.allow_ips[{i}]"),
                            reason,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(r) = hook.rate_limit
                    && !(r.per_second > 0.0 && r.burst >= 1.0)
                {
                    return Err(ConfigError::Invalid {
                        key: format!("{key}.webhook.rate_limit"),
                        reason: "per_second must be positive and burst at least 1".into(),
                    });
                }
                endpoints.insert(
                    p.id.clone(),
                    Endpoint {
                        verifier,
                        allow_ips,
                        rate: hook.rate_limit.map(Bucket::new),
                        delivery_id_header: hook.delivery_id_header.as_ref().map(|h| h.to_ascii_lowercase()),
                    },
                );
            }
            specs.push(PluginSpec {
                id: p.id.clone(),
                wasm: base.join(&p.wasm),
                grants: p.grants.clone(),
                limits: p.limits.clone(),
                config: p.config.clone(),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("route[{i}]");
            if [crate::pipeline::JOB_ROUTE, crate::pipeline::CALLBACK_ROUTE].contains(&r.name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.name"),
                    reason: format!("`{}` is the name of the host's own job route", r.name),
                });
            }
            if !names.insert(r.name.clone()) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.name"),
                    reason: format!("`{}` is used twice", r.name),
                });
            }
            for (field, id) in [("from", &r.from), ("to", &r.to)] {
                if !id.contains('*') && !seen.contains(id) {
                    return Err(ConfigError::Invalid {
                        key: format!("{key}.{field}"),
                        reason: format!("no instance named `{id}`"),
                    });
                }
            }
            if r.to.contains('*') {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.to"),
                    reason: "must name one instance".into(),
                });
            }
            if r.to == r.from {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.to"),
                    reason: "an instance's events are never delivered back to it (that could loop); \
                             use a second instance of the component"
                        .into(),
                });
            }
        }
        let mut schedule_names = std::collections::BTreeSet::new();
        for (i, sch) in self.schedules.iter().enumerate() {
            let key = format!("schedule[{i}]");
            // The name makes the firings' kind, which finds the newest firing at start.
            let name_ok = !sch.name.is_empty()
                && sch.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok || !schedule_names.insert(sch.name.clone()) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.name"),
                    reason: format!(
                        "`{}`: schedule names are unique and made of letters, digits, `-`, `_` and `.`",
                        sch.name
                    ),
                });
            }
            sch.parse().map_err(|reason| ConfigError::Invalid { key: format!("{key}.cron"), reason })?;
            if !seen.contains(&sch.to) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.to"),
                    reason: format!("no instance named `{}`", sch.to),
                });
            }
        }
        let (mut jobs_token, mut callback_key) = (None, None);
        if let Some(jobs) = &self.jobs {
            jobs_token = Some(resolve_secret("jobs.token", &jobs.token, base)?);
            jobs.callback_destinations()
                .validate()
                .map_err(|reason| ConfigError::Invalid { key: "jobs.callback_allow".into(), reason })?;
            if let Some(reference) = &jobs.callback_secret {
                let raw = resolve_secret("jobs.callback_secret", reference, base)?;
                let text = String::from_utf8_lossy(&raw);
                use base64::Engine as _;
                let key = base64::engine::general_purpose::STANDARD
                    .decode(text.trim().strip_prefix("whsec_").unwrap_or(text.trim()))
                    .map_err(|e| ConfigError::Invalid {
                        key: "jobs.callback_secret".into(),
                        reason: format!("not a whsec_ secret: {e}"),
                    })?;
                callback_key = Some(key);
            }
        }
        let mut secrets = BTreeMap::new();
        for (name, sc) in &self.secrets {
            let key = format!("secret[{name}]");
            let raw = resolve_secret(&format!("{key}.value"), &sc.value, base)?;
            let value = String::from_utf8(raw).map_err(|_| ConfigError::Invalid {
                key: format!("{key}.value"),
                reason: "not UTF-8".into(),
            })?;
            let hosts: Vec<&str> = sc.hosts.iter().map(String::as_str).collect();
            let secret = crate::egress::secrets::Secret::new(value, &hosts)
                .map_err(|reason| ConfigError::Invalid { key: format!("{key}.hosts"), reason })?;
            secrets.insert(name.clone(), secret);
        }
        let mut oauth = BTreeMap::new();
        for (name, oc) in &self.oauth {
            let key = format!("oauth[{name}]");
            let text = |field: &str, reference: &str| -> Result<String, ConfigError> {
                let raw = resolve_secret(&format!("{key}.{field}"), reference, base)?;
                String::from_utf8(raw).map_err(|_| ConfigError::Invalid {
                    key: format!("{key}.{field}"),
                    reason: "not UTF-8".into(),
                })
            };
            let hosts: Vec<&str> = oc.hosts.iter().map(String::as_str).collect();
            let mut client = OAuthClient::new(
                &oc.token_url,
                &oc.client_id,
                text("client_secret", &oc.client_secret)?,
                &hosts,
            )
            .map_err(|reason| ConfigError::Invalid { key: key.clone(), reason })?
            .with_scopes(oc.scopes.clone())
            .with_client_auth(oc.client_auth);
            if let Some(reference) = &oc.refresh_token {
                client = client.with_refresh_token(text("refresh_token", reference)?);
            }
            oauth.insert(name.clone(), client);
        }
        for p in &self.plugins {
            if let Some(missing) = p.grants.secrets.iter().find(|s| !self.secrets.contains_key(*s)) {
                return Err(ConfigError::Invalid {
                    key: format!("plugin[{}].grants.secrets", p.id),
                    reason: format!("no [secret.{missing}] is configured"),
                });
            }
            if let Some(missing) = p.grants.oauth.iter().find(|s| !self.oauth.contains_key(*s)) {
                return Err(ConfigError::Invalid {
                    key: format!("plugin[{}].grants.oauth", p.id),
                    reason: format!("no [oauth.{missing}] is configured"),
                });
            }
            // A secret bound to hosts the plugin may not call is never sent: most likely the
            // allow-list moved (from a stand-in to the real service) and the binding did not.
            let bound = p.grants.secrets.iter().map(|n| ("secrets", "secret", n, &self.secrets[n].hosts));
            let clients = p.grants.oauth.iter().map(|n| ("oauth", "oauth", n, &self.oauth[n].hosts));
            for (field, table, name, hosts) in bound.chain(clients) {
                if !hosts.iter().any(|h| p.grants.http.reaches(h)) {
                    return Err(ConfigError::Invalid {
                        key: format!("plugin[{}].grants.{field}", p.id),
                        reason: format!(
                            "[{table}.{name}] may only be sent to {}, which no http.allow entry of this \
                             plugin reaches",
                            hosts.join(", ")
                        ),
                    });
                }
            }
        }
        let admin_token = match &self.admin {
            Some(admin) => Some(resolve_secret("admin.token", &admin.token, base)?),
            None => None,
        };
        let store_path = base.join(&self.store.path);
        Ok(Resolved {
            config: self,
            store_path,
            specs,
            endpoints,
            jobs_token,
            callback_key,
            admin_token,
            secrets,
            oauth,
        })
    }
}
