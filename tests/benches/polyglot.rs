//! Plugins in other languages on a fresh instance per call, side by side with the Rust echo
//! plugin in the same run: the Python connector built by componentize-py
//! (`tests/python-guest`, about 18 MB) and the JavaScript one built by componentize-js
//! (`tests/js-guest`, about 12 MB), each running a trivial action (`shout`) and `handle` (a kv
//! increment, an event).

use std::time::{Duration, Instant};

use plugboard::{Host, PluginSpec};
use plugboard_tests::ECHO;
use serde_json::json;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let host = Host::builder().build().unwrap();
        host.load(PluginSpec::new("rust", ECHO)).await.unwrap();
        let python = plugboard_tests::python_component()
            .expect("the Python component (./dev setup installs componentize-py)");
        let grants =
            plugboard::Grants::none().with(plugboard::Capability::Kv).with(plugboard::Capability::Log);
        host.load(PluginSpec::new("python", &python).with_grants(grants.clone())).await.unwrap();
        let rust = per_call(&host, "rust", "ping", &json!({}), 2_000).await;
        let py = per_call(&host, "python", "shout", &json!({ "text": "hi" }), 2_000).await;
        let js = plugboard_tests::js_component().expect("the JavaScript component (needs node and npm)");
        host.load(PluginSpec::new("js", &js).with_grants(grants.clone())).await.unwrap();
        let js_shout = per_call(&host, "js", "shout", &json!({ "text": "hi" }), 2_000).await;
        let py_handle = per_handle(&host, "python", 500).await;
        let js_handle = per_handle(&host, "js", 500).await;
        let text = json!({ "text": "hi" });
        let rust_idle = per_call_after_idle(&host, "rust", "ping", &json!({}), 200).await;
        let py_idle = per_call_after_idle(&host, "python", "shout", &text, 100).await;
        let js_idle = per_call_after_idle(&host, "js", "shout", &text, 100).await;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("fresh instance per call, median µs (same run): back to back, and after 5 ms idle");
        println!("  Rust echo `ping`                       {:>9.1}   idle {:.1}", us(rust), us(rust_idle));
        println!(
            "  Python (componentize-py) `shout`       {:>9.1}   idle {:.1}   `handle` {:.1}",
            us(py),
            us(py_idle),
            us(py_handle)
        );
        println!(
            "  JavaScript (componentize-js) `shout`   {:>9.1}   idle {:.1}   `handle` {:.1}",
            us(js_shout),
            us(js_idle),
            us(js_handle)
        );
    });
}
