//! The operator's configuration file (`plugboard.toml`): the server, the store, and the plugin
//! instances with their grants, limits, config values and webhook verification. Unknown keys are
//! refused with their name and line; secrets are references (`env:NAME`, `file:PATH`), resolved
//! at start, and a missing one is an error that names the key.
//!
//! What the file says, its serde types and the checks that need nothing but the file, are the
//! `plugboard-manifest` crate (re-exported here); this module resolves a valid file (paths,
//! secrets, verifiers, cron expressions) into what the server runs.

mod resolve;

pub use plugboard_manifest::{
    AdminConfig, CallsConfig, ClientAuth, Config, ConfigError, InstanceConfig, JobsConfig, NatsConfig,
    OAuthConfig, SecretConfig, ServerConfig, StoreBackend, StoreConfig, WebhookConfig,
};
pub use resolve::{Resolved, read_secret};

use std::path::Path;

impl Resolved {
    /// Reads and checks `path`, resolving secrets.
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let config = Config::parse(path)?;
        Resolved::resolve(config, &Config::base(path))
    }
}

/// The retention `store` asks for.
pub fn retention(store: &StoreConfig) -> crate::store::Retention {
    crate::store::Retention {
        max_age_ms: store.retain_days.saturating_mul(24 * 3600 * 1000),
        max_events: store.retain_events,
        chunk: 5_000,
        min_age_ms: store.dedup_window_secs.saturating_mul(1000).max(crate::pipeline::TICK_DEDUP_WINDOW_MS),
    }
}

/// How to reach the NATS store `config` names (`[store.nats]`), its credentials read (a `file:`
/// reference relative to `base`, the config file's folder, as the TLS CA file is).
#[cfg(feature = "nats")]
pub fn nats_settings(config: &Config, base: &Path) -> Result<crate::store::nats::NatsSettings, ConfigError> {
    let nats = &config.store.nats;
    let credentials = match &nats.credentials {
        Some(reference) => Some(resolve::read_secret_at("store.nats.credentials", reference, base)?),
        None => None,
    };
    Ok(crate::store::nats::NatsSettings {
        servers: nats.servers.clone(),
        stream: nats.stream.clone(),
        subject_prefix: nats.subject_prefix.clone(),
        replicas: nats.replicas,
        credentials,
        tls_ca: nats.tls_ca.as_ref().map(|ca| base.join(ca)),
    })
}
