//! The Python and TypeScript SDKs' own tests, and those of the plugins in this repository written
//! with them, against the SDKs' fake hosts: what an author runs before building a component.
//! pytest (which `./dev setup` installs) for Python; node's test runner with tsx, and tsc, from
//! each project's own npm packages for TypeScript.

use std::path::Path;
use std::process::Command;

fn repo(project: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(project)
}

fn pytest(project: &str) -> String {
    let dir = repo(project);
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

/// mypy (which `./dev setup` installs) on the Python SDK, its tests and the Python order-risk
/// step, against the bindings componentize-py generates from the contract: the type hints hold.
#[test]
fn the_python_sdk_and_order_risk_type_check() {
    let bindings = tempfile::tempdir().unwrap();
    let generated = Command::new("componentize-py")
        .arg("-d")
        .arg(repo("sdk/wit"))
        .args(["-w", "plugboard:connector/connector-with-hints", "bindings"])
        .arg(bindings.path())
        .output()
        .expect("componentize-py runs");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let sdk = repo("sdk/python");
    for (project, paths, files) in [
        ("sdk/python", vec![bindings.path().to_owned()], vec!["plugboard_sdk", "tests"]),
        (
            "examples/order-risk/python",
            vec![bindings.path().to_owned(), sdk.clone()],
            vec!["app.py", "test_app.py"],
        ),
    ] {
        let search = std::env::join_paths(paths).unwrap();
        let out = Command::new("python3")
            .args(["-m", "mypy", "--cache-dir", "/dev/null"])
            .args(files)
            .current_dir(repo(project))
            .env("MYPYPATH", search)
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("Success"), "mypy in {project}:\n{text}");
    }
}

#[test]
fn order_risk_in_python_passes_its_tests() {
    let out = pytest("examples/order-risk/python");
    assert!(out.contains("7 passed"), "{out}");
}

/// `npm test` and `npm run check` (tsc) in `project`, its packages installed from its lock file.
fn npm_test(project: &str) -> String {
    let dir = repo(project);
    plugboard_tests::npm_ci(&dir).unwrap();
    let run = |script: &[&str]| {
        let out = Command::new("npm").args(script).current_dir(&dir).output().expect("npm runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "npm {script:?} failed in {project}:\n{text}");
        text
    };
    run(&["run", "check"]);
    run(&["test"])
}

#[test]
fn the_typescript_sdk_passes_its_tests_and_type_checks() {
    let out = npm_test("sdk/typescript");
    assert!(out.contains("# fail 0") && !out.contains("# pass 0"), "{out}");
}

#[test]
fn order_risk_in_typescript_passes_its_tests_and_type_checks() {
    let out = npm_test("examples/order-risk/typescript");
    assert!(out.contains("# pass 8") && out.contains("# fail 0"), "{out}");
}
