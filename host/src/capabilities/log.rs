//! The `log` capability: plugin log lines into the host's `tracing` output, tagged with the
//! instance and the event being handled, and kept with the invocation's outcome.

use serde::Serialize;

use crate::bindings::log::{Host, Level};
use crate::bindings::types::Error;
use crate::capabilities::Capability;
use crate::runtime::InstanceState;

/// The longest message kept, in bytes; longer ones are cut at a character boundary.
const MAX_MESSAGE_BYTES: usize = 8 << 10;

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

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
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
        let redact = |s: String| self.host.egress.redact(truncate(s));
        let message = redact(message);
        let fields: Vec<(String, String)> =
            fields.into_iter().take(32).map(|(k, v)| (redact(k), redact(v))).collect();
        let instance = self.plugin.id.as_str();
        let event = self.event_id.as_deref().unwrap_or("");
        let rendered = fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
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
        if self.logs.len() < self.plugin.limits.max_log_lines as usize {
            self.logs.push(LogRecord { level, message, fields });
        } else {
            self.logs_dropped += 1;
        }
        Ok(())
    }
}
