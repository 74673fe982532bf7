//! Warden's benchmarks. Each scenario measures Warden and its baseline in the same
//! process, interleaved sample by sample, and reports p50, p99 and their ratio.
//!
//! ```text
//! cargo run --release -p warden-bench [-- --quick] [--json FILE]
//! ```

use anyhow::{Context as _, Result};
use serde::Serialize;
use std::time::{Duration, Instant};
use warden::events::Event;
use warden::runtime::{EventRecord, Host};
use warden::sandbox::{Engine, Sandbox, SandboxConfig};
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

#[derive(Serialize)]
struct Report {
    machine: Machine,
    scenarios: Vec<Scenario>,
}

#[derive(Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    os: String,
}

#[derive(Serialize)]
struct Scenario {
    name: &'static str,
    unit: &'static str,
    samples: usize,
    warden_p50: f64,
    warden_p99: f64,
    baseline: &'static str,
    baseline_p50: f64,
    baseline_p99: f64,
    ratio_p50: f64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().position(|a| a == "--json").map(|i| args.get(i + 1).cloned());
    let json = match json {
        Some(Some(path)) => Some(path),
        Some(None) => anyhow::bail!("--json needs a file name"),
        None => None,
    };
    let samples = if quick { 2_000 } else { 20_000 };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let scenarios = vec![
        runtime.block_on(instantiate(samples))?,
        runtime.block_on(restart(samples / 4))?,
        runtime.block_on(restart_all(if quick { 10 } else { 40 }))?,
    ];

    println!(
        "{:<14} {:>5} {:>12} {:>12}  {:<44} {:>12} {:>12} {:>7}",
        "scenario", "unit", "warden p50", "warden p99", "baseline", "p50", "p99", "ratio"
    );
    for s in &scenarios {
        println!(
            "{:<14} {:>5} {:>12.2} {:>12.2}  {:<44} {:>12.2} {:>12.2} {:>6.2}x",
            s.name,
            s.unit,
            s.warden_p50,
            s.warden_p99,
            s.baseline,
            s.baseline_p50,
            s.baseline_p99,
            s.ratio_p50
        );
    }
    let report = Report { machine: machine(), scenarios };
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {path}"))?;
        println!("wrote {path}");
    }
    Ok(())
}

/// Instantiate-plus-init of the echo plugin through Warden (new Store, limits, WASI,
/// instance from the pre-instantiated component, `init`), beside raw wasmtime doing
/// the same instantiate-plus-call of the same component with the same pooling engine
/// settings and no Warden around it.
async fn instantiate(samples: usize) -> Result<Scenario> {
    let engine = Engine::new()?;
    let plugin = engine.load_file(warden_tests::ECHO)?;
    let raw = RawEcho::new(warden_tests::ECHO)?;
    let mut warden_us = Vec::with_capacity(samples);
    let mut raw_us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let child = Sandbox::start(&plugin, SandboxConfig::new("root/echo"), 1)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let w = t.elapsed();
        drop(child);
        let t = Instant::now();
        let store = raw.instantiate_and_init().await?;
        let r = t.elapsed();
        drop(store); // outside the timing, as for Warden's sandbox
        if i >= samples / 10 {
            // The first tenth warms caches and the pool.
            warden_us.push(micros(w));
            raw_us.push(micros(r));
        }
    }
    Ok(scenario("instantiate", "us", warden_us, "raw wasmtime instantiate_pre + init call", raw_us))
}

/// A one_for_one permanent chaos child trapping: from the supervisor observing the
/// exit (`child_exited`) to the new incarnation's `init` returning (`child_started`),
/// read from the events' timestamps; beside raw wasmtime instantiate + init of the
/// same component.
async fn restart(samples: usize) -> Result<Scenario> {
    let (host, mut events) = never_giving_up(Strategy::OneForOne, vec![chaos_child("c")]).await?;
    let raw = RawEcho::new(warden_tests::CHAOS)?;
    let mut warden_us = Vec::with_capacity(samples);
    let mut raw_us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let _ = host.call("root/c", b"trap".to_vec(), Duration::from_secs(5)).await;
        let exited = next_event(&mut events, |e| matches!(e, Event::ChildExited { .. })).await?;
        let started = next_event(&mut events, |e| matches!(e, Event::ChildStarted { .. })).await?;
        let t = Instant::now();
        let store = raw.instantiate_and_init().await?;
        let r = t.elapsed();
        drop(store);
        if i >= samples / 10 {
            warden_us.push((started - exited) as f64);
            raw_us.push(micros(r));
        }
    }
    host.shutdown().await;
    Ok(scenario("restart", "us", warden_us, "raw wasmtime instantiate_pre + init call", raw_us))
}

/// One child of 100 under one_for_all traps: from its `child_exited` to the last of
/// the 100 `child_started`, beside 100 raw instantiate + init in a row.
async fn restart_all(samples: usize) -> Result<Scenario> {
    let children = (0..100).map(|i| chaos_child(&format!("c{i}"))).collect();
    let (host, mut events) = never_giving_up(Strategy::OneForAll, children).await?;
    let raw = RawEcho::new(warden_tests::CHAOS)?;
    let mut warden_us = Vec::with_capacity(samples);
    let mut raw_us = Vec::with_capacity(samples);
    for i in 0..samples + 2 {
        let _ = host.call("root/c50", b"trap".to_vec(), Duration::from_secs(5)).await;
        let exited = next_event(&mut events, |e| matches!(e, Event::ChildExited { .. })).await?;
        let done = next_event(
            &mut events,
            |e| matches!(e, Event::ChildStarted { path, .. } if path == "root/c99"),
        )
        .await?;
        let t = Instant::now();
        let mut stores = Vec::with_capacity(100);
        for _ in 0..100 {
            stores.push(raw.instantiate_and_init().await?);
        }
        let r = t.elapsed();
        drop(stores);
        if i >= 2 {
            warden_us.push((done - exited) as f64);
            raw_us.push(micros(r));
        }
    }
    host.shutdown().await;
    Ok(scenario(
        "restart_all_100",
        "us",
        warden_us,
        "raw wasmtime: 100 x instantiate_pre + init call",
        raw_us,
    ))
}

/// A started tree whose root restarts without limit, and its event stream.
async fn never_giving_up(
    strategy: Strategy,
    children: Vec<ChildSpec>,
) -> Result<(Host, tokio::sync::broadcast::Receiver<EventRecord>)> {
    let host = Host::builder().build()?;
    let mut spec = SupervisorSpec::new(strategy, children);
    spec.intensity = u32::MAX;
    spec.period = Duration::from_millis(1);
    host.start(spec).await?;
    let events = host.subscribe();
    Ok((host, events))
}

fn chaos_child(id: &str) -> ChildSpec {
    ChildSpec::plugin(id, PluginStart::new(warden_tests::CHAOS))
}

/// The timestamp of the next event matching `pred`.
async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<EventRecord>,
    pred: impl Fn(&Event) -> bool,
) -> Result<u64> {
    let wait = async {
        loop {
            let record = events.recv().await?;
            if pred(&record.event) {
                return Ok::<_, anyhow::Error>(record.ts_us);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.context("no event within 10 s")?
}

/// The baseline: plain wasmtime, the same engine features and pooling, WASI p2, and
/// the Warden imports as traps (echo's `init` calls none of them).
struct RawEcho {
    engine: wasmtime::Engine,
    pre: wasmtime::component::InstancePre<RawState>,
    init: wasmtime::component::ComponentExportIndex,
}

/// The `context` record of the WIT world, lowered the way `bindgen!` would.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
struct Ctx {
    name: String,
    path: String,
    incarnation: u64,
    config: Vec<u8>,
}

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl RawEcho {
    fn new(path: &str) -> Result<Self> {
        // The same pool as Warden's default engine (see `EngineConfig`), so the
        // comparison is of what Warden adds, not of pool sizing.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(1_000)
            .total_core_instances(8_000)
            .total_memories(2_000)
            .total_tables(4_000)
            .total_stacks(1_000)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(256 << 20);
        let mut config = wasmtime::Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&config)?;
        let component = Component::from_file(&engine, path)?;
        let mut linker = Linker::<RawState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        linker.define_unknown_imports_as_traps(&component)?;
        let pre = linker.instantiate_pre(&component)?;
        // Looked up once, as `bindgen!`'s pre-instantiation does for Warden.
        let guest = component
            .get_export_index(None, "warden:plugin/guest@0.1.0")
            .context("no guest export")?;
        let init = component.get_export_index(Some(&guest), "init").context("no init")?;
        Ok(Self { engine, pre, init })
    }

    async fn instantiate_and_init(&self) -> Result<wasmtime::Store<RawState>> {
        let state = RawState { wasi: WasiCtxBuilder::new().build(), table: ResourceTable::new() };
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let init =
            instance.get_typed_func::<(&Ctx,), (Result<(), String>,)>(&mut store, &self.init)?;
        let ctx = Ctx {
            name: "echo".into(),
            path: "root/echo".into(),
            incarnation: 1,
            config: Vec::new(),
        };
        let (result,) = init.call_async(&mut store, (&ctx,)).await?;
        result.map_err(anyhow::Error::msg)?;
        Ok(store)
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn scenario(
    name: &'static str,
    unit: &'static str,
    mut warden: Vec<f64>,
    baseline: &'static str,
    mut base: Vec<f64>,
) -> Scenario {
    warden.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let (warden_p50, baseline_p50) = (percentile(&warden, 0.5), percentile(&base, 0.5));
    Scenario {
        name,
        unit,
        samples: warden.len(),
        warden_p50,
        warden_p99: percentile(&warden, 0.99),
        baseline,
        baseline_p50,
        baseline_p99: percentile(&base, 0.99),
        ratio_p50: warden_p50 / baseline_p50,
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: mem_kib / 1024.0 / 1024.0,
        os: std::env::consts::OS.to_owned(),
    }
}
