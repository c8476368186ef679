//! What one plugin invocation's store holds: its WASI context (clocks and random only, unless
//! granted more), its limiter, its instance's grants, and what it emitted and logged.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::types::Event;
use crate::capabilities::log::LogRecord;
use crate::limits::StoreLimiter;
use crate::{HostInner, Plugin};

pub(crate) struct InstanceState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(crate) limiter: StoreLimiter,
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) host: Arc<HostInner>,
    /// The event being handled, for log lines.
    pub(crate) event_id: Option<String>,
    /// When this invocation must be over; host calls shorten their own timeouts to fit.
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) emitted: Vec<Event>,
    pub(crate) logs: Vec<LogRecord>,
    pub(crate) logs_dropped: u32,
    /// Bytes of log lines written so far, against `max_log_bytes`.
    pub(crate) log_bytes: usize,
    /// Bytes the invocation has made the host hold so far, against `max_output_bytes`.
    pub(crate) output_bytes: usize,
    pub(crate) http_requests: u32,
    /// Cacheable AI answers this invocation received, cached once it ends without an error.
    pub(crate) ai_answers: Vec<(crate::egress::ai::CacheKey, crate::bindings::types::ChatResponse)>,
}

impl InstanceState {
    pub(crate) fn new(
        plugin: Arc<Plugin>,
        host: Arc<HostInner>,
        event_id: Option<String>,
        deadline: tokio::time::Instant,
        stderr_capture: usize,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
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
            table: ResourceTable::new(),
            limiter: StoreLimiter::new(&plugin.limits),
            plugin,
            host,
            event_id,
            deadline,
            emitted: Vec::new(),
            logs: Vec::new(),
            logs_dropped: 0,
            log_bytes: 0,
            output_bytes: 0,
            http_requests: 0,
            ai_answers: Vec::new(),
        }
    }
}

impl InstanceState {
    /// Counts `bytes` more the host keeps for this invocation, or says why it may not.
    pub(crate) fn hold(&mut self, bytes: usize) -> Result<(), String> {
        crate::limits::hold_output(&mut self.output_bytes, bytes, &self.plugin.limits)
    }

    /// What the plugin wrote to stderr so far (when stdio is not granted), lossily decoded.
    pub(crate) fn captured_stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
