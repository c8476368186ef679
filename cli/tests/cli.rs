//! The `plugboard` command as an operator uses it.

use std::process::Command;

use plugboard_tests::{ECHO, LIAR, SNOOP};

fn plugboard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard")).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_shows_what_a_plugin_asks_for() {
    let (code, out, err) = plugboard(&["plugin", "inspect", ECHO]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("echo 0.1.0 (connector)"), "{out}");
    assert!(out.contains("requests permission to:"), "{out}");
    assert!(out.contains("- http   send HTTP requests to the hosts you allow"), "{out}");
    // Echo declares no action hints: an AI client would have to assume the worst.
    assert!(out.contains("action kv-roundtrip (no hints: counts as destructive)"), "{out}");
    let shopify = ECHO.replace("echo.wasm", "shopify.wasm");
    let (code, out, err) = plugboard(&["plugin", "inspect", &shopify]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("action get-order (reads only): Reads an order"), "{out}");
    assert!(out.contains("action add-order-note (may delete or overwrite)"), "{out}");

    let (code, out, _) = plugboard(&["plugin", "inspect", SNOOP]);
    assert_eq!(code, 0);
    assert!(out.contains("requests no capabilities"), "{out}");

    let (code, json, _) = plugboard(&["plugin", "inspect", "--json", ECHO]);
    assert_eq!(code, 0);
    let info: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(info["requested"].as_array().unwrap().len(), 6);
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
}

/// A plugin's metadata cannot write terminal escapes, carriage returns or right-to-left
/// overrides to the operator's terminal (they would hide or reorder the permission list).
#[test]
fn inspect_escapes_what_a_plugin_says_about_itself() {
    let (code, out, err) = plugboard(&["plugin", "inspect", LIAR]);
    assert_eq!(code, 0, "{err}");
    for raw in ['\u{1b}', '\r', '\u{202e}'] {
        assert!(!out.contains(raw) && !err.contains(raw), "{raw:?} reached the terminal: {out:?}");
    }
    assert!(out.contains("\\u{1b}[8m"), "{out}");
    assert!(out.contains("requests permission to:"), "{out}");
}

#[test]
fn inspect_refuses_what_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junk.wasm");
    std::fs::write(&file, "junk").unwrap();
    let (code, _, err) = plugboard(&["plugin", "inspect", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a valid plugboard component"), "{err}");
    let (code, _, err) = plugboard(&["plugin", "inspect", "/nonexistent.wasm"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read plugin file /nonexistent.wasm"), "{err}");
}

#[test]
fn call_runs_with_exactly_the_grants_given() {
    let (code, out, err) =
        plugboard(&["plugin", "call", ECHO, "--grant", "kv", "invoke", "kv-roundtrip", "--input", "[1]"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"deleted\": true"), "{out}");

    let (code, _, err) = plugboard(&["plugin", "call", ECHO, "--grant", "log", "invoke", "kv-roundtrip"]);
    assert_eq!(code, 1);
    assert!(err.contains("denied: capability `kv` is not granted"), "{err}");

    let (code, _, err) = plugboard(&["plugin", "call", ECHO, "--grant", "files", "invoke", "ping"]);
    assert_eq!(code, 2, "a usage error");
    assert!(err.contains("unknown capability `files`"), "{err}");
}

/// `cargo` for a scaffolded crate: a clean environment (no settings of the cargo running this
/// test), a target directory kept between runs.
/// `plugboard ... | head` closes the pipe early: the command stops quietly instead of panicking.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["plugin", "inspect", ECHO])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the plugin is even compiled, so every write the command makes fails.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// `plugboard check` refuses a route or schedule whose action the target does not export,
/// naming the key and the actions it has.
#[test]
fn check_refuses_actions_the_plugin_does_not_export() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plugboard.toml");
    let write = |action: &str| {
        std::fs::write(
            &config,
            format!(
                "[store]\npath = \"events.db\"\n[[plugin]]\nid = \"a\"\nwasm = {ECHO:?}\n[[plugin]]\nid = \"b\"\nwasm = {ECHO:?}\n\
                 [[route]]\nname = \"r\"\nfrom = \"a\"\nto = \"b\"\naction = \"{action}\"\n"
            ),
        )
        .unwrap()
    };
    write("pnig");
    let (code, _, err) = plugboard(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("route[0].action") && err.contains("no action `pnig`") && err.contains("ping"),
        "{err}"
    );
    write("ping");
    let (code, out, err) = plugboard(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok"), "{out}");
}

/// The README's `plugboard.toml` runs as it is: `plugboard check` accepts it with the built
/// components where the README says they are and its `env:` secrets set.
#[test]
fn the_readme_configuration_passes_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start =
        readme.find("```toml\n# plugboard.toml\n").expect("the README has the example") + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let guests = dir.path().join("target/wasm-guests/wasm32-wasip2/guest");
    std::fs::create_dir_all(&guests).unwrap();
    std::fs::copy(ECHO, guests.join("echo.wasm")).unwrap();
    let config = dir.path().join("plugboard.toml");
    std::fs::write(&config, example).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["check", "--config", config.to_str().unwrap()])
        .env("SHOPIFY_WEBHOOK_SECRET", "shpss_example")
        .env("PLUGBOARD_JOBS_TOKEN", "jobs-token")
        .env("PLUGBOARD_CALLBACK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .env("PLUGBOARD_ADMIN_TOKEN", "admin-token")
        .env("OPENAI_API_KEY", "sk-example")
        .env("CRM_CLIENT_SECRET", "crm-secret")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("shop: echo") && stdout.contains("sink: echo"), "{stdout}");
}

/// On a NATS store, `plugboard check` refuses what the cluster would (and reads the
/// credentials), and `plugboard up` says which server it cannot reach, and stops, instead of
/// serving webhooks it could not store.
#[test]
fn a_nats_store_is_checked_and_an_unreachable_cluster_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let port = plugboard_tests::nats::free_port();
    let config = |replicas: u32, credentials: &str| {
        let path = dir.path().join(format!("nats-{replicas}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nbackend = \"nats\"\n[store.nats]\n\
                 servers = [\"nats://127.0.0.1:{port}\"]\nreplicas = {replicas}\n{credentials}\n"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let (code, _, err) = plugboard(&["check", "--config", &config(2, "")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("store.nats.replicas: 2: JetStream keeps 1, 3 or 5 replicas"), "{err}");
    let missing = config(3, "credentials = \"file:nowhere.creds\"");
    let (code, _, err) = plugboard(&["check", "--config", &missing]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("store.nats.credentials"), "{err}");
    let (code, _, err) = plugboard(&["up", "--config", &config(1, "")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot reach NATS at nats://127.0.0.1:{port}")), "{err}");
    // Credentials that are not a .creds file are refused, and what they hold is not echoed.
    std::fs::write(dir.path().join("bad.creds"), "SUAsecret-seed-not-a-creds-file").unwrap();
    let bad = config(5, "credentials = \"file:bad.creds\"");
    let (code, _, err) = plugboard(&["up", "--config", &bad]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the NATS credentials cannot be read"), "{err}");
    assert!(!err.contains("secret-seed"), "{err}");
}

/// `plugboard plugin compile`: the artifact loads without compiling where the configuration pins
/// it, and is refused, saying why, when the file is not the pinned one, was compiled from another
/// component, or was compiled for another engine configuration (here: with fuel metering).
#[test]
fn a_precompiled_component_loads_only_where_pinned_for_its_component_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let compile = |out: &str, extra: &[&str]| {
        let (code, stdout, err) =
            plugboard(&[&["plugin", "compile", ECHO, "--out", out][..], extra].concat());
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("echo 0.1.0 compiled in"), "{stdout}");
        let pin = stdout.lines().find(|l| l.trim_start().starts_with("precompiled = ")).unwrap();
        pin.trim().to_owned()
    };
    let config = |name: &str, wasm: &str, pin: &str, limits: &str| {
        let text = format!("[[plugin]]\nid = \"shop\"\nwasm = {wasm:?}\n{pin}\n{limits}\n");
        std::fs::write(at(name), text).unwrap();
        at(name)
    };
    let list = |config: &str| plugboard(&["plugin", "list", "--config", config]);

    let pin = compile(&at("echo.cwasm"), &[]);
    let (code, _, err) = list(&config("good.toml", ECHO, &pin, ""));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("from compiled code"), "{err}");

    // The same bytes plus one: not the file the operator pinned.
    let mut tampered = std::fs::read(at("echo.cwasm")).unwrap();
    tampered.push(0);
    std::fs::write(at("tampered.cwasm"), tampered).unwrap();
    let (code, _, err) =
        list(&config("tampered.toml", ECHO, &pin.replace("echo.cwasm", "tampered.cwasm"), ""));
    assert!(code != 0 && err.contains("not the pinned") && err.contains("precompiled"), "{err}");

    // An instance of the same component loaded first, unpinned, does not stand in for the
    // pinned artifact: a wrong one is refused now, not at the next restart.
    let shared = format!(
        "[[plugin]]\nid = \"first\"\nwasm = {ECHO:?}\n{}",
        std::fs::read_to_string(config(
            "second.toml",
            ECHO,
            &pin.replace("echo.cwasm", "tampered.cwasm"),
            ""
        ))
        .unwrap()
    );
    std::fs::write(at("shared.toml"), shared).unwrap();
    let (code, _, err) = list(&at("shared.toml"));
    assert!(code != 0 && err.contains("not the pinned"), "{err}");

    // Pinned, but compiled from echo, while the instance's component is another one.
    let (code, _, err) = list(&config("other.toml", SNOOP, &pin, ""));
    assert!(code != 0 && err.contains("was compiled from component"), "{err}");

    // Compiled for an engine with fuel metering, loaded by one without.
    let fueled = config("fueled.toml", ECHO, "", "limits = { fuel = 100000000 }");
    let fuel_pin = compile(&at("fueled.cwasm"), &["--config", &fueled]);
    let (code, _, err) = list(&config("unfueled.toml", ECHO, &fuel_pin, ""));
    assert!(
        code != 0
            && err.contains("for another engine configuration")
            && err.contains("fuel metering is part of the engine's settings"),
        "{err}"
    );

    // It loads where the configuration meters fuel: `plugin list` builds the engine as
    // `plugboard up` does for that configuration.
    let (code, _, err) =
        list(&config("fueled-pinned.toml", ECHO, &fuel_pin, "limits = { fuel = 100000000 }"));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("from compiled code"), "{err}");

    // A pin that is not a digest is refused before anything loads.
    let (code, _, err) = plugboard(&[
        "check",
        "--config",
        &config("bad-pin.toml", ECHO, &pin.replace("sha256 = \"", "sha256 = \"x"), ""),
    ]);
    assert!(code != 0 && err.contains("precompiled.sha256"), "{err}");
}
