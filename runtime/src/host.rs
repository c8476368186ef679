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
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{Linker, LinkerInstance};

use crate::bindings::types::ChatRequest;
use crate::bindings::types::{Error as WitError, HttpRequest, HttpResponse};
use crate::capabilities::Capability;
use crate::capabilities::ai::{AiProviders, Completion};
use crate::capabilities::kv::{KvStore, MemoryKv};
use crate::compile_cache::CompileCache;
use crate::egress::Caller;
use crate::egress::Egress;
use crate::egress::ai::{AiRouter, AiSettings, TokenUsage};
use crate::egress::calls::{CallLog, MemoryCallLog};
use crate::egress::intercept::OutboundInterceptor;
use crate::egress::oauth::OAuthClient;
use crate::egress::secrets::Secret;
use crate::engine::{EngineSettings, EpochTicker};
use crate::error::InvokeError;
use crate::instance::{InstanceState, Plugin};
use crate::metrics::Metrics;
use crate::pool::KeptBudget;
use crate::recording::{MemoryRecordingLog, RecordingLog};
use crate::shared::Shared;
use crate::spec::PluginInfo;

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
    recordings: Option<Arc<dyn RecordingLog>>,
    max_recording_bytes: usize,
    pinned: Vec<(String, Vec<IpAddr>)>,
    default_ai_provider: Option<String>,
    interceptor: Option<Arc<dyn OutboundInterceptor>>,
    imports: Vec<(String, Arc<AddImports>)>,
}

/// Defines the functions of one of an embedder's own interfaces.
type AddImports = dyn Fn(&mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> + Send + Sync;

/// The namespaces of the interfaces the host provides; an embedder may not add to them.
const HOST_NAMESPACES: [&str; 2] = ["wasi:", "plugboard:"];

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            settings: EngineSettings {
                max_memory_mib: 512,
                max_live_instances: 512,
                fuel_metering: false,
                epoch_tick: Duration::from_millis(5),
                reset_dirty_pages_only: true,
            },
            compile_cache_dir: None,
            kv: None,
            calls: None,
            recordings: None,
            max_recording_bytes: 1 << 20,
            pinned: Vec::new(),
            default_ai_provider: None,
            interceptor: None,
            imports: Vec::new(),
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

    /// Where recorded invocations go (default: the last 100, in memory). Only instances whose
    /// spec asks for it ([`PluginSpec::with_record`](crate::PluginSpec::with_record)) record.
    pub fn recording_log(mut self, recordings: Arc<dyn RecordingLog>) -> Self {
        self.recordings = Some(recordings);
        self
    }

    /// The largest recording kept, in bytes of JSON (default 1 MiB); a larger one is dropped
    /// and counted in `plugboard_recordings_dropped_total`.
    pub fn max_recording_bytes(mut self, bytes: usize) -> Self {
        self.max_recording_bytes = bytes;
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

    /// Lets `interceptor` see, and answer if it wants, every outbound request plugins send once
    /// their grant admitted it (see [`crate::egress::intercept`]).
    pub fn outbound_interceptor(mut self, interceptor: Arc<dyn OutboundInterceptor>) -> Self {
        self.interceptor = Some(interceptor);
        self
    }

    /// Adds interface `name` (`acme:crm/lookup`), defined by `add`, to the linker every plugin
    /// is instantiated with: the embedder's own imports. WASI and plugboard's interfaces
    /// (`wasi:*`, `plugboard:*`, any version) are the host's, and [`HostBuilder::build`] refuses
    /// to let `add` define or replace them. A plugin that imports the interface loads; one that
    /// imports something nobody added is refused when it loads.
    ///
    /// No grant covers these imports: they are the embedder's to guard. A function that should
    /// not serve every plugin checks [`InstanceState::instance`], and one that acts refuses while
    /// [`InstanceState::loading`] (the component's metadata is read in a sandbox before any
    /// grant applies).
    ///
    /// ```
    /// use plugboard_runtime::wasmtime::StoreContextMut;
    /// use plugboard_runtime::{Host, InstanceState};
    ///
    /// let host = Host::builder()
    ///     .link_instance("acme:crm/lookup", |lookup| {
    ///         lookup.func_wrap(
    ///             "customer-tier",
    ///             |store: StoreContextMut<'_, InstanceState>, (email,): (String,)| {
    ///                 let state = store.data();
    ///                 let tier = match (state.instance(), state.loading()) {
    ///                     ("crm", false) if email.ends_with("@bigco.example") => "gold",
    ///                     ("crm", false) => "standard",
    ///                     _ => "unknown",
    ///                 };
    ///                 Ok((tier.to_owned(),))
    ///             },
    ///         )
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # drop(host);
    /// ```
    pub fn link_instance(
        mut self,
        name: &str,
        add: impl Fn(&mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.imports.push((name.to_owned(), Arc::new(add)));
        self
    }

    /// Creates the engine, the linker and the epoch thread.
    pub fn build(mut self) -> Result<Host, crate::Error> {
        if crate::engine::swap_may_take_pages() {
            self.settings.reset_dirty_pages_only = false;
            tracing::warn!(
                "swap is on for this process: each fresh plugin instance resets its whole memory, \
                 which is slower than resetting only the pages the last instance dirtied (that \
                 could miss pages in swap, in this wasmtime); turn swap off for plugboard's \
                 cgroup (systemd: MemorySwapMax=0) for the faster reset"
            );
        }
        let engine =
            crate::engine::build_engine(&self.settings).map_err(|e| crate::Error::Engine(e.to_string()))?;
        let mut linker: Linker<InstanceState> = Linker::new(&engine);
        // Both worlds import the same interfaces, so one linker serves both.
        crate::instance::add_to_linker(&mut linker).map_err(|e| crate::Error::Engine(e.to_string()))?;
        for (name, add) in &self.imports {
            let refused =
                |why: String| crate::Error::Engine(format!("the embedder's import `{name}`: {why}"));
            if HOST_NAMESPACES.iter().any(|ns| name.to_ascii_lowercase().trim_start().starts_with(ns)) {
                return Err(refused("WASI and plugboard interfaces are the host's".into()));
            }
            let mut instance = linker.instance(name).map_err(|e| refused(format!("{e:#}")))?;
            add(&mut instance).map_err(|e| refused(format!("{e:#}")))?;
        }
        let cache = match &self.compile_cache_dir {
            Some(dir) => Some(CompileCache::open(dir, &engine).map_err(|e| crate::Error::Io {
                what: format!("compile cache directory {}", dir.display()),
                source: e,
            })?),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let calls = self.calls.unwrap_or_else(|| Arc::new(MemoryCallLog::new(10_000)));
        let kv = self.kv.unwrap_or_else(|| Arc::new(MemoryKv::default()));
        let egress = Egress::new(calls, kv.clone(), metrics.clone(), self.interceptor)
            .map_err(|e| crate::Error::Engine(format!("HTTP client: {e}")))?;
        for (name, addrs) in self.pinned {
            egress.pin(&name, addrs);
        }
        let ticker = EpochTicker::start(engine.clone(), self.settings.epoch_tick)
            .map_err(|e| crate::Error::Io { what: "epoch thread".into(), source: e })?;
        let kept = KeptBudget::new(self.settings.max_live_instances as usize / 2);
        Ok(Host {
            inner: Arc::new_cyclic(|host| HostInner {
                engine,
                linker,
                cache,
                settings: self.settings,
                plugins: RwLock::new(HashMap::new()),
                compiled: std::sync::Mutex::new(HashMap::new()),
                shared: Arc::new(Shared {
                    kv,
                    egress,
                    ai: AiRouter::new(metrics.clone()),
                    metrics,
                    default_ai_provider: RwLock::new(self.default_ai_provider),
                    providers: Arc::new(HostProviders(host.clone())),
                    recordings: self.recordings.unwrap_or_else(|| Arc::new(MemoryRecordingLog::new(100))),
                    max_recording_bytes: self.max_recording_bytes,
                }),
                kept,
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
    pub(crate) shared: Arc<Shared>,
    /// Instances kept for reuse across every plugin: at most half the engine's instance slots.
    pub(crate) kept: Arc<KeptBudget>,
    _ticker: EpochTicker,
}

impl Drop for HostInner {
    /// Kept instances refer to their plugins: retired here, or they would outlive the host.
    fn drop(&mut self) {
        let plugins = self.plugins.get_mut().map(std::mem::take).unwrap_or_default();
        for plugin in plugins.values() {
            plugin.retire();
        }
    }
}

/// The host runs provider instances for the `ai` capability. It holds the host weakly: the
/// host owns what instances share, and a provider call after the host is gone fails cleanly.
struct HostProviders(Weak<HostInner>);

impl AiProviders for HostProviders {
    fn complete(&self, provider: &str, request: ChatRequest, event_id: Option<String>) -> Completion {
        let host = self.0.upgrade().map(Host::from_inner);
        let provider = provider.to_owned();
        Box::pin(async move {
            let host = host.ok_or_else(|| WitError::Internal("the host is shutting down".into()))?;
            host.complete_for_event(&provider, request, event_id)
                .await
                .map(|done| done.output)
                .map_err(|e| e.into_wit_error())
        })
    }

    fn complete_with_tools(
        &self,
        provider: &str,
        request: crate::bindings::types::ToolsRequest,
        event_id: Option<String>,
    ) -> crate::capabilities::ai::ToolsCompletion {
        let host = self.0.upgrade().map(Host::from_inner);
        let provider = provider.to_owned();
        Box::pin(async move {
            let host = host.ok_or_else(|| WitError::Internal("the host is shutting down".into()))?;
            host.complete_with_tools_for_event(&provider, request, event_id)
                .await
                .map(|done| done.output)
                .map_err(|e| e.into_wit_error())
        })
    }

    fn action(&self, instance: &str, action: &str) -> Option<crate::capabilities::ai::ToolTarget> {
        let host = Host::from_inner(self.0.upgrade()?);
        let info = host.plugin(instance).filter(|p| p.kind == crate::PluginKind::Connector)?;
        let a = info.actions.into_iter().find(|a| a.name == action)?;
        Some(crate::capabilities::ai::ToolTarget {
            destructive: crate::spec::ActionHints::is_destructive(a.hints.as_ref()),
            description: a.description,
            input_schema: a.input_schema,
        })
    }

    fn run_action(
        &self,
        instance: &str,
        action: &str,
        input: serde_json::Value,
        event_id: Option<String>,
    ) -> crate::capabilities::ai::ActionRun {
        let host = self.0.upgrade().map(Host::from_inner);
        let (instance, action) = (instance.to_owned(), action.to_owned());
        Box::pin(async move {
            let host = host.ok_or_else(|| WitError::Internal("the host is shutting down".into()))?;
            // The model sees a tool's own error; of the host's reasons (a trap, its fuel), only
            // the kind: a backtrace is the operator's, not the model provider's.
            let done = host.invoke_for_event(&instance, &action, &input, event_id.as_deref()).await.map_err(
                |e| match e {
                    crate::InvokeError::Plugin(e) => e,
                    crate::InvokeError::Timeout(_) => {
                        WitError::Timeout("the tool did not answer in time".into())
                    }
                    other => WitError::Internal(format!("the tool failed ({})", other.kind())),
                },
            )?;
            Ok((done.output.to_string(), done.emitted))
        })
    }
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    pub(crate) fn from_inner(inner: Arc<HostInner>) -> Self {
        Host { inner }
    }

    /// Removes an instance; invocations already running finish on it.
    pub fn unload(&self, id: &str) -> bool {
        let removed = self.inner.plugins.write().ok().and_then(|mut p| p.remove(id));
        removed.inspect(|plugin| plugin.retire()).is_some()
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

    /// Which build instance `id` runs now (`name@version sha256:<12 hex>`, as attempts record
    /// it): [`PluginInfo::handler`] without copying the rest of the info (once per delivery).
    pub fn build_of(&self, id: &str) -> Option<String> {
        self.get(id).ok().map(|p| p.handler())
    }

    /// Holds secret `name` for plugins granted it; replaces any secret of that name.
    pub fn set_secret(&self, name: &str, secret: Secret) {
        self.inner.shared.egress.set_secret(name, secret);
    }

    /// Runs OAuth2 client `name` for plugins granted it; replaces any client of that name.
    pub fn set_oauth_client(&self, name: &str, client: OAuthClient) {
        self.inner.shared.egress.set_oauth(name, client);
    }

    /// Sets how AI answers are cached (and empties the cache).
    pub fn set_ai_settings(&self, settings: AiSettings) {
        self.inner.shared.ai.configure(settings);
    }

    /// AI token usage so far, by plugin and provider.
    pub async fn ai_usage(&self) -> Vec<(String, String, TokenUsage)> {
        self.inner.shared.ai.usage(self.inner.shared.kv.as_ref()).await
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// The outbound call log.
    pub fn calls(&self) -> &Arc<dyn CallLog> {
        self.inner.shared.egress.calls()
    }

    /// Where recorded invocations go.
    pub fn recordings(&self) -> &Arc<dyn RecordingLog> {
        &self.inner.shared.recordings
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
        self.inner.shared.egress.send(&caller, request).await
    }

    /// Sets the AI provider instance that serves plugins whose grant names none.
    pub fn set_default_ai_provider(&self, id: Option<&str>) {
        if let Ok(mut p) = self.inner.shared.default_ai_provider.write() {
            *p = id.map(str::to_owned);
        }
    }

    /// Whether instance `id` has a fresh instance prepared ahead of its next invocation now
    /// (`prepare_ahead`): false while one is being made, after one served, and for instances
    /// without it.
    pub fn has_prepared_instance(&self, id: &str) -> bool {
        self.get(id).is_ok_and(|plugin| plugin.prepared.as_ref().is_some_and(|pool| !pool.is_empty()))
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
