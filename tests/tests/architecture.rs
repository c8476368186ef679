//! The shape of the workspace, as the README promises it: what an embedder compiles.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The packages `package` depends on to build and run (not its tests), by name.
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
        ])
        .arg(package)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// An embedder who only runs plugins compiles no HTTP server, no database, no command-line
/// parser, no cron, no log subscriber, and not the server crate.
#[test]
fn the_runtime_crate_depends_on_no_server_database_or_cli() {
    let names = dependencies("plugboard-runtime");
    assert!(names.iter().any(|n| n == "wasmtime"), "cargo tree listed no wasmtime: {names:?}");
    for forbidden in ["axum", "rusqlite", "libsqlite3-sys", "clap", "cron", "tracing-subscriber", "plugboard"]
    {
        assert!(!names.iter().any(|n| n == forbidden), "plugboard-runtime depends on {forbidden}: {names:?}");
    }
}

/// The embedding example builds against the runtime crate alone.
#[test]
fn the_embedding_example_depends_on_the_runtime_not_the_server() {
    let names = dependencies("plugboard-embedding");
    assert!(names.iter().any(|n| n == "plugboard-runtime"), "{names:?}");
    for forbidden in ["plugboard", "axum", "rusqlite"] {
        assert!(!names.iter().any(|n| n == forbidden), "the embedding example depends on {forbidden}");
    }
}
