//! Enforcing the resource limits an operator sets per plugin instance ([`Limits`], from the
//! manifest): the store limiter for memory and tables inside wasmtime, and the bounds on what
//! one invocation may make the host copy and hold.

pub use plugboard_manifest::Limits;

/// The most bytes a plugin may pass the host in one call, or return from one export
/// (wasmtime's "hostcall fuel"): enough for the largest value any single limit allows, with
/// room for headers and attribute lists. It stops a plugin from making the host copy more
/// than its own memory holds (one string referenced by many list elements is copied once per
/// element) before any per-item check can run.
pub(crate) fn hostcall_bytes(limits: &Limits) -> usize {
    let largest = [
        limits.max_output_bytes as usize,
        limits.max_http_request_bytes as usize,
        limits.max_event_bytes as usize,
        crate::keyvalue::MAX_VALUE_BYTES,
    ];
    largest.into_iter().max().unwrap_or(0).saturating_add(1 << 20)
}

/// Adds `bytes` to what one invocation made the host hold (`held`), unless that passes
/// `max_output_bytes`; then says so and leaves `held` as it was.
pub(crate) fn hold_output(held: &mut usize, bytes: usize, limits: &Limits) -> Result<(), String> {
    let limit = limits.max_output_bytes as usize;
    match held.checked_add(bytes) {
        Some(total) if total <= limit => {
            *held = total;
            Ok(())
        }
        _ => Err(format!(
            "the invocation's output (events, kept log lines, reply or action output) would pass \
             its limit of {limit} bytes (max_output_bytes)"
        )),
    }
}

/// Enforces [`Limits`] on one store, and remembers whether a memory limit was hit so that the
/// resulting trap can be reported as "out of memory" rather than as a plugin bug.
pub(crate) struct StoreLimiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    pub(crate) memory_exhausted: bool,
}

/// The error a denied memory growth raises inside wasmtime.
#[derive(Debug, thiserror::Error)]
#[error("linear memory limit of {0} bytes exceeded")]
pub(crate) struct MemoryLimitExceeded(pub usize);

impl StoreLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        StoreLimiter {
            memory_bytes: limits.memory_bytes(),
            table_elements: limits.max_table_elements as usize,
            instances: limits.max_instances as usize,
            tables: limits.max_tables as usize,
            memories: limits.max_memories as usize,
            memory_exhausted: false,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_exhausted = true;
            // Trap at once: a guest allocator that sees a failed grow usually aborts with a
            // message nobody reads; the trap keeps the real cause and a backtrace to it.
            return Err(MemoryLimitExceeded(self.memory_bytes).into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}
