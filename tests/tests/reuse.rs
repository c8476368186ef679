//! Instance reuse (`reuse = { calls, idle_secs }`), issue 13's answer for language runtimes that
//! are slow to set up: by default nothing one invocation leaves in a plugin's memory reaches the
//! next; with reuse it does, for at most `calls` invocations and `idle_secs` of idleness, and
//! never after a trap or a limit, nor into a recorded invocation.

mod common;

use std::time::Duration;

use plugboard::runtime::recording::Record;
use plugboard::{Capability, Grants, Host, InvokeError, Limits, PluginSpec, Reuse};
use plugboard_tests::*;
use serde_json::{Value, json};

use common::host;

fn keeper(id: &str, reuse: Option<Reuse>) -> PluginSpec {
    let limits = Limits { memory_mib: 16, max_concurrency: 1, ..Limits::default() };
    let spec =
        PluginSpec::new(id, KEEPER).with_grants(Grants::none().with(Capability::Log)).with_limits(limits);
    match reuse {
        Some(reuse) => spec.with_reuse(reuse),
        None => spec,
    }
}

/// What the instance remembered after being told `value`.
async fn tell(host: &Host, id: &str, value: &str) -> Vec<String> {
    let done = host.invoke(id, "remember", &json!({ "value": value })).await.unwrap();
    assert_eq!(done.logs.len(), 1, "each invocation keeps its own log lines only: {:?}", done.logs);
    let remembered = done.output["remembered"].as_array().cloned().unwrap_or_default();
    remembered.iter().filter_map(Value::as_str).map(str::to_owned).collect()
}

#[tokio::test]
async fn fresh_instances_share_nothing_and_reused_ones_share_what_the_operator_chose() {
    let host = host();
    host.load(keeper("fresh", None)).await.unwrap();
    assert_eq!(tell(&host, "fresh", "alice's card").await, ["alice's card"]);
    assert_eq!(tell(&host, "fresh", "bob's card").await, ["bob's card"], "nothing of alice's reached bob");

    let info = host.load(keeper("kept", Some(Reuse { calls: 3, idle_secs: 60 }))).await.unwrap();
    assert_eq!(serde_json::to_value(&info).unwrap()["reuse"], json!({ "calls": 3, "idle_secs": 60 }));
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    assert_eq!(tell(&host, "kept", "b").await, ["a", "b"], "the operator chose to share");
    assert_eq!(tell(&host, "kept", "c").await, ["a", "b", "c"]);
    assert_eq!(tell(&host, "kept", "d").await, ["d"], "an instance serves `calls` invocations, then goes");
    assert_eq!(tell(&host, "kept", "e").await, ["d", "e"]);
}

#[tokio::test]
async fn a_trap_or_a_limit_drops_the_reused_instance() {
    let host = host();
    host.load(keeper("kept", Some(Reuse { calls: 100, idle_secs: 60 }))).await.unwrap();
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    let crashed = host.invoke("kept", "crash", &json!({ "value": "b" })).await.unwrap_err();
    assert!(
        matches!(&crashed, InvokeError::Trap { message, .. } if message.contains("remembering 2")),
        "{crashed}"
    );
    assert_eq!(tell(&host, "kept", "c").await, ["c"], "the crashed instance was not kept");

    // Memory grows across invocations of one instance, and stays within the instance's limit.
    let grown = host.invoke("kept", "grow", &json!({ "mib": 4 })).await.unwrap();
    assert_eq!(grown.output["held_mib"], 4);
    let grown = host.invoke("kept", "grow", &json!({ "mib": 4 })).await.unwrap();
    assert_eq!(grown.output["held_mib"], 8, "the same instance served both");
    let over = host.invoke("kept", "grow", &json!({ "mib": 8 })).await.unwrap_err();
    assert!(matches!(over, InvokeError::OutOfMemory { limit_mib: 16 }), "{over}");
    assert_eq!(tell(&host, "kept", "d").await, ["d"], "the instance that hit its limit was not kept");

    // Its stderr capture (for crash reports) is not emptied between invocations: an instance that
    // used half of it is not kept, so that the next crash report has room.
    host.invoke("kept", "stderr", &json!({ "bytes": 100 })).await.unwrap();
    assert_eq!(tell(&host, "kept", "e").await, ["d", "e"]);
    host.invoke("kept", "stderr", &json!({ "bytes": 3000 })).await.unwrap();
    assert_eq!(tell(&host, "kept", "f").await, ["f"]);
    let crashed = host.invoke("kept", "crash", &json!({})).await.unwrap_err();
    assert!(
        matches!(&crashed, InvokeError::Trap { message, .. } if message.contains("keeper crashed")),
        "{crashed}"
    );
}

/// WASI handles a plugin opens and never closes live in the host's memory, outside
/// `memory_mib`: an instance holding more than the bound is not kept, so they cannot pile up
/// call after call.
#[tokio::test]
async fn an_instance_holding_many_open_handles_is_not_kept() {
    let host = host();
    host.load(keeper("kept", Some(Reuse { calls: 100, idle_secs: 60 }))).await.unwrap();
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    host.invoke("kept", "handles", &json!({ "count": 8 })).await.unwrap();
    assert_eq!(tell(&host, "kept", "b").await, ["a", "b"], "a few open handles: still kept");
    host.invoke("kept", "handles", &json!({ "count": 100 })).await.unwrap();
    assert_eq!(tell(&host, "kept", "c").await, ["c"], "past the bound: dropped");
}

#[tokio::test]
async fn an_instance_that_ran_out_of_time_is_not_kept() {
    let host = host();
    let limits = Limits { timeout_ms: 300, max_concurrency: 1, ..Limits::default() };
    let spec = keeper("kept", Some(Reuse { calls: 100, idle_secs: 60 })).with_limits(limits);
    host.load(spec).await.unwrap();
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    let spun = host.invoke("kept", "spin", &json!({ "value": "b" })).await.unwrap_err();
    assert!(matches!(spun, InvokeError::Timeout(_)), "{spun}");
    assert_eq!(tell(&host, "kept", "c").await, ["c"], "the instance stopped half-way was dropped");
}

#[tokio::test]
async fn a_recorded_invocation_runs_in_a_fresh_instance() {
    let host = host();
    let spec = keeper("kept", Some(Reuse { calls: 100, idle_secs: 60 })).with_record(Record::All);
    host.load(spec).await.unwrap();
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    assert_eq!(tell(&host, "kept", "b").await, ["b"], "a recording must hold all it depended on");
}

#[tokio::test]
async fn an_idle_instance_is_dropped_after_its_idle_time() {
    let host = host();
    host.load(keeper("kept", Some(Reuse { calls: 100, idle_secs: 1 }))).await.unwrap();
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    assert_eq!(tell(&host, "kept", "b").await, ["a", "b"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(tell(&host, "kept", "c").await, ["c"]);
}

#[tokio::test]
async fn a_reload_starts_from_fresh_instances_of_the_new_build() {
    let host = host();
    host.load(keeper("kept", Some(Reuse { calls: 100, idle_secs: 60 }))).await.unwrap();
    assert_eq!(tell(&host, "kept", "a").await, ["a"]);
    let bytes = std::fs::read(KEEPER).unwrap();
    host.reload_bytes("kept", &bytes).await.unwrap();
    assert_eq!(tell(&host, "kept", "b").await, ["b"]);
}

#[tokio::test]
async fn reuse_is_refused_on_an_ai_provider_and_out_of_range() {
    let host = host();
    let provider = PluginSpec::new("ai", CANNED_AI).with_reuse(Reuse { calls: 10, idle_secs: 60 });
    let refused = host.load(provider).await.unwrap_err().to_string();
    assert!(refused.contains("`reuse` is for connectors"), "{refused}");
    let refused = host.load(keeper("kept", Some(Reuse { calls: 0, idle_secs: 60 }))).await.unwrap_err();
    assert!(refused.to_string().contains("reuse: calls = 0"), "{refused}");
}
