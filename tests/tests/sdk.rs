//! The SDK's promise to plugin authors: a wrong signature, or exporting a type that is not a
//! connector, fails to compile with a message that says what is wrong. A correct plugin compiles
//! (the control case, so that the test can fail).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `cargo check`s a one-file plugin crate and returns (success, compiler output).
fn check(name: &str, source: &str) -> (bool, String) {
    let root = workspace();
    let dir = root.join("target").join("sdk-compile-checks").join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nplugboard-sdk = {{ path = {:?} }}\nserde_json = \"1\"\n\n[workspace]\n",
            root.join("sdk").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    // Pin the same dependency versions as the workspace, and need no network.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&dir)
        .args(["check", "--offline", "--quiet", "--message-format", "short", "--target-dir"])
        .arg(root.join("target").join("sdk-compile-checks").join("target"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") || key == "RUSTFLAGS"
        {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("cargo runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const HEADER: &str = "use plugboard_sdk::{Connector, Error, Event, Metadata, NewEvent};\nstruct P;\n";

#[test]
fn a_correct_plugin_compiles() {
    let src = format!(
        "{HEADER}impl Connector for P {{\n  fn metadata() -> Metadata {{ Metadata::new(\"p\", \"0.1.0\", \"p\") }}\n  \
         fn handle(_e: Event) -> Result<Vec<NewEvent>, Error> {{ Ok(vec![]) }}\n}}\nplugboard_sdk::export_connector!(P);\n"
    );
    let (ok, out) = check("sdk_ok", &src);
    assert!(ok, "{out}");
}

#[test]
fn a_wrong_signature_is_a_clear_compile_error() {
    let src = format!(
        "{HEADER}impl Connector for P {{\n  fn metadata() -> Metadata {{ Metadata::new(\"p\", \"0.1.0\", \"p\") }}\n  \
         fn handle(_e: String) -> Result<Vec<NewEvent>, Error> {{ Ok(vec![]) }}\n}}\nplugboard_sdk::export_connector!(P);\n"
    );
    let (ok, out) = check("sdk_wrong_signature", &src);
    assert!(!ok);
    assert!(out.contains("method `handle` has an incompatible type for trait"), "{out}");
    assert!(out.contains("src/lib.rs:5"), "points at the author's line: {out}");
}

#[test]
fn exporting_a_type_that_is_not_a_connector_says_so() {
    let src = format!("{HEADER}plugboard_sdk::export_connector!(P);\n");
    let (ok, out) = check("sdk_not_a_connector", &src);
    assert!(!ok);
    assert!(out.contains("`P` is not a plugboard connector"), "{out}");
    assert!(out.contains("src/lib.rs:3"), "points at the export line: {out}");
}
