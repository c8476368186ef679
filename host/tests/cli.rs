//! The `plugboard` command as an operator uses it.

use std::process::Command;

use plugboard_tests::{ECHO, SNOOP};

fn plugboard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard")).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_shows_what_a_plugin_asks_for() {
    let (code, out, err) = plugboard(&["plugin", "inspect", ECHO]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("echo 0.1.0 (connector)"), "{out}");
    assert!(out.contains("requests permission to:"), "{out}");
    assert!(out.contains("- http   send HTTP requests to the hosts you allow"), "{out}");
    assert!(out.contains("action kv-roundtrip"), "{out}");

    let (code, out, _) = plugboard(&["plugin", "inspect", SNOOP]);
    assert_eq!(code, 0);
    assert!(out.contains("requests no capabilities"), "{out}");

    let (code, json, _) = plugboard(&["plugin", "inspect", "--json", ECHO]);
    assert_eq!(code, 0);
    let info: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(info["requested"].as_array().unwrap().len(), 6);
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_refuses_what_is_not_a_plugin() {
    let dir = std::env::temp_dir().join(format!("plugboard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("junk.wasm");
    std::fs::write(&file, "junk").unwrap();
    let (code, _, err) = plugboard(&["plugin", "inspect", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a valid plugboard component"), "{err}");
    let (code, _, err) = plugboard(&["plugin", "inspect", "/nonexistent.wasm"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read plugin file /nonexistent.wasm"), "{err}");
}

#[test]
fn call_runs_with_exactly_the_grants_given() {
    let (code, out, err) =
        plugboard(&["plugin", "call", ECHO, "--grant", "kv", "invoke", "kv-roundtrip", "--input", "[1]"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"deleted\": true"), "{out}");

    let (code, _, err) = plugboard(&["plugin", "call", ECHO, "--grant", "log", "invoke", "kv-roundtrip"]);
    assert_eq!(code, 1);
    assert!(err.contains("denied: capability `kv` is not granted"), "{err}");

    let (code, _, err) = plugboard(&["plugin", "call", ECHO, "--grant", "files", "invoke", "ping"]);
    assert_eq!(code, 2, "a usage error");
    assert!(err.contains("unknown capability `files`"), "{err}");
}
