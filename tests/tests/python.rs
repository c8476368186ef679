//! The contract admits components built from Python: a connector built with componentize-py
//! loads, describes itself, and uses host capabilities within its grants.

mod common;

use plugboard::{Capability, Event, Grants, InvokeError, Limits, PluginSpec};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_connector_runs_in_the_host() {
    let wasm = plugboard_tests::python_component().unwrap();
    let host = common::host();
    let limits = Limits::default().with_memory_mib(128).with_timeout(std::time::Duration::from_secs(30));
    let info = host
        .load(
            PluginSpec::new("py", &wasm)
                .with_grants(Grants::none().with(Capability::Kv).with(Capability::Log))
                .with_limits(limits.clone()),
        )
        .await
        .unwrap();
    assert_eq!(info.name, "python-shout");
    assert!(info.size_bytes > 10_000_000, "a large component: {} bytes", info.size_bytes);
    assert_eq!(info.effective, vec![Capability::Kv, Capability::Log]);

    let shout = host.invoke("py", "shout", &json!({"text": "hello"})).await.unwrap();
    assert_eq!(shout.output, json!({"text": "HELLO"}));

    let event = Event::json("orders/create", "shop", &json!({})).unwrap();
    let done = host.handle("py", event.clone()).await.unwrap();
    assert_eq!(done.output[0].kind, "python/seen");
    assert_eq!(done.logs[0].message, "python saw orders/create");
    let again = host.handle("py", event.clone()).await.unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&again.output[0].payload).unwrap();
    assert_eq!(payload["count"], 2);

    // Python errors map to the contract's errors, and ungranted capabilities are denied.
    let err = host.invoke("py", "whisper", &json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Plugin(plugboard::types::Error::NotFound(_))), "{err}");
    host.load(PluginSpec::new("py-bare", &wasm).with_limits(limits)).await.unwrap();
    let err = host.handle("py-bare", event).await.unwrap_err();
    // componentize-py turns the import's `denied` into a Python exception that the handler
    // does not catch, so it comes back as the plugin's error.
    assert!(err.to_string().contains("denied") || matches!(err, InvokeError::Trap { .. }), "{err}");
}
