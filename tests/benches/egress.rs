//! The host's overhead on an outbound request, against the same local server in the same run:
//!
//! - `direct/reqwest`: a pooled `reqwest::Client` GET with an `Authorization` header, body read.
//! - `mediated/send_as`: the same request sent as a plugin instance would through the `http`
//!   capability: allow-list and method check, address policy (the resolver runs on new
//!   connections only, as pooled connections are reused), `{{secret:NAME}}` substitution with
//!   its destination binding, the instance's request slot and token bucket, the response cap,
//!   and a call record into the SQLite call log plus metrics.
//!
//! - `mediated/send_as-memory-call-log`: the same with the in-memory call log, to show what the
//!   SQLite writer thread costs on a 2-core machine.
//!
//! The difference of the estimates is the mediation overhead (target: at most 50 µs).

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use plugboard::egress::policy::DestinationLimit;
use plugboard::egress::secrets::Secret;
use plugboard::types::HttpRequest;
use plugboard::{Grants, Host, PluginSpec};
use plugboard_tests::ECHO;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (origin, host, memory_host) = rt.block_on(async {
        let app = axum::Router::new().route("/v1/ping", axum::routing::get(|| async { "pong" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let calls = plugboard::store::SqliteCallLog::open(&dir.path().join("calls.db"), 100_000).unwrap();
        let host = Host::builder().call_log(Arc::new(calls)).build().unwrap();
        let memory_host = Host::builder().build().unwrap();
        let mut grants = Grants::none().allow_http(&origin).allow_internal("127.0.0.1").with_secret("api");
        grants.http.rate_limits.push(DestinationLimit {
            destination: origin.clone(),
            per_second: 1e9,
            burst: 1e9,
            max_wait_ms: 0,
            scope: Default::default(),
        });
        for h in [&host, &memory_host] {
            h.set_secret("api", Secret::new("sk-bench-0123456789", &[origin.as_str()]).unwrap());
            h.load(PluginSpec::new("caller", ECHO).with_grants(grants.clone())).await.unwrap();
        }
        (origin, host, memory_host)
    });
    let url = format!("{origin}/v1/ping");

    let mut group = c.benchmark_group("egress");
    let direct = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    group.bench_function("direct/reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r =
                direct.get(&url).header("authorization", "Bearer sk-bench-0123456789").send().await.unwrap();
            assert_eq!(r.bytes().await.unwrap().as_ref(), b"pong");
        })
    });
    let request = || HttpRequest {
        method: "GET".into(),
        url: url.clone(),
        headers: vec![("authorization".into(), "Bearer {{secret:api}}".into())],
        body: Vec::new(),
        retry: false,
    };
    for (name, host) in [("mediated/send_as", &host), ("mediated/send_as-memory-call-log", &memory_host)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let r = host.send_as("caller", request()).await.unwrap();
                assert_eq!(r.body, b"pong");
            })
        });
    }
    group.finish();
}

criterion_group!(egress, benches);
criterion_main!(egress);
