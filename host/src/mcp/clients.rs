//! The AI clients `[[mcp.client]]` names: how each is recognised, what it may call, and the
//! limits its calls run within. A client's limits are its own: one busy agent cannot use up
//! another's.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::manifest::{McpConfig, ToolPattern};
use crate::rate_limit::Bucket;

/// One AI client, resolved: its token read, its patterns parsed, its limits ready.
pub struct McpClient {
    /// Its name, as calls are recorded under.
    pub name: String,
    /// The bearer token it sends to `/mcp`; none: stdio only.
    token: Option<Vec<u8>>,
    /// The actions it may call.
    tools: Vec<ToolPattern>,
    /// Whether it may call destructive actions.
    pub allow_destructive: bool,
    /// Its call rate.
    rate: Option<Bucket>,
    /// Its calls running now.
    slots: Arc<Semaphore>,
    /// How many may run at once.
    max_concurrency: u32,
}

/// Why a client's call may not start now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Over its rate: retry after this long.
    RateLimited(std::time::Duration),
    /// As many calls as it may run at once are running.
    Busy(u32),
}

impl McpClient {
    /// Whether it may call `instance`'s `action` by name (the destructive check is apart).
    pub fn may_call(&self, instance: &str, action: &str) -> bool {
        self.tools.iter().any(|p| p.covers(instance, action))
    }

    /// Waits until none of its calls is running (each records itself before it ends).
    pub async fn idle(&self) {
        let _all = self.slots.acquire_many(self.max_concurrency).await;
    }

    /// Takes one request from its rate and one of its slots, held until the permit drops.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        let permit =
            self.slots.clone().try_acquire_owned().map_err(|_| Refusal::Busy(self.max_concurrency))?;
        if let Some(bucket) = &self.rate {
            bucket.take().map_err(Refusal::RateLimited)?;
        }
        Ok(permit)
    }
}

/// Every configured client.
#[derive(Default)]
pub struct McpClients {
    clients: Vec<Arc<McpClient>>,
}

impl McpClients {
    /// The clients of `config`, with `tokens` (client name to token bytes) already read.
    pub fn new(config: &McpConfig, tokens: &std::collections::BTreeMap<String, Vec<u8>>) -> McpClients {
        let clients = config
            .clients
            .iter()
            .map(|c| {
                Arc::new(McpClient {
                    name: c.name.clone(),
                    token: tokens.get(&c.name).cloned(),
                    // Checked by `Config::validate`: every pattern parses.
                    tools: c.tools.iter().filter_map(|t| ToolPattern::parse(t).ok()).collect(),
                    allow_destructive: c.allow_destructive,
                    rate: c.rate_limit.map(Bucket::new),
                    slots: Arc::new(Semaphore::new(c.max_concurrency as usize)),
                    max_concurrency: c.max_concurrency,
                })
            })
            .collect();
        McpClients { clients }
    }

    /// The client named `name`.
    pub fn named(&self, name: &str) -> Option<Arc<McpClient>> {
        self.clients.iter().find(|c| c.name == name).cloned()
    }

    /// The client whose token is `given`. Every token is compared, as SHA-256 digests (of one
    /// length, so not even a token's length shows) in constant time, so the time taken does
    /// not tell which one was nearly right.
    pub fn by_token(&self, given: &[u8]) -> Option<Arc<McpClient>> {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let given = Sha256::digest(given);
        let mut found = None;
        for client in &self.clients {
            if let Some(token) = &client.token
                && bool::from(Sha256::digest(token).ct_eq(&given))
            {
                found = Some(client.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(extra: &str) -> McpClients {
        let text = format!(
            r#"
            [[plugin]]
            id = "shop"
            wasm = "x.wasm"
            [mcp]
            [[mcp.client]]
            name = "agent"
            token = "env:X"
            tools = ["shop.get-order"]
            max_concurrency = 1
            {extra}
            "#
        );
        let config = crate::manifest::Config::from_toml(&text, "t").unwrap();
        config.validate().unwrap();
        let tokens = [("agent".to_owned(), b"0123456789abcdef".to_vec())].into();
        McpClients::new(config.mcp.as_ref().unwrap(), &tokens)
    }

    #[test]
    fn a_client_is_known_by_its_whole_token_only() {
        let all = clients("");
        assert_eq!(all.by_token(b"0123456789abcdef").unwrap().name, "agent");
        for wrong in [&b""[..], b"0123456789abcde", b"0123456789abcdefg", b"0123456789abcdeF"] {
            assert!(all.by_token(wrong).is_none(), "{wrong:?}");
        }
        let agent = all.named("agent").unwrap();
        assert!(agent.may_call("shop", "get-order"));
        assert!(!agent.may_call("shop", "add-order-note"));
    }

    #[test]
    fn a_call_past_the_concurrency_or_the_rate_is_refused_not_queued() {
        let agent = clients("rate_limit = { per_second = 0.001, burst = 2 }").named("agent").unwrap();
        let first = agent.admit().unwrap();
        assert_eq!(agent.admit().unwrap_err(), Refusal::Busy(1));
        drop(first);
        let _second = agent.admit().unwrap();
        drop(_second);
        assert!(matches!(agent.admit().unwrap_err(), Refusal::RateLimited(_)));
    }
}
