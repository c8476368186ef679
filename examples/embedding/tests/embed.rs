//! The embedding example runs the echo plugin built from source and shows what an embedder gets:
//! the plugin's events and logs, its config, and a refusal for what was not granted.

use std::process::Command;

#[test]
fn the_example_runs_a_plugin_with_the_runtime_alone() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_plugboard-embedding")).arg(plugboard_tests::ECHO).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("loaded echo "), "{stdout}");
    assert!(stdout.contains(r#"event echo/replied {"n":1}"#), "{stdout}");
    assert!(stdout.contains("event echo/seen"), "{stdout}");
    assert!(stdout.contains(r#"config {"greeting":"hello from the embedder"}"#), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("refused ") && l.contains("denied")), "{stdout}");
}
