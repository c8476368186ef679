//! Flow 1 recorded under the real server, then replayed with `plugboard replay` (identical, bit
//! for bit, with no request reaching the stand-ins), and a changed build of its step caught by
//! `plugboard plugin shadow` before it serves.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use plugboard::runtime::recording::Recording;
use plugboard_demo::flow::{Flow, repo};
use plugboard_demo::sample_order;
use serde_json::Value;

fn plugboard(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--cache-dir")
        .arg(repo().join("target/plugboard-cache"))
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every instance of flow 1 records everything.
const RECORD_ALL: [(&str, &str); 3] = [
    ("id = \"order-risk\"\n", "id = \"order-risk\"\nrecord = \"all\"\n"),
    ("id = \"shopify\"\n", "id = \"shopify\"\nrecord = \"all\"\n"),
    ("id = \"slack\"\n", "id = \"slack\"\nrecord = \"all\"\n"),
];

async fn recorded_flow() -> (Flow, Vec<Recording>) {
    let flow = Flow::start_with("order-risk", &RECORD_ALL).await.unwrap();
    for (id, total) in [(1001, "1249.00"), (1002, "35.00")] {
        flow.fakes.state.add_order(sample_order(id, "", total));
    }
    assert_eq!(
        flow.send_order(1001, "ship to a different address, card mismatch", "1249.00", "w-1").await.unwrap(),
        200
    );
    assert_eq!(flow.send_order(1002, "Thanks, love your shop!", "35.00", "w-2").await.unwrap(), 200);
    flow.settled().await.unwrap();
    let log = flow.host.recordings().clone();
    let recordings = tokio::task::spawn_blocking(move || {
        log.flush(Duration::from_secs(30));
        log.recent(None, 100)
    })
    .await
    .unwrap();
    (flow, recordings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_one_replays_bit_for_bit_without_the_network_and_a_changed_prompt_is_caught_by_shadow() {
    let (flow, recordings) = recorded_flow().await;
    let mut calls: Vec<String> =
        recordings.iter().map(|r| format!("{} {}", r.instance, r.summary().call)).collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            "order-risk handle",
            "order-risk handle",
            "shopify invoke add-order-tags",
            "shopify on-webhook",
            "shopify on-webhook",
            "slack invoke post-message",
        ],
        "every invocation of the recording instances"
    );
    let assessment = recordings.iter().find(|r| r.instance == "order-risk").unwrap();
    let asked: Vec<&str> = assessment.calls.iter().map(|c| c.call.as_str()).collect();
    assert!(asked.contains(&"ai.complete") && asked.contains(&"http.send"), "{asked:?}");
    // The recording holds the plugin's requests as it wrote them: placeholders, not tokens.
    let stored = serde_json::to_string(&recordings).unwrap();
    for token in [
        plugboard_demo::fakes::SHOPIFY_TOKEN,
        plugboard_demo::fakes::SLACK_TOKEN,
        plugboard_demo::fakes::OPENAI_KEY,
    ] {
        assert!(!stored.contains(token), "a credential is in a recording");
    }

    // Each replays identically through the CLI, and nothing reaches the stand-ins meanwhile.
    let received = flow.fakes.state.received().len();
    let config = flow.config_path();
    for recording in &recordings {
        let out = plugboard(&["replay", &recording.id, "--json"], &config);
        assert!(out.status.success(), "{}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["identical"], true, "{report:#}");
        assert_eq!(report["replayed"]["outcome"], report["recording"]["outcome"]);
        assert_eq!(report["replayed"]["unasked"], 0);
    }
    let out = plugboard(&["replay", &assessment.id], &config);
    assert!(text(&out).contains("identical: the same host calls"), "{}", text(&out));
    // An event id finds the recording of its delivery.
    let event = assessment.event_id.clone().unwrap();
    assert!(plugboard(&["replay", &event], &config).status.success());
    assert_eq!(flow.fakes.state.received().len(), received, "a replay sent a request");

    let out = plugboard(&["recordings", "--instance", "order-risk"], &config);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 2,
        "{}",
        text(&out)
    );

    // Exported as a fixture, the recording replays from the file on a build, with no
    // configuration: from the CLI, and from the Python and TypeScript SDKs' test harnesses.
    let fixtures = tempfile::tempdir().unwrap();
    let out = plugboard(&["replay", &assessment.id, "--export", fixtures.path().to_str().unwrap()], &config);
    assert!(out.status.success(), "{}", text(&out));
    let fixture = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(fixture.ends_with(".json") && Path::new(&fixture).exists(), "{}", text(&out));
    let rust_build = plugboard_demo::flow::guest_dir().join("order_risk.wasm");
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["replay", "--from", &fixture, "--with", rust_build.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success() && text(&out).contains("identical"), "{}", text(&out));
    let python = plugboard_tests::python_order_risk().unwrap();
    let check = format!(
        "from plugboard_sdk.testing import replay_fixture\n\
         r = replay_fixture({fixture:?}, {python:?})\n\
         assert r.identical and r.divergence() is None, r.report\n\
         print('identical')"
    );
    let out = Command::new("python3")
        .args(["-c", &check])
        .env("PYTHONPATH", repo().join("sdk/python"))
        .env("PLUGBOARD_BIN", env!("CARGO_BIN_EXE_plugboard"))
        .env("PLUGBOARD_CACHE_DIR", repo().join("target/plugboard-cache"))
        .output()
        .unwrap();
    assert!(out.status.success() && text(&out).contains("identical"), "{}", text(&out));
    let sdk = repo().join("sdk/typescript");
    plugboard_tests::npm_ci(&sdk).unwrap();
    let typescript = plugboard_tests::typescript_order_risk().unwrap();
    let check = format!(
        "import {{ replayFixture }} from './src/testing.ts';\n\
         const r = replayFixture({fixture:?}, {typescript:?});\n\
         if (!r.identical) throw new Error(JSON.stringify(r.report));\n\
         console.log('identical');"
    );
    let out = Command::new("node")
        .args(["--import", "tsx", "--input-type=module", "-e", &check])
        .current_dir(&sdk)
        .env("PLUGBOARD_BIN", env!("CARGO_BIN_EXE_plugboard"))
        .env("PLUGBOARD_CACHE_DIR", repo().join("target/plugboard-cache"))
        .output()
        .unwrap();
    assert!(out.status.success() && text(&out).contains("identical"), "{}", text(&out));

    // The Python and TypeScript rewrites of the step, tried on the recorded orders before they
    // serve: the same host calls, the same events, byte for byte.
    for rewrite in
        [plugboard_tests::python_order_risk().unwrap(), plugboard_tests::typescript_order_risk().unwrap()]
    {
        let out = plugboard(&["plugin", "shadow", "order-risk", rewrite.to_str().unwrap()], &config);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("identical  2"), "{}", text(&out));
    }

    // A changed build of the step (the Python version with another system prompt), tried on the
    // recorded orders before it serves: the model is asked something else, so the recorded
    // answers no longer apply and each replay leaves the recording at that call.
    let dir = tempfile::tempdir().unwrap();
    let app = std::fs::read_to_string(repo().join("examples/order-risk/python/app.py")).unwrap();
    let changed = app.replace("Be terse.", "Be thorough.");
    assert_ne!(changed, app);
    std::fs::write(dir.path().join("app.py"), changed).unwrap();
    let wasm = plugboard_tests::python_connector(dir.path(), &dir.path().join("order_risk.wasm")).unwrap();
    let out = plugboard(&["plugin", "shadow", "order-risk", wasm.to_str().unwrap(), "--last", "10"], &config);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("over the last 2 recordings") && shown.contains("identical  0"), "{shown}");
    assert!(shown.contains("`ai.complete`") && shown.contains("Be thorough."), "{shown}");
    assert_eq!(flow.fakes.state.received().len(), received, "a shadow run sent a request");
}

#[test]
fn a_file_that_is_not_a_recording_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.json");
    std::fs::write(&file, "{\"id\": \"\\u001b[31mred\"}").unwrap();
    let wasm = plugboard_tests::ECHO;
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["replay", "--from", file.to_str().unwrap(), "--with", wasm])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a recording") && !stderr.contains('\u{1b}'), "{stderr}");
}
