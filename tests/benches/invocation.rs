//! Invocation latency, through plugboard and, as the baseline in the same run, through bare
//! wasmtime with the same engine settings and the same component.
//!
//! - `fresh/plugboard`: `Host::invoke("echo", "ping")`: slot, new store with limits and WASI
//!   context, instantiate from `InstancePre`, call, JSON checks, drop.
//! - `fresh/bare-wasmtime`: new store, instantiate from `InstancePre`, dynamic call, drop.
//! - `reused/plugboard`: `Session::invoke` on a live instance.
//! - `reused/bare-wasmtime`: a dynamic call on a live instance.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use plugboard::{Host, PluginSpec};
use plugboard_tests::ECHO;
use wasmtime::component::{Component, Func, InstancePre, Linker, ResourceTable, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn bare_engine() -> Engine {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(512)
        .total_core_instances(4096)
        .total_memories(1024)
        .total_tables(4096)
        .total_stacks(512)
        // The same pooling settings as plugboard's engine, so the baseline differs only in the host.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10);
    let mut config = Config::new();
    config.wasm_component_model(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).unwrap()
}

fn bare_store(engine: &Engine) -> Store<Bare> {
    Store::new(engine, Bare { wasi: WasiCtx::builder().build(), table: ResourceTable::new() })
}

async fn bare_call(store: &mut Store<Bare>, func: Func) {
    let params = [Val::String("ping".into()), Val::String("{}".into())];
    let mut results = [Val::Bool(false)];
    func.call_async(&mut *store, &params, &mut results).await.unwrap();
    black_box(&results);
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    let host = Host::builder().build().unwrap();
    rt.block_on(host.load(PluginSpec::new("echo", ECHO))).unwrap();
    let input = serde_json::json!({});

    let engine = bare_engine();
    let component = Component::from_file(&engine, ECHO).unwrap();
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let pre: InstancePre<Bare> = linker.instantiate_pre(&component).unwrap();
    let iface = component.get_export_index(None, "plugboard:connector/plugin@0.1.0").unwrap();
    let invoke = component.get_export_index(Some(&iface), "invoke").unwrap();

    let mut fresh = c.benchmark_group("fresh");
    fresh.bench_function("plugboard", |b| {
        b.to_async(&rt).iter(|| async { black_box(host.invoke("echo", "ping", &input).await.unwrap()) })
    });
    fresh.bench_function("bare-wasmtime", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = bare_store(&engine);
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let func = instance.get_func(&mut store, invoke).unwrap();
            bare_call(&mut store, func).await;
        })
    });
    fresh.finish();

    let mut reused = c.benchmark_group("reused");
    let mut session = rt.block_on(host.session("echo")).unwrap();
    reused.bench_function("plugboard", |b| {
        b.iter(|| rt.block_on(async { black_box(session.invoke("ping", "{}").await.unwrap()) }))
    });
    let mut store = bare_store(&engine);
    let instance = rt.block_on(pre.instantiate_async(&mut store)).unwrap();
    let func = instance.get_func(&mut store, invoke).unwrap();
    reused.bench_function("bare-wasmtime", |b| b.iter(|| rt.block_on(bare_call(&mut store, func))));
    reused.finish();
}

criterion_group!(invocation, benches);
criterion_main!(invocation);
