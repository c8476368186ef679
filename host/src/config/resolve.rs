//! Resolving a configuration into what the server runs: absolute paths, secrets read,
//! verifiers and OAuth clients built, cron expressions parsed. The checks that need nothing but
//! the file ([`Config::validate`]) run first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};
use crate::PluginSpec;
use crate::egress::oauth::OAuthClient;
use crate::ingress::Endpoint;
use crate::ingress::verify::{Scheme, Verifier};
use crate::manifest::address::Cidr;
use crate::rate_limit::Bucket;

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
    /// Each MCP client's bearer token, by client name (clients without one are left out).
    pub mcp_tokens: BTreeMap<String, Vec<u8>>,
    /// The secrets, resolved.
    pub secrets: BTreeMap<String, crate::egress::secrets::Secret>,
    /// The OAuth2 clients, resolved.
    pub oauth: BTreeMap<String, OAuthClient>,
    /// How to reach the NATS store, when the store is on NATS.
    #[cfg(feature = "nats")]
    pub nats: Option<crate::store::nats::NatsSettings>,
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
    read_secret_at(key, reference, Path::new("."))
}

/// Reads the secret `reference` as text, a `file:` path relative to `base`.
pub(super) fn read_secret_at(key: &str, reference: &str, base: &Path) -> Result<String, ConfigError> {
    let raw = resolve_secret(key, reference, base)?;
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

impl Resolved {
    /// Checks `config` ([`Config::validate`]), then resolves paths and secrets relative to
    /// `base`.
    pub fn resolve(config: Config, base: &Path) -> Result<Resolved, ConfigError> {
        config.validate()?;
        let mut specs = Vec::new();
        let mut endpoints = BTreeMap::new();
        for p in &config.plugins {
            let key = format!("plugin[{}]", p.id);
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
                endpoints.insert(
                    p.id.clone(),
                    Endpoint {
                        verifier,
                        allow_ips,
                        rate: hook.rate_limit.map(Bucket::new),
                        delivery_id_header: hook.delivery_id_header.as_ref().map(|h| h.to_ascii_lowercase()),
                        acknowledge: hook.acknowledge,
                    },
                );
            }
            specs.push(PluginSpec {
                id: p.id.clone(),
                wasm: base.join(&p.wasm),
                grants: p.grants.clone(),
                limits: p.limits.clone(),
                config: p.config.clone(),
                precompiled: p.precompiled.as_ref().map(|a| crate::manifest::Precompiled {
                    path: base.join(&a.path),
                    sha256: a.sha256.clone(),
                }),
                record: p.record,
                reuse: p.reuse,
                prepare_ahead: p.prepare_ahead,
            });
        }
        for (i, sch) in config.schedules.iter().enumerate() {
            crate::pipeline::parse_cron(sch)
                .map_err(|reason| ConfigError::Invalid { key: format!("schedule[{i}].cron"), reason })?;
        }
        let (mut jobs_token, mut callback_key) = (None, None);
        if let Some(jobs) = &config.jobs {
            jobs_token = Some(resolve_secret("jobs.token", &jobs.token, base)?);
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
        for (name, sc) in &config.secrets {
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
        for (name, oc) in &config.oauth {
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
        let admin_token = match &config.admin {
            Some(admin) => Some(resolve_secret("admin.token", &admin.token, base)?),
            None => None,
        };
        let mut mcp_tokens = BTreeMap::new();
        for (i, client) in config.mcp.iter().flat_map(|m| m.clients.iter()).enumerate() {
            let Some(reference) = &client.token else { continue };
            let key = format!("mcp.client[{i}].token");
            let token = resolve_secret(&key, reference, base)?;
            // A token is all that names a client over HTTP: short ones are guessed.
            if token.len() < 16 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "a client token must be at least 16 bytes".into(),
                });
            }
            if mcp_tokens.values().any(|t| *t == token) {
                return Err(ConfigError::Invalid { key, reason: "two clients have the same token".into() });
            }
            mcp_tokens.insert(client.name.clone(), token);
        }
        let store_path = base.join(&config.store.path);
        #[cfg(feature = "nats")]
        let nats = match config.store.backend {
            super::StoreBackend::Nats => Some(super::nats_settings(&config, base)?),
            super::StoreBackend::Sqlite => None,
        };
        #[cfg(not(feature = "nats"))]
        if config.store.backend == super::StoreBackend::Nats {
            return Err(ConfigError::Invalid {
                key: "store.backend".into(),
                reason: "this build of plugboard has no NATS backend (its `nats` feature)".into(),
            });
        }
        Ok(Resolved {
            config,
            store_path,
            specs,
            endpoints,
            jobs_token,
            callback_key,
            admin_token,
            mcp_tokens,
            secrets,
            oauth,
            #[cfg(feature = "nats")]
            nats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's token is all that names it over HTTP: one shorter than 16 bytes, or the same
    /// as another client's, is refused when the file is resolved, naming the key.
    #[test]
    fn mcp_tokens_that_are_short_or_shared_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |a: &str, b: &str| {
            std::fs::write(dir.path().join("a"), a).unwrap();
            std::fs::write(dir.path().join("b"), b).unwrap();
            let text = r#"
                [[plugin]]
                id = "shop"
                wasm = "x.wasm"
                [mcp]
                [[mcp.client]]
                name = "one"
                token = "file:a"
                tools = ["shop.*"]
                [[mcp.client]]
                name = "two"
                token = "file:b"
                tools = ["shop.*"]
            "#;
            let config = Config::from_toml(text, "t.toml").unwrap();
            Resolved::resolve(config, dir.path()).map(|r| r.mcp_tokens.len()).map_err(|e| e.to_string())
        };
        assert_eq!(resolve("0123456789abcdef", "fedcba9876543210"), Ok(2));
        let short = resolve("0123456789abcdef", "short").unwrap_err();
        assert!(short.starts_with("mcp.client[1].token:") && short.contains("at least 16 bytes"), "{short}");
        let shared = resolve("0123456789abcdef", "0123456789abcdef").unwrap_err();
        assert!(shared.contains("two clients have the same token"), "{shared}");
    }
}
