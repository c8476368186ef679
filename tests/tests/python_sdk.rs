//! The Python SDK's own tests, and those of the plugins in this repository written with it, run
//! by pytest (which `./dev setup` installs) against the SDK's fake host: what an author runs
//! before building a component.

use std::path::Path;
use std::process::Command;

fn pytest(project: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(project);
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(&dir)
        // Sources only: no __pycache__ left in the checkout.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pytest failed in {project}:\n{text}");
    text
}

#[test]
fn the_python_sdk_passes_its_tests() {
    let out = pytest("sdk/python");
    assert!(out.contains(" passed") && !out.contains("failed"), "{out}");
}

#[test]
fn order_risk_in_python_passes_its_tests() {
    let out = pytest("examples/order-risk/python");
    assert!(out.contains("6 passed"), "{out}");
}
