//! Paths of the guest components that `build.rs` builds from source, for tests and benchmarks.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

pub mod nats;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn newest_mtime(dir: &Path) -> SystemTime {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Builds `tests/python-guest/app.py` into a connector component with `componentize-py`
/// (installed by `./dev setup`), unless the component is newer than its sources, and returns
/// its path. A realistic large component: about 18 MB.
pub fn python_component() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_owned();
    let source = root.join("tests").join("python-guest");
    let out_dir = root.join("target").join("python-guest");
    let out = out_dir.join("python_shout.wasm");
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    let sources = newest_mtime(&source).max(newest_mtime(&root.join("wit")));
    if built.is_some_and(|b| b > sources) {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let status = Command::new("componentize-py")
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "plugboard:connector/connector", "componentize", "-p"])
        .arg(&source)
        .arg("app")
        .arg("-o")
        .arg(&out)
        .status()
        .map_err(|e| format!("cannot run componentize-py ({e}); `./dev setup` installs it"))?;
    if !status.success() {
        return Err(format!("componentize-py failed: {status}"));
    }
    Ok(out)
}

/// Builds `tests/js-guest/app.js` into a connector component with componentize-js (its npm
/// packages installed into `tests/js-guest` with `npm ci` on first use), unless the component is
/// newer than its sources, and returns its path. About 12 MB: the JavaScript engine is inside.
pub fn js_component() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?.to_owned();
    let source = root.join("tests").join("js-guest");
    let out_dir = root.join("target").join("js-guest");
    let out = out_dir.join("js_shout.wasm");
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    let sources = newest_mtime(&source).max(newest_mtime(&root.join("wit")));
    if built.is_some_and(|b| b > sources) {
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    if !source.join("node_modules").join("@bytecodealliance").join("componentize-js").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&source)
            .status()
            .map_err(|e| format!("cannot run npm ({e})"))?;
        if !status.success() {
            return Err(format!("npm ci failed: {status}"));
        }
    }
    let status = Command::new("node")
        .arg(source.join("build.mjs"))
        .arg(source.join("app.js"))
        .arg(root.join("wit"))
        .arg(&out)
        .status()
        .map_err(|e| format!("cannot run node ({e})"))?;
    if !status.success() {
        return Err(format!("componentize-js failed: {status}"));
    }
    Ok(out)
}
