//! Running one invocation: a concurrency slot, a fresh store with the instance's limits, a
//! deadline enforced both inside wasm (epochs) and around host calls (a timer), and the
//! translation of every failure into an [`InvokeError`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use crate::bindings::types::{ChatRequest, ChatResponse, Event, ToolsRequest, ToolsResponse, WebhookRequest};
use crate::bindings::{Connector, action_hints, provider_tools};
use crate::capabilities::emit;
use crate::capabilities::log::LogRecord;
use crate::egress::ai::CacheKey;
use crate::error::InvokeError;
use crate::instance::{Described, KeptInstance, PluginPre};
use crate::limits::MemoryLimitExceeded;
use crate::recorder::Recorder;
use crate::recording::Input;
use crate::tape::Answer;
use crate::tape::Tape;
use crate::{Host, InstanceState, Plugin, PluginKind};

/// What one invocation produced, besides its result.
#[derive(Debug, Clone)]
pub struct Invocation<T> {
    /// The instance that ran.
    pub instance: String,
    /// Which build of the plugin ran: `name@version sha256:<first 12 hex digits>` (after a hot
    /// reload, invocations already running finish on the build they started with).
    pub handler: String,
    /// The call's result.
    pub output: T,
    /// Events the plugin published through the `emit` capability, ids and source assigned.
    pub emitted: Vec<Event>,
    /// Lines the plugin logged (up to its limit).
    pub logs: Vec<LogRecord>,
    /// Lines past the limits, dropped: neither written nor kept.
    pub logs_dropped: u32,
    /// Bytes the plugin made the host hold (events, kept log lines, its answer), counted
    /// against `max_output_bytes`.
    pub output_bytes: usize,
    /// Wall-clock time, from asking for a slot to the answer.
    pub elapsed: Duration,
    /// Cacheable AI answers the plugin received: cached only if its answer is accepted.
    ai_answers: Vec<(CacheKey, ChatResponse)>,
}

/// What a connector made of a webhook.
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    /// The HTTP status to answer with.
    pub status: u16,
    /// Reply headers.
    pub headers: Vec<(String, String)>,
    /// Reply body.
    pub body: Vec<u8>,
    /// Events to store, ids and source assigned.
    pub events: Vec<Event>,
}

type CallFuture<'a, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 'a>>;

/// Pins down the higher-ranked signature of a call closure, which inference cannot find alone.
fn call<T, F>(f: F) -> F
where
    F: for<'a> FnOnce(&'a mut Store<InstanceState>, &'a PluginPre) -> CallFuture<'a, T>,
{
    f
}

type ConnectorCall<T> =
    Box<dyn for<'a> FnOnce(&'a mut Store<InstanceState>, &'a Connector) -> CallFuture<'a, T> + Send>;

/// Pins down the signature of a call on a connector instance, fresh or kept.
fn on_connector<T, F>(f: F) -> ConnectorCall<T>
where
    F: for<'a> FnOnce(&'a mut Store<InstanceState>, &'a Connector) -> CallFuture<'a, T> + Send + 'static,
{
    Box::new(f)
}

/// Marks a failure to instantiate (as opposed to a failure inside the plugin's code).
#[derive(Debug, thiserror::Error)]
#[error("could not instantiate: {0}")]
struct InstantiateFailed(String);

fn instantiate_failed(e: wasmtime::Error) -> wasmtime::Error {
    // A deadline, fuel or memory limit reached while instantiating is that limit, not a
    // failure to instantiate: keep it for `classify`.
    if e.downcast_ref::<Trap>().is_some() || e.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return e;
    }
    wasmtime::Error::new(InstantiateFailed(format!("{e:#}")))
}

/// How wasmtime words a call that tried to copy more than the store's hostcall fuel allows (its
/// error type is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Bytes of guest stderr kept for trap reports (a Rust panic message lands there).
const STDERR_CAPTURE_BYTES: usize = 4 << 10;

fn new_store(
    host: &Host,
    plugin: &Arc<Plugin>,
    event_id: Option<String>,
    deadline: tokio::time::Instant,
    tape: Option<Tape>,
) -> Store<InstanceState> {
    let state = InstanceState::new(
        plugin.clone(),
        host.inner.shared.clone(),
        event_id,
        deadline,
        STDERR_CAPTURE_BYTES,
        tape,
    );
    let mut store = Store::new(host.engine(), state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(crate::limits::hostcall_bytes(&plugin.limits));
    // At every epoch tick a running plugin yields to the async executor, so a plugin that
    // spins cannot hold a worker thread (and stall other plugins) for its whole deadline; once
    // the deadline has passed, the next tick interrupts it.
    store.epoch_deadline_callback(|ctx| {
        if tokio::time::Instant::now() >= ctx.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    arm(host, plugin, &mut store);
    store
}

/// Resets the store's epoch deadline and fuel for one call.
fn arm(host: &Host, plugin: &Plugin, store: &mut Store<InstanceState>) {
    store.set_epoch_deadline(1);
    if host.inner.settings.fuel_metering {
        // Only fails when fuel metering is off, which the branch rules out.
        let _ = store.set_fuel(plugin.limits.fuel.unwrap_or(u64::MAX));
    }
}

async fn acquire(
    plugin: &Plugin,
    deadline: tokio::time::Instant,
) -> Result<OwnedSemaphorePermit, InvokeError> {
    match tokio::time::timeout_at(deadline, plugin.slots.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(InvokeError::Internal("the instance was shut down".into())),
        Err(_) => Err(InvokeError::Timeout(plugin.limits.timeout())),
    }
}

/// Turns a failed call into the error an operator can act on.
fn classify(e: wasmtime::Error, store: &Store<InstanceState>, plugin: &Plugin) -> InvokeError {
    let state = store.data();
    let backtrace = e.downcast_ref::<WasmBacktrace>().map(|b| b.to_string()).unwrap_or_default();
    if state.limiter.memory_exhausted || e.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return InvokeError::OutOfMemory { limit_mib: plugin.limits.memory_mib };
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => InvokeError::Timeout(plugin.limits.timeout()),
            Trap::OutOfFuel => InvokeError::OutOfFuel(plugin.limits.fuel.unwrap_or(u64::MAX)),
            Trap::StackOverflow => InvokeError::StackOverflow { backtrace },
            other => {
                let stderr = state.captured_stderr();
                let message = if stderr.is_empty() {
                    other.to_string()
                } else {
                    format!("{other}; the plugin wrote: {}", crate::printable(stderr.trim_end()))
                };
                InvokeError::Trap { message, backtrace }
            }
        };
    }
    if let Some(failed) = e.downcast_ref::<InstantiateFailed>() {
        return InvokeError::Internal(failed.to_string());
    }
    if format!("{e:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
        return InvokeError::InvalidOutput(format!(
            "the plugin passed the host more than {} bytes in one call",
            crate::limits::hostcall_bytes(&plugin.limits)
        ));
    }
    // What remains comes from lifting the plugin's answer: invalid UTF-8, bad discriminants,
    // out-of-bounds pointers.
    InvokeError::InvalidOutput(format!("{e:#}"))
}

/// Runs `f` on a fresh instance of `plugin` within its limits, and counts the outcome.
async fn run<T: Send>(
    host: &Host,
    plugin: Arc<Plugin>,
    event_id: Option<String>,
    tape: Option<Tape>,
    f: impl for<'a> FnOnce(&'a mut Store<InstanceState>, &'a PluginPre) -> CallFuture<'a, T>,
) -> Result<Invocation<T>, InvokeError> {
    let started = Instant::now();
    let id = plugin.id.clone();
    let result = run_limited(host, plugin, event_id, tape, f).await;
    counted(host, &id, started, result)
}

/// Runs `f` on a connector instance of `plugin` within its limits: a kept one when the operator
/// chose reuse and one is idle (never for a recorded invocation), else a fresh one; and counts
/// the outcome.
async fn run_connector<T: Send>(
    host: &Host,
    plugin: Arc<Plugin>,
    event_id: Option<String>,
    tape: Option<Tape>,
    f: ConnectorCall<T>,
) -> Result<Invocation<T>, InvokeError> {
    let started = Instant::now();
    let id = plugin.id.clone();
    let result = on_kept_or_fresh(host, plugin, event_id, tape, f, started).await;
    counted(host, &id, started, result)
}

/// Counts an invocation's outcome and duration.
fn counted<T>(
    host: &Host,
    id: &str,
    started: Instant,
    result: Result<Invocation<T>, InvokeError>,
) -> Result<Invocation<T>, InvokeError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    let metrics = &host.inner.shared.metrics;
    metrics.add("plugboard_invocations_total", &[("instance", id), ("outcome", outcome)], 1);
    metrics.observe("plugboard_invocation_seconds", &[("instance", id)], started.elapsed().as_secs_f64());
    result
}

async fn run_limited<T: Send>(
    host: &Host,
    plugin: Arc<Plugin>,
    event_id: Option<String>,
    tape: Option<Tape>,
    f: impl for<'a> FnOnce(&'a mut Store<InstanceState>, &'a PluginPre) -> CallFuture<'a, T>,
) -> Result<Invocation<T>, InvokeError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + plugin.limits.timeout();
    let _permit = acquire(&plugin, deadline).await?;
    let mut store = new_store(host, &plugin, event_id, deadline, tape);
    let result = tokio::time::timeout_at(deadline, f(&mut store, &plugin.pre)).await;
    let output = outcome_of(host, &plugin, &store, result)?;
    Ok(finished(&plugin, store.data_mut(), started, output))
}

/// A call's output, or the error an operator can act on; the log lines it had dropped are
/// reported either way (not in a replay).
fn outcome_of<T>(
    host: &Host,
    plugin: &Plugin,
    store: &Store<InstanceState>,
    result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
) -> Result<T, InvokeError> {
    if !store.data().tape.as_ref().is_some_and(Tape::is_replaying) {
        report_dropped_logs(host, plugin, store.data());
    }
    match result {
        Err(_) => Err(InvokeError::Timeout(plugin.limits.timeout())),
        Ok(Err(e)) => Err(classify(e, store, plugin)),
        Ok(Ok(output)) => Ok(output),
    }
}

/// [`run_limited`] for a connector's calls, on a kept instance or one prepared ahead when there
/// is one.
async fn on_kept_or_fresh<T: Send>(
    host: &Host,
    plugin: Arc<Plugin>,
    event_id: Option<String>,
    tape: Option<Tape>,
    f: ConnectorCall<T>,
    started: Instant,
) -> Result<Invocation<T>, InvokeError> {
    let deadline = tokio::time::Instant::now() + plugin.limits.timeout();
    let _permit = acquire(&plugin, deadline).await?;
    // A recorded or replayed invocation starts fresh: its tape must hold all it depended on.
    let idle = plugin.idle.as_ref().filter(|_| tape.is_none());
    // An instance prepared ahead served no invocation: it is fresh, as one made now would be.
    let prepared = plugin.prepared.as_ref().filter(|_| tape.is_none());
    let ready = match (idle, prepared) {
        (Some(pool), _) => pool.take(),
        (None, Some(pool)) => {
            let ready = pool.take();
            let found = if ready.is_some() { "yes" } else { "no" };
            let labels = [("instance", plugin.id.as_str()), ("ready", found)];
            host.inner.shared.metrics.add("plugboard_prepared_instances_total", &labels, 1);
            prepare_next(host, &plugin);
            ready
        }
        (None, None) => None,
    };
    let (mut store, bindings, served) = match ready {
        Some((KeptInstance { mut store, bindings }, served)) => {
            store.data_mut().start_again(event_id, deadline);
            arm(host, &plugin, &mut store);
            (store, bindings, served)
        }
        None => {
            let mut store = new_store(host, &plugin, event_id, deadline, tape);
            match tokio::time::timeout_at(deadline, instantiate_connector(&mut store, &plugin.pre)).await {
                Err(_) => return Err(InvokeError::Timeout(plugin.limits.timeout())),
                Ok(Err(e)) => return Err(classify(e, &store, &plugin)),
                Ok(Ok(bindings)) => (store, bindings, 0),
            }
        }
    };
    let result = tokio::time::timeout_at(deadline, f(&mut store, &bindings)).await;
    // After a trap, a timeout (the call abandoned half-way) or any limit, the instance is
    // dropped with its store: only one that answered is kept.
    let output = outcome_of(host, &plugin, &store, result)?;
    let done = finished(&plugin, store.data_mut(), started, output);
    if let Some(pool) = idle
        && store.data_mut().can_serve_again(STDERR_CAPTURE_BYTES)
    {
        pool.give_back(KeptInstance { store, bindings }, served.saturating_add(1));
    }
    Ok(done)
}

/// Starts instantiating the next instance of `plugin` ahead of its invocation
/// (`prepare_ahead`), unless one is ready or on its way, or could not be kept (the plugin was
/// retired, or the host keeps as many instances as it may: one made now would be thrown away).
/// A failure is left for that invocation: it instantiates for itself, and reports what fails
/// with its event.
pub(crate) fn prepare_next(host: &Host, plugin: &Arc<Plugin>) {
    let Some(pool) = plugin.prepared.clone() else { return };
    // Outside a runtime (an embedder loading from a blocking thread) the invocation instantiates.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if !pool.can_keep_another() || plugin.preparing.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let preparing = Preparing(plugin.clone());
    let host = host.clone();
    runtime.spawn(async move {
        let plugin = preparing.0.clone();
        // Instantiating counts against the plugin's concurrency, as an invocation does: no more
        // of its instances run at once than `max_concurrency` allows.
        let Ok(permit) = plugin.slots.clone().acquire_owned().await else { return };
        if !pool.can_keep_another() {
            return;
        }
        let deadline = tokio::time::Instant::now() + plugin.limits.timeout();
        let mut store = new_store(&host, &plugin, None, deadline, None);
        let made = tokio::time::timeout_at(deadline, instantiate_connector(&mut store, &plugin.pre)).await;
        // Cleared before the instance is offered: an invocation that takes it at once starts
        // preparing the next one.
        drop(preparing);
        match made {
            // Start code could have left what a kept instance may not hold (open handles).
            Ok(Ok(bindings)) if store.data_mut().can_serve_again(STDERR_CAPTURE_BYTES) => {
                pool.give_back(KeptInstance { store, bindings }, 0);
            }
            Ok(Ok(_)) => {
                tracing::debug!(instance = %plugin.id, "an instance prepared ahead holds too much to keep")
            }
            Ok(Err(e)) => {
                tracing::debug!(instance = %plugin.id, "could not prepare an instance ahead: {e:#}")
            }
            Err(_) => tracing::debug!(instance = %plugin.id, "preparing an instance ahead ran out of time"),
        }
        // Released only once the instance is offered: an invocation that waited for this slot
        // finds it ready instead of instantiating its own.
        drop(permit);
    });
}

/// A preparation under way for its plugin; dropped (at its end, or if its task panics or is
/// cancelled) it lets the next one start.
struct Preparing(Arc<Plugin>);

impl Drop for Preparing {
    fn drop(&mut self) {
        self.0.preparing.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The invocation's result with what it produced, taken out of its store's state.
fn finished<T>(plugin: &Plugin, state: &mut InstanceState, started: Instant, output: T) -> Invocation<T> {
    let log = std::mem::take(&mut state.log);
    Invocation {
        instance: plugin.id.clone(),
        handler: plugin.handler(),
        output,
        emitted: std::mem::take(&mut state.emitted),
        logs: log.lines,
        logs_dropped: log.dropped,
        output_bytes: state.output_bytes,
        elapsed: started.elapsed(),
        ai_answers: std::mem::take(&mut state.ai_answers),
    }
}

/// One line, and a counter, for the log lines an invocation had dropped.
fn report_dropped_logs(host: &Host, plugin: &Plugin, state: &InstanceState) {
    let dropped = state.log.dropped;
    if dropped == 0 {
        return;
    }
    let event = state.event_id.as_deref().unwrap_or("");
    tracing::warn!(
        target: "plugin",
        instance = %plugin.id,
        event,
        dropped,
        "{dropped} log lines dropped (over max_log_lines = {} or max_log_bytes = {})",
        plugin.limits.max_log_lines,
        plugin.limits.max_log_bytes
    );
    host.inner.shared.metrics.add(
        "plugboard_plugin_log_lines_dropped_total",
        &[("instance", &plugin.id)],
        u64::from(dropped),
    );
}

pub(crate) fn wrong_kind(plugin: &Plugin, expected: PluginKind) -> InvokeError {
    InvokeError::WrongKind { id: plugin.id.clone(), expected: expected.name(), actual: plugin.kind.name() }
}

fn connector_pre(pre: &PluginPre) -> wasmtime::Result<&crate::bindings::ConnectorPre<InstanceState>> {
    match pre {
        PluginPre::Connector(pre) => Ok(pre),
        PluginPre::AiProvider(_) => Err(wasmtime::format_err!("not a connector")),
    }
}

/// Calls `metadata()` on a fresh instance.
pub(crate) async fn describe(host: &Host, plugin: Arc<Plugin>) -> Result<Invocation<Described>, InvokeError> {
    run(
        host,
        plugin,
        None,
        None,
        call(|store, pre| {
            Box::pin(async move {
                match pre {
                    PluginPre::Connector(pre) => {
                        let instance = pre
                            .instance_pre()
                            .instantiate_async(&mut *store)
                            .await
                            .map_err(instantiate_failed)?;
                        let c = Connector::new(&mut *store, &instance)?;
                        let metadata = c.plugboard_connector_plugin().call_metadata(&mut *store).await?;
                        // The hints are an optional export: a connector without it has none.
                        let hints = match action_hints::GuestIndices::new(pre.instance_pre()) {
                            Ok(indices) => {
                                indices.load(&mut *store, &instance)?.call_action_hints(&mut *store).await?
                            }
                            Err(_) => Vec::new(),
                        };
                        Ok(Described::Connector(metadata, hints))
                    }
                    PluginPre::AiProvider(pre) => {
                        let p = pre.instantiate_async(&mut *store).await.map_err(instantiate_failed)?;
                        Ok(Described::AiProvider(
                            p.plugboard_connector_provider().call_metadata(&mut *store).await?,
                        ))
                    }
                }
            })
        }),
    )
    .await
}

/// Checks and converts the events a plugin returned, as `emit` does for published ones.
fn accept_all<T>(
    plugin: &Plugin,
    done: &mut Invocation<T>,
    events: Vec<crate::bindings::types::NewEvent>,
) -> Result<Vec<Event>, InvokeError> {
    let already = done.emitted.len();
    if already + events.len() > plugin.limits.max_events as usize {
        return Err(InvokeError::InvalidOutput(format!(
            "{} events, over the limit of {}",
            already + events.len(),
            plugin.limits.max_events
        )));
    }
    events
        .into_iter()
        .map(|e| {
            let size = emit::size_of(&e.kind, &e.content_type, &e.payload, &e.attributes);
            let event = emit::accept(&plugin.id, plugin.limits.max_event_bytes, e)
                .map_err(InvokeError::InvalidOutput)?;
            done.hold(plugin, size)?;
            Ok(event)
        })
        .collect()
}

/// The longest message of a plugin's error that the host keeps (attempt details, logs, 4xx
/// answers); longer ones are cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4 << 10;

fn plugin_result<T>(r: Result<T, crate::bindings::types::Error>) -> Result<T, InvokeError> {
    r.map_err(|e| InvokeError::Plugin(bounded_error(e)))
}

/// A plugin's error with its message cut to [`MAX_ERROR_MESSAGE_BYTES`] and made printable:
/// it is stored with every attempt, written to logs and terminals, and quoted in answers.
fn bounded_error(e: crate::bindings::types::Error) -> crate::bindings::types::Error {
    use crate::bindings::types::{Error, UpstreamFailure};
    let clean = |m: String| {
        let mut end = m.len().min(MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8());
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        let cut = if end < m.len() { format!("{}…", &m[..end]) } else { m };
        let shown = crate::printable(&cut);
        if shown.len() <= MAX_ERROR_MESSAGE_BYTES {
            return shown;
        }
        // Escapes made it longer: cut again (escapes are ASCII, so any boundary is a char's).
        let mut end = MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8();
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &shown[..end])
    };
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(clean(m)),
        Error::Unauthorized(m) => Error::Unauthorized(clean(m)),
        Error::NotFound(m) => Error::NotFound(clean(m)),
        Error::Denied(m) => Error::Denied(clean(m)),
        Error::RateLimited(ms) => Error::RateLimited(ms),
        Error::Timeout(m) => Error::Timeout(clean(m)),
        Error::Upstream(UpstreamFailure { status, message }) => {
            Error::Upstream(UpstreamFailure { status, message: clean(message) })
        }
        Error::Internal(m) => Error::Internal(clean(m)),
        Error::QuotaExceeded(m) => Error::QuotaExceeded(clean(m)),
    }
}

/// A fresh connector instance in `store`.
async fn instantiate_connector(
    store: &mut Store<InstanceState>,
    pre: &PluginPre,
) -> wasmtime::Result<Connector> {
    connector_pre(pre)?.instantiate_async(&mut *store).await.map_err(instantiate_failed)
}

impl Host {
    /// The loaded instance `id`, if it implements `kind`.
    pub(crate) fn get_kind(&self, id: &str, kind: PluginKind) -> Result<Arc<Plugin>, InvokeError> {
        let plugin = self.get(id)?;
        if plugin.kind != kind {
            return Err(wrong_kind(&plugin, kind));
        }
        Ok(plugin)
    }

    /// Delivers `event` to connector `id`'s `handle` and returns the events it produced.
    pub async fn handle(&self, id: &str, event: Event) -> Result<Invocation<Vec<Event>>, InvokeError> {
        let plugin = self.get_kind(id, PluginKind::Connector)?;
        let recorder =
            Recorder::start(&self.inner.shared, &plugin, || Input::Handle { event: event.clone() });
        let result = self.run_handle(&plugin, event, recorder.as_ref().map(Recorder::tape)).await;
        Recorder::finish(recorder, &self.inner.shared, &plugin, &result);
        result
    }

    pub(crate) async fn run_handle(
        &self,
        plugin: &Arc<Plugin>,
        event: Event,
        tape: Option<Tape>,
    ) -> Result<Invocation<Vec<Event>>, InvokeError> {
        let event_id = Some(event.id.clone());
        let done = run_connector(
            self,
            plugin.clone(),
            event_id,
            tape.clone(),
            on_connector(move |store, c| {
                Box::pin(async move { c.plugboard_connector_plugin().call_handle(&mut *store, &event).await })
            }),
        )
        .await?;
        let (returned, mut done) = done.split();
        if let (Some(tape), Ok(events)) = (&tape, &returned) {
            tape.answered(Answer::Events(events.clone()));
        }
        let returned = plugin_result(returned)?;
        let events = accept_all(plugin, &mut done, returned)?;
        Ok(done.with_output(self, events))
    }

    /// Hands a verified webhook request to connector `id`.
    pub async fn on_webhook(
        &self,
        id: &str,
        request: WebhookRequest,
    ) -> Result<Invocation<WebhookOutcome>, InvokeError> {
        let plugin = self.get_kind(id, PluginKind::Connector)?;
        let recorder =
            Recorder::start(&self.inner.shared, &plugin, || Input::OnWebhook { request: request.clone() });
        let result = self.run_webhook(&plugin, request, recorder.as_ref().map(Recorder::tape)).await;
        Recorder::finish(recorder, &self.inner.shared, &plugin, &result);
        result
    }

    pub(crate) async fn run_webhook(
        &self,
        plugin: &Arc<Plugin>,
        request: WebhookRequest,
        tape: Option<Tape>,
    ) -> Result<Invocation<WebhookOutcome>, InvokeError> {
        let done = run_connector(
            self,
            plugin.clone(),
            None,
            tape.clone(),
            on_connector(move |store, c| {
                Box::pin(async move {
                    c.plugboard_connector_plugin().call_on_webhook(&mut *store, &request).await
                })
            }),
        )
        .await?;
        let (reply, mut done) = done.split();
        if let (Some(tape), Ok(reply)) = (&tape, &reply) {
            tape.answered(Answer::Reply(reply.clone()));
        }
        let reply = plugin_result(reply)?;
        let events = accept_all(plugin, &mut done, reply.events)?;
        let checked = super::reply::check(reply.status, reply.headers, reply.body)
            .map_err(|e| InvokeError::InvalidOutput(format!("webhook reply: {e}")))?;
        done.hold(plugin, checked.size())?;
        let outcome =
            WebhookOutcome { status: checked.status, headers: checked.headers, body: checked.body, events };
        Ok(done.with_output(self, outcome))
    }

    /// Runs connector `id`'s action with a JSON input and returns its JSON output.
    pub async fn invoke(
        &self,
        id: &str,
        action: &str,
        input: &serde_json::Value,
    ) -> Result<Invocation<serde_json::Value>, InvokeError> {
        self.invoke_for_event(id, action, input, None).await
    }

    /// [`Host::invoke`] on behalf of a stored event: its id tags the invocation's log lines and
    /// outbound calls.
    pub async fn invoke_for_event(
        &self,
        id: &str,
        action: &str,
        input: &serde_json::Value,
        event_id: Option<&str>,
    ) -> Result<Invocation<serde_json::Value>, InvokeError> {
        let plugin = self.get_kind(id, PluginKind::Connector)?;
        let input = input.to_string();
        let recorder = Recorder::start(&self.inner.shared, &plugin, || Input::Invoke {
            action: action.to_owned(),
            input: input.clone(),
            event_id: event_id.map(str::to_owned),
        });
        let tape = recorder.as_ref().map(Recorder::tape);
        let result = self.run_invoke(&plugin, action, input, event_id, tape).await;
        Recorder::finish(recorder, &self.inner.shared, &plugin, &result);
        result
    }

    pub(crate) async fn run_invoke(
        &self,
        plugin: &Arc<Plugin>,
        action: &str,
        input: String,
        event_id: Option<&str>,
        tape: Option<Tape>,
    ) -> Result<Invocation<serde_json::Value>, InvokeError> {
        let action = action.to_owned();
        let done = run_connector(
            self,
            plugin.clone(),
            event_id.map(str::to_owned),
            tape.clone(),
            on_connector(move |store, c| {
                Box::pin(async move {
                    c.plugboard_connector_plugin().call_invoke(&mut *store, &action, &input).await
                })
            }),
        )
        .await?;
        let (text, mut done) = done.split();
        if let (Some(tape), Ok(text)) = (&tape, &text) {
            tape.answered(Answer::Output(text.clone()));
        }
        let text = plugin_result(text)?;
        crate::limits::hold_output(&mut done.output_bytes, text.len(), &plugin.limits)
            .map_err(|e| InvokeError::InvalidOutput(format!("action output of {} bytes: {e}", text.len())))?;
        let value = serde_json::from_str(&text)
            .map_err(|e| InvokeError::InvalidOutput(format!("action output is not JSON: {e}")))?;
        Ok(done.with_output(self, value))
    }

    /// Runs a chat completion on AI provider `id`.
    pub async fn complete(
        &self,
        id: &str,
        request: ChatRequest,
    ) -> Result<Invocation<ChatResponse>, InvokeError> {
        self.complete_for_event(id, request, None).await
    }

    /// [`Host::complete`] on behalf of the event a plugin is handling.
    pub(crate) async fn complete_for_event(
        &self,
        id: &str,
        request: ChatRequest,
        event_id: Option<String>,
    ) -> Result<Invocation<ChatResponse>, InvokeError> {
        let plugin = self.get_kind(id, PluginKind::AiProvider)?;
        let done = run(
            self,
            plugin.clone(),
            event_id,
            None,
            call(move |store, pre| {
                Box::pin(async move {
                    let PluginPre::AiProvider(pre) = pre else {
                        return Err(wasmtime::format_err!("not an AI provider"));
                    };
                    let p = pre.instantiate_async(&mut *store).await.map_err(instantiate_failed)?;
                    p.plugboard_connector_provider().call_complete(&mut *store, &request).await
                })
            }),
        )
        .await?;
        let (response, mut done) = done.split();
        let response = plugin_result(response)?;
        // The answer is cached and handed to the asking plugin: bounded like any output.
        done.hold(&plugin, crate::egress::ai::answer_bytes(&response))?;
        Ok(done.with_output(self, response))
    }

    /// Runs one tool-calling turn on AI provider `id`, which must export `provider-tools`.
    pub(crate) async fn complete_with_tools_for_event(
        &self,
        id: &str,
        request: ToolsRequest,
        event_id: Option<String>,
    ) -> Result<Invocation<ToolsResponse>, InvokeError> {
        let plugin = self.get_kind(id, PluginKind::AiProvider)?;
        let PluginPre::AiProvider(pre) = &plugin.pre else {
            return Err(wrong_kind(&plugin, PluginKind::AiProvider));
        };
        // The export is optional: a provider built before tool calling has none.
        let Ok(indices) = provider_tools::GuestIndices::new(pre.instance_pre()) else {
            return Err(InvokeError::Plugin(crate::bindings::types::Error::Denied(format!(
                "AI provider `{id}` does not support tool calling (it does not export provider-tools)"
            ))));
        };
        let indices = Arc::new(indices);
        let done = run(
            self,
            plugin.clone(),
            event_id,
            None,
            call(move |store, pre| {
                Box::pin(async move {
                    let PluginPre::AiProvider(pre) = pre else {
                        return Err(wasmtime::format_err!("not an AI provider"));
                    };
                    let instance = pre
                        .instance_pre()
                        .instantiate_async(&mut *store)
                        .await
                        .map_err(instantiate_failed)?;
                    let tools = indices.load(&mut *store, &instance)?;
                    tools.call_complete_with_tools(&mut *store, &request).await
                })
            }),
        )
        .await?;
        let (response, mut done) = done.split();
        let response = plugin_result(response)?;
        let bytes = response.content.len()
            + response.calls.iter().map(|c| c.id.len() + c.name.len() + c.arguments.len()).sum::<usize>();
        done.hold(&plugin, bytes)?;
        Ok(done.with_output(self, response))
    }

    /// Instantiates connector `id` once for many calls. Unlike every other call, state in the
    /// plugin's memory survives from one call to the next: meant for benchmarks and for
    /// embedders who own that trade-off. Each call still has the instance's deadline and fuel.
    pub async fn session(&self, id: &str) -> Result<Session, InvokeError> {
        let plugin = self.get(id)?;
        let PluginPre::Connector(pre) = &plugin.pre else {
            return Err(wrong_kind(&plugin, PluginKind::Connector));
        };
        let deadline = tokio::time::Instant::now() + plugin.limits.timeout();
        let permit = acquire(&plugin, deadline).await?;
        let mut store = new_store(self, &plugin, None, deadline, None);
        let bindings = match pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(classify(e, &store, &plugin)),
        };
        Ok(Session { host: self.clone(), plugin, store, bindings, _permit: permit })
    }
}

impl<T> Invocation<T> {
    /// Separates the result from the by-products, to check it before it becomes an output.
    fn split(self) -> (T, Invocation<()>) {
        self.replace_output(())
    }

    /// The result, and the by-products with `output` in its place.
    fn replace_output<U>(self, output: U) -> (T, Invocation<U>) {
        let Invocation {
            instance,
            handler,
            output: result,
            emitted,
            logs,
            logs_dropped,
            output_bytes,
            elapsed,
            ai_answers,
        } = self;
        let rest = Invocation {
            instance,
            handler,
            output,
            emitted,
            logs,
            logs_dropped,
            output_bytes,
            elapsed,
            ai_answers,
        };
        (result, rest)
    }

    /// Counts `bytes` more of the plugin's answer against `max_output_bytes`.
    fn hold(&mut self, plugin: &Plugin, bytes: usize) -> Result<(), InvokeError> {
        crate::limits::hold_output(&mut self.output_bytes, bytes, &plugin.limits)
            .map_err(InvokeError::InvalidOutput)
    }
}

impl Invocation<()> {
    /// The accepted answer: the AI answers that led to it may now be served from the cache.
    fn with_output<U>(mut self, host: &Host, output: U) -> Invocation<U> {
        for (key, answer) in std::mem::take(&mut self.ai_answers) {
            host.inner.shared.ai.store(key, answer);
        }
        self.replace_output(output).1
    }
}

/// A connector instance kept alive across calls; see [`Host::session`].
pub struct Session {
    host: Host,
    plugin: Arc<Plugin>,
    store: Store<InstanceState>,
    bindings: Connector,
    _permit: OwnedSemaphorePermit,
}

impl Session {
    /// Runs `action` with `input_json` on the live instance and returns its output as JSON text.
    pub async fn invoke(&mut self, action: &str, input_json: &str) -> Result<String, InvokeError> {
        arm(&self.host, &self.plugin, &mut self.store);
        let deadline = tokio::time::Instant::now() + self.plugin.limits.timeout();
        self.store.data_mut().deadline = deadline;
        let plugin = self.bindings.plugboard_connector_plugin();
        let result =
            tokio::time::timeout_at(deadline, plugin.call_invoke(&mut self.store, action, input_json)).await;
        let answers = std::mem::take(&mut self.store.data_mut().ai_answers);
        let output = match result {
            Err(_) => Err(InvokeError::Timeout(self.plugin.limits.timeout())),
            Ok(Err(e)) => Err(classify(e, &self.store, &self.plugin)),
            Ok(Ok(r)) => plugin_result(r),
        }?;
        for (key, answer) in answers {
            self.host.inner.shared.ai.store(key, answer);
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::{Capability, Grants};
    use crate::spec::{PluginSpec, Reuse};

    /// Replaces instance `id` (a keeper plugin) with the same build, or unloads it.
    async fn unload_or_replace(host: &Host, id: &str, replace: bool) {
        if replace {
            let bytes = std::fs::read(plugboard_tests::KEEPER).unwrap();
            host.reload_bytes(id, &bytes).await.unwrap();
        } else {
            assert!(host.unload(id));
        }
    }

    /// Kept instances refer to their plugin: unloading or replacing it must free it, and give
    /// its share of the host's budget back, however long its instances could still idle.
    #[tokio::test]
    async fn an_unloaded_or_replaced_instance_with_kept_instances_is_freed() {
        let host = Host::builder().build().unwrap();
        let spec = PluginSpec::new("kept", plugboard_tests::KEEPER)
            .with_grants(Grants::none().with(Capability::Log))
            .with_reuse(Reuse { calls: 100, idle_secs: 3600 });
        let remember = serde_json::json!({ "value": "a" });
        for replace in [false, true] {
            host.load(spec.clone()).await.unwrap();
            host.invoke("kept", "remember", &remember).await.unwrap();
            let plugin = Arc::downgrade(&host.get("kept").unwrap());
            assert!(host.inner.kept.kept() > 0);
            unload_or_replace(&host, "kept", replace).await;
            assert!(plugin.upgrade().is_none(), "the old plugin was freed (replaced: {replace})");
            assert_eq!(host.inner.kept.kept(), 0);
        }
    }

    /// An instance prepared ahead refers to its plugin too: unloading or replacing the plugin
    /// frees it, and the budget it held comes back.
    #[tokio::test]
    async fn an_unloaded_or_replaced_instance_with_one_prepared_ahead_is_freed() {
        let host = Host::builder().build().unwrap();
        let spec = PluginSpec::new("ready", plugboard_tests::KEEPER)
            .with_grants(Grants::none().with(Capability::Log))
            .with_prepare_ahead();
        let until = |wanted: bool| {
            let host = host.clone();
            async move {
                for _ in 0..6000 {
                    if host.has_prepared_instance("ready") == wanted
                        && (wanted || host.inner.kept.kept() == 0)
                    {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                panic!("still not {wanted} after 30 s");
            }
        };
        for replace in [false, true] {
            host.load(spec.clone()).await.unwrap();
            until(true).await;
            let plugin = Arc::downgrade(&host.get("ready").unwrap());
            assert!(host.inner.kept.kept() > 0);
            unload_or_replace(&host, "ready", replace).await;
            assert!(plugin.upgrade().is_none(), "the old plugin was freed (replaced: {replace})");
        }
        assert!(host.unload("ready"));
        // The replacement's own preparation may still be finishing: what it made is dropped.
        until(false).await;
    }

    /// A deadline, fuel budget or memory limit reached while instantiating (a start function,
    /// a guest language's runtime set-up) is that limit, for `classify`: not a host error.
    #[test]
    fn limits_hit_while_instantiating_keep_their_cause() {
        for trap in [Trap::Interrupt, Trap::OutOfFuel] {
            let kept = instantiate_failed(wasmtime::Error::new(trap));
            assert_eq!(kept.downcast_ref::<Trap>(), Some(&trap));
            assert!(kept.downcast_ref::<InstantiateFailed>().is_none());
        }
        let memory = instantiate_failed(MemoryLimitExceeded(1 << 20).into());
        assert!(memory.downcast_ref::<MemoryLimitExceeded>().is_some());
        let missing = instantiate_failed(wasmtime::format_err!("import `x` not found"));
        assert!(missing.downcast_ref::<InstantiateFailed>().is_some());
    }
}
