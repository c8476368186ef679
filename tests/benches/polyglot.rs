//! Plugins in other languages on a fresh instance per call, side by side with the Rust echo
//! plugin in the same run: the Python connector built by componentize-py
//! (`tests/python-guest`, about 18 MB) and the JavaScript one built by componentize-js
//! (`tests/js-guest`, about 12 MB), each running a trivial action (`shout`) and `handle` (a kv
//! increment, an event).

use std::time::{Duration, Instant};

use plugboard::{Host, PluginSpec};
use plugboard_tests::{ECHO, median};
use serde_json::json;

async fn per_call(host: &Host, id: &str, action: &str, input: &serde_json::Value, n: usize) -> Duration {
    // One call first: the first instance pays for faulting in the image.
    host.invoke(id, action, input).await.unwrap();
    let mut runs = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        host.invoke(id, action, input).await.unwrap();
        runs.push(t.elapsed());
    }
    median(runs)
}

/// Like [`per_call`], each call after the host sat idle for 5 ms (as when events arrive one by
/// one): caches and the CPU are no longer warm from the previous call.
async fn per_call_after_idle(
    host: &Host,
    id: &str,
    action: &str,
    input: &serde_json::Value,
    n: usize,
) -> Duration {
    let mut runs = Vec::new();
    for _ in 0..n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = Instant::now();
        host.invoke(id, action, input).await.unwrap();
        runs.push(t.elapsed());
    }
    median(runs)
}

async fn per_handle(host: &Host, id: &str, n: usize) -> Duration {
    let mut runs = Vec::new();
    for _ in 0..n {
        let event = plugboard::Event::json("orders/create", "shop", &json!({ "id": 1 })).unwrap();
        let t = Instant::now();
        host.handle(id, event).await.unwrap();
        runs.push(t.elapsed());
    }
    median(runs)
}

/// One component's figures: a trivial action back to back, the same after 5 ms idle, and
/// `handle` (none for the Rust echo plugin, whose `handle` is measured by the pipeline bench).
struct Row {
    back_to_back: Duration,
    after_idle: Duration,
    handle: Option<Duration>,
}

async fn row(host: &Host, id: &str, action: &str, input: &serde_json::Value, n: usize, handle: bool) -> Row {
    let back_to_back = per_call(host, id, action, input, n).await;
    let handle = if handle { Some(per_handle(host, id, n / 4).await) } else { None };
    let after_idle = per_call_after_idle(host, id, action, input, (n / 20).max(100)).await;
    Row { back_to_back, after_idle, handle }
}

fn print(name: &str, fresh: &Row, kept: &Row) {
    let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    let handle = |r: &Row| r.handle.map(us).unwrap_or_else(|| "-".into());
    println!(
        "  {name:<38} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
        us(fresh.back_to_back),
        us(fresh.after_idle),
        handle(fresh),
        us(kept.back_to_back),
        us(kept.after_idle),
        handle(kept)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let host = Host::builder().build().unwrap();
        let python = plugboard_tests::python_component()
            .expect("the Python component (./dev setup installs componentize-py)");
        let js = plugboard_tests::js_component().expect("the JavaScript component (needs node and npm)");
        let grants =
            plugboard::Grants::none().with(plugboard::Capability::Kv).with(plugboard::Capability::Log);
        // Each component twice: a fresh instance per call (the default), and instances reused
        // for up to 1,000 calls (`reuse = { calls = 1000 }`).
        let reuse = plugboard::Reuse { calls: 1000, idle_secs: 60 };
        for (id, wasm) in [("rust", std::path::PathBuf::from(ECHO)), ("python", python), ("js", js)] {
            let spec = PluginSpec::new(id, &wasm).with_grants(grants.clone());
            host.load(spec.clone()).await.unwrap();
            let kept = PluginSpec { id: format!("{id}-kept"), ..spec }.with_reuse(reuse);
            host.load(kept).await.unwrap();
        }
        let text = json!({ "text": "hi" });
        let mut rows = Vec::new();
        for (name, id, action, input, handle) in [
            ("Rust echo `ping`", "rust", "ping", json!({}), false),
            ("Python (componentize-py) `shout`", "python", "shout", text.clone(), true),
            ("JavaScript (componentize-js) `shout`", "js", "shout", text.clone(), true),
        ] {
            let fresh = row(&host, id, action, &input, 2_000, handle).await;
            let kept = row(&host, &format!("{id}-kept"), action, &input, 2_000, handle).await;
            rows.push((name, fresh, kept));
        }
        println!("median µs per call (same run): a fresh instance per call | instances reused (reuse = {{ calls = 1000 }})");
        println!(
            "  {:<38} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
            "", "fresh", "idle 5ms", "handle", "reused", "idle 5ms", "handle"
        );
        for (name, fresh, kept) in &rows {
            print(name, fresh, kept);
        }
    });
}
