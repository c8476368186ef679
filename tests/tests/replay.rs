//! Recording and replay in the runtime: what an instance records, what a replay answers from the
//! recording (clocks and random included), where a changed build parts from it, and what a
//! recording must never hold.

mod common;

use std::sync::Arc;
use std::time::Duration;

use plugboard::egress::secrets::Secret;
use plugboard::runtime::recording::{MemoryRecordingLog, Record, Recording, RecordingLog};
use plugboard::{Capability, Grants, Host, PluginSpec};
use plugboard_tests::*;
use serde_json::{Value, json};

fn host_with(log: Arc<MemoryRecordingLog>) -> Host {
    Host::builder().epoch_tick(Duration::from_millis(2)).recording_log(log).build().unwrap()
}

fn dice(id: &str, wasm: &str, record: Option<Record>) -> PluginSpec {
    let spec =
        PluginSpec::new(id, wasm).with_grants(Grants::none().with(Capability::Kv).with(Capability::Emit));
    match record {
        Some(record) => spec.with_record(record),
        None => spec,
    }
}

fn published(recording: &Recording) -> Vec<Value> {
    recording.outcome.emitted.iter().map(|e| serde_json::from_slice(&e.payload).unwrap()).collect()
}

#[tokio::test]
async fn a_recorded_roll_replays_with_the_same_time_random_id_and_count_and_touches_nothing() {
    let log = Arc::new(MemoryRecordingLog::new(100));
    let host = host_with(log.clone());
    host.load(dice("dice", DICE, Some(Record::All))).await.unwrap();
    let first = host.invoke("dice", "roll", &json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = host.invoke("dice", "roll", &json!({})).await.unwrap();
    assert_ne!(first.output["id"], second.output["id"], "two rolls draw different random ids");
    assert_eq!(second.output["count"], 2);

    let recordings = log.recent(Some("dice"), 10);
    assert_eq!(recordings.len(), 2, "every invocation recorded");
    let recording = recordings.iter().find(|r| published(r)[0]["count"] == 1).unwrap().clone();
    let calls: Vec<&str> = recording.calls.iter().map(|c| c.call.as_str()).collect();
    for call in ["clock.wall", "kv.increment", "emit.publish"] {
        assert!(calls.contains(&call), "{call} is recorded: {calls:?}");
    }
    assert!(recording.build.starts_with("dice@0.1.0 sha256:"), "{}", recording.build);
    assert_eq!(recording.outcome.error, None);

    // Replayed later, the roll sees the recorded clock, random bytes and count: the same event,
    // bit for bit, and the same output.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let replayed = host.replay("dice", &recording).await.unwrap();
    assert!(replayed.identical_to(&recording), "{replayed:#?}");
    assert_eq!(serde_json::from_slice::<Value>(&replayed.outcome.emitted[0].payload).unwrap(), first.output);
    assert_eq!(replayed.outcome.emitted[0].payload, recording.outcome.emitted[0].payload);

    // The replay's kv.increment was answered from the recording: the real counter did not move,
    // and the replay itself was not recorded.
    assert_eq!(host.invoke("dice", "roll", &json!({})).await.unwrap().output["count"], 3);
    assert_eq!(log.recent(Some("dice"), 10).len(), 3);
}

#[tokio::test]
async fn a_changed_build_replayed_shows_where_it_parts_and_what_changed() {
    let log = Arc::new(MemoryRecordingLog::new(100));
    let host = host_with(log.clone());
    host.load(dice("dice", DICE, Some(Record::All))).await.unwrap();
    host.load(dice("dice-next", DICE_NEXT, None)).await.unwrap();
    host.invoke("dice", "roll", &json!({})).await.unwrap();
    let recording = log.recent(Some("dice"), 1).remove(0);

    let replayed = host.replay("dice-next", &recording).await.unwrap();
    assert!(!replayed.identical_to(&recording));
    assert!(replayed.build.starts_with("dice@0.1.0"), "{}", replayed.build);
    let divergence = replayed.divergence.as_ref().expect("the new build asks a call never recorded");
    assert_eq!(divergence.call, "kv.get");
    assert!(divergence.args.contains("house-rules"), "{divergence:?}");
    assert_eq!(divergence.recorded.as_ref().map(|(call, _)| call.as_str()), Some("emit.publish"));
    // The divergent call answered a typed error, which the plugin returned.
    let error = replayed.outcome.error.as_deref().unwrap();
    assert!(error.contains("internal") && error.contains("replay"), "{error}");
    assert!(replayed.outcome.emitted.is_empty());
    assert_eq!(replayed.unasked, 1, "the recorded publish was never asked");

    // Shadowing: the next build, loaded as a candidate of `dice` (not installed), replayed over
    // the instance's recent recordings.
    host.invoke("dice", "roll", &json!({})).await.unwrap();
    host.invoke("dice", "fail", &json!({})).await.unwrap_err();
    let recent = log.recent(Some("dice"), 10);
    let same = host.candidate("dice", &std::fs::read(DICE).unwrap()).await.unwrap();
    let report = host.shadow(&same, &recent).await;
    assert!(report.clean(), "{report:#?}");
    assert_eq!((report.replayed, report.identical), (3, 3));
    let next = host.candidate("dice", &std::fs::read(DICE_NEXT).unwrap()).await.unwrap();
    let report = host.shadow(&next, &recent).await;
    assert!(!report.clean());
    // The rolls that succeeded now fail (the divergent kv.get answers an error); the recorded
    // failure still fails, with another error: different.
    assert_eq!(
        (report.replayed, report.identical, report.failed, report.different),
        (3, 0, 2, 1),
        "{report:#?}"
    );
    assert_eq!(report.examples.len(), 3);
    assert_eq!(host.plugin("dice").unwrap().build, recording.build, "the candidate was never installed");
}

#[tokio::test]
async fn failures_mode_keeps_only_failed_invocations_and_their_error() {
    let log = Arc::new(MemoryRecordingLog::new(100));
    let host = host_with(log.clone());
    host.load(dice("dice", DICE, Some(Record::Failures))).await.unwrap();
    host.invoke("dice", "roll", &json!({})).await.unwrap();
    host.invoke("dice", "fail", &json!({})).await.unwrap_err();
    let kept = log.recent(None, 10);
    assert_eq!(kept.len(), 1, "only the failure is kept");
    let recording = &kept[0];
    assert!(recording.failed());
    assert!(recording.outcome.error.as_deref().unwrap().contains("the table fell over"));
    assert_eq!(published(recording)[0]["count"], 2);
    // Replaying a failure fails the same way.
    let replayed = host.replay("dice", recording).await.unwrap();
    assert!(replayed.identical_to(recording), "{replayed:#?}");
    assert_eq!(recording.summary().call, "invoke fail");
}

#[tokio::test]
async fn an_ai_provider_is_recorded_with_the_connector_that_asks_it_not_alone() {
    let host = Host::builder().build().unwrap();
    let refused = host.load(PluginSpec::new("ai", CANNED_AI).with_record(Record::All)).await.unwrap_err();
    assert!(refused.to_string().contains("`record` is for connectors"), "{refused}");
}

#[tokio::test]
async fn sampling_zero_records_nothing_and_an_oversized_recording_is_dropped_and_counted() {
    let log = Arc::new(MemoryRecordingLog::new(100));
    let host = Host::builder().recording_log(log.clone()).max_recording_bytes(64).build().unwrap();
    host.load(dice("never", DICE, Some(Record::Sampled(0.0)))).await.unwrap();
    host.load(dice("big", DICE, Some(Record::All))).await.unwrap();
    host.invoke("never", "roll", &json!({})).await.unwrap();
    host.invoke("big", "roll", &json!({})).await.unwrap();
    assert!(log.recent(None, 10).is_empty());
    let metrics = host.metrics().render();
    assert!(
        metrics.contains("plugboard_recordings_dropped_total{instance=\"big\",reason=\"too_large\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_recording_holds_neither_the_secret_nor_its_echo_and_replays_without_the_upstream() {
    let addr = common::http_server().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let log = Arc::new(MemoryRecordingLog::new(100));
    let host = host_with(log.clone());
    host.set_secret("token", Secret::new("s3cr3t-value", &[origin.as_str()]).unwrap());
    let grants = Grants::none().allow_http(&origin).allow_internal("127.0.0.1").with_secret("token");
    host.load(PluginSpec::new("echo", ECHO).with_grants(grants).with_record(Record::All)).await.unwrap();
    let input =
        json!({ "url": format!("{origin}/echo"), "headers": { "authorization": "Bearer {{secret:token}}" } });
    let live = host.invoke("echo", "fetch", &input).await.unwrap();
    let body = live.output["body"].as_str().unwrap();
    assert!(body.contains("authorization: Bearer") && !body.contains("s3cr3t-value"), "{body}");

    let recording = log.recent(Some("echo"), 1).remove(0);
    let text = serde_json::to_string(&recording).unwrap();
    assert!(!text.contains("s3cr3t-value"), "the secret is in the recording: {text}");
    assert!(text.contains("{{secret:token}}"), "the placeholder, as the plugin wrote it, is");

    // Served from the recording: a replay needs no upstream, even one that is gone.
    let replayed = Host::builder().build().unwrap();
    replayed.load(PluginSpec::new("echo", ECHO)).await.unwrap();
    let again = replayed.replay("echo", &recording).await.unwrap();
    assert!(again.identical_to(&recording), "{again:#?}");
    assert_eq!(replayed.calls().query(&Default::default()).len(), 0, "no outbound call was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_replays_and_shadows_and_a_reload_can_require_a_clean_shadow_run() {
    use plugboard_demo::flow::{ADMIN_TOKEN, Flow};
    let record = ("id = \"order-risk\"\n", "id = \"order-risk\"\nrecord = \"all\"\n");
    let flow = Flow::start_with("order-risk", &[record]).await.unwrap();
    flow.fakes.state.add_order(plugboard_demo::sample_order(1001, "", "1249.00"));
    assert_eq!(flow.send_order(1001, "card mismatch, ship elsewhere", "1249.00", "w-1").await.unwrap(), 200);
    flow.settled().await.unwrap();
    let log = flow.host.recordings().clone();
    tokio::task::spawn_blocking(move || log.flush(Duration::from_secs(30))).await.unwrap();

    let listed = flow.admin("/v1/recordings?instance=order-risk").await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["call"], "handle");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let whole = flow.admin(&format!("/v1/recordings/{id}")).await.unwrap();
    assert_eq!(whole["instance"], "order-risk");
    assert!(whole["calls"].as_array().unwrap().iter().any(|c| c["call"] == "ai.complete"), "{whole}");

    let admin = |method: reqwest::Method, path: &str| {
        flow.client.request(method, format!("{}{path}", flow.origin)).bearer_auth(ADMIN_TOKEN)
    };
    let received = flow.fakes.state.received().len();
    let json_of = async |request: reqwest::RequestBuilder| -> Value {
        request.send().await.unwrap().json().await.unwrap()
    };
    let replayed = json_of(admin(reqwest::Method::POST, &format!("/v1/recordings/{id}/replay"))).await;
    assert_eq!(replayed["identical"], true, "{replayed}");

    // Shadow: the loaded build is identical on its own recordings; another component is not.
    let same = std::fs::read(plugboard_demo::flow::guest_dir().join("order_risk.wasm")).unwrap();
    let report =
        json_of(admin(reqwest::Method::POST, "/v1/plugins/order-risk/shadow?last=5").body(same.clone()))
            .await;
    assert_eq!((report["replayed"].as_u64(), report["identical"].as_u64()), (Some(1), Some(1)), "{report}");
    let before = flow.host.plugin("order-risk").unwrap().build;
    let other = std::fs::read(DICE).unwrap();
    let refused = admin(reqwest::Method::PUT, "/v1/plugins/order-risk/wasm?require_shadow=5")
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let refused: Value = refused.json().await.unwrap();
    assert!(refused["error"].as_str().unwrap().contains("not reloaded"), "{refused}");
    assert_eq!(refused["report"]["failed"].as_u64(), Some(1), "{refused}");
    assert_eq!(flow.host.plugin("order-risk").unwrap().build, before, "the refused build was not installed");
    let accepted = admin(reqwest::Method::PUT, "/v1/plugins/order-risk/wasm?require_shadow=5")
        .body(same)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(flow.fakes.state.received().len(), received, "replays and shadow runs sent nothing");
    // An instance without recordings cannot pass a required shadow run.
    let none = admin(reqwest::Method::PUT, "/v1/plugins/slack/wasm?require_shadow=5")
        .body(vec![0u8; 8])
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 400);
}
