//! Checking a configuration as a whole (cross-references, reserved names, grants) and
//! resolving it into what the server runs: absolute paths, secrets read, verifiers built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};
use crate::PluginSpec;
use crate::cidr::Cidr;
use crate::egress::oauth::OAuthClient;
use crate::ingress::Endpoint;
use crate::ingress::verify::{Scheme, Verifier};
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
