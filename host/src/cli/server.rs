//! `plugboard up` and `plugboard check`: run, or only validate, a configuration file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use plugboard::Host;
use plugboard::config::Config;
use plugboard::ingress::server::{Ingress, serve};
use plugboard::pipeline::{Callbacks, Dispatcher, Routes, Scheduler};
use plugboard::store::SqliteStore;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "plugboard.toml")]
    config: PathBuf,
}

/// Validates the file, loads every plugin (compiling it), and stops.
pub async fn check(host: &Host, args: ConfigArgs) -> anyhow::Result<()> {
    let resolved = Config::load(&args.config)?;
    for (name, secret) in &resolved.secrets {
        host.set_secret(name, secret.clone());
    }
    for spec in resolved.specs {
        let info = host.load(spec).await?;
        let effective: Vec<&str> = info.effective.iter().map(|c| c.name()).collect();
        println!("{}: {} {} ok, may use: {}", info.id, info.name, info.version, effective.join(", "));
    }
    println!("{}: ok", args.config.display());
    Ok(())
}

/// Starts the server and runs until interrupted.
pub async fn up(host: &Host, args: ConfigArgs) -> anyhow::Result<()> {
    let resolved = Config::load(&args.config)?;
    for (name, secret) in &resolved.secrets {
        host.set_secret(name, secret.clone());
    }
    for spec in resolved.specs {
        host.load(spec).await?;
    }
    let store = Arc::new(
        SqliteStore::open(&resolved.store_path)
            .with_context(|| format!("opening the event store {}", resolved.store_path.display()))?,
    );
    let routes = Arc::new(Routes::new(resolved.config.routes.clone()));
    let callbacks =
        resolved.callback_key.clone().map(|secret| Callbacks { secret, client: reqwest::Client::new() });
    let dispatcher = Dispatcher::spawn_with_callbacks(
        host.clone(),
        store.clone(),
        routes.clone(),
        resolved.config.retry.clone(),
        resolved.config.delivery_concurrency,
        callbacks,
    );
    let _scheduler =
        Scheduler::spawn(store.clone(), resolved.config.schedules.clone(), dispatcher.notifier())
            .map_err(|e| anyhow::anyhow!(e))?;
    let ingress = Arc::new(Ingress {
        host: host.clone(),
        store,
        routes,
        dispatcher: Some(dispatcher.notifier()),
        jobs_token: resolved.jobs_token.clone(),
        admin_token: resolved.admin_token.clone(),
        endpoints: resolved.endpoints,
        request_timeout: std::time::Duration::from_millis(resolved.config.server.request_timeout_ms),
        dedup_window_ms: resolved.config.store.dedup_window_secs.saturating_mul(1000),
        max_body_bytes: resolved.config.server.max_body_bytes,
    });
    let listen = resolved.config.server.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    eprintln!("plugboard listening on http://{}", listener.local_addr()?);
    serve(listener, ingress, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
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
        id: i64,
    },
    /// Put dead letters back in the queue (they keep their event ids).
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        /// The delivery to replay; every dead letter with --all.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<i64>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
}

fn open_store(args: &ConfigArgs) -> anyhow::Result<SqliteStore> {
    let config = Config::parse(&args.config)?;
    let path = Config::base(&args.config).join(&config.store.path);
    SqliteStore::open(&path).with_context(|| format!("opening the event store {}", path.display()))
}

/// `plugboard dlq ...`, against the store a running server uses (SQLite allows both).
pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List { config, json } => {
            let dead = open_store(&config)?.deliveries("dead", 1000)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&dead)?);
            } else if dead.is_empty() {
                println!("no dead letters");
            } else {
                for d in dead {
                    println!(
                        "{:>6}  event {}  route {} -> {}  after {} attempts: {}",
                        d.id,
                        d.event_id,
                        d.route,
                        d.target,
                        d.attempts,
                        d.last_error.unwrap_or_default()
                    );
                }
            }
        }
        DlqCommand::Show { config, id } => {
            let detail = open_store(&config)?.delivery(id)?.with_context(|| format!("no delivery {id}"))?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
        }
        DlqCommand::Replay { config, id, all } => {
            let n = open_store(&config)?.replay(if all { None } else { id }).await?;
            println!("replayed {n} dead letter(s)");
        }
    }
    Ok(())
}
