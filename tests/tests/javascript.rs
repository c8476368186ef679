//! The contract admits components built from JavaScript: a connector built with componentize-js
//! (`tests/js-guest`) loads, describes itself, and uses host capabilities within its grants.

mod common;

use plugboard::{Capability, Event, Grants, InvokeError, Limits, PluginSpec};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_connector_runs_in_the_host() {
    let wasm = plugboard_tests::js_component().unwrap();
    let host = common::host();
    let limits = Limits::default().with_memory_mib(128).with_timeout(std::time::Duration::from_secs(30));
    let info = host
        .load(
            PluginSpec::new("js", &wasm)
                .with_grants(Grants::none().with(Capability::Kv).with(Capability::Log))
                .with_limits(limits.clone()),
        )
        .await
        .unwrap();
    assert_eq!(info.name, "js-shout");
    assert_eq!(info.effective, vec![Capability::Kv, Capability::Log]);

    let shout = host.invoke("js", "shout", &json!({"text": "hello"})).await.unwrap();
    assert_eq!(shout.output, json!({"text": "HELLO"}));

    let event = Event::json("orders/create", "shop", &json!({})).unwrap();
    let done = host.handle("js", event.clone()).await.unwrap();
    assert_eq!(done.output[0].kind, "js/seen");
    assert_eq!(done.logs[0].message, "javascript saw orders/create");
    let again = host.handle("js", event.clone()).await.unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&again.output[0].payload).unwrap();
    assert_eq!(payload["count"], 2, "kv keeps the count across fresh instances");

    // A thrown `{ tag, val }` is the contract's error; ungranted capabilities are denied.
    let err = host.invoke("js", "whisper", &json!({})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Plugin(plugboard::types::Error::NotFound(_))), "{err}");
    host.load(PluginSpec::new("js-bare", &wasm).with_limits(limits)).await.unwrap();
    let err = host.handle("js-bare", event).await.unwrap_err();
    assert!(err.to_string().contains("denied") || matches!(err, InvokeError::Trap { .. }), "{err}");
}
