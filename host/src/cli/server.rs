//! `plugboard up` and `plugboard check`: run, or only validate, a configuration file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use plugboard::Host;
use plugboard::config::Config;
use plugboard::ingress::server::{Ingress, router};
use plugboard::pipeline::{Dispatcher, Routes};
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
    for spec in resolved.specs {
        host.load(spec).await?;
    }
    let store = Arc::new(
        SqliteStore::open(&resolved.store_path)
            .with_context(|| format!("opening the event store {}", resolved.store_path.display()))?,
    );
    let routes = Arc::new(Routes::new(resolved.config.routes.clone()));
    let dispatcher = Dispatcher::spawn(
        host.clone(),
        store.clone(),
        routes.clone(),
        resolved.config.retry.clone(),
        resolved.config.delivery_concurrency,
    );
    let ingress = Arc::new(Ingress {
        host: host.clone(),
        store,
        routes,
        dispatcher: Some(dispatcher.notifier()),
        verifiers: resolved.verifiers,
        dedup_window_ms: resolved.config.store.dedup_window_secs.saturating_mul(1000),
        max_body_bytes: resolved.config.server.max_body_bytes,
    });
    let listen = resolved.config.server.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    eprintln!("plugboard listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(ingress))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
