//! Builds every guest component (the plugins in `plugins/` and the test guests in
//! `tests/guests/`) from source for `wasm32-wasip2`, so that no test ever runs a stale `.wasm`,
//! and generates a constant with the path of each plus a `foreach_guest!` macro.
//!
//! The wasm toolchain is found, in order:
//! 1. the compiler cargo uses, when it has the `wasm32-wasip2` standard library
//!    (`rustup target add wasm32-wasip2`, the normal way on a machine with network);
//! 2. Debian's `rustc-web` with its standard library source, `lld-19` and `wasi-libc`, building
//!    std from source (`-Zbuild-std`): the route for machines where rustup cannot download
//!    targets. `./dev setup` installs it.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_LLVM_BIN: &str = "/usr/lib/llvm-19/bin";
const DEBIAN_WASI_LIBC: &str = "/usr/lib/wasm32-wasi";

enum Toolchain {
    /// The current compiler has the target's standard library.
    Native,
    /// Debian's compiler builds the standard library from source.
    BuildStd,
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tests/ lives in the workspace root").to_owned();
    for dir in ["wit", "sdk", "plugins", "tests/guests", "examples"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.toml").display());
    println!("cargo:rerun-if-env-changed=PLUGBOARD_GUEST_TOOLCHAIN");

    let guests = find_guests(&root);
    // One stable target directory for every build of the guests (test, bench, check), so the
    // standard library built from source is built once.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-guests");

    let toolchain = pick_toolchain();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "guest", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for name in guests.keys() {
        cmd.args(["-p", name]);
    }
    // The outer build's settings are for the host target: keep none of them.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = ["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_"]
            .iter()
            .any(|p| key.starts_with(p));
        if (key.starts_with("CARGO") && !keep)
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
        {
            cmd.env_remove(&key);
        }
    }
    if let Toolchain::BuildStd = toolchain {
        let path = env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{DEBIAN_LLVM_BIN}:{path}"))
            .env("RUSTC", DEBIAN_RUSTC)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", format!("-L {DEBIAN_WASI_LIBC}"))
            .arg("-Zbuild-std=std,panic_abort");
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo for the guests: {e}"));
    assert!(status.success(), "building the guest components failed (see the output above)");

    let out_dir = target_dir.join(TARGET).join("guest");
    let mut code = String::new();
    let mut all = String::new();
    for (name, kind) in &guests {
        let file = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(file.exists(), "guest `{name}` built but {} is missing", file.display());
        let constant = name.replace('-', "_").to_uppercase();
        writeln!(code, "/// The `{name}` {kind} component, built from source by this crate's build script.")
            .unwrap();
        writeln!(code, "pub const {constant}: &str = {:?};", file.display().to_string()).unwrap();
        write!(all, "$m!({});", name.replace('-', "_")).unwrap();
    }
    writeln!(
        code,
        "/// Calls `$m!(guest_name)` for every guest, so that a guest without a test fails the build."
    )
    .unwrap();
    writeln!(code, "#[macro_export]\nmacro_rules! foreach_guest {{ ($m:ident) => {{ {all} }}; }}").unwrap();
    let dest = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(&dest, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

/// Every crate under `plugins/` and `tests/guests/`, and each example flow's `plugin/`:
/// package name -> "plugin", "test guest" or "example flow plugin".
fn find_guests(root: &Path) -> BTreeMap<String, &'static str> {
    let mut guests = BTreeMap::new();
    for (dir, sub, kind) in [
        ("plugins", "", "plugin"),
        ("tests/guests", "", "test guest"),
        ("examples", "plugin", "example flow plugin"),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            let manifest = entry.path().join(sub).join("Cargo.toml");
            if let Some(name) = package_name(&manifest) {
                guests.insert(name, kind);
            }
        }
    }
    guests
}

/// The `name` of a crate's `[package]`, read without a TOML parser (the line `name = "..."`).
fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("name ="))?;
    Some(line.split('"').nth(1)?.to_owned())
}

fn pick_toolchain() -> Toolchain {
    match env::var("PLUGBOARD_GUEST_TOOLCHAIN").as_deref() {
        Ok("native") => return Toolchain::Native,
        Ok("build-std") => return Toolchain::BuildStd,
        _ => {}
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let has_std = libdir.and_then(|d| std::fs::read_dir(d).ok()).is_some_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
    });
    if has_std {
        return Toolchain::Native;
    }
    let debian_ready = Path::new(DEBIAN_RUSTC).exists()
        && Path::new("/usr/lib/rustlib/src/rust/library").exists()
        && Path::new(DEBIAN_LLVM_BIN).join("wasm-ld").exists()
        && Path::new(DEBIAN_WASI_LIBC).exists();
    if debian_ready {
        return Toolchain::BuildStd;
    }
    panic!(
        "no toolchain can build wasm32-wasip2 components.\n\
         Run `./dev setup` (it tries `rustup target add {TARGET}`, then Debian's rustc-web, \
         rust-web-src, lld-19 and wasi-libc), or install one of them yourself."
    );
}
