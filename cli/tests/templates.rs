//! `plugboard new plugin --lang rust|python|typescript` as a new author uses it, following the
//! commands the project's README gives: its own tests pass (in Python and TypeScript against the
//! SDK's fake host, then against the built component in the real host), its one build command
//! makes a component, `plugboard plugin inspect` and `plugin call` load it, and `plugboard up`
//! with the configuration the README gives turns a signed webhook into events that the plugin
//! then handles.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};

fn plugboard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} failed in {}:\n{text}", dir.display());
    text
}

/// The indented `plugboard.toml` lines the README shows after `marker`.
fn readme_config(readme: &str, marker: &str) -> String {
    let after = &readme[readme.find(marker).expect("the README shows the configuration")..];
    after
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn cargo(dir: &std::path::Path, target: &str) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("CARGO") && key != "CARGO_HOME") || key.starts_with("RUSTC") || key == "RUSTFLAGS"
        {
            cmd.env_remove(&key);
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    cmd.env("CARGO_TARGET_DIR", root.join(target));
    cmd
}

/// `plugboard new plugin` (Rust): its test passes natively, it builds into a component with the
/// same toolchain as the guests (tests/build.rs), and plugboard loads, calls and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_plugin_tests_builds_loads_and_handles_a_webhook_under_plugboard_up() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_plugin(dir.path(), "rust", "cargo test");
    for bad in ["Bad Name", "type", "test"] {
        let (code, _, err) = plugboard(&["new", "plugin", bad, "--dir", dir.path().to_str().unwrap()]);
        assert!(code != 0 && err.contains("not a plugin name"), "{bad}: {err}");
    }
    let test = cargo(&project, "sdk-compile-checks").args(["test", "--offline", "--quiet"]).output().unwrap();
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stderr));
    assert!(String::from_utf8_lossy(&test.stdout).contains("1 passed"));

    let mut build = cargo(&project, "wasm-guests");
    build.args(["build", "--offline", "--release", "--target", "wasm32-wasip2"]);
    if Path::new("/usr/lib/wasm32-wasi").exists() && Path::new("/usr/bin/rustc").exists() {
        let path = std::env::var("PATH").unwrap_or_default();
        build
            .env("PATH", format!("/usr/lib/llvm-19/bin:{path}"))
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", "-L /usr/lib/wasm32-wasi")
            .arg("-Zbuild-std=std,panic_abort");
    }
    let built = build.output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm-guests/wasm32-wasip2/release/order_notes.wasm");
    loads_and_handles_a_webhook(&project, &wasm, "path/to/order_notes.wasm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_plugin_tests_builds_loads_and_handles_a_webhook_under_plugboard_up() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_plugin(dir.path(), "python", "python3 -m pytest && ./build.sh");
    // Its own tests pass against the fake host, with no component built.
    let tests = run_in(&project, "python3", &["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    assert!(tests.contains("5 passed"), "{tests}");
    // One command builds the component; the same tests pass against it in the real host.
    run_in(&project, "./build.sh", &[]);
    let tests = against_the_component(&project, "python3", &["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    assert!(tests.contains("5 passed"), "{tests}");
    loads_and_handles_a_webhook(&project, &project.join("order-notes.wasm"), "path/to/order-notes.wasm")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_typescript_plugin_tests_builds_loads_and_handles_a_webhook_under_plugboard_up() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_plugin(dir.path(), "typescript", "npm install && npm test && npm run build");
    run_in(&project, "npm", &["install", "--no-audit", "--no-fund"]);
    // Its own tests pass against the fake host, with no component built, and tsc accepts it.
    let tests = run_in(&project, "npm", &["test"]);
    assert!(tests.contains("# pass 5") && tests.contains("# fail 0"), "{tests}");
    run_in(&project, "npm", &["run", "check"]);
    // One command builds the component; the same tests pass against it in the real host.
    run_in(&project, "npm", &["run", "build"]);
    let tests = against_the_component(&project, "npm", &["test"]);
    assert!(tests.contains("# pass 5") && tests.contains("# fail 0"), "{tests}");
    loads_and_handles_a_webhook(&project, &project.join("order-notes.wasm"), "path/to/order-notes.wasm")
        .await;
}

/// Runs the project's tests with `PLUGBOARD_COMPONENT` set: each call goes to the built
/// `order-notes.wasm` through `plugboard plugin call --json` (this build of plugboard, compiling
/// the component once into a cache).
fn against_the_component(project: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(project)
        .env("PLUGBOARD_COMPONENT", "order-notes.wasm")
        .env("PLUGBOARD_BIN", env!("CARGO_BIN_EXE_plugboard"))
        .env("PLUGBOARD_CACHE_DIR", project.join("compiled"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} against the component failed:\n{text}");
    text
}

/// `plugboard new plugin order-notes --lang LANG` in `dir`: its folder, once the command has
/// named the `next` steps.
fn new_plugin(dir: &Path, lang: &str, next: &str) -> std::path::PathBuf {
    let (code, out, err) =
        plugboard(&["new", "plugin", "order-notes", "--lang", lang, "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(next), "{out}");
    dir.join("order-notes")
}

/// The built component `wasm` of `project`, as plugboard loads, calls and serves it with the
/// configuration of the project's README (where the component is `readme_wasm`).
async fn loads_and_handles_a_webhook(project: &Path, wasm: &Path, readme_wasm: &str) {
    let wasm_path = wasm.to_str().unwrap();
    let (code, out, err) = plugboard(&["plugin", "inspect", wasm_path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("order-notes 0.1.0 (connector)") && out.contains("action greet"), "{out}");
    let (code, out, err) =
        plugboard(&["plugin", "call", wasm_path, "invoke", "greet", "--input", r#"{"name":"Ada"}"#]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["greeting"], "hello, Ada");
    // An error the plugin raises reaches the caller as the contract's error, typed.
    let (code, _, err) = plugboard(&["plugin", "call", wasm_path, "invoke", "nope", "--input", "{}"]);
    assert!(code != 0 && err.contains("not found: unknown action `nope`"), "{err}");

    // `plugboard up` with the README's configuration, and a route that hands the received event
    // to a second instance of the plugin (an instance's events never go back to itself).
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let plugin = readme_config(&readme, "Then add it to `plugboard.toml`").replace(readme_wasm, wasm_path);
    let port = plugboard_tests::nats::free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"events.db\"\n{plugin}\n\
         [[plugin]]\nid = \"summarizer\"\nwasm = {wasm_path:?}\ngrants = {{ capabilities = [\"log\"] }}\n\
         [[route]]\nname = \"summarize\"\nfrom = \"order-notes\"\nkind = \"order-notes/received\"\nto = \"summarizer\"\n"
    );
    std::fs::write(project.join("plugboard.toml"), &config).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["up", "--config", "plugboard.toml"])
        .current_dir(project)
        .env("ORDER_NOTES_WEBHOOK_SECRET", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Up to two minutes: the first start compiles the 18 MB component.
    let mut healthy = false;
    for _ in 0..2_400 {
        if let Some(status) = server.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut log).unwrap();
            panic!("plugboard up exited ({status}) with\n{config}\nsaying:\n{log}");
        }
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !healthy {
        server.kill().unwrap();
        panic!("plugboard up did not become healthy");
    }

    let body = br#"{"id": 42, "note": "leave at the door"}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let forged =
        client.post(format!("{base}/hooks/order-notes")).header("x-signature", "sha256=00").body(&body[..]);
    assert_eq!(forged.send().await.unwrap().status(), 401);
    let sent =
        client.post(format!("{base}/hooks/order-notes")).header("x-signature", &signature).body(&body[..]);
    assert_eq!(sent.send().await.unwrap().status(), 200);

    let store = plugboard::store::SqliteStore::open_read_only(&project.join("events.db")).unwrap();
    let mut summarized = None;
    for _ in 0..600 {
        summarized = store.recent(100).unwrap().into_iter().find(|e| e.kind == "order-notes/summarized");
        if summarized.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopped as an operator stops it, so that its log is whole: the server writes info lines
    // in batches, and a `kill -9` may lose those of the last few milliseconds.
    plugboard_tests::terminate(&server);
    let output = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let summarized =
        summarized.unwrap_or_else(|| panic!("no order-notes/summarized event; plugboard said:\n{log}"));
    let payload: serde_json::Value = serde_json::from_slice(&summarized.payload).unwrap();
    assert_eq!(payload, serde_json::json!({"fields": 2, "has_id": true}));
    assert!(log.contains("summarizing order-notes/received"), "{log}");
}
