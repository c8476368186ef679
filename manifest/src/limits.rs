//! The resource limits an operator sets per plugin instance; the runtime enforces them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits for one plugin instance. Every field has a safe default; unknown keys are refused.
///
/// ```
/// let limits: plugboard_manifest::Limits = serde_json::from_str(r#"{"memory_mib": 32, "timeout_ms": 500}"#).unwrap();
/// assert_eq!(limits.memory_mib, 32);
/// assert!(serde_json::from_str::<plugboard_manifest::Limits>(r#"{"memroy_mib": 32}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The most linear memory one invocation may use, in MiB. Growing past it fails the
    /// invocation with `out of memory`.
    pub memory_mib: u32,
    /// The wall-clock deadline of one invocation, host calls included, in milliseconds.
    pub timeout_ms: u64,
    /// An optional budget of wasm instructions ("fuel") per invocation; needs fuel metering
    /// enabled on the host (`HostBuilder::fuel_metering`).
    pub fuel: Option<u64>,
    /// How many invocations of this instance may run at once; others wait, within their deadline.
    pub max_concurrency: u32,
    /// The most elements all tables of one invocation may hold.
    pub max_table_elements: u32,
    /// The most core wasm instances one invocation may create.
    pub max_instances: u32,
    /// The most tables one invocation may create.
    pub max_tables: u32,
    /// The most linear memories one invocation may create.
    pub max_memories: u32,
    /// The most events one invocation may emit or return.
    pub max_events: u32,
    /// The largest event, in bytes: its payload, kind, content type and attributes together.
    pub max_event_bytes: u32,
    /// The most bytes one invocation may hand the host to keep: its events (emitted and
    /// returned), the log lines it keeps, and its webhook reply or action output. A plugin
    /// that reaches it gets `invalid-input` from `emit`, or its answer is refused as invalid
    /// output.
    pub max_output_bytes: u32,
    /// The most log lines one invocation writes to the host's log and keeps with its outcome;
    /// later lines are dropped, counted, and the count logged once.
    pub max_log_lines: u32,
    /// The most bytes of log lines (messages and fields) one invocation writes and keeps; past
    /// it, lines are dropped as for `max_log_lines`.
    pub max_log_bytes: u32,
    /// The most outbound HTTP requests one invocation may send.
    pub max_http_requests: u32,
    /// The largest outbound HTTP response body, in bytes.
    pub max_http_response_bytes: u32,
    /// The largest outbound HTTP request body, in bytes.
    pub max_http_request_bytes: u32,
    /// How many outbound requests the instance may have in flight at once, across its
    /// invocations; more wait, within their deadline.
    pub max_http_concurrency: u32,
    /// How long connecting to a destination may take, in milliseconds.
    pub http_connect_timeout_ms: u64,
    /// How long one outbound attempt may take in total, in milliseconds (never past the
    /// invocation's deadline).
    pub http_timeout_ms: u64,
    /// The most attempts the host makes for one request, retries included.
    pub http_max_attempts: u32,
    /// The most redirects the host follows for one request (each hop checked against the
    /// grant); 0 hands every 3xx to the plugin.
    pub http_max_redirects: u32,
    /// The most keys the instance may keep in its key-value namespace.
    pub kv_max_keys: u64,
    /// The most bytes (keys and values) the instance may keep in its key-value namespace.
    pub kv_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            timeout_ms: 10_000,
            fuel: None,
            max_concurrency: 32,
            max_table_elements: 100_000,
            max_instances: 32,
            max_tables: 32,
            max_memories: 4,
            max_events: 1_000,
            max_event_bytes: 1 << 20,
            max_output_bytes: 16 << 20,
            max_log_lines: 1_000,
            max_log_bytes: 256 << 10,
            max_http_requests: 32,
            max_http_response_bytes: 8 << 20,
            max_http_request_bytes: 8 << 20,
            max_http_concurrency: 16,
            http_connect_timeout_ms: 5_000,
            http_timeout_ms: 30_000,
            http_max_attempts: 3,
            http_max_redirects: 5,
            kv_max_keys: 100_000,
            kv_max_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    /// The deadline as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Sets the memory cap.
    pub fn with_memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Sets the deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Sets the fuel budget.
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Sets how many invocations may run at once.
    pub fn with_max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = n;
        self
    }
}
