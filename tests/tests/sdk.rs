//! The SDK's promise to plugin authors: a wrong signature, or exporting a type that is not a
//! connector, fails to compile with a message that says what is wrong. A correct plugin compiles
//! (the control case, so that the test can fail).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// `cargo check`s a one-file plugin crate against the workspace's SDK and returns (success,
/// compiler output).
fn check(name: &str, source: &str) -> (bool, String) {
    let sdk = format!("plugboard-sdk = {{ path = {:?} }}\n", workspace().join("sdk").display().to_string());
    check_with(name, source, &sdk, &workspace().join("target").join("sdk-compile-checks").join("target"))
}

/// `cargo check`s a one-file plugin crate with the given dependency lines (and patches).
fn check_with(name: &str, source: &str, dependencies: &str, target: &Path) -> (bool, String) {
    let root = workspace();
    let dir = root.join("target").join("sdk-compile-checks").join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
             [workspace]\n\n[dependencies]\nserde_json = \"1\"\n{dependencies}"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    // Pin the same dependency versions as the workspace, and need no network.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let mut cmd = cargo(&dir);
    cmd.args(["check", "--offline", "--quiet", "--message-format", "short", "--target-dir"]).arg(target);
    let out = cmd.output().expect("cargo runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Cargo in `dir`, without the variables of the cargo running this test.
fn cargo(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("RUSTC") || key == "RUSTFLAGS"
        {
            cmd.env_remove(key);
        }
    }
    cmd
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

/// The `.wit` files of a directory, by name.
fn wit_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The SDK and its macros crate carry their own copy of the contract, so that each builds when
/// published alone. A change to `wit/` must reach both copies.
#[test]
fn the_sdk_copies_of_the_contract_are_the_contract() {
    let root = workspace();
    let contract = wit_files(&root.join("wit"));
    assert!(contract.contains_key("worlds.wit"), "{:?}", contract.keys());
    for copy in ["sdk/wit", "sdk/macros/wit"] {
        let files = wit_files(&root.join(copy));
        assert_eq!(files.keys().collect::<Vec<_>>(), contract.keys().collect::<Vec<_>>(), "{copy}");
        for (name, text) in &contract {
            assert!(files[name] == *text, "{copy}/{name} differs from wit/{name}: cp wit/*.wit {copy}/");
        }
    }
}

/// The SDK as it would be published: both crates packaged by `cargo package`, unpacked away from
/// the workspace's `wit/`, still build a plugin.
#[test]
fn the_packaged_sdk_builds_a_plugin_on_its_own() {
    let root = workspace();
    let dir = root.join("target").join("sdk-compile-checks").join("packaged");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = cargo(&root)
        .args(["package", "--offline", "--no-verify", "--allow-dirty", "--quiet"])
        .args(["-p", "plugboard-sdk-macros", "-p", "plugboard-sdk", "--target-dir"])
        .arg(dir.join("target"))
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let version = env!("CARGO_PKG_VERSION");
    for name in ["plugboard-sdk-macros", "plugboard-sdk"] {
        let status = Command::new("tar")
            .arg("xzf")
            .arg(dir.join(format!("target/package/{name}-{version}.crate")))
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "unpacking {name}");
    }
    let unpacked = |name: &str| format!("{:?}", dir.join(format!("{name}-{version}")).display().to_string());
    let dependencies = format!(
        "plugboard-sdk = {{ path = {} }}\n\n[patch.crates-io]\nplugboard-sdk-macros = {{ path = {} }}\n",
        unpacked("plugboard-sdk"),
        unpacked("plugboard-sdk-macros")
    );
    let src = format!(
        "{HEADER}impl Connector for P {{\n  fn metadata() -> Metadata {{ Metadata::new(\"p\", \"0.1.0\", \"p\") }}\n}}\n\
         plugboard_sdk::export_connector!(P);\n"
    );
    // A target directory of its own, made anew: unpacking keeps the files' times, so cargo would
    // take the last run's build of the same paths as fresh.
    let (ok, out) = check_with("sdk_packaged", &src, &dependencies, &dir.join("check"));
    assert!(ok, "{out}");
}
