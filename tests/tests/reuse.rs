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

/// Waits until instance `id` has an instance prepared ahead (instantiating one takes well under
/// a second; the bound only turns a host that never prepares one into a failure).
async fn until_prepared(host: &Host, id: &str) {
    for _ in 0..6000 {
        if host.has_prepared_instance(id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no instance of `{id}` was prepared ahead in 30 s");
}

fn prepared_count(host: &Host, id: &str, ready: &str) -> u64 {
    host.metrics().counter("plugboard_prepared_instances_total", &[("instance", id), ("ready", ready)])
}

/// `prepare_ahead`: the next instance is instantiated before its invocation comes, and each one
/// serves one invocation only, so nothing of one event reaches the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_prepared_ahead_serves_one_invocation_and_the_next_is_ready() {
    let host = host();
    let info = host.load(keeper("ready", None).with_prepare_ahead()).await.unwrap();
    assert_eq!(serde_json::to_value(&info).unwrap()["prepare_ahead"], true);
    for value in ["alice's card", "bob's card", "carol's card"] {
        until_prepared(&host, "ready").await;
        assert_eq!(tell(&host, "ready", value).await, [value], "nothing of an earlier invocation");
    }
    assert_eq!(prepared_count(&host, "ready", "yes"), 3, "each invocation found one ready");
    assert_eq!(prepared_count(&host, "ready", "no"), 0);
    // Back to back, some find none ready and instantiate their own; none gets a used one.
    for i in 0..50 {
        let value = format!("event {i}");
        assert_eq!(tell(&host, "ready", &value).await, [value]);
    }
    assert_eq!(prepared_count(&host, "ready", "yes") + prepared_count(&host, "ready", "no"), 53);

    // One that trapped or ran out of memory is not kept either: the next one is fresh.
    until_prepared(&host, "ready").await;
    let grown = host.invoke("ready", "grow", &json!({ "mib": 4 })).await.unwrap();
    assert_eq!(grown.output["held_mib"], 4);
    until_prepared(&host, "ready").await;
    let grown = host.invoke("ready", "grow", &json!({ "mib": 4 })).await.unwrap();
    assert_eq!(grown.output["held_mib"], 4, "a fresh instance, not the one that grew");
    until_prepared(&host, "ready").await;
    host.invoke("ready", "crash", &json!({ "value": "x" })).await.unwrap_err();
    until_prepared(&host, "ready").await;
    assert_eq!(tell(&host, "ready", "dave's card").await, ["dave's card"]);

    // A prepared instance that waited longer than the plugin's timeout still gets the
    // invocation's whole deadline (not the one it was prepared under).
    let limits = Limits { timeout_ms: 300, memory_mib: 16, ..Limits::default() };
    host.load(keeper("quick", None).with_prepare_ahead().with_limits(limits)).await.unwrap();
    until_prepared(&host, "quick").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(tell(&host, "quick", "late").await, ["late"]);
    assert_eq!(prepared_count(&host, "quick", "yes"), 1);

    // Without `prepare_ahead`, none is ever prepared.
    host.load(keeper("fresh", None)).await.unwrap();
    assert_eq!(tell(&host, "fresh", "a").await, ["a"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!host.has_prepared_instance("fresh"));
    assert_eq!(prepared_count(&host, "fresh", "no"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_invocation_instantiates_its_own_instance() {
    let host = host();
    host.load(keeper("ready", None).with_prepare_ahead().with_record(Record::All)).await.unwrap();
    assert_eq!(tell(&host, "ready", "a").await, ["a"]);
    assert_eq!(tell(&host, "ready", "b").await, ["b"]);
    assert_eq!(prepared_count(&host, "ready", "yes") + prepared_count(&host, "ready", "no"), 0);
    // Every invocation is recorded, so none is prepared to sit unused.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!host.has_prepared_instance("ready"));
}

/// Prepared instances share the budget kept instances have (half of the engine's pools): past
/// it, none is prepared and invocations instantiate their own; a plugin that leaves frees its
/// share for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_prepared_only_within_the_hosts_budget() {
    // 16 live instances: a budget of 8, two instances with the default limits (each counts 4).
    let host = Host::builder().max_live_instances(16).build().unwrap();
    let ids = ["a", "b", "c"];
    for id in ids {
        let spec = PluginSpec::new(id, KEEPER).with_grants(Grants::none().with(Capability::Log));
        host.load(spec.with_prepare_ahead()).await.unwrap();
    }
    let prepared = || ids.into_iter().filter(|id| host.has_prepared_instance(id)).collect::<Vec<_>>();
    for _ in 0..6000 {
        if prepared().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = prepared();
    assert_eq!(ready.len(), 2, "two fit in the budget: {ready:?}");
    let left = ids.into_iter().find(|id| !ready.contains(id)).unwrap();
    assert_eq!(tell(&host, left, "its own").await, ["its own"], "it instantiates its own");
    assert_eq!(prepared_count(&host, left, "no"), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!host.has_prepared_instance(left), "still no room");

    assert!(host.unload(ready[0]));
    assert_eq!(tell(&host, left, "x").await, ["x"]);
    until_prepared(&host, left).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_prepare_ahead_on_or_off_reloads_the_instance() {
    let host = host();
    host.load(keeper("k", None)).await.unwrap();
    let info = host.reload_file(keeper("k", None).with_prepare_ahead()).await.unwrap();
    assert_eq!(serde_json::to_value(&info).unwrap()["prepare_ahead"], true);
    until_prepared(&host, "k").await;
    let info = host.reload_file(keeper("k", None)).await.unwrap();
    assert_eq!(serde_json::to_value(&info).unwrap().get("prepare_ahead"), None);
    assert!(!host.has_prepared_instance("k"), "the new build prepares nothing");
}

#[tokio::test]
async fn prepare_ahead_is_refused_with_reuse_and_on_an_ai_provider() {
    let host = host();
    let both = keeper("kept", Some(Reuse { calls: 10, idle_secs: 60 })).with_prepare_ahead();
    let refused = host.load(both).await.unwrap_err().to_string();
    assert!(refused.contains("prepare_ahead is for a fresh instance per invocation"), "{refused}");
    let provider = PluginSpec::new("ai", CANNED_AI).with_prepare_ahead();
    let refused = host.load(provider).await.unwrap_err().to_string();
    assert!(refused.contains("`prepare_ahead` is for connectors"), "{refused}");
}
