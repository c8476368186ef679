//! The runtime's behaviour around loading: the compile cache, spec validation, bad components.

mod common;

use plugboard::{Grants, Host, HttpGrant, Limits, LoadError, PluginSpec};
use plugboard_tests::*;
use serde_json::json;

#[tokio::test]
async fn compile_cache_survives_restarts_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let first = Host::builder().compile_cache_dir(dir.path()).build().unwrap();
    let info = first.load(PluginSpec::new("echo", ECHO)).await.unwrap();
    assert!(!info.compiled_from_cache);
    drop(first);

    // A restart loads the compiled code instead of compiling again.
    let second = Host::builder().compile_cache_dir(dir.path()).build().unwrap();
    let info = second.load(PluginSpec::new("echo", ECHO)).await.unwrap();
    assert!(info.compiled_from_cache);
    assert_eq!(second.invoke("echo", "ping", &json!({})).await.unwrap().output, json!({}));

    // A damaged entry is never trusted: it is recompiled and replaced.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "one entry, named by digest and engine: {entries:?}");
    assert!(entries[0].file_name().unwrap().to_string_lossy().starts_with(&info.sha256));
    // (Damage it between runs, by replacing the file: rewriting a mapped entry in place under a
    // running host is outside what the cache supports, and the entries are read-only.)
    drop(second);
    let damaged = dir.path().join("damaged");
    std::fs::write(&damaged, b"not compiled code").unwrap();
    std::fs::rename(&damaged, &entries[0]).unwrap();
    let third = Host::builder().compile_cache_dir(dir.path()).build().unwrap();
    let info = third.load(PluginSpec::new("echo", ECHO)).await.unwrap();
    assert!(!info.compiled_from_cache);
    assert_eq!(third.invoke("echo", "ping", &json!({})).await.unwrap().output, json!({}));
    let fourth = Host::builder().compile_cache_dir(dir.path()).build().unwrap();
    assert!(fourth.load(PluginSpec::new("echo", ECHO)).await.unwrap().compiled_from_cache);

    // A host with other engine settings does not reuse code compiled for these.
    let fuelled = Host::builder().compile_cache_dir(dir.path()).fuel_metering(true).build().unwrap();
    assert!(!fuelled.load(PluginSpec::new("echo", ECHO)).await.unwrap().compiled_from_cache);
}

#[tokio::test]
async fn bad_specs_are_refused_with_the_reason() {
    let host = Host::builder().max_memory_mib(128).build().unwrap();
    let cases = [
        (PluginSpec::new("no spaces", ECHO), "instance id"),
        (PluginSpec::new("big", ECHO).with_limits(Limits::default().with_memory_mib(129)), "memory_mib"),
        (PluginSpec::new("fuel", ECHO).with_limits(Limits::default().with_fuel(10)), "fuel metering"),
        (
            PluginSpec::new("pattern", ECHO).with_grants(Grants {
                http: HttpGrant { allow: vec!["ftp://x.io".into()], ..HttpGrant::default() },
                ..Grants::none()
            }),
            "ftp://x.io",
        ),
    ];
    for (spec, needle) in cases {
        let id = spec.id.clone();
        match host.load(spec).await {
            Err(LoadError::Spec { reason, .. }) => assert!(reason.contains(needle), "{id}: {reason}"),
            other => panic!("{id}: expected a spec error, got {other:?}"),
        }
    }
    assert!(host.plugins().is_empty(), "nothing half-loaded");
}

#[tokio::test]
async fn files_that_are_not_plugins_are_refused() {
    let host = common::host();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    // A valid core module, but not a component.
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    for file in [&text, &module] {
        let err = host.load(PluginSpec::new("x", file)).await.unwrap_err();
        assert!(matches!(err, LoadError::Invalid { .. }), "{}: {err}", file.display());
    }
    let missing = host.load(PluginSpec::new("x", dir.path().join("missing.wasm"))).await.unwrap_err();
    assert!(matches!(missing, LoadError::Read { .. }), "{missing}");
}

#[tokio::test]
async fn specs_refuse_unknown_keys_by_name() {
    let err = serde_json::from_value::<PluginSpec>(json!({
        "id": "a", "wasm": "a.wasm", "limits": { "memory_mb": 3 }
    }))
    .unwrap_err();
    assert!(err.to_string().contains("memory_mb"), "{err}");
    let err = serde_json::from_value::<PluginSpec>(json!({
        "id": "a", "wasm": "a.wasm", "grants": { "capabilities": ["filesystem"] }
    }))
    .unwrap_err();
    assert!(err.to_string().contains("filesystem"), "{err}");
}

#[tokio::test]
async fn unloaded_and_unknown_instances() {
    let host = common::host();
    host.load(PluginSpec::new("echo", ECHO)).await.unwrap();
    assert_eq!(host.plugins().len(), 1);
    assert!(host.unload("echo"));
    let err = host.invoke("echo", "ping", &json!({})).await.unwrap_err();
    assert!(matches!(err, plugboard::InvokeError::UnknownInstance(ref id) if id == "echo"), "{err}");
}
