//! Running a whole configuration: what `plugboard up` does, as a library function, so that
//! embedders, tests and the demo start exactly the same server.

use std::future::Future;
use std::sync::Arc;

use crate::api::{AppState, serve};
use crate::config::Resolved;
use crate::config::StoreBackend;
use crate::pipeline::{Callbacks, Dispatcher, Routes, Scheduler};
use crate::store::{EventStore, SqliteCallLog, SqliteKv, SqliteRecordingLog, SqliteStore, Sweep};
use crate::{Host, HostBuilder};

/// Why a configuration could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened.
    #[error("opening the store {path}: {reason}")]
    Store {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The job callbacks' client could not be built.
    #[error("jobs.callback_allow: {0}")]
    Callbacks(String),
    /// The host could not be built.
    #[error(transparent)]
    Host(#[from] crate::Error),
    /// A plugin did not load.
    #[error(transparent)]
    Load(#[from] crate::LoadError),
    /// A schedule is invalid.
    #[error("schedules: {0}")]
    Schedule(String),
    /// A route or schedule names an action its target does not export.
    #[error("{key}: {reason}")]
    Action {
        /// Where in the configuration, e.g. `route[2].action`.
        key: String,
        /// Why.
        reason: String,
    },
    /// The server failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The MCP server could not start or failed.
    #[error("mcp: {0}")]
    Mcp(String),
}

/// Builds a host whose key-value data and call log live in the configuration's store file, and
/// gives it the configuration's secrets, OAuth2 clients and AI settings (no plugins yet).
pub fn host_for(builder: HostBuilder, resolved: &Resolved) -> Result<Host, RunError> {
    let path = &resolved.store_path;
    let kv = SqliteKv::open(path)
        .map_err(|e| RunError::Store { path: path.display().to_string(), reason: e.to_string() })?;
    host_with(builder, resolved, Arc::new(kv))
}

/// Like [`host_for`], with the plugins' key-value data (and the AI daily budgets kept in it)
/// where the configuration's events are: on NATS, in the cluster's bucket, shared by every
/// node. The call log stays in the node's own file.
pub async fn host_for_store(builder: HostBuilder, resolved: &Resolved) -> Result<Host, RunError> {
    #[cfg(feature = "nats")]
    if let Some(settings) = &resolved.nats {
        let failed = |e: crate::store::StoreError| RunError::Store {
            path: settings.servers.join(", "),
            reason: e.to_string(),
        };
        let kv = crate::store::nats::NatsKv::connect(settings).await.map_err(failed)?;
        return host_with(builder, resolved, Arc::new(kv));
    }
    host_for(builder, resolved)
}

fn host_with(
    builder: HostBuilder,
    resolved: &Resolved,
    kv: Arc<dyn plugboard_runtime::keyvalue::KvStore>,
) -> Result<Host, RunError> {
    let path = &resolved.store_path;
    let failed = |reason: String| RunError::Store { path: path.display().to_string(), reason };
    let calls = SqliteCallLog::open(path, resolved.config.calls.retain).map_err(|e| failed(e.to_string()))?;
    let recordings = &resolved.config.recordings;
    let mut builder = builder
        .fuel_metering(resolved.uses_fuel())
        .kv_store(kv)
        .call_log(Arc::new(calls))
        .max_recording_bytes(usize::try_from(recordings.max_bytes).unwrap_or(usize::MAX));
    // The recordings' file and writer thread only where an instance records.
    if resolved.specs.iter().any(|spec| spec.record.is_some()) {
        let kept = SqliteRecordingLog::open(&SqliteRecordingLog::path_beside(path), recordings.retain)
            .map_err(|e| failed(e.to_string()))?;
        builder = builder.recording_log(Arc::new(kept));
    }
    let host = builder.build()?;
    configure(&host, resolved);
    Ok(host)
}

/// Hands the configuration's secrets, OAuth2 clients and AI settings to `host`.
pub fn configure(host: &Host, resolved: &Resolved) {
    for (name, secret) in &resolved.secrets {
        host.set_secret(name, secret.clone());
    }
    for (name, client) in &resolved.oauth {
        host.set_oauth_client(name, client.clone());
    }
    host.set_ai_settings(resolved.config.ai.clone());
}

/// Checks that every route and schedule that names an action targets a loaded connector that
/// exports it, so a typo fails at start (and in `plugboard check`), not at the first event.
pub fn check_actions(host: &Host, config: &crate::config::Config) -> Result<(), RunError> {
    let wanted = config
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((format!("route[{i}].action"), &r.to, r.action.as_ref()?)))
        .chain(
            config
                .schedules
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("schedule[{i}].action"), &s.to, &s.action)),
        );
    // The actions a plugin's model may call as tools.
    let tools: Vec<(String, String, String)> = config
        .plugins
        .iter()
        .flat_map(|p| {
            p.grants.ai_tools.iter().enumerate().filter_map(move |(i, t)| {
                let pattern = crate::manifest::ToolPattern::parse(t).ok()?;
                Some((format!("plugin[{}].grants.ai_tools[{i}]", p.id), pattern.instance, pattern.action?))
            })
        })
        .collect();
    let wanted = wanted.chain(tools.iter().map(|(key, target, action)| (key.clone(), target, action)));
    for (key, target, action) in wanted {
        let Some(info) = host.plugin(target) else { continue };
        if !info.actions.iter().any(|a| &a.name == action) {
            let exported: Vec<&str> = info.actions.iter().map(|a| a.name.as_str()).collect();
            let has = if exported.is_empty() { "none".to_owned() } else { exported.join(", ") };
            return Err(RunError::Action {
                key,
                reason: format!(
                    "instance `{target}` ({}) has no action `{action}`; it has: {has}",
                    info.name
                ),
            });
        }
    }
    Ok(())
}

/// Loads every plugin of `resolved` into `host`, opens the event store, and serves webhooks,
/// deliveries, schedules, jobs and the admin API on `listener` until `shutdown` completes.
pub async fn run(
    host: &Host,
    resolved: Resolved,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    // Before loading: a file replaced while the plugins load is then seen as changed.
    let stamps: Vec<_> = resolved.specs.iter().map(|s| (file_stamp(&s.wasm), s.clone())).collect();
    load_plugins(host, &resolved).await?;
    let (store, history) = open_events(&resolved).await?;
    let routes = Arc::new(Routes::new(resolved.config.routes.clone()));
    let destinations = resolved.config.jobs.as_ref().map(|j| j.callback_destinations()).unwrap_or_default();
    let callbacks = match resolved.callback_key.clone() {
        Some(secret) => Some(Callbacks::new(secret, destinations).map_err(RunError::Callbacks)?),
        None => None,
    };
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
            .map_err(RunError::Schedule)?;
    let mut state = AppState::builder(host.clone(), store.clone());
    if let Some(mcp) = &resolved.config.mcp {
        state = state.mcp(crate::mcp::McpClients::new(mcp, &resolved.mcp_tokens), mcp.clone());
    }
    let state = state
        .routes(routes)
        .dispatcher(dispatcher.notifier())
        .jobs_token(resolved.jobs_token.clone())
        .admin_token(resolved.admin_token.clone())
        .endpoints(resolved.endpoints)
        .request_timeout(std::time::Duration::from_millis(resolved.config.server.request_timeout_ms))
        .dedup_window_ms(resolved.config.store.dedup_window_secs.saturating_mul(1000))
        .max_body_bytes(resolved.config.server.max_body_bytes)
        .build();
    let watcher = watch_plugin_files(host.clone(), stamps);
    let retention = keep_history_bounded(
        history,
        crate::config::retention(&resolved.config.store),
        std::time::Duration::from_secs(resolved.config.store.retention_interval_secs.max(1)),
    );
    let served = serve(listener, state, shutdown).await;
    watcher.abort();
    retention.abort();
    served?;
    Ok(())
}

/// Loads every plugin of `resolved` into `host` and checks the actions routes and schedules
/// name.
async fn load_plugins(host: &Host, resolved: &Resolved) -> Result<(), RunError> {
    for spec in resolved.specs.clone() {
        let started = std::time::Instant::now();
        tracing::info!(instance = %spec.id, wasm = %spec.wasm.display(), "loading plugin (compiling it unless cached)");
        let info = host.load(spec).await?;
        tracing::info!(
            instance = %info.id, plugin = %info.name, version = %info.version, from_cache = info.compiled_from_cache,
            ms = started.elapsed().as_millis() as u64, "plugin loaded"
        );
    }
    check_actions(host, &resolved.config)
}

/// Loads every plugin of `resolved` into `host` and serves the MCP client named `client` over
/// stdin and stdout until it closes them: what `plugboard mcp` does for AI clients that launch
/// a command. Tool calls are recorded in the configuration's store, as over HTTP; their
/// deliveries are run by the server (`plugboard up`) on the same store.
pub async fn serve_mcp_stdio(host: &Host, resolved: Resolved, client: &str) -> Result<(), RunError> {
    use rmcp::ServiceExt as _;
    let Some(config) = &resolved.config.mcp else {
        return Err(RunError::Mcp("the configuration has no [mcp] section".into()));
    };
    let clients = crate::mcp::McpClients::new(config, &resolved.mcp_tokens);
    let Some(client) = clients.named(client) else {
        let names: Vec<&str> = config.clients.iter().map(|c| c.name.as_str()).collect();
        return Err(RunError::Mcp(format!(
            "no client named `{client}` in [mcp]; there are: {}",
            names.join(", ")
        )));
    };
    load_plugins(host, &resolved).await?;
    let store = open_events_without_deliveries(&resolved).await?;
    let routes = Arc::new(Routes::new(resolved.config.routes.clone()));
    let state = Arc::new(crate::mcp::McpState::new(host.clone(), store, clients).with_routes(routes, None));
    let server = crate::mcp::McpServer::for_client(state, client.clone());
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| RunError::Mcp(e.to_string()))?;
    let ended = running.waiting().await.map_err(|e| RunError::Mcp(e.to_string()));
    // The client hung up; calls still running finish and store their records first.
    client.idle().await;
    ended.map(|_| ())
}

/// The configuration's event store, as the pipeline uses it and as retention sweeps it.
async fn open_events(resolved: &Resolved) -> Result<(Arc<dyn EventStore>, Arc<dyn Sweep>), RunError> {
    match resolved.config.store.backend {
        StoreBackend::Sqlite => {
            let path = resolved.store_path.display().to_string();
            let sqlite = Arc::new(
                SqliteStore::open(&resolved.store_path)
                    .map_err(|e| RunError::Store { path, reason: e.to_string() })?,
            );
            Ok((sqlite.clone(), sqlite))
        }
        #[cfg(feature = "nats")]
        StoreBackend::Nats => {
            let Some(settings) = &resolved.nats else {
                return Err(RunError::Store { path: "nats".into(), reason: "not resolved".into() });
            };
            let store = crate::store::nats::NatsStore::connect(settings, queue_settings(resolved))
                .await
                .map_err(|e| RunError::Store { path: settings.servers.join(", "), reason: e.to_string() })?;
            Ok((store.clone(), store))
        }
        #[cfg(not(feature = "nats"))]
        StoreBackend::Nats => Err(RunError::Store {
            path: "nats".into(),
            reason: "this build of plugboard has no NATS backend (its `nats` feature)".into(),
        }),
    }
}

/// The configuration's event store for a process that appends next to a running server but
/// runs no deliveries (`plugboard mcp`): on SQLite the server keeps the claim journal; on NATS
/// this process neither fans out nor claims.
async fn open_events_without_deliveries(resolved: &Resolved) -> Result<Arc<dyn EventStore>, RunError> {
    match resolved.config.store.backend {
        StoreBackend::Sqlite => {
            let path = resolved.store_path.display().to_string();
            let sqlite = SqliteStore::open_without_deliveries(&resolved.store_path)
                .map_err(|e| RunError::Store { path, reason: e.to_string() })?;
            Ok(Arc::new(sqlite))
        }
        #[cfg(feature = "nats")]
        StoreBackend::Nats => {
            let Some(settings) = &resolved.nats else {
                return Err(RunError::Store { path: "nats".into(), reason: "not resolved".into() });
            };
            let queue = crate::store::nats::QueueSettings {
                routes: Vec::new(),
                fan_out: false,
                ..queue_settings(resolved)
            };
            let store = crate::store::nats::NatsStore::connect(settings, queue)
                .await
                .map_err(|e| RunError::Store { path: settings.servers.join(", "), reason: e.to_string() })?;
            Ok(store)
        }
        #[cfg(not(feature = "nats"))]
        StoreBackend::Nats => Err(RunError::Store {
            path: "nats".into(),
            reason: "this build of plugboard has no NATS backend (its `nats` feature)".into(),
        }),
    }
}

/// How the queue of a node on NATS runs: its lease and the routes it runs deliveries of.
#[cfg(feature = "nats")]
fn queue_settings(resolved: &Resolved) -> crate::store::nats::QueueSettings {
    let config = &resolved.config;
    crate::store::nats::QueueSettings {
        lease: std::time::Duration::from_secs(config.store.nats.lease_secs),
        routes: queue_routes(&config.routes, &config.schedules),
        fan_out: true,
    }
}

/// The routes whose deliveries a node on NATS runs: the configured ones with their concurrency
/// limits (which then hold across the cluster), each schedule's, async jobs' and their
/// callbacks', and webhooks acknowledged on receipt. A delivery of any other route waits in the
/// queue until a node runs that route.
#[cfg(feature = "nats")]
pub fn queue_routes(
    routes: &[crate::pipeline::Route],
    schedules: &[crate::pipeline::Schedule],
) -> Vec<crate::store::nats::QueueRoute> {
    use crate::store::nats::QueueRoute;
    let configured = routes.iter().map(|r| QueueRoute { name: r.name.clone(), concurrency: r.concurrency });
    let schedules = schedules.iter().map(|s| QueueRoute { name: s.route(), concurrency: None });
    let host = [
        crate::store::JOB_ROUTE,
        crate::manifest::pipeline::CALLBACK_ROUTE,
        crate::manifest::pipeline::WEBHOOK_ROUTE,
    ]
    .into_iter()
    .map(|name| QueueRoute { name: name.into(), concurrency: None });
    configured.chain(schedules).chain(host).collect()
}

/// Deletes history past `retention` every `interval`, a chunk at a time until a pass finds less
/// than a chunk, so a long uptime does not grow the store without bound.
fn keep_history_bounded(
    store: Arc<dyn Sweep>,
    retention: crate::store::Retention,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let mut total = crate::store::Swept::default();
            loop {
                match store.sweep(retention).await {
                    Ok(swept) => {
                        total += swept;
                        if swept.events < retention.chunk {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed; trying again later");
                        break;
                    }
                }
                // Let webhooks and deliveries have the writer between chunks.
                tokio::task::yield_now().await;
            }
            if total != crate::store::Swept::default() {
                tracing::info!(
                    events = total.events,
                    deliveries = total.deliveries,
                    attempts = total.attempts,
                    dedup_keys = total.dedup_keys,
                    "retention: deleted history past the store's limits"
                );
            }
        }
    })
}

/// What tells that a file was replaced: its modification time alone does not, since deploys
/// that preserve times (`cp -p`, `rsync -a`, Nix, reproducible tarballs) keep it. The size, the
/// inode and the status-change time (which no one can set) change with every write or rename.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt as _;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        inode: (m.dev(), m.ino()),
        #[cfg(unix)]
        changed: (m.ctime(), m.ctime_nsec()),
    })
}

/// Reloads a plugin when its component file changes on disk (checked every second), with the
/// same grants, limits and config; a file that does not load leaves the running build in place,
/// and a file rewritten with the same content is not reloaded.
fn watch_plugin_files(
    host: Host,
    mut seen: Vec<(Option<FileStamp>, crate::PluginSpec)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            for (stamp, spec) in &mut seen {
                let now = file_stamp(&spec.wasm);
                if now.is_none() || now == *stamp {
                    continue;
                }
                *stamp = now;
                match host.reload_file(spec.clone()).await {
                    Ok(info) => {
                        tracing::info!(instance = %info.id, version = %info.version, sha256 = %info.sha256, "plugin file changed: reloaded")
                    }
                    Err(e) => {
                        tracing::warn!(instance = %spec.id, "plugin file changed but does not load, keeping the running build: {e}")
                    }
                }
            }
        }
    })
}
