//! Memory and start-up figures that criterion does not fit:
//!
//! 1. Resident memory of 100 small, distinct plugins loaded (compiled, pre-linked, idle),
//!    against the same process before loading them (the baseline).
//! 2. Loading a large component on a restart with a warm compile cache, against compiling it
//!    (the baseline). The large component is `$PLUGBOARD_LARGE_COMPONENT`, else the Python test
//!    connector built with componentize-py (about 18 MB).
//!
//! Prints one line per figure; `./dev bench` runs it.

use std::time::Instant;

use plugboard::{Host, PluginSpec};
use plugboard_tests::{ECHO, median};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The component with a custom section appended: same behaviour, a different digest, so the
/// host compiles and keeps it as a plugin of its own.
fn distinct(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = format!("plugboard-bench-{n}");
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

/// In a child process (so that nothing from compiling inflates it): resident memory before and
/// after loading the 100 plugins from a warm compile cache, as after a restart.
async fn load_from_cache(dir: &str) {
    let echo = std::fs::read(ECHO).unwrap();
    let host = Host::builder().compile_cache_dir(dir).build().unwrap();
    host.load_bytes(PluginSpec::new("warmup", ECHO), &distinct(&echo, 1000)).await.unwrap();
    let before = rss_mib();
    for n in 0..100 {
        let info =
            host.load_bytes(PluginSpec::new(&format!("p{n}"), ECHO), &distinct(&echo, n)).await.unwrap();
        assert!(info.compiled_from_cache);
    }
    let after = rss_mib();
    println!(
        "footprint: 100 distinct {} KB plugins loaded from a warm cache (a restart): {after:.1} MiB resident \
         ({before:.1} MiB with none, +{:.1} MiB, {:.2} MiB each)",
        echo.len() / 1000,
        after - before,
        (after - before) / 100.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if let Some(i) = args.iter().position(|a| a == "--child-load-from-cache") {
        rt.block_on(load_from_cache(&args[i + 1]));
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let host = Host::builder().compile_cache_dir(cache.path()).build().unwrap();
        let echo = std::fs::read(ECHO).unwrap();
        // Warm up the allocator and the engine with one plugin, then measure 100 more.
        host.load_bytes(PluginSpec::new("warmup", ECHO), &distinct(&echo, 1000)).await.unwrap();
        let before = rss_mib();
        for n in 0..100 {
            host.load_bytes(PluginSpec::new(&format!("p{n}"), ECHO), &distinct(&echo, n)).await.unwrap();
        }
        let after = rss_mib();
        println!(
            "footprint: 100 distinct {} KB plugins compiled and loaded: {:.1} MiB resident \
             ({before:.1} MiB before, +{:.1} MiB, {:.2} MiB each; includes what the allocator keeps after compiling)",
            echo.len() / 1000,
            after,
            after - before,
            (after - before) / 100.0
        );
        for n in [0, 50, 99] {
            host.invoke(&format!("p{n}"), "ping", &serde_json::json!({})).await.unwrap();
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--child-load-from-cache")
            .arg(cache.path())
            .status()
            .unwrap();
        assert!(child.success());

        let large = match std::env::var("PLUGBOARD_LARGE_COMPONENT") {
            Ok(path) => path,
            Err(_) => plugboard_tests::python_component()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| {
                    eprintln!("no Python component ({e}); measuring the echo plugin instead");
                    ECHO.to_owned()
                }),
        };
        let size = std::fs::metadata(&large).map(|m| m.len()).unwrap_or(0);
        let cache = tempfile::tempdir().unwrap();
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for round in 0..5 {
            let dir = cache.path().join(format!("round{round}"));
            // A cold start compiles and fills the cache...
            let host = Host::builder().compile_cache_dir(&dir).build().unwrap();
            let t = Instant::now();
            let info = host.load(PluginSpec::new("large", &large)).await.unwrap();
            cold.push(t.elapsed());
            assert!(!info.compiled_from_cache);
            drop(host);
            // ...and a restart (a new host, as after a process restart) loads from it.
            let host = Host::builder().compile_cache_dir(&dir).build().unwrap();
            let t = Instant::now();
            let info = host.load(PluginSpec::new("large", &large)).await.unwrap();
            warm.push(t.elapsed());
            assert!(info.compiled_from_cache);
        }
        println!(
            "restart: loading {large} ({:.1} MB): warm cache median {:?}, cold compile median {:?} (5 rounds)",
            size as f64 / 1e6,
            median(warm),
            median(cold)
        );
    });
}
