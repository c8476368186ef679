//! The host: loading components, and running each invocation in a fresh, limited sandbox.
//!
//! - [`Host`] owns the one [`wasmtime::Engine`], the linker with every host capability, and the
//!   loaded plugin instances.
//! - Each plugin is compiled once (or loaded from the [`compile_cache`]) and pre-linked into an
//!   `InstancePre`; every invocation instantiates it into a new [`wasmtime::Store`] drawn from the
//!   pooling allocator, so no state leaks from one event to the next.
//! - [`invoke`] applies the operator's limits to that store and turns every way a plugin can fail
//!   into an [`InvokeError`](crate::InvokeError).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::Digest as _;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::Connector;
use crate::bindings::types::{Error as WitError, HttpRequest, HttpResponse};
use crate::capabilities::Capability;
use crate::capabilities::kv::{KvStore, MemoryKv};
use crate::compile_cache::CompileCache;
use crate::egress::Caller;
use crate::egress::Egress;
use crate::egress::ai::{AiRouter, AiSettings, TokenUsage};
use crate::egress::calls::{CallLog, MemoryCallLog};
use crate::egress::oauth::OAuthClient;
use crate::egress::secrets::Secret;
use crate::engine::{EngineSettings, EpochTicker};
use crate::error::{InvokeError, LoadError};
use crate::metrics::Metrics;
use crate::{InstanceState, Plugin, PluginInfo, PluginSpec};

/// Builds a [`Host`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let host = plugboard_runtime::Host::builder()
///     .max_memory_mib(256)
///     .compile_cache_dir(std::env::temp_dir().join("plugboard-doc-cache"))
///     .build()
///     .unwrap();
/// assert!(host.plugins().is_empty());
/// # });
/// ```
#[derive(Clone)]
pub struct HostBuilder {
    settings: EngineSettings,
    compile_cache_dir: Option<PathBuf>,
    kv: Option<Arc<dyn KvStore>>,
    calls: Option<Arc<dyn CallLog>>,
    pinned: Vec<(String, Vec<IpAddr>)>,
    default_ai_provider: Option<String>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            settings: EngineSettings {
                max_memory_mib: 512,
                max_live_instances: 512,
                fuel_metering: false,
                epoch_tick: Duration::from_millis(5),
            },
            compile_cache_dir: None,
            kv: None,
            calls: None,
            pinned: Vec::new(),
            default_ai_provider: None,
        }
    }
}

impl HostBuilder {
    /// Caches compiled plugins in `dir`, so that restarts skip compilation.
    pub fn compile_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.compile_cache_dir = Some(dir.into());
        self
    }

    /// The largest memory limit any plugin may be given, in MiB (default 512).
    pub fn max_memory_mib(mut self, mib: u32) -> Self {
        self.settings.max_memory_mib = mib;
        self
    }

    /// How many plugin invocations may be alive at once across the host (default 512).
    pub fn max_live_instances(mut self, n: u32) -> Self {
        self.settings.max_live_instances = n;
        self
    }

    /// Counts wasm instructions so that [`crate::Limits::fuel`] budgets are enforced. Off by
    /// default: it slows every plugin a little.
    pub fn fuel_metering(mut self, on: bool) -> Self {
        self.settings.fuel_metering = on;
        self
    }

    /// The granularity of invocation deadlines (default 5 ms).
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.settings.epoch_tick = tick;
        self
    }

    /// Where the `kv` capability stores data (default: in memory).
    pub fn kv_store(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.kv = Some(kv);
        self
    }

    /// Where outbound calls are recorded (default: the last 10,000, in memory).
    pub fn call_log(mut self, calls: Arc<dyn CallLog>) -> Self {
        self.calls = Some(calls);
        self
    }

    /// Answers `name` with `addrs` instead of asking DNS, for plugins' outbound requests. The
    /// address policy still applies: pinning a name to an internal address does not let a
    /// plugin reach it unless its grant allows that address.
    pub fn pin_dns(mut self, name: &str, addrs: &[IpAddr]) -> Self {
        self.pinned.push((name.to_owned(), addrs.to_vec()));
        self
    }

    /// The AI provider instance that serves `ai` calls of plugins whose grant names none.
    pub fn default_ai_provider(mut self, id: &str) -> Self {
        self.default_ai_provider = Some(id.to_owned());
        self
    }

    /// Creates the engine, the linker and the epoch thread.
    pub fn build(self) -> Result<Host, crate::Error> {
        let engine =
            crate::engine::build_engine(&self.settings).map_err(|e| crate::Error::Engine(e.to_string()))?;
        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| crate::Error::Engine(e.to_string()))?;
        // Both worlds import the same interfaces, so the connector world's linker serves both.
        Connector::add_to_linker::<_, HasSelf<InstanceState>>(&mut linker, |s| s)
            .map_err(|e| crate::Error::Engine(e.to_string()))?;
        let cache = match &self.compile_cache_dir {
            Some(dir) => Some(CompileCache::open(dir, &engine).map_err(|e| crate::Error::Io {
                what: format!("compile cache directory {}", dir.display()),
                source: e,
            })?),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let calls = self.calls.unwrap_or_else(|| Arc::new(MemoryCallLog::new(10_000)));
        let egress = Egress::new(calls, metrics.clone())
            .map_err(|e| crate::Error::Engine(format!("HTTP client: {e}")))?;
        for (name, addrs) in self.pinned {
            egress.pin(&name, addrs);
        }
        let ticker = EpochTicker::start(engine.clone(), self.settings.epoch_tick)
            .map_err(|e| crate::Error::Io { what: "epoch thread".into(), source: e })?;
        Ok(Host {
            inner: Arc::new(HostInner {
                engine,
                linker,
                cache,
                settings: self.settings,
                plugins: RwLock::new(HashMap::new()),
                compiled: std::sync::Mutex::new(HashMap::new()),
                kv: self.kv.unwrap_or_else(|| Arc::new(MemoryKv::default())),
                egress,
                ai: AiRouter::new(metrics.clone()),
                metrics,
                default_ai_provider: RwLock::new(self.default_ai_provider),
                _ticker: ticker,
            }),
        })
    }
}

/// A plugin host: loads plugin components with the limits and grants their operator chose, and
/// invokes them, each invocation in its own sandbox.
///
/// Cloning a `Host` is cheap and shares everything.
///
/// ```
/// use plugboard_runtime::{Capability, Grants, Host, Limits, PluginSpec};
/// # let echo_wasm = plugboard_tests::ECHO; // the echo plugin, built from plugins/echo
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let host = Host::builder().build()?;
/// host.load(
///     PluginSpec::new("echo", echo_wasm)
///         .with_grants(Grants::none().with(Capability::Kv).with(Capability::Config))
///         .with_limits(Limits::default().with_memory_mib(32))
///         .with_config("team", "ops"),
/// )
/// .await?;
/// let answer = host.invoke("echo", "config", &serde_json::json!({})).await?;
/// assert_eq!(answer.output, serde_json::json!({ "team": "ops" }));
///
/// // Not granted, so refused with a contract error the plugin (and you) can act on.
/// let refused = host.invoke("echo", "fetch", &serde_json::json!({ "url": "https://example.com" })).await;
/// assert!(refused.unwrap_err().to_string().contains("denied"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<InstanceState>,
    pub(crate) cache: Option<CompileCache>,
    pub(crate) settings: EngineSettings,
    pub(crate) plugins: RwLock<HashMap<String, Arc<Plugin>>>,
    /// Components compiled by this process, by SHA-256: a second instance of the same plugin
    /// (or a re-load) shares the compiled code instead of compiling it again.
    pub(crate) compiled: std::sync::Mutex<HashMap<String, wasmtime::component::Component>>,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) egress: Egress,
    pub(crate) ai: AiRouter,
    pub(crate) metrics: Arc<Metrics>,
    default_ai_provider: RwLock<Option<String>>,
    _ticker: EpochTicker,
}

impl HostInner {
    pub(crate) fn default_ai_provider(&self) -> Option<String> {
        self.default_ai_provider.read().ok().and_then(|p| p.clone())
    }
}

/// A component file's bytes, or the error naming the file.
async fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path).await.map_err(|source| LoadError::Read { path: path.display().to_string(), source })
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    pub(crate) fn from_inner(inner: Arc<HostInner>) -> Self {
        Host { inner }
    }

    /// Loads the plugin file named by `spec`, replacing any instance with the same id.
    pub async fn load(&self, spec: PluginSpec) -> Result<PluginInfo, LoadError> {
        let bytes = read_component(&spec.wasm).await?;
        self.load_bytes(spec, &bytes).await
    }

    /// Loads a plugin from its component bytes, replacing any instance with the same id.
    pub async fn load_bytes(&self, spec: PluginSpec, bytes: &[u8]) -> Result<PluginInfo, LoadError> {
        self.install(Arc::new(crate::plugin::load(self, spec, bytes).await?))
    }

    fn install(&self, plugin: Arc<Plugin>) -> Result<PluginInfo, LoadError> {
        let info = plugin.info();
        let mut plugins = self.inner.plugins.write().map_err(|_| LoadError::Spec {
            id: info.id.clone(),
            reason: "plugin table lock poisoned".into(),
        })?;
        plugins.insert(info.id.clone(), plugin);
        Ok(info)
    }

    /// Replaces instance `id`'s component with `bytes`, keeping its grants, limits and config.
    /// The swap is atomic: invocations already running finish on the old build, every later
    /// one runs the new build (see [`Invocation::handler`]). A component that does not load
    /// leaves the old one in place.
    pub async fn reload_bytes(&self, id: &str, bytes: &[u8]) -> Result<PluginInfo, LoadError> {
        let current =
            self.get(id).map_err(|e| LoadError::Spec { id: id.to_owned(), reason: e.to_string() })?;
        let spec = PluginSpec {
            id: current.id.clone(),
            wasm: PathBuf::from(crate::plugin::UPLOADED),
            grants: current.grants.clone(),
            limits: current.limits.clone(),
            config: current.config.clone(),
        };
        self.replace(&current, spec, bytes).await
    }

    /// Reloads instance `spec.id` from its file, which changed on disk; as [`Host::reload_bytes`],
    /// with the grants, limits and config of `spec`.
    pub async fn reload_file(&self, spec: PluginSpec) -> Result<PluginInfo, LoadError> {
        let Ok(current) = self.get(&spec.id) else { return self.load(spec).await };
        let bytes = read_component(&spec.wasm).await?;
        let unchanged = hex::encode(sha2::Sha256::digest(&bytes)) == current.info().sha256;
        if unchanged && spec.grants == current.grants && spec.limits == current.limits {
            return Ok(current.info());
        }
        self.replace(&current, spec, &bytes).await
    }

    async fn replace(
        &self,
        current: &Plugin,
        spec: PluginSpec,
        bytes: &[u8],
    ) -> Result<PluginInfo, LoadError> {
        let mut plugin = crate::plugin::load(self, spec, bytes).await?;
        if plugin.kind != current.kind {
            // Every route and webhook of the instance expects the kind it has: a component of
            // another kind would load, then fail every call.
            return Err(LoadError::Invalid {
                id: current.id.clone(),
                reason: format!(
                    "it is {}, but instance `{}` is {}; a reload keeps the kind",
                    plugin.kind.article_name(),
                    current.id,
                    current.kind.article_name()
                ),
            });
        }
        if plugin.limits == current.limits && plugin.grants == current.grants {
            // Still one instance: invocations finishing on the old build and those starting on
            // the new one share its concurrency slots, outbound request slots and buckets.
            plugin.slots = current.slots.clone();
            plugin.egress = current.egress.clone();
        }
        self.install(Arc::new(plugin))
    }

    /// Compiles a component and reads its metadata without installing it and without granting
    /// it anything: what `plugboard plugin inspect` shows before an operator installs a plugin.
    pub async fn inspect(&self, path: &Path) -> Result<PluginInfo, LoadError> {
        let id =
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
        let spec = PluginSpec::new(&id, path);
        let bytes = read_component(path).await?;
        Ok(crate::plugin::load(self, spec, &bytes).await?.info())
    }

    /// Removes an instance; invocations already running finish on it.
    pub fn unload(&self, id: &str) -> bool {
        self.inner.plugins.write().map(|mut p| p.remove(id).is_some()).unwrap_or(false)
    }

    /// Every loaded instance, sorted by id.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let plugins = match self.inner.plugins.read() {
            Ok(p) => p,
            Err(_) => return Vec::new(),
        };
        let mut infos: Vec<PluginInfo> = plugins.values().map(|p| p.info()).collect();
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        infos
    }

    /// The instance `id`, if loaded.
    pub fn plugin(&self, id: &str) -> Option<PluginInfo> {
        self.get(id).ok().map(|p| p.info())
    }

    /// Holds secret `name` for plugins granted it; replaces any secret of that name.
    pub fn set_secret(&self, name: &str, secret: Secret) {
        self.inner.egress.set_secret(name, secret);
    }

    /// Runs OAuth2 client `name` for plugins granted it; replaces any client of that name.
    pub fn set_oauth_client(&self, name: &str, client: OAuthClient) {
        self.inner.egress.set_oauth(name, client);
    }

    /// Sets how AI answers are cached (and empties the cache).
    pub fn set_ai_settings(&self, settings: AiSettings) {
        self.inner.ai.configure(settings);
    }

    /// AI token usage so far, by plugin and provider.
    pub fn ai_usage(&self) -> Vec<(String, String, TokenUsage)> {
        self.inner.ai.usage(self.inner.kv.as_ref())
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The outbound call log.
    pub fn calls(&self) -> &Arc<dyn CallLog> {
        self.inner.egress.calls()
    }

    /// Sends `request` as instance `id` would through its `http` capability: same grant,
    /// secrets, limits, rate limits, retries and call log, with the instance's deadline. For
    /// embedders that call APIs on a plugin's behalf, and for measuring the mediation itself.
    pub async fn send_as(&self, id: &str, request: HttpRequest) -> Result<HttpResponse, WitError> {
        let plugin = self.get(id).map_err(InvokeError::into_wit_error)?;
        if !plugin.effective.contains(&Capability::Http) {
            return Err(crate::capabilities::denied(Capability::Http, id));
        }
        let caller = Caller {
            instance: &plugin.id,
            event_id: None,
            grants: &plugin.grants,
            limits: &plugin.limits,
            state: &plugin.egress,
            deadline: tokio::time::Instant::now() + plugin.limits.timeout(),
        };
        self.inner.egress.send(&caller, request).await
    }

    /// Sets the AI provider instance that serves plugins whose grant names none.
    pub fn set_default_ai_provider(&self, id: Option<&str>) {
        if let Ok(mut p) = self.inner.default_ai_provider.write() {
            *p = id.map(str::to_owned);
        }
    }

    pub(crate) fn get(&self, id: &str) -> Result<Arc<Plugin>, InvokeError> {
        self.inner
            .plugins
            .read()
            .map_err(|_| InvokeError::Internal("plugin table lock poisoned".into()))?
            .get(id)
            .cloned()
            .ok_or_else(|| InvokeError::UnknownInstance(id.to_owned()))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}
