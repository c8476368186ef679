//! The `log` capability: plugin log lines into the host's `tracing` output, tagged with the
//! instance and the event being handled, and kept with the invocation's outcome.
//!
//! What one invocation may write is bounded, for the host's log as much as for what is kept:
//! each line (message, field count, field sizes), and per invocation `max_log_lines` and
//! `max_log_bytes`. Lines past those are dropped and counted; the runtime logs the count once
//! when the invocation ends.

use serde::Serialize;

use wasmtime::component::{HasData, Linker};

use crate::bindings::log::{self as wit, Host, Level};
use crate::bindings::types::Error;
use crate::capabilities::{Capability, Scope};
use crate::egress::Egress;
use crate::limits::hold_output;

/// The longest message kept, in bytes; longer ones are cut at a character boundary.
const MAX_MESSAGE_BYTES: usize = 8 << 10;
/// The most fields one line keeps.
const MAX_FIELDS: usize = 16;
/// The longest field name kept.
const MAX_FIELD_NAME_BYTES: usize = 64;
/// The longest field value kept.
const MAX_FIELD_VALUE_BYTES: usize = 1 << 10;

/// One line a plugin logged during an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRecord {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message.
    pub message: String,
    /// Structured fields.
    pub fields: Vec<(String, String)>,
}

/// `s` cut to at most `max` bytes, an ellipsis included, at a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// What an invocation's log lines are: those kept, those dropped, and their bytes so far.
#[derive(Debug, Default)]
pub struct LogState {
    /// The lines kept, in order.
    pub lines: Vec<LogRecord>,
    /// Lines past the limits, dropped: neither written nor kept.
    pub dropped: u32,
    /// Bytes of kept lines, against `max_log_bytes`.
    bytes: usize,
}

/// What a `log` call sees: the caller, the invocation's lines, the bytes it has made the host
/// hold, and the egress that knows which secret values to mask.
pub struct LogView<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) state: &'a mut LogState,
    pub(crate) held: &'a mut usize,
    pub(crate) egress: &'a Egress,
}

impl<'a> LogView<'a> {
    /// The view for the caller `scope`: lines go to `state`, their bytes count in `held`
    /// (against `max_output_bytes`), and `egress` masks secret values in them.
    pub fn new(scope: Scope<'a>, state: &'a mut LogState, held: &'a mut usize, egress: &'a Egress) -> Self {
        LogView { scope, state, held, egress }
    }
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = LogView<'a>;
}

/// Adds the `log` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasLog>(linker, get)
}

impl Host for LogView<'_> {
    async fn write(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> Result<(), Error> {
        self.scope.require(Capability::Log)?;
        // A plugin never holds a secret, but an upstream's answer could echo one back to it:
        // secret values are masked before a line reaches the host's logs.
        // Plugin text reaches operators' terminals: control characters and bidirectional
        // overrides are written out, not obeyed.
        // Redacted whole (a cut could split a secret), escaped, then cut: the bounds hold for
        // what is written.
        let redact = |s: String, max: usize| truncate(crate::printable(&self.egress.redact(s)), max);
        let message = redact(message, MAX_MESSAGE_BYTES);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| (redact(k, MAX_FIELD_NAME_BYTES), redact(v, MAX_FIELD_VALUE_BYTES)))
            .collect();
        let bytes = fields.iter().fold(message.len(), |n, (k, v)| n + k.len() + v.len());
        let limits = self.scope.limits;
        let within = self.state.lines.len() < limits.max_log_lines as usize
            && self.state.bytes.saturating_add(bytes) <= limits.max_log_bytes as usize;
        if !within || hold_output(self.held, bytes, limits).is_err() {
            self.state.dropped = self.state.dropped.saturating_add(1);
            return Ok(());
        }
        self.state.bytes += bytes;
        let instance = self.scope.instance;
        let event = self.scope.event_id.unwrap_or("");
        // As one JSON object (JSON logs keep it as one; a repeated name keeps its last value).
        let rendered = if fields.is_empty() {
            String::new()
        } else {
            let object: serde_json::Map<String, serde_json::Value> =
                fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            serde_json::Value::Object(object).to_string()
        };
        // A replay's lines are kept with its outcome, not written to the operator's log: the
        // invocation already ran once, and a log that shows it twice misleads.
        let replaying = self.scope.tape.is_some_and(|t| t.is_replaying());
        if !replaying {
            match level {
                Level::Trace => {
                    tracing::trace!(target: "plugin", instance, event, fields = %rendered, "{message}")
                }
                Level::Debug => {
                    tracing::debug!(target: "plugin", instance, event, fields = %rendered, "{message}")
                }
                Level::Info => {
                    tracing::info!(target: "plugin", instance, event, fields = %rendered, "{message}")
                }
                Level::Warn => {
                    tracing::warn!(target: "plugin", instance, event, fields = %rendered, "{message}")
                }
                Level::Error => {
                    tracing::error!(target: "plugin", instance, event, fields = %rendered, "{message}")
                }
            }
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.state.lines.push(LogRecord { level, message, fields });
        Ok(())
    }
}
