//! Running an example flow for real: the stand-ins, and plugboard started in this process from
//! the example's own `plugboard.toml` (pointed at the stand-ins, with the demo's credentials),
//! serving on a loopback port. The demo prints what happens; the tests assert it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use plugboard::Host;
use plugboard::config::Resolved;
use serde_json::Value;

use crate::fakes::{self, Fakes};
use crate::specs::Specs;
use crate::{REVIEWS_HMAC_SECRET, SHOPIFY_WEBHOOK_SECRET, SLACK_SIGNING_SECRET};

/// The admin token of a demo run.
pub const ADMIN_TOKEN: &str = "demo-admin-token";

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the guest components are built (by the `plugboard-tests` build script).
pub fn guest_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("wasm-guests/wasm32-wasip2/guest")
}

/// Writes the example's config for this run: the stand-ins' origin, a free port, a store in
/// `dir`, absolute plugin paths, and the demo credentials as files instead of environment
/// variables. Everything else is the example as written.
pub fn prepare(example: &Path, fakes: &str, dir: &Path, edits: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let mut text =
        std::fs::read_to_string(example).with_context(|| format!("reading {}", example.display()))?;
    for (from, to) in edits {
        text = text.replace(from, to);
    }
    let mut text = text
        .replace("http://127.0.0.1:8788", fakes)
        .replace("127.0.0.1:8787", "127.0.0.1:0")
        .replace("../../target/wasm-guests/wasm32-wasip2/guest", &guest_dir().display().to_string());
    for (var, value) in [
        ("PLUGBOARD_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SHOPIFY_ACCESS_TOKEN", fakes::SHOPIFY_TOKEN),
        ("SHOPIFY_WEBHOOK_SECRET", SHOPIFY_WEBHOOK_SECRET),
        ("SLACK_BOT_TOKEN", fakes::SLACK_TOKEN),
        ("SLACK_SIGNING_SECRET", SLACK_SIGNING_SECRET),
        ("OPENAI_API_KEY", fakes::OPENAI_KEY),
        ("ANTHROPIC_API_KEY", fakes::ANTHROPIC_KEY),
        ("REVIEWS_HMAC_SECRET", REVIEWS_HMAC_SECRET),
    ] {
        std::fs::write(dir.join(var), value)?;
        text = text.replace(&format!("env:{var}"), &format!("file:{var}"));
    }
    let path = dir.join("plugboard.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// An example flow, running.
pub struct Flow {
    /// The stand-ins.
    pub fakes: Fakes,
    /// The host serving the flow.
    pub host: Host,
    /// `http://127.0.0.1:port` of plugboard.
    pub origin: String,
    /// A client for webhooks and the admin API.
    pub client: reqwest::Client,
    dir: PathBuf,
    server: tokio::task::JoinHandle<Result<(), plugboard::run::RunError>>,
}

impl Flow {
    /// Starts the stand-ins and plugboard with `examples/{name}/plugboard.toml`.
    pub async fn start(name: &str) -> anyhow::Result<Flow> {
        Flow::start_with(name, &[]).await
    }

    /// [`Flow::start`] with text replacements applied to the example's config first (a test
    /// that cannot wait for a nightly schedule makes it fire every second).
    pub async fn start_with(name: &str, edits: &[(&str, &str)]) -> anyhow::Result<Flow> {
        let fakes = Fakes::start("127.0.0.1:0".parse()?, Specs::shared()?).await?;
        let dir = std::env::temp_dir().join(format!(
            "plugboard-{name}-{}-{}",
            std::process::id(),
            fakes.addr.port()
        ));
        std::fs::create_dir_all(&dir)?;
        let config = prepare(
            &repo().join("examples").join(name).join("plugboard.toml"),
            &fakes.origin(),
            &dir,
            edits,
        )?;
        let resolved = Resolved::load(&config)?;
        let wanted = resolved.specs.len();
        let builder = Host::builder().compile_cache_dir(repo().join("target/plugboard-cache"));
        let host = plugboard::run::host_for(builder, &resolved)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn({
            let host = host.clone();
            async move { plugboard::run::run(&host, resolved, listener, std::future::pending()).await }
        });
        let flow = Flow { fakes, host, origin, client: reqwest::Client::new(), dir, server };
        let deadline = Instant::now() + Duration::from_secs(120);
        while flow.host.plugins().len() < wanted {
            if flow.server.is_finished() || Instant::now() > deadline {
                bail!("plugboard did not start with examples/{name}/plugboard.toml");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The plugins are loaded; the listener accepts once `run` reaches `serve`.
        while flow.client.get(format!("{}/healthz", flow.origin)).send().await.is_err() {
            if flow.server.is_finished() || Instant::now() > deadline {
                bail!("plugboard did not start serving");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(flow)
    }

    /// The configuration file this run serves (the example's, prepared for the run).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("plugboard.toml")
    }

    /// GETs an admin API path.
    pub async fn admin(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.client.get(format!("{}{path}", self.origin)).bearer_auth(ADMIN_TOKEN).send().await?;
        if !r.status().is_success() {
            bail!("GET {path} answered {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// POSTs a webhook to `/hooks/{instance}` and returns the status and body.
    pub async fn webhook(
        &self,
        instance: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, String)> {
        let mut request = self.client.post(format!("{}/hooks/{instance}", self.origin)).body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// POSTs Shopify's `orders/create` webhook for `sample_order(id, note, total)`, signed with
    /// the demo's secret, to the `shopify` instance; returns the status.
    pub async fn send_order(
        &self,
        id: u64,
        note: &str,
        total: &str,
        webhook_id: &str,
    ) -> anyhow::Result<u16> {
        let body = serde_json::to_vec(&crate::sample_order(id, note, total))?;
        let headers = crate::shopify_headers(SHOPIFY_WEBHOOK_SECRET, "orders/create", webhook_id, &body);
        Ok(self.webhook("shopify", headers, body).await?.0)
    }

    /// The newest event of `kind` whose attribute `key` is `value`.
    pub async fn find_event(&self, kind: &str, key: &str, value: &str) -> anyhow::Result<Option<Value>> {
        let events = self.admin(&format!("/v1/events?kind={kind}&limit=100")).await?;
        Ok(events
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a[0] == key && a[1].as_str() == Some(value))
            })
            .cloned())
    }

    /// Waits (up to 30 s) until `done` holds.
    pub async fn wait_for(&self, what: &str, mut done: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done().await {
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits (up to 30 s) until no delivery is pending, running included: everything the events
    /// so far set off has been delivered or dead-lettered.
    pub async fn settled(&self) -> anyhow::Result<()> {
        self.wait_for("the delivery queue to drain", async || {
            let metrics =
                async { self.client.get(format!("{}/metrics", self.origin)).send().await?.text().await };
            metrics.await.is_ok_and(|m| m.lines().any(|l| l == "plugboard_queue_depth 0"))
        })
        .await
    }

    /// Every request the stand-ins received that breaks the official API descriptions.
    pub fn violations(&self) -> Vec<String> {
        self.fakes
            .state
            .received()
            .iter()
            .flat_map(|r| r.violations.iter().map(move |v| format!("{} {}: {v}", r.provider, r.path)))
            .collect()
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
