//! A loaded plugin instance ([`Plugin`]: its pre-linked component and its operator's settings)
//! and what one invocation's store holds ([`InstanceState`]: its WASI context, clocks and random
//! only unless granted more, its limiter, and what it emitted and logged); and the linker that
//! composes the capabilities over that state, each through its own view.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::Semaphore;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::types::{ChatResponse, ConnectorMetadata, Event};
use crate::bindings::{AiProviderPre, Connector, ConnectorPre, ProviderMetadata};
use crate::capabilities::ai::AiView;
use crate::capabilities::config::ConfigView;
use crate::capabilities::emit::EmitView;
use crate::capabilities::http::HttpView;
use crate::capabilities::kv::KvView;
use crate::capabilities::log::{LogState, LogView};
use crate::capabilities::{self, Scope};
use crate::egress::InstanceEgress;
use crate::egress::ai::CacheKey;
use crate::grants::{Capability, Grants};
use crate::limits::Limits;
use crate::limits::StoreLimiter;
use crate::pool::IdlePool;
use crate::shared::Shared;
use crate::spec::{PluginInfo, PluginKind};
use crate::tape::{SeededRandom, Tape, TapedMonotonicClock, TapedWallClock};

pub(crate) enum PluginPre {
    Connector(ConnectorPre<InstanceState>),
    AiProvider(AiProviderPre<InstanceState>),
}

/// A loaded plugin instance: its pre-linked component, its operator's settings and what it is.
pub(crate) struct Plugin {
    pub(crate) id: String,
    pub(crate) kind: PluginKind,
    pub(crate) pre: PluginPre,
    pub(crate) grants: Grants,
    pub(crate) limits: Limits,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) effective: BTreeSet<Capability>,
    pub(crate) slots: Arc<Semaphore>,
    /// Outbound request slots and token buckets, shared by the instance's invocations.
    pub(crate) egress: Arc<InstanceEgress>,
    pub(crate) info: PluginInfo,
    /// The sandbox that reads a component's metadata while it loads: nothing is granted yet.
    pub(crate) loading: bool,
    /// Which invocations are recorded for replay.
    pub(crate) record: Option<crate::spec::Record>,
    /// Whether its instances serve more than one invocation, as the operator chose.
    pub(crate) reuse: Option<crate::spec::Reuse>,
    /// The instances kept between invocations (with `reuse` only).
    pub(crate) idle: Option<Arc<IdlePool<KeptInstance>>>,
    /// The fresh instance made ahead of the next invocation (with `prepare_ahead` only, and not
    /// when every invocation is recorded).
    pub(crate) prepared: Option<Arc<IdlePool<KeptInstance>>>,
    /// An instance is being prepared ahead: at most one at a time.
    pub(crate) preparing: std::sync::atomic::AtomicBool,
}

/// A connector instance kept between invocations, with the store that holds its memory.
pub(crate) struct KeptInstance {
    pub(crate) store: wasmtime::Store<InstanceState>,
    pub(crate) bindings: Connector,
}

impl Plugin {
    pub(crate) fn info(&self) -> PluginInfo {
        self.info.clone()
    }

    /// The spec of another build of this instance, uploaded rather than read from a file: the
    /// same id, grants, limits, config and recording policy. No precompiled artifact: the
    /// pinned one was compiled from the configured file, not from the upload.
    pub(crate) fn uploaded_spec(&self) -> crate::spec::PluginSpec {
        crate::spec::PluginSpec {
            id: self.id.clone(),
            wasm: std::path::PathBuf::from(crate::spec::UPLOADED),
            grants: self.grants.clone(),
            limits: self.limits.clone(),
            config: self.config.clone(),
            precompiled: None,
            record: self.record,
            reuse: self.reuse,
            prepare_ahead: self.info.prepare_ahead,
        }
    }

    /// Drops the instances it keeps or prepared and keeps no more: it was unloaded or replaced
    /// (those stores refer to it, so they would keep it alive).
    pub(crate) fn retire(&self) {
        for pool in [&self.idle, &self.prepared].into_iter().flatten() {
            pool.retire();
        }
    }

    /// `name@version sha256:<12 hex>`: which build this is.
    pub(crate) fn handler(&self) -> String {
        self.info.build.clone()
    }
}

/// What `metadata()` answered, per world.
pub(crate) enum Described {
    /// Its metadata, and its action hints when it exports them.
    Connector(ConnectorMetadata, Vec<crate::bindings::action_hints::Hints>),
    AiProvider(ProviderMetadata),
}

/// The most WASI handles (streams, pollables) a kept instance may hold between invocations.
pub(crate) const MAX_KEPT_HANDLES: usize = 64;

/// What one invocation's store holds. Its contents are the runtime's; an embedder's own imports
/// ([`HostBuilder::link_instance`](crate::HostBuilder::link_instance)) see which instance and event they serve.
pub struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    /// Where this invocation's part of `stderr` starts (a kept instance's earlier invocations
    /// wrote the part before).
    stderr_from: usize,
    pub(crate) limiter: StoreLimiter,
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) shared: Arc<Shared>,
    /// The event being handled, for log lines.
    pub(crate) event_id: Option<String>,
    /// When this invocation must be over; host calls shorten their own timeouts to fit.
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) emitted: Vec<Event>,
    pub(crate) log: LogState,
    /// Bytes the invocation has made the host hold so far, against `max_output_bytes`.
    pub(crate) output_bytes: usize,
    pub(crate) http_requests: u32,
    /// Cacheable AI answers this invocation received, cached once it ends without an error.
    pub(crate) ai_answers: Vec<(CacheKey, ChatResponse)>,
    /// The tape this invocation records to or replays from, if any.
    pub(crate) tape: Option<Tape>,
}

impl InstanceState {
    /// The instance this invocation runs.
    pub fn instance(&self) -> &str {
        &self.plugin.id
    }

    /// The event being handled, if any.
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// Whether this is the sandbox that reads the component's metadata while it loads, before
    /// the operator's grants apply: an embedder's import that acts should refuse then.
    pub fn loading(&self) -> bool {
        self.plugin.loading
    }

    pub(crate) fn new(
        plugin: Arc<Plugin>,
        shared: Arc<Shared>,
        event_id: Option<String>,
        deadline: tokio::time::Instant,
        stderr_capture: usize,
        tape: Option<Tape>,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(tape) = &tape {
            // Clocks and random numbers are answers too: a replay must see the same ones.
            wasi.wall_clock(TapedWallClock(tape.clone()))
                .monotonic_clock(TapedMonotonicClock::new(tape.clone()))
                .secure_random(SeededRandom::new(tape.random_seed, "random.secure"))
                .insecure_random(SeededRandom::new(tape.random_seed, "random.insecure"))
                .insecure_random_seed(tape.insecure_seed);
        }
        // No files, sockets, environment or arguments: a plugin reaches the world only through
        // the capabilities above. Stdio only when the operator asked for it.
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        // Otherwise the first bytes of stderr are kept for trap reports: a Rust panic message
        // lands there, and it is the most useful line of a crash report.
        let stderr = MemoryOutputPipe::new(stderr_capture);
        if plugin.grants.stdio {
            wasi.inherit_stdout().inherit_stderr();
        } else {
            wasi.stderr(stderr.clone());
        }
        InstanceState {
            wasi: wasi.build(),
            stderr,
            stderr_from: 0,
            table: ResourceTable::new(),
            limiter: StoreLimiter::new(&plugin.limits),
            plugin,
            shared,
            event_id,
            deadline,
            emitted: Vec::new(),
            log: LogState::default(),
            output_bytes: 0,
            http_requests: 0,
            ai_answers: Vec::new(),
            tape,
        }
    }
}

impl InstanceState {
    /// What the plugin wrote to stderr in this invocation so far (when stdio is not granted),
    /// lossily decoded.
    pub(crate) fn captured_stderr(&self) -> String {
        let written = self.stderr.contents();
        String::from_utf8_lossy(written.get(self.stderr_from..).unwrap_or_default()).into_owned()
    }

    /// Whether this instance may serve another invocation once this one answered: not after
    /// its memory limit was hit, nor once half its stderr capture is used (the capture is not
    /// emptied, and a later crash report needs room), nor while it holds more than
    /// [`MAX_KEPT_HANDLES`] WASI handles it never closed (host memory outside `memory_mib`).
    pub(crate) fn can_serve_again(&mut self, stderr_capture: usize) -> bool {
        !self.limiter.memory_exhausted
            && self.stderr.contents().len() < stderr_capture / 2
            && self.table.iter_mut().take(MAX_KEPT_HANDLES + 1).count() <= MAX_KEPT_HANDLES
    }

    /// Readies a kept instance's state for its next invocation: everything the host keeps per
    /// invocation starts over (event, deadline, emitted events, log lines, output and request
    /// budgets, AI answers); the plugin's own memory does not, which is what reuse means.
    pub(crate) fn start_again(&mut self, event_id: Option<String>, deadline: tokio::time::Instant) {
        self.event_id = event_id;
        self.deadline = deadline;
        self.emitted.clear();
        self.log = LogState::default();
        self.output_bytes = 0;
        self.http_requests = 0;
        self.ai_answers.clear();
        self.stderr_from = self.stderr.contents().len();
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The caller's side of every view: borrowed field by field, so that a view can also borrow the
/// state's other fields mutably.
fn scope<'a>(
    plugin: &'a Plugin,
    event_id: &'a Option<String>,
    deadline: tokio::time::Instant,
    tape: &'a Option<Tape>,
) -> Scope<'a> {
    Scope {
        tape: tape.as_ref(),
        instance: &plugin.id,
        effective: &plugin.effective,
        grants: &plugin.grants,
        limits: &plugin.limits,
        event_id: event_id.as_deref(),
        deadline,
    }
}

/// Adds WASI (clocks and random; the rest as the context allows) and every plugboard capability
/// to `linker`, each capability through its view of [`InstanceState`].
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    capabilities::add_types_to_linker(linker)?;
    capabilities::config::add_to_linker(linker, |s| {
        ConfigView::new(scope(&s.plugin, &s.event_id, s.deadline, &s.tape), &s.plugin.config)
    })?;
    capabilities::kv::add_to_linker(linker, |s| {
        KvView::new(scope(&s.plugin, &s.event_id, s.deadline, &s.tape), s.shared.kv.as_ref())
    })?;
    capabilities::log::add_to_linker(linker, |s| {
        LogView::new(
            scope(&s.plugin, &s.event_id, s.deadline, &s.tape),
            &mut s.log,
            &mut s.output_bytes,
            &s.shared.egress,
        )
    })?;
    capabilities::emit::add_to_linker(linker, |s| {
        EmitView::new(scope(&s.plugin, &s.event_id, s.deadline, &s.tape), &mut s.emitted, &mut s.output_bytes)
    })?;
    capabilities::http::add_to_linker(linker, |s| HttpView {
        scope: scope(&s.plugin, &s.event_id, s.deadline, &s.tape),
        egress: &s.shared.egress,
        instance: &s.plugin.egress,
        sent: &mut s.http_requests,
    })?;
    // `ai` and `ai-tools` share one view: the same provider, cache, budget and output.
    capabilities::ai_tools::add_to_linker(linker, ai_view)?;
    capabilities::ai::add_to_linker(linker, ai_view)
}

fn ai_view(s: &mut InstanceState) -> AiView<'_> {
    AiView {
        scope: scope(&s.plugin, &s.event_id, s.deadline, &s.tape),
        caller_is_provider: s.plugin.kind == PluginKind::AiProvider,
        default_provider: s.shared.default_ai_provider(),
        providers: s.shared.providers.as_ref(),
        router: &s.shared.ai,
        kv: s.shared.kv.as_ref(),
        answers: &mut s.ai_answers,
        emitted: &mut s.emitted,
        held: &mut s.output_bytes,
    }
}
