//! The embedding example runs the echo plugin and its own `crm-lookup` plugin, both built from
//! source, and shows what an embedder gets: the plugin's events and logs, its config, a refusal
//! for what was not granted; then an import of its own and an outbound interceptor at work.

use std::process::Command;

#[test]
fn the_example_runs_plugins_with_the_runtime_alone() {
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard-embedding"))
        .args([plugboard_tests::ECHO, plugboard_tests::CRM_LOOKUP])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("loaded echo "), "{stdout}");
    assert!(stdout.contains(r#"event echo/replied {"n":1}"#), "{stdout}");
    assert!(stdout.contains("event echo/seen"), "{stdout}");
    assert!(stdout.contains(r#"config {"greeting":"hello from the embedder"}"#), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("refused ") && l.contains("denied")), "{stdout}");

    // Without the embedder's import the plugin does not load, and the error names the import.
    assert!(
        stdout.lines().any(|l| l.starts_with("without the import: ") && l.contains("acme:crm/lookup")),
        "{stdout}"
    );
    // With it: the tier comes from the embedder's function, the past orders from its
    // interceptor, and nothing went out (crm.example.com is never resolved).
    assert!(
        stdout.contains("intercepted GET https://crm.example.com/customers/ana@bigco.example/orders for crm")
    );
    let tiered =
        stdout.lines().find(|l| l.starts_with("event order/tiered ")).unwrap_or_else(|| panic!("{stdout}"));
    let payload: serde_json::Value =
        serde_json::from_str(tiered.trim_start_matches("event order/tiered ")).unwrap();
    assert_eq!(payload["tier"], "gold", "{payload}");
    assert_eq!(payload["status"], 200, "{payload}");
    assert_eq!(payload["past_orders"], serde_json::json!([{"id": 1001}, {"id": 1002}]), "{payload}");
    assert!(stdout.contains("call intercepted GET https://crm.example.com:443/customers/"), "{stdout}");
}
