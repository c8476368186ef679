//! Paths of the guest components that `build.rs` builds from source, for tests and benchmarks.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

pub mod nats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The median of a benchmark's runs (the upper one of an even count).
pub fn median<T: PartialOrd>(mut runs: Vec<T>) -> T {
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    runs.swap_remove(runs.len() / 2)
}

/// Sends SIGTERM to `child`, as an operator (systemd, a container runtime) stops a server: it
/// finishes what is in flight and writes out its log before it exits.
pub fn terminate(child: &std::process::Child) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(sent.as_ref().is_ok_and(|s| s.success()), "SIGTERM to {}: {sent:?}", child.id());
}

/// The newest modification time of the sources under `dir` (installed packages, caches and
/// built components left out).
fn newest_mtime(dir: &Path) -> SystemTime {
    const SKIPPED: [&str; 3] = ["node_modules", "__pycache__", ".pytest_cache"];
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !SKIPPED.iter().any(|s| e.file_name() == *s))
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".wasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let own = meta.modified().ok()?;
            Some(if meta.is_dir() { own.max(newest_mtime(&e.path())) } else { own })
        })
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The workspace root, the guest's sources (`tests/{name}`) and its component
/// (`target/{name}/{file}`).
fn guest_paths(name: &str, file: &str) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_owned();
    let (source, out) = (root.join("tests").join(name), root.join("target").join(name).join(file));
    Ok((root, source, out))
}

/// Whether `out` is newer than its sources, the contract and the SDKs; else makes its folder, to
/// build it.
fn is_built(root: &Path, source: &Path, out: &Path) -> Result<bool, String> {
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    let sources =
        newest_mtime(source).max(newest_mtime(&root.join("wit"))).max(newest_mtime(&root.join("sdk")));
    if built.is_some_and(|b| b > sources) {
        return Ok(true);
    }
    std::fs::create_dir_all(out.parent().ok_or("no folder")?).map_err(|e| e.to_string())?;
    Ok(false)
}

/// Builds `tests/python-guest/app.py` into a connector component with `componentize-py`
/// (installed by `./dev setup`), unless the component is newer than its sources, and returns
/// its path. It uses the generated bindings directly, without the SDK. A realistic large
/// component: about 18 MB.
pub fn python_component() -> Result<PathBuf, String> {
    let (root, source, out) = guest_paths("python-guest", "python_shout.wasm")?;
    componentize_py(&root, &source, &[], "connector", &out)
}

/// Builds flow 1's order-risk step written in Python with the SDK
/// (`examples/order-risk/python`), as its `build.sh` does, and returns the component's path.
pub fn python_order_risk() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_owned();
    let source = root.join("examples/order-risk/python");
    let out = root.join("target/python-order-risk/order_risk.wasm");
    let sdk = root.join("sdk/python");
    componentize_py(&root, &source, &[sdk], "connector-with-hints", &out)
}

/// Builds `source/app.py` with the Python SDK into a connector component at `out`: for tests
/// that build a changed copy of an example.
pub fn python_connector(source: &Path, out: &Path) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_owned();
    componentize_py(&root, source, &[root.join("sdk/python")], "connector-with-hints", out)
}

/// Builds the module `app` in `source` (with `paths` also importable) into a component of the
/// contract's `world`, unless `out` is newer than its sources.
fn componentize_py(
    root: &Path,
    source: &Path,
    paths: &[PathBuf],
    world: &str,
    out: &Path,
) -> Result<PathBuf, String> {
    if is_built(root, source, out)? {
        return Ok(out.to_owned());
    }
    let mut build = Command::new("componentize-py");
    build.arg("-d").arg(root.join("wit")).args([
        "-w",
        &format!("plugboard:connector/{world}"),
        "componentize",
    ]);
    for path in std::iter::once(&source.to_owned()).chain(paths) {
        build.arg("-p").arg(path);
    }
    let status = build
        .arg("app")
        .arg("-o")
        .arg(out)
        // Builders' messages go to stderr, here and below: stdout is the caller's (the
        // `polyglot_components` example prints the components' paths there).
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run componentize-py ({e}); `./dev setup` installs it"))?;
    if !status.success() {
        return Err(format!("componentize-py failed: {status}"));
    }
    Ok(out.to_owned())
}

/// Builds `tests/js-guest/app.js` into a connector component with componentize-js (its npm
/// packages installed into `tests/js-guest` with `npm ci` on first use and after the lock file
/// changes), unless the component is
/// newer than its sources, and returns its path. About 12 MB: the JavaScript engine is inside.
pub fn js_component() -> Result<PathBuf, String> {
    let (root, source, out) = guest_paths("js-guest", "js_shout.wasm")?;
    if is_built(&root, &source, &out)? {
        return Ok(out);
    }
    npm_ci(&source)?;
    let status = Command::new("node")
        .arg(source.join("build.mjs"))
        .arg(source.join("app.js"))
        .arg(root.join("wit"))
        .arg(&out)
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run node ({e})"))?;
    if !status.success() {
        return Err(format!("componentize-js failed: {status}"));
    }
    Ok(out)
}

/// Builds flow 1's order-risk step written in TypeScript with the SDK
/// (`examples/order-risk/typescript`), as its `npm run build` does, and returns the component's
/// path.
pub fn typescript_order_risk() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_owned();
    let source = root.join("examples/order-risk/typescript");
    let out = root.join("target/typescript-order-risk/order_risk.wasm");
    if is_built(&root, &source, &out)? {
        return Ok(out);
    }
    npm_ci(&source)?;
    let status = Command::new("node")
        .arg("node_modules/@plugboard/sdk/build.mjs")
        .arg("app.ts")
        .arg(&out)
        .current_dir(&source)
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run node ({e})"))?;
    if !status.success() {
        return Err(format!("the TypeScript build failed: {status}"));
    }
    Ok(out)
}

/// Installs the npm packages of `dir` from its lock file (`npm ci`), unless they are installed
/// already from this lock file: npm ci writes `node_modules/.package-lock.json`.
pub fn npm_ci(dir: &Path) -> Result<(), String> {
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = mtime(dir.join("node_modules").join(".package-lock.json"));
    if installed.is_some() && mtime(dir.join("package-lock.json")) <= installed {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(dir)
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run npm ({e})"))?;
    if !status.success() {
        return Err(format!("npm ci failed in {}: {status}", dir.display()));
    }
    Ok(())
}
