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
    /// Reset only the pages an instance dirtied (found by the kernel's page map), not its whole
    /// memory. Safe only where this process's memory cannot be swapped out: see
    /// [`swap_may_take_pages`].
    pub reset_dirty_pages_only: bool,
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
        // Off where pages can be swapped out (see `swap_may_take_pages`).
        .pagemap_scan(if settings.reset_dirty_pages_only {
            wasmtime::Enabled::Auto
        } else {
            wasmtime::Enabled::No
        })
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

/// Whether the kernel may swap out this process's memory: a swap device is on and the process's
/// cgroup (v2), or one above it, does not set `memory.swap.max` to 0. Where it may, a fresh
/// instance must not rely on the kernel's page map to find what the last instance in its slot
/// dirtied: wasmtime 48.0.10 (as 48.0.8) counts only pages present in memory as dirty, so a
/// page swapped out while an instance ran would keep that instance's data, and the next
/// instance of the same component in that slot would read it (fixed in wasmtime 48.0.11 and 50,
/// which this project's toolchain and registry cannot build yet). Unreadable files count as "it
/// may": the safe side. A cgroup v1 swap limit is not read, so it counts as "it may" too.
pub(crate) fn swap_may_take_pages() -> bool {
    swap_may_take_pages_from(|path| std::fs::read_to_string(path).ok())
}

fn swap_may_take_pages_from(read: impl Fn(&str) -> Option<String>) -> bool {
    let Some(swaps) = read("/proc/swaps") else { return true };
    // A header line, then one line per active swap device or file.
    if swaps.lines().skip(1).all(|line| line.trim().is_empty()) {
        return false;
    }
    // "0::/system.slice/plugboard.service": the process's place in the unified hierarchy.
    let Some(cgroup) = read("/proc/self/cgroup") else { return true };
    let Some(path) = cgroup.lines().find_map(|line| line.strip_prefix("0::")) else { return true };
    // A limit of 0 anywhere from the process's cgroup up to the root forbids swap.
    let mut dir = format!("/sys/fs/cgroup{}", path.trim().trim_end_matches('/'));
    loop {
        if read(&format!("{dir}/memory.swap.max")).is_some_and(|max| max.trim() == "0") {
            return false;
        }
        match dir.rfind('/') {
            Some(cut) if dir[..cut].len() >= "/sys/fs/cgroup".len() => dir.truncate(cut),
            _ => return true,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::swap_may_take_pages_from;

    const HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
    const SWAP_ON: &str =
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile   file\t\t4194300\t\t0\t\t-2\n";

    fn files(entries: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let entries: Vec<(String, String)> =
            entries.iter().map(|(path, text)| (path.to_string(), text.to_string())).collect();
        move |path| entries.iter().find(|(p, _)| p == path).map(|(_, text)| text.clone())
    }

    #[test]
    fn no_swap_device_means_dirty_pages_can_be_trusted() {
        assert!(!swap_may_take_pages_from(files(&[("/proc/swaps", HEADER)])));
    }

    #[test]
    fn a_swap_device_without_a_cgroup_limit_means_pages_may_be_swapped() {
        let read = files(&[
            ("/proc/swaps", SWAP_ON),
            ("/proc/self/cgroup", "0::/system.slice/plugboard.service\n"),
            ("/sys/fs/cgroup/system.slice/plugboard.service/memory.swap.max", "max\n"),
        ]);
        assert!(swap_may_take_pages_from(read));
    }

    #[test]
    fn a_zero_swap_limit_on_the_cgroup_or_above_it_keeps_pages_in_memory() {
        for limited in ["/sys/fs/cgroup/system.slice/plugboard.service", "/sys/fs/cgroup/system.slice"] {
            let limit = format!("{limited}/memory.swap.max");
            // The first entry for a path wins: the limit, then "max" for the service's own.
            let read = files(&[
                (&limit, "0\n"),
                ("/proc/swaps", SWAP_ON),
                ("/proc/self/cgroup", "0::/system.slice/plugboard.service\n"),
                ("/sys/fs/cgroup/system.slice/plugboard.service/memory.swap.max", "max\n"),
            ]);
            assert!(!swap_may_take_pages_from(read), "limited at {limited}");
        }
    }

    #[test]
    fn what_cannot_be_read_counts_as_swappable() {
        assert!(swap_may_take_pages_from(files(&[])));
        assert!(swap_may_take_pages_from(files(&[("/proc/swaps", SWAP_ON)])));
        // cgroup v1 only: no unified hierarchy line.
        let v1 = files(&[("/proc/swaps", SWAP_ON), ("/proc/self/cgroup", "4:memory:/plugboard\n")]);
        assert!(swap_may_take_pages_from(v1));
    }
}
