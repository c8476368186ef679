//! The process's one wasmtime [`Engine`], configured for untrusted plugins, and the thread that
//! advances its epoch so that deadlines interrupt plugins stuck in wasm code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The engine-wide settings that a [`crate::HostBuilder`] chooses.
#[derive(Debug, Clone)]
pub(crate) struct EngineSettings {
    /// The largest memory any plugin may be granted, in MiB: the pooling allocator's slot size.
    pub max_memory_mib: u32,
    /// How many plugin instances may be alive at once across the whole host.
    pub max_live_instances: u32,
    /// Count wasm instructions so that per-plugin fuel budgets can be enforced. Costs some speed.
    pub fuel_metering: bool,
    /// How often the epoch advances: the granularity of deadlines.
    pub epoch_tick: Duration,
}

/// What one instance under `limits` may hold of the engine's pools, in units of what the pools
/// hold per live instance (two memories, eight core instances, eight tables: see
/// [`build_engine`]). Kept instances ([`crate::spec::Reuse`]) are counted by it, so that all
/// of them together hold at most half of every pool.
pub(crate) fn instance_weight(limits: &crate::limits::Limits) -> usize {
    [1, limits.max_memories.div_ceil(2), limits.max_instances.div_ceil(8), limits.max_tables.div_ceil(8)]
        .into_iter()
        .max()
        .unwrap_or(1) as usize
}

pub(crate) fn build_engine(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let n = settings.max_live_instances;
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_memory_size((settings.max_memory_mib as usize) << 20)
        // Reset only the pages an instance dirtied (Linux 6.7+; ignored elsewhere), keeping them
        // resident: most of the cost of a fresh instance is resetting the last one's memory.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(settings.fuel_metering)
        // Plugins recurse in wasm, not on the host's stack: cap wasm's stack well below the fiber's.
        .max_wasm_stack(1 << 20)
        .async_stack_size(2 << 20)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64))
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances the engine's epoch every tick until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new().name("plugboard-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
