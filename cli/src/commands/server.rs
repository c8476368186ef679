//! `plugboard up` and `plugboard check`: run, or only validate, a configuration file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use plugboard::HostBuilder;
use std::sync::Arc;

use plugboard::config::{Config, Resolved, StoreBackend};
use plugboard::egress::calls::{CallFilter, CallLog};
use plugboard::store::nats::{NatsStore, QueueSettings};
use plugboard::store::{DeliveryId, EventStore, SqliteCallLog, SqliteStore};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "plugboard.toml")]
    config: PathBuf,
}

impl ConfigArgs {
    /// The configuration file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.config
    }
}

/// Validates the file, loads every plugin (compiling it), and stops.
pub async fn check(builder: HostBuilder, args: ConfigArgs) -> anyhow::Result<()> {
    let resolved = Resolved::load(&args.config)?;
    let host = &builder.fuel_metering(resolved.uses_fuel()).build()?;
    plugboard::run::configure(host, &resolved);
    for spec in resolved.specs.clone() {
        let started = std::time::Instant::now();
        eprint!("loading {} ... ", spec.id);
        let info = host.load(spec).await?;
        let how = if info.compiled_from_cache { "from compiled code" } else { "compiled" };
        eprintln!("{how} in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
        let effective: Vec<&str> = info.effective.iter().map(|c| c.name()).collect();
        say!("{}: {} {} ok, may use: {}", info.id, info.name, info.version, effective.join(", "));
    }
    plugboard::run::check_actions(host, &resolved.config)?;
    say!("{}: ok", args.config.display());
    Ok(())
}

/// Starts the server and runs until interrupted. Plugins' key-value data live where the events
/// do (the SQLite file, or the NATS cluster); the outbound call log in the node's file.
pub async fn up(builder: HostBuilder, args: ConfigArgs) -> anyhow::Result<()> {
    let resolved = Resolved::load(&args.config)?;
    let host = plugboard::run::host_for_store(builder, &resolved).await?;
    let listen = resolved.config.server.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(address = %format!("http://{}", listener.local_addr()?), "plugboard listening");
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "shutting down: accepting no new requests, finishing those in flight"
        );
        let _ = stopping.send(());
    };
    let grace_over = async move {
        if stopped.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        ran = plugboard::run::run(&host, resolved, listener, shutdown) => ran?,
        () = grace_over => tracing::warn!("the grace period ended with requests still in flight; they will be redelivered"),
    }
    flush_logs(&host).await;
    tracing::info!("plugboard stopped");
    Ok(())
}

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The `[[mcp.client]]` to serve: its tools and limits apply.
    #[arg(long)]
    client: String,
}

/// Serves one MCP client over stdio until it hangs up. Only JSON-RPC goes to stdout; logs go
/// to stderr.
pub async fn mcp(builder: HostBuilder, args: McpArgs) -> anyhow::Result<()> {
    let resolved = Resolved::load(&args.config.config)?;
    let host = plugboard::run::host_for_store(builder, &resolved).await?;
    plugboard::run::serve_mcp_stdio(&host, resolved, &args.client).await?;
    flush_logs(&host).await;
    Ok(())
}

/// The outbound call log and the recordings write in the background: keep what they were handed.
async fn flush_logs(host: &plugboard::Host) {
    let (calls, recordings) = (host.calls().clone(), host.recordings().clone());
    tokio::task::spawn_blocking(move || {
        calls.flush(Duration::from_secs(5));
        recordings.flush(Duration::from_secs(5));
    })
    .await
    .ok();
}

/// How long in-flight requests may take to finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what systemd, Docker and Kubernetes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery: its event, and every attempt with its error.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// The delivery's id (from `dlq list`).
        id: String,
    },
    /// Put dead letters back in the queue (they keep their event ids).
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        /// The delivery to replay; every dead letter with --all.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// The event store `args` configures, to read: on SQLite opened read-only (listings change
/// nothing in a store a running server uses: no upgrade, no claim journal); on NATS connected
/// as an operator's client (it queues and runs nothing).
pub(crate) async fn open_store(args: &ConfigArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    open_with(args, SqliteStore::open_read_only).await
}

/// The event store `args` configures, to write (`dlq replay`).
async fn open_store_for_writing(args: &ConfigArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    open_with(args, SqliteStore::open_without_deliveries).await
}

async fn open_with(
    args: &ConfigArgs,
    open: fn(&std::path::Path) -> Result<SqliteStore, plugboard::store::StoreError>,
) -> anyhow::Result<Arc<dyn EventStore>> {
    let config = Config::parse(&args.config)?;
    let base = Config::base(&args.config);
    match config.store.backend {
        StoreBackend::Sqlite => {
            let path = base.join(&config.store.path);
            let store = open(&path).with_context(|| format!("opening the event store {}", path.display()))?;
            Ok(Arc::new(store))
        }
        StoreBackend::Nats => {
            let settings = plugboard::config::nats_settings(&config, &base)?;
            let queue = QueueSettings {
                lease: Duration::from_secs(config.store.nats.lease_secs),
                routes: Vec::new(),
                fan_out: false,
            };
            let store = NatsStore::connect(&settings, queue).await.with_context(|| {
                format!("connecting to the NATS store at {}", settings.servers.join(", "))
            })?;
            Ok(store)
        }
    }
}

/// `plugboard dlq ...`, against the store a running server uses (SQLite allows both).
pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List { config, json } => {
            // Every dead letter, a page at a time.
            let store = open_store(&config).await?;
            let mut dead = Vec::new();
            loop {
                let before = dead.last().map(|d: &plugboard::store::DeliveryRecord| d.id.clone());
                let page = store.deliveries(plugboard::store::DeliveryStatus::Dead, before, 1_000).await?;
                let full = page.len() == 1_000;
                dead.extend(page);
                if !full {
                    break;
                }
            }
            if json {
                say!("{}", serde_json::to_string_pretty(&dead)?);
            } else if dead.is_empty() {
                say!("no dead letters");
            } else {
                for d in dead {
                    say!(
                        "{:>6}  event {}  route {} -> {}  after {} attempts: {}",
                        d.id.as_str(),
                        d.event_id,
                        d.route,
                        d.target,
                        d.attempts,
                        plugboard::printable(&d.last_error.unwrap_or_default())
                    );
                }
            }
        }
        DlqCommand::Show { config, id } => {
            let detail = open_store(&config)
                .await?
                .delivery(DeliveryId::new(id.as_str()))
                .await?
                .with_context(|| format!("no delivery {}", plugboard::printable(&id)))?;
            say!("{}", serde_json::to_string_pretty(&detail)?);
        }
        DlqCommand::Replay { config, id, all } => {
            let id = if all { None } else { id.map(DeliveryId::new) };
            let n = open_store_for_writing(&config).await?.replay(id).await?;
            say!("replayed {n} dead letter(s)");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CallsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only this instance's calls.
    #[arg(long)]
    instance: Option<String>,
    /// Only calls to this host name.
    #[arg(long)]
    host: Option<String>,
    /// Only answers with this status.
    #[arg(long)]
    status: Option<u16>,
    /// Only this outcome: ok, denied, rate-limited, timeout or failed.
    #[arg(long)]
    outcome: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `plugboard calls`: the outbound call log of the store a server uses.
pub async fn calls(args: CallsArgs) -> anyhow::Result<()> {
    let config = Config::parse(&args.config.config)?;
    let path = Config::base(&args.config.config).join(&config.store.path);
    let log = SqliteCallLog::open(&path, config.calls.retain)
        .with_context(|| format!("opening the call log in {}", path.display()))?;
    let filter = CallFilter {
        instance: args.instance,
        host: args.host,
        status: args.status,
        outcome: args.outcome,
        limit: Some(args.limit),
    };
    let calls = log.query(&filter);
    if args.json {
        say!("{}", serde_json::to_string_pretty(&calls)?);
        return Ok(());
    }
    if calls.is_empty() {
        say!("no outbound calls recorded");
    }
    for c in calls {
        let when = chrono::DateTime::from_timestamp_millis(c.at_ms as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        let status = c.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        say!(
            "{when}  {:<16} {:<6} {}{}  {status} {:<12} {:>8.1} ms  attempt {}{}",
            c.instance,
            c.method,
            c.destination,
            c.path,
            c.outcome,
            c.latency_us as f64 / 1000.0,
            c.attempt,
            c.error.map(|e| format!("  ({e})")).unwrap_or_default()
        );
    }
    Ok(())
}
