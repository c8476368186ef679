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
    for call in ["clock.wall", "random.secure", "kv.increment", "emit.publish"] {
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
