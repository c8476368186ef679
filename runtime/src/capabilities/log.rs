//! The `log` capability: plugin log lines into the host's `tracing` output, tagged with the
//! instance and the event being handled, and kept with the invocation's outcome.
//!
//! What one invocation may write is bounded, for the host's log as much as for what is kept:
//! each line (message, field count, field sizes), and per invocation `max_log_lines` and
//! `max_log_bytes`. Lines past those are dropped and counted; the runtime logs the count once
//! when the invocation ends.

use serde::Serialize;

use crate::InstanceState;
use crate::bindings::log::{Host, Level};
use crate::bindings::types::Error;
use crate::capabilities::Capability;

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

impl Host for InstanceState {
    async fn write(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> Result<(), Error> {
        self.require(Capability::Log)?;
        // A plugin never holds a secret, but an upstream's answer could echo one back to it:
        // secret values are masked before a line reaches the host's logs.
        // Plugin text reaches operators' terminals: control characters and bidirectional
        // overrides are written out, not obeyed.
        // Redacted whole (a cut could split a secret), escaped, then cut: the bounds hold for
        // what is written.
        let redact = |s: String, max: usize| truncate(crate::printable(&self.host.egress.redact(s)), max);
        let message = redact(message, MAX_MESSAGE_BYTES);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(MAX_FIELDS)
            .map(|(k, v)| (redact(k, MAX_FIELD_NAME_BYTES), redact(v, MAX_FIELD_VALUE_BYTES)))
            .collect();
        let bytes = fields.iter().fold(message.len(), |n, (k, v)| n + k.len() + v.len());
        let limits = &self.plugin.limits;
        let within = self.logs.len() < limits.max_log_lines as usize
            && self.log_bytes.saturating_add(bytes) <= limits.max_log_bytes as usize;
        if !within || self.hold(bytes).is_err() {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return Ok(());
        }
        self.log_bytes += bytes;
        let instance = self.plugin.id.as_str();
        let event = self.event_id.as_deref().unwrap_or("");
        // As one JSON object (JSON logs keep it as one; a repeated name keeps its last value).
        let rendered = if fields.is_empty() {
            String::new()
        } else {
            let object: serde_json::Map<String, serde_json::Value> =
                fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            serde_json::Value::Object(object).to_string()
        };
        let level = match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", instance, event, fields = %rendered, "{message}");
                "trace"
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", instance, event, fields = %rendered, "{message}");
                "debug"
            }
            Level::Info => {
                tracing::info!(target: "plugin", instance, event, fields = %rendered, "{message}");
                "info"
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", instance, event, fields = %rendered, "{message}");
                "warn"
            }
            Level::Error => {
                tracing::error!(target: "plugin", instance, event, fields = %rendered, "{message}");
                "error"
            }
        };
        self.logs.push(LogRecord { level, message, fields });
        Ok(())
    }
}
