//! Checking a configuration as a whole, with nothing but the file: names used twice,
//! references to what does not exist, reserved names, grants that are not well formed.

use std::collections::BTreeSet;

use crate::address::Cidr;
use crate::pipeline::{CALLBACK_ROUTE, JOB_ROUTE, JOBS_SOURCE, MCP_SOURCE, SCHEDULE_SOURCE, WEBHOOK_ROUTE};
use crate::webhook::Scheme;
use crate::{Config, ConfigError, InstanceConfig, NatsConfig, PREPARE_AHEAD_WITH_REUSE, Reuse, StoreBackend};

impl Config {
    /// Checks everything that needs no runtime, no files and no secrets; the error names the
    /// first wrong key by its path in the file (`plugin[shop].grants.http`, `route[2].to`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = BTreeSet::new();
        for p in &self.plugins {
            if !ids.insert(p.id.as_str()) {
                return Err(ConfigError::invalid(format!("plugin[{}]", p.id), "the id is used twice"));
            }
            self.validate_instance(p)?;
        }
        self.validate_routes(&ids)?;
        self.validate_schedules(&ids)?;
        if let Some(jobs) = &self.jobs {
            jobs.callback_destinations()
                .validate()
                .map_err(|reason| ConfigError::invalid("jobs.callback_allow", reason))?;
        }
        for p in &self.plugins {
            self.validate_bindings(p)?;
        }
        if let Some(mcp) = &self.mcp {
            mcp.validate(&ids)?;
        }
        self.validate_ai_tools(&ids)?;
        if self.store.backend == StoreBackend::Nats {
            self.store.nats.validate()?;
        }
        Ok(())
    }

    fn validate_instance(&self, p: &InstanceConfig) -> Result<(), ConfigError> {
        let key = format!("plugin[{}]", p.id);
        // The host's own sources: an instance named so could pass its events off as schedule
        // firings, job notices or records of AI clients' tool calls.
        if [SCHEDULE_SOURCE, JOBS_SOURCE, MCP_SOURCE].contains(&p.id.as_str()) {
            return Err(ConfigError::invalid(
                format!("{key}.id"),
                format!("`{}` is the source name of the host's own events", p.id),
            ));
        }
        if let Some(provider) = &p.grants.ai_provider
            && !self.plugins.iter().any(|q| &q.id == provider)
        {
            return Err(ConfigError::invalid(
                format!("{key}.grants.ai_provider"),
                format!("no instance named `{provider}`"),
            ));
        }
        if let Some(artifact) = &p.precompiled
            && !artifact.pin_is_well_formed()
        {
            return Err(ConfigError::invalid(
                format!("{key}.precompiled.sha256"),
                "must be the artifact's SHA-256 in lower-case hex (64 characters), as `plugboard plugin compile` prints it",
            ));
        }
        if let Some(problem) = p.reuse.as_ref().and_then(Reuse::problem) {
            return Err(ConfigError::invalid(format!("{key}.reuse"), problem));
        }
        if p.prepare_ahead && p.reuse.is_some() {
            return Err(ConfigError::invalid(format!("{key}.prepare_ahead"), PREPARE_AHEAD_WITH_REUSE));
        }
        let http = &p.grants.http;
        http.validate().map_err(|reason| ConfigError::invalid(format!("{key}.grants.http"), reason))?;
        for (i, limit) in http.rate_limits.iter().enumerate() {
            if !http.reaches(&limit.destination) {
                return Err(ConfigError::invalid(
                    format!("{key}.grants.http.rate_limits[{i}]"),
                    format!(
                        "no http.allow entry reaches `{}`, so this limit would never apply",
                        limit.destination
                    ),
                ));
            }
        }
        let Some(hook) = &p.webhook else { return Ok(()) };
        if hook.verify != Scheme::None && hook.secrets.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.webhook.secrets"),
                "at least one secret is needed to verify webhooks",
            ));
        }
        for (i, block) in hook.allow_ips.iter().enumerate() {
            block
                .parse::<Cidr>()
                .map_err(|reason| ConfigError::invalid(format!("{key}.webhook.allow_ips[{i}]"), reason))?;
        }
        if let Some(r) = hook.rate_limit
            && !r.is_sound()
        {
            return Err(ConfigError::invalid(
                format!("{key}.webhook.rate_limit"),
                "per_second must be positive and burst at least 1, both finite",
            ));
        }
        Ok(())
    }

    fn validate_routes(&self, ids: &BTreeSet<&str>) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("route[{i}]");
            if [JOB_ROUTE, CALLBACK_ROUTE, WEBHOOK_ROUTE].contains(&r.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("`{}` is the name of one of the host's own routes", r.name),
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("`{}` is used twice", r.name),
                ));
            }
            for (field, id) in [("from", &r.from), ("to", &r.to)] {
                if !id.contains('*') && !ids.contains(id.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("{key}.{field}"),
                        format!("no instance named `{id}`"),
                    ));
                }
            }
            if r.to.contains('*') {
                return Err(ConfigError::invalid(format!("{key}.to"), "must name one instance"));
            }
            if r.to == r.from {
                return Err(ConfigError::invalid(
                    format!("{key}.to"),
                    "an instance's events are never delivered back to it (that could loop); \
                     use a second instance of the component",
                ));
            }
        }
        Ok(())
    }

    fn validate_schedules(&self, ids: &BTreeSet<&str>) -> Result<(), ConfigError> {
        let mut names = BTreeSet::new();
        for (i, sch) in self.schedules.iter().enumerate() {
            let key = format!("schedule[{i}]");
            // The name makes the firings' kind, which finds the newest firing at start.
            let name_ok = !sch.name.is_empty()
                && sch.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok || !names.insert(sch.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!(
                        "`{}`: schedule names are unique and made of letters, digits, `-`, `_` and `.`",
                        sch.name
                    ),
                ));
            }
            if !ids.contains(sch.to.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.to"),
                    format!("no instance named `{}`", sch.to),
                ));
            }
        }
        Ok(())
    }

    /// Each `grants.ai_tools` entry names a configured instance, and no instance can reach
    /// itself through them: an action run as a tool that may run the caller again (directly
    /// or round a cycle) could recurse without end.
    fn validate_ai_tools(&self, ids: &BTreeSet<&str>) -> Result<(), ConfigError> {
        let mut reaches: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
        for p in &self.plugins {
            for (i, text) in p.grants.ai_tools.iter().enumerate() {
                let key = format!("plugin[{}].grants.ai_tools[{i}]", p.id);
                let pattern =
                    crate::mcp::ToolPattern::parse(text).map_err(|e| ConfigError::invalid(&key, e))?;
                let Some(target) = ids.get(pattern.instance.as_str()) else {
                    return Err(ConfigError::invalid(
                        key,
                        format!("no instance named `{}`", pattern.instance),
                    ));
                };
                reaches.entry(p.id.as_str()).or_default().insert(target);
            }
        }
        for start in reaches.keys() {
            let mut seen = BTreeSet::new();
            let mut next: Vec<&str> = reaches[start].iter().copied().collect();
            while let Some(at) = next.pop() {
                if at == *start {
                    return Err(ConfigError::invalid(
                        format!("plugin[{start}].grants.ai_tools"),
                        "its tools can run it again (directly or through another instance's ai_tools)",
                    ));
                }
                if seen.insert(at) {
                    next.extend(reaches.get(at).into_iter().flatten().copied());
                }
            }
        }
        Ok(())
    }

    /// The secrets and OAuth clients an instance is granted exist, and go where it may send.
    fn validate_bindings(&self, p: &InstanceConfig) -> Result<(), ConfigError> {
        let key = format!("plugin[{}].grants", p.id);
        if let Some(missing) = p.grants.secrets.iter().find(|s| !self.secrets.contains_key(*s)) {
            return Err(ConfigError::invalid(
                format!("{key}.secrets"),
                format!("no [secret.{missing}] is configured"),
            ));
        }
        if let Some(missing) = p.grants.oauth.iter().find(|s| !self.oauth.contains_key(*s)) {
            return Err(ConfigError::invalid(
                format!("{key}.oauth"),
                format!("no [oauth.{missing}] is configured"),
            ));
        }
        // A secret bound to hosts the plugin may not call is never sent: most likely the
        // allow-list moved (from a stand-in to the real service) and the binding did not.
        let secrets = p
            .grants
            .secrets
            .iter()
            .filter_map(|n| Some(("secrets", "secret", n, &self.secrets.get(n)?.hosts)));
        let clients =
            p.grants.oauth.iter().filter_map(|n| Some(("oauth", "oauth", n, &self.oauth.get(n)?.hosts)));
        for (field, table, name, hosts) in secrets.chain(clients) {
            if !hosts.iter().any(|h| p.grants.http.reaches(h)) {
                return Err(ConfigError::invalid(
                    format!("{key}.{field}"),
                    format!(
                        "[{table}.{name}] may only be sent to {}, which no http.allow entry of this plugin \
                         reaches",
                        hosts.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl NatsConfig {
    /// What the servers would refuse, said before connecting: no server, a replica count
    /// JetStream does not take, names that are not one subject token.
    fn validate(&self) -> Result<(), ConfigError> {
        let key = |field: &str| format!("store.nats.{field}");
        if self.servers.is_empty() {
            return Err(ConfigError::invalid(key("servers"), "name at least one server"));
        }
        for server in &self.servers {
            let scheme = server.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("nats" | "tls")) {
                return Err(ConfigError::invalid(
                    key("servers"),
                    format!("`{server}` is not a nats://host:port or tls://host:port address"),
                ));
            }
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return Err(ConfigError::invalid(
                key("replicas"),
                format!("{}: JetStream keeps 1, 3 or 5 replicas of a stream", self.replicas),
            ));
        }
        let token = |name: &str| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !token(&self.stream) {
            return Err(ConfigError::invalid(key("stream"), "letters, digits, `-` and `_` only"));
        }
        if !token(&self.subject_prefix) {
            return Err(ConfigError::invalid(key("subject_prefix"), "letters, digits, `-` and `_` only"));
        }
        if !(3..=86_400).contains(&self.lease_secs) {
            return Err(ConfigError::invalid(
                key("lease_secs"),
                "from 3 seconds (a claim is renewed every third of it) to a day",
            ));
        }
        Ok(())
    }
}
