//! `[mcp]`: plugboard as an MCP server. Which AI clients may connect, how each proves who it
//! is, and which connector actions each may call as tools, within which limits.
//!
//! ```toml
//! [mcp]
//! allowed_origins = ["https://claude.example.com"]
//!
//! [[mcp.client]]
//! name = "support-agent"
//! token = "env:MCP_SUPPORT_TOKEN"
//! tools = ["shop.get-order", "shop.add-order-tags", "slack.*"]
//! rate_limit = { per_second = 2, burst = 10 }
//! ```

use serde::Deserialize;

use crate::webhook::RateLimit;

/// The MCP server: on at `/mcp` (Streamable HTTP) and through `plugboard mcp` (stdio).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Browser origins (`scheme://host:port`) allowed to call `/mcp`. A request that carries
    /// any other `Origin` is refused (the DNS-rebinding protection the MCP spec requires);
    /// clients that are not browsers send none and pass. None by default.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The `Host` header values `/mcp` answers (`name` or `name:port`): loopback names by
    /// default. A server reached under a public name lists it here.
    #[serde(default = "default_allowed_hosts")]
    pub allowed_hosts: Vec<String>,
    /// The AI clients that may connect.
    #[serde(rename = "client")]
    pub clients: Vec<McpClientConfig>,
}

fn default_allowed_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
}

/// One AI client: its token and the tools it may call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpClientConfig {
    /// Its name, as calls are recorded under (1 to 64 of `[A-Za-z0-9_-]`).
    pub name: String,
    /// A reference (`env:NAME` or `file:PATH`) to the bearer token it sends to `/mcp`, at least
    /// 16 bytes. Without one the client can connect only through `plugboard mcp --client NAME`
    /// (stdio), which whoever can read this file can run anyway.
    #[serde(default)]
    pub token: Option<String>,
    /// The actions it may call, as `instance.action` or `instance.*` for all of an instance's.
    pub tools: Vec<String>,
    /// Whether it may call actions that may delete or overwrite: those whose plugin says so,
    /// and those whose plugin says nothing about them. Off by default.
    #[serde(default)]
    pub allow_destructive: bool,
    /// How often it may call tools; unlimited when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// How many of its calls may run at once; a call past it is refused, not queued.
    #[serde(default = "default_client_concurrency")]
    pub max_concurrency: u32,
}

fn default_client_concurrency() -> u32 {
    4
}

/// One entry of a client's `tools`: an instance's action, or all of its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPattern {
    /// The instance id.
    pub instance: String,
    /// The action, or `None` for `*`.
    pub action: Option<String>,
}

impl ToolPattern {
    /// Parses `instance.action` or `instance.*`.
    pub fn parse(text: &str) -> Result<ToolPattern, String> {
        let (instance, action) = text
            .split_once('.')
            .ok_or_else(|| format!("`{text}` is not `instance.action` or `instance.*`"))?;
        if instance.is_empty() || action.is_empty() {
            return Err(format!("`{text}` is not `instance.action` or `instance.*`"));
        }
        let action = (action != "*").then(|| action.to_owned());
        Ok(ToolPattern { instance: instance.to_owned(), action })
    }

    /// Whether it covers `instance`'s `action`.
    pub fn covers(&self, instance: &str, action: &str) -> bool {
        self.instance == instance && self.action.as_deref().is_none_or(|a| a == action)
    }
}

impl McpConfig {
    /// Checks names, tool patterns and limits; `instances` are the configured instance ids.
    pub(crate) fn validate(
        &self,
        instances: &std::collections::BTreeSet<&str>,
    ) -> Result<(), crate::ConfigError> {
        use crate::ConfigError;
        let mut names = std::collections::BTreeSet::new();
        if self.clients.is_empty() {
            return Err(ConfigError::invalid("mcp.client", "at least one client is needed"));
        }
        for (i, client) in self.clients.iter().enumerate() {
            let key = format!("mcp.client[{i}]");
            let name_ok = !client.name.is_empty()
                && client.name.len() <= 64
                && client.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !name_ok {
                return Err(ConfigError::invalid(format!("{key}.name"), "must be 1 to 64 of [A-Za-z0-9_-]"));
            }
            if !names.insert(client.name.as_str()) {
                return Err(ConfigError::invalid(format!("{key}.name"), "the name is used twice"));
            }
            for (j, text) in client.tools.iter().enumerate() {
                let pattern = ToolPattern::parse(text)
                    .map_err(|e| ConfigError::invalid(format!("{key}.tools[{j}]"), e))?;
                if !instances.contains(pattern.instance.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("{key}.tools[{j}]"),
                        format!("no instance named `{}`", pattern.instance),
                    ));
                }
            }
            if let Some(r) = client.rate_limit
                && !r.is_sound()
            {
                return Err(ConfigError::invalid(
                    format!("{key}.rate_limit"),
                    "per_second must be positive and burst at least 1, both finite",
                ));
            }
            if client.max_concurrency == 0 {
                return Err(ConfigError::invalid(format!("{key}.max_concurrency"), "must be at least 1"));
            }
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let ok = origin == "null"
                || origin.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https")
                        && !rest.is_empty()
                        && !rest.contains(['/', '?', '#', '@'])
                });
            if !ok {
                return Err(ConfigError::invalid(
                    format!("mcp.allowed_origins[{i}]"),
                    "an origin is `scheme://host[:port]` (http or https) or `null`",
                ));
            }
        }
        // An empty list would turn rmcp's Host check off altogether.
        if self.allowed_hosts.is_empty() {
            return Err(ConfigError::invalid("mcp.allowed_hosts", "at least one host name is needed"));
        }
        if self.allowed_hosts.iter().any(|h| h.is_empty() || h.contains(['/', ' '])) {
            return Err(ConfigError::invalid("mcp.allowed_hosts", "a host is `name` or `name:port`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_patterns_name_one_action_or_all_of_an_instance() {
        let one = ToolPattern::parse("shop.add-order-tags").unwrap();
        assert!(one.covers("shop", "add-order-tags"));
        assert!(!one.covers("shop", "get-order"));
        assert!(!one.covers("shop2", "add-order-tags"));
        let all = ToolPattern::parse("shop.*").unwrap();
        assert!(all.covers("shop", "anything"));
        assert!(!all.covers("slack", "post-message"));
        for bad in ["shop", ".x", "shop.", ""] {
            assert!(ToolPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
