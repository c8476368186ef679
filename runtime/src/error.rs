//! The errors at the library's boundary: one for loading a plugin, one for invoking it.

use std::time::Duration;

use crate::bindings::types::{Error as WitError, UpstreamFailure};

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The wasm file could not be read.
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid component, or it does not implement a plugboard world.
    #[error("plugin `{id}` is not a valid plugboard component: {reason}")]
    Invalid {
        /// The instance id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The operator's spec for the instance is wrong.
    #[error("plugin `{id}`: {reason}")]
    Spec {
        /// The instance id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Calling `metadata()` failed.
    #[error("plugin `{id}`: metadata() failed: {source}")]
    Metadata {
        /// The instance id.
        id: String,
        /// Why.
        source: InvokeError,
    },
}

/// Why one invocation of a plugin failed. The host keeps serving every other invocation.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No instance with that id is loaded.
    #[error("no plugin instance named `{0}`")]
    UnknownInstance(String),
    /// The instance does not implement the world this call needs.
    #[error("instance `{id}` is a {actual}, not a {expected}")]
    WrongKind {
        /// The instance id.
        id: String,
        /// What the call needs.
        expected: &'static str,
        /// What the instance is.
        actual: &'static str,
    },
    /// The plugin ran and answered with an error of the contract.
    #[error("plugin answered with an error: {}", describe(.0))]
    Plugin(WitError),
    /// The invocation ran past its deadline (including time waiting for a concurrency slot).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past its limit.
    #[error("out of memory: the limit is {limit_mib} MiB")]
    OutOfMemory {
        /// The limit that was hit.
        limit_mib: u32,
    },
    /// The plugin used up its fuel budget.
    #[error("used up its fuel budget of {0} units")]
    OutOfFuel(u64),
    /// The plugin recursed until its stack overflowed.
    #[error("stack overflow\n{backtrace}")]
    StackOverflow {
        /// The guest's call stack when it trapped.
        backtrace: String,
    },
    /// The plugin trapped: a panic, an `unreachable`, an out-of-bounds access, ...
    #[error("trapped: {message}\n{backtrace}")]
    Trap {
        /// What the trap was.
        message: String,
        /// The guest's call stack when it trapped.
        backtrace: String,
    },
    /// The plugin returned data that breaks the contract (invalid UTF-8, bad JSON, bad events).
    #[error("returned invalid output: {0}")]
    InvalidOutput(String),
    /// The host itself failed; a bug worth reporting.
    #[error("host error: {0}")]
    Internal(String),
}

impl InvokeError {
    /// A short name for the kind of failure, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::UnknownInstance(_) => "unknown-instance",
            InvokeError::WrongKind { .. } => "wrong-kind",
            InvokeError::Plugin(_) => "plugin-error",
            InvokeError::Timeout(_) => "timeout",
            InvokeError::OutOfMemory { .. } => "out-of-memory",
            InvokeError::OutOfFuel(_) => "out-of-fuel",
            InvokeError::StackOverflow { .. } => "stack-overflow",
            InvokeError::Trap { .. } => "trap",
            InvokeError::InvalidOutput(_) => "invalid-output",
            InvokeError::Internal(_) => "internal",
        }
    }

    /// Whether retrying the same invocation later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Plugin(e) => matches!(
                e,
                WitError::RateLimited(_)
                    | WitError::Timeout(_)
                    | WitError::Upstream(_)
                    | WitError::Internal(_)
            ),
            InvokeError::Timeout(_) | InvokeError::Internal(_) => true,
            _ => false,
        }
    }

    /// The error as a plugin sees it when this invocation served one of its capability calls.
    pub(crate) fn into_wit_error(self) -> WitError {
        match self {
            InvokeError::Plugin(e) => e,
            InvokeError::Timeout(d) => WitError::Timeout(format!("no answer within {d:?}")),
            InvokeError::UnknownInstance(m) => WitError::Denied(format!("no instance named `{m}`")),
            other => WitError::Upstream(UpstreamFailure { status: 0, message: other.to_string() }),
        }
    }
}

/// Renders a contract error for people: its case and its message.
pub fn describe(e: &WitError) -> String {
    match e {
        WitError::InvalidInput(m) => format!("invalid input: {m}"),
        WitError::Unauthorized(m) => format!("unauthorized: {m}"),
        WitError::NotFound(m) => format!("not found: {m}"),
        WitError::Denied(m) => format!("denied: {m}"),
        WitError::RateLimited(Some(ms)) => format!("rate limited: retry after {ms} ms"),
        WitError::RateLimited(None) => "rate limited".into(),
        WitError::Timeout(m) => format!("timeout: {m}"),
        WitError::Upstream(u) => format!("upstream answered {}: {}", u.status, u.message),
        WitError::Internal(m) => format!("internal: {m}"),
        WitError::QuotaExceeded(m) => format!("quota exceeded: {m}"),
    }
}
