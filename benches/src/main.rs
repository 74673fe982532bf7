//! Warden's benchmarks. Each scenario measures Warden and its baseline in the same
//! process, interleaved sample by sample, and reports p50, p99 and their ratio.
//!
//! ```text
//! cargo run --release -p warden-bench [-- --quick] [--json FILE] [--plot FILE.svg]
//!                                      [--only SCENARIO[,SCENARIO]] [--samples N]
//! ```

mod attack;
mod cluster;
mod interfaces;
mod otp;
mod plot;
mod python;

use anyhow::{Context as _, Result};
use serde::Serialize;
use std::time::{Duration, Instant};
use warden::events::Event;
use warden::runtime::Host;
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

/// One scenario's figures: latency scenarios have percentiles and a baseline,
/// throughput scenarios a single `warden_value`.
#[derive(Serialize, Default)]
pub(crate) struct Scenario {
    name: &'static str,
    unit: &'static str,
    samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    warden_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warden_p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warden_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_p99: Option<f64>,
    /// The baseline's figure, for a throughput scenario that has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_p50: Option<f64>,
    /// Warden's figure over the baseline's, for a throughput scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_p99: Option<f64>,
    /// What the figure counts, for a throughput scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    /// Figures particular to the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
    /// The samples, ascending, for the plot.
    #[serde(skip)]
    warden_samples: Vec<f64>,
    #[serde(skip)]
    baseline_samples: Vec<f64>,
}

fn main() -> Result<()> {
    let options = Options::parse(std::env::args().skip(1).collect())?;
    let scenarios = run(&options)?;
    anyhow::ensure!(!scenarios.is_empty(), "--only named no scenario");
    print_table(&scenarios);
    match plot::draw(std::path::Path::new(&options.plot), &scenarios) {
        Ok(()) => println!("plotted {}", options.plot),
        Err(e) => eprintln!("no plot: {e:#}"),
    }
    let report = Report { machine: machine(), scenarios };
    if let Some(path) = options.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {path}"))?;
        println!("wrote {path}");
    }
    Ok(())
}

/// The command line.
struct Options {
    quick: bool,
    json: Option<String>,
    plot: String,
    /// `--only NAME[,NAME]`: just those scenarios (e.g. to profile one).
    only: Option<Vec<String>>,
    samples: usize,
}

impl Options {
    fn parse(args: Vec<String>) -> Result<Self> {
        let value = |flag: &str| -> Result<Option<String>> {
            match args.iter().position(|a| a == flag).map(|i| args.get(i + 1)) {
                Some(Some(value)) => Ok(Some(value.clone())),
                Some(None) => anyhow::bail!("{flag} needs a value"),
                None => Ok(None),
            }
        };
        let quick = args.iter().any(|a| a == "--quick");
        let samples = match value("--samples")? {
            Some(n) => n.parse().context("--samples needs a number")?,
            None if quick => 2_000,
            None => 20_000,
        };
        Ok(Self {
            quick,
            json: value("--json")?,
            plot: value("--plot")?.unwrap_or_else(|| "target/warden-bench.svg".to_owned()),
            only: value("--only")?.map(|names| names.split(',').map(str::to_owned).collect()),
            samples,
        })
    }

    fn want(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// Every scenario asked for, in order.
fn run(options: &Options) -> Result<Vec<Scenario>> {
    let (quick, samples) = (options.quick, options.samples);
    let want = |name: &str| options.want(name);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Throughput across children uses both cores, as a host would.
    let parallel = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut scenarios = Vec::new();
    if want("scale") {
        // Scale first: its engine's pool reserves most of the address space there is
        // (~8 GiB per instance slot), which must not be shared with the other engines.
        // Its own runtime, dropped after it with every task that could hold the engine.
        scenarios.push(
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(scale(if quick { 2_000 } else { 10_000 }))?,
        );
    }
    if want("scale_hibernating") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        for target in if quick { vec![10_000] } else { vec![10_000, 100_000] } {
            scenarios.push(runtime.block_on(scale_hibernating(target))?);
        }
    }
    if want("instantiate") {
        scenarios.push(runtime.block_on(instantiate(samples))?);
    }
    if want("restart") {
        scenarios.push(runtime.block_on(restart(samples / 4))?);
    }
    if want("restart_all_100") {
        scenarios.push(runtime.block_on(restart_all((samples / 500).max(10)))?);
    }
    if want("call_64B") {
        scenarios.push(runtime.block_on(call("call_64B", 64, samples, Caller::Task))?);
    }
    if want("call_64B_block_on") {
        let call = call("call_64B_block_on", 64, samples, Caller::BlockOn);
        scenarios.push(runtime.block_on(call)?);
    }
    if want("call_64KiB") {
        let call = call("call_64KiB", 64 << 10, samples / 4, Caller::Task);
        scenarios.push(runtime.block_on(call)?);
    }
    // From a task, as `call_64B` (a call from `block_on` costs more: see `call_64B_block_on`).
    if want("host_function") {
        let measure = interfaces::host_function(samples / 10);
        scenarios.push(runtime.block_on(async { tokio::spawn(measure).await? })?);
    }
    if want("typed_call") {
        let measure = interfaces::typed_call(samples);
        scenarios.push(runtime.block_on(async { tokio::spawn(measure).await? })?);
    }
    if want("send_throughput") {
        let per_child = if quick { 1_000 } else { 10_000 };
        scenarios.push(parallel.block_on(send_throughput(100, per_child))?);
    }
    if want("state_set") || want("state_get") {
        let (set, get) = runtime.block_on(state_latency(if quick { 200 } else { 2_000 }))?;
        scenarios.extend([set, get]);
    }
    if want("state_commits") {
        scenarios.push(parallel.block_on(state_commits(100, if quick { 20 } else { 100 }))?);
    }
    if want("crash_storm") {
        scenarios.push(parallel.block_on(crash_storm(if quick { 4 } else { 20 }))?);
    }
    // Optional scenarios, which need what a machine may lack. Several nodes: a NATS
    // server of their own, and (node_loss_100) `warden node` processes; only when
    // asked for by name, or in a full run.
    // In a full run, one that cannot run (no NATS server, no `warden` binary) is
    // skipped, saying why; asked for by name, it fails the run.
    let named = options.only.is_some();
    let optional = |name: &str| named && want(name) || !quick && !named;
    let mut measured = |name: &str, result: Result<Scenario>| match result {
        Ok(scenario) => {
            scenarios.push(scenario);
            Ok(())
        }
        Err(e) if !named => {
            eprintln!("{name} skipped: {e:#}");
            Ok(())
        }
        Err(e) => Err(e),
    };
    if optional("remote_call_64B") {
        measured("remote_call_64B", parallel.block_on(cluster::remote_call(samples / 10)))?;
    }
    if optional("remote_restart") {
        measured("remote_restart", parallel.block_on(cluster::remote_restart(samples / 40)))?;
    }
    if optional("node_loss_100") {
        measured("node_loss_100", parallel.block_on(cluster::node_loss(3)))?;
    }
    // The Python plugin, which needs componentize-py to build: where it cannot be
    // built, skipped in a full run; any other failure fails the run.
    let python = optional("instantiate_py") || optional("restart_py");
    let python = python
        && match warden_tests::try_python_counter() {
            Ok(_) => true,
            Err(e) if !named => {
                eprintln!("instantiate_py and restart_py skipped: {e}");
                false
            }
            Err(e) => anyhow::bail!("{e}"),
        };
    if python && optional("instantiate_py") {
        scenarios.push(runtime.block_on(python::instantiate(samples / 10))?);
    }
    if python && optional("restart_py") {
        scenarios.push(runtime.block_on(python::restart(samples / 40))?);
    }
    if want("call_under_attack") {
        let measure = attack::call_under_attack(if quick { 500 } else { 5_000 });
        scenarios.push(parallel.block_on(async { tokio::spawn(measure).await? })?);
    }
    if want("hang_detection") {
        scenarios.push(runtime.block_on(hang_detection(if quick { 10 } else { 50 }))?);
    }
    // Beside OTP's `supervisor` and `gen_server`, where `erl` is installed.
    let sizes = otp::Sizes {
        calls: samples,
        restarts: samples / 4,
        group_restarts: (samples / 500).max(10),
        crash_loop_seconds: if quick { 1 } else { 3 },
        sends: if quick { 20_000 } else { 200_000 },
        dynamic_children: if quick { 10_000 } else { 100_000 },
    };
    scenarios.extend(otp::run(want, &sizes, &runtime, &parallel)?);
    Ok(scenarios)
}

/// The table of results, and each scenario's note.
fn print_table(scenarios: &[Scenario]) {
    println!(
        "{:<20} {:>5} {:>12} {:>12}  {:<44} {:>12} {:>12} {:>7}",
        "scenario", "unit", "warden p50", "warden p99", "baseline", "p50", "p99", "ratio"
    );
    let figure = |x: Option<f64>, decimals: usize| match x {
        Some(x) => format!("{x:.decimals$}"),
        None => String::new(),
    };
    for s in scenarios {
        let baseline = s.baseline.unwrap_or_default();
        match s.warden_value {
            Some(value) if s.baseline.is_none() => println!(
                "{:<20} {:>5} {:>12.0} {:>12}  {}",
                s.name,
                s.unit,
                value,
                "",
                s.note.as_deref().unwrap_or("")
            ),
            Some(value) => println!(
                "{:<20} {:>5} {:>12.0} {:>12}  {:<44} {:>12} {:>12} {:>7}",
                s.name,
                s.unit,
                value,
                "",
                baseline,
                figure(s.baseline_value, 0),
                "",
                s.ratio_value.map(|r| format!("{r:.2}x")).unwrap_or_default(),
            ),
            None => println!(
                "{:<20} {:>5} {:>12.2} {:>12.2}  {:<44} {:>12} {:>12} {:>7}",
                s.name,
                s.unit,
                s.warden_p50.unwrap_or_default(),
                s.warden_p99.unwrap_or_default(),
                baseline,
                figure(s.baseline_p50, 2),
                figure(s.baseline_p99, 2),
                s.ratio_p50.map(|r| format!("{r:.2}x")).unwrap_or_default(),
            ),
        }
    }
    for s in scenarios.iter().filter(|s| s.warden_value.is_none() || s.baseline.is_some()) {
        if let Some(note) = &s.note {
            println!("  {}: {note}", s.name);
        }
    }
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
/// the 100 `child_started`, beside raw wasmtime doing the same work by hand: the 99
/// survivors' `terminate` and every old Store's drop, then 100 instantiate + init.
async fn restart_all(samples: usize) -> Result<Scenario> {
    let children = (0..100).map(|i| chaos_child(&format!("c{i}"))).collect();
    let (host, mut events) = never_giving_up(Strategy::OneForAll, children).await?;
    let raw = RawEcho::new(warden_tests::CHAOS)?;
    let mut stores = Vec::with_capacity(100);
    for _ in 0..100 {
        stores.push(raw.instantiate_and_init().await?);
    }
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
        // What Warden did in that time, by hand: stop the 99 survivors (`terminate`,
        // then drop), drop the crashed one, start 100.
        let t = Instant::now();
        for (n, (mut store, instance)) in std::mem::take(&mut stores).into_iter().enumerate() {
            if n != 50 {
                raw.terminate(&mut store, &instance).await?;
            }
            drop(store);
        }
        for _ in 0..100 {
            stores.push(raw.instantiate_and_init().await?);
        }
        let r = t.elapsed();
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
        "raw wasmtime: 99 x terminate, 100 x Store drop, instantiate_pre + init",
        raw_us,
    ))
}

/// Embedder → child → reply through the host (mailbox, worker, `handle`, reply), with
/// a `size`-byte payload, beside raw wasmtime calling the same `handle` export of the
/// same component on a live instance.
///
/// The calls are made from a task on the runtime, as a server's request handler
/// would make them. With `Caller::BlockOn` they are made from `block_on` instead,
/// where every reply wakes the runtime's driver (an eventfd write, then a
/// non-blocking `epoll_wait`) before the caller runs again.
async fn call(name: &'static str, size: usize, samples: usize, caller: Caller) -> Result<Scenario> {
    let echo = ChildSpec::plugin("echo", PluginStart::new(warden_tests::ECHO));
    let (host, _events) = never_giving_up(Strategy::OneForOne, vec![echo]).await?;
    let raw = RawEcho::new(warden_tests::ECHO)?;
    let instance = raw.instance().await?;
    let measure = call_samples(host.clone(), instance, size, samples);
    let ((warden_us, raw_us), baseline) = match caller {
        Caller::Task => {
            (tokio::spawn(measure).await??, "raw wasmtime call_async of handle, live instance")
        }
        Caller::BlockOn => (measure.await?, "raw wasmtime call_async of handle, from block_on"),
    };
    host.shutdown().await;
    Ok(scenario(name, "us", warden_us, baseline, raw_us))
}

/// Where the calls of the call scenario are made from.
#[derive(Clone, Copy)]
enum Caller {
    Task,
    BlockOn,
}

/// Interleaved Warden and raw calls; the first tenth warms up and is not kept.
async fn call_samples(
    host: Host,
    mut instance: RawInstance,
    size: usize,
    samples: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let payload = vec![7u8; size];
    let mut warden_us = Vec::with_capacity(samples);
    let mut raw_us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let reply = host.call("root/echo", payload.clone(), Duration::from_secs(5)).await?;
        let w = t.elapsed();
        anyhow::ensure!(reply.len() == size, "echo answered {} bytes", reply.len());
        let t = Instant::now();
        let reply = instance.handle(payload.clone()).await?;
        let r = t.elapsed();
        anyhow::ensure!(reply.len() == size, "raw echo answered {} bytes", reply.len());
        if i >= samples / 10 {
            warden_us.push(micros(w));
            raw_us.push(micros(r));
        }
    }
    Ok((warden_us, raw_us))
}

/// `children` relay plugins in a ring, each sending `per_child` messages to the next
/// from inside its `handle` (guest `send`), all at once: messages handled per second,
/// from the first flood order to the last message handled.
async fn send_throughput(children: usize, per_child: usize) -> Result<Scenario> {
    let specs = (0..children)
        .map(|i| {
            let mut start = PluginStart::new(warden_tests::RELAY);
            start.mailbox.targets = warden::messaging::Targets::any();
            start.mailbox.capacity = per_child + 16;
            ChildSpec::plugin(format!("r{i}"), start)
        })
        .collect();
    let (host, _events) = never_giving_up(Strategy::OneForOne, specs).await?;
    let before = host.message_stats();
    let t = Instant::now();
    for i in 0..children {
        let order = format!("!flood:{per_child}:root/r{}:x", (i + 1) % children);
        host.send(&format!("root/r{i}"), order.into_bytes())?;
    }
    tokio::time::timeout(Duration::from_secs(120), host.messages_settled())
        .await
        .context("the messages did not settle within 120 s")?;
    let elapsed = t.elapsed();
    let stats = host.message_stats();
    let handled = stats.handled - before.handled - children as u64; // less the orders
    anyhow::ensure!(
        stats.rejected == before.rejected && handled == (children * per_child) as u64,
        "lost or refused messages: {stats:?}"
    );
    host.shutdown().await;
    Ok(Scenario {
        name: "send_throughput",
        unit: "msg/s",
        samples: handled as usize,
        warden_value: Some(handled as f64 / elapsed.as_secs_f64()),
        note: Some(format!(
            "{handled} guest sends across {children} children, handled in {:.0} ms",
            elapsed.as_secs_f64() * 1e3
        )),
        ..Scenario::default()
    })
}

/// `set` and `get` of a 64-byte value as a plugin sees them (timed inside the guest
/// by the relay plugin's `!state` command) on the durable store, beside redb used
/// directly from Rust on the same disk: one insert per fsynced transaction, and one
/// get per read transaction. Rounds of 100 of each, interleaved.
async fn state_latency(samples: usize) -> Result<(Scenario, Scenario)> {
    let dir = tempfile::tempdir()?;
    let host = Host::builder().data_dir(dir.path().join("warden")).build()?;
    let mut spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::plugin("relay", PluginStart::new(warden_tests::RELAY))],
    );
    spec.intensity = 0;
    host.start(spec).await?;
    let raw = redb::Database::create(dir.path().join("raw.redb"))?;
    let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("t");
    let value = [0x5au8; 64];
    let (mut set, mut get, mut raw_set, mut raw_get) = (vec![], vec![], vec![], vec![]);
    let round = 100;
    while set.len() < samples {
        let nanos =
            host.call("root/relay", b"!state:100:64".to_vec(), Duration::from_secs(60)).await?;
        let nanos: Vec<f64> = nanos
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as f64 / 1e3)
            .collect();
        anyhow::ensure!(nanos.len() == 2 * round, "relay answered {} timings", nanos.len());
        set.extend_from_slice(&nanos[..round]);
        get.extend_from_slice(&nanos[round..]);
        for i in 0..round {
            let key = format!("bench/{i}");
            let t = Instant::now();
            let txn = raw.begin_write()?;
            txn.open_table(table)?.insert(key.as_str(), &value[..])?;
            txn.commit()?;
            raw_set.push(micros(t.elapsed()));
        }
        for i in 0..round {
            use redb::ReadableDatabase;
            let key = format!("bench/{i}");
            let t = Instant::now();
            let txn = raw.begin_read()?;
            let found = txn.open_table(table)?.get(key.as_str())?.map(|v| v.value().len());
            raw_get.push(micros(t.elapsed()));
            anyhow::ensure!(found == Some(64), "raw get found {found:?}");
        }
    }
    host.shutdown().await;
    Ok((
        scenario("state_set", "us", set, "redb insert + fsynced commit, from Rust", raw_set),
        scenario("state_get", "us", get, "redb get in a read transaction, from Rust", raw_get),
    ))
}

/// Committed sets per second with `children` chaos plugins writing at once, each
/// `per_child` sets of 64 bytes in a loop (`state:fill`), on the durable store: the
/// writer thread commits what is queued together, one fsync for many sets.
async fn state_commits(children: usize, per_child: usize) -> Result<Scenario> {
    let dir = tempfile::tempdir()?;
    let host = Host::builder().data_dir(dir.path()).build()?;
    let specs = (0..children).map(|i| chaos_child(&format!("c{i}"))).collect();
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, specs);
    spec.intensity = 0;
    host.start(spec).await?;
    let t = Instant::now();
    let fills = (0..children).map(|i| {
        let host = host.clone();
        let order = format!("state:fill:{per_child}:64").into_bytes();
        tokio::spawn(async move {
            host.call(&format!("root/c{i}"), order, Duration::from_secs(120)).await
        })
    });
    for fill in fills.collect::<Vec<_>>() {
        let reply = fill.await??;
        anyhow::ensure!(reply == format!("stored {per_child}").into_bytes(), "a fill failed");
    }
    let elapsed = t.elapsed();
    host.shutdown().await;
    let sets = children * per_child;
    Ok(Scenario {
        name: "state_commits",
        unit: "set/s",
        samples: sets,
        warden_value: Some(sets as f64 / elapsed.as_secs_f64()),
        note: Some(format!(
            "{sets} durable sets by {children} children at once in {:.0} ms",
            elapsed.as_secs_f64() * 1e3
        )),
        ..Scenario::default()
    })
}

/// Healthy calls while other children crash 1,000 times a second: embedder → `echo`
/// → reply, in alternating phases of 250 ms, calm (nothing else happening) and storm
/// (20 `chaos` children under the same supervisor trapping on calls issued every
/// millisecond, each restarted at once). The baseline is the calm phases of the same
/// run.
async fn crash_storm(phases: usize) -> Result<Scenario> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const CRASHERS: usize = 20;
    let mut children: Vec<ChildSpec> =
        (0..CRASHERS).map(|i| chaos_child(&format!("crash{i}"))).collect();
    children.push(ChildSpec::plugin("echo", PluginStart::new(warden_tests::ECHO)));
    let (host, _events) = never_giving_up(Strategy::OneForOne, children).await?;
    let storming = Arc::new(AtomicBool::new(false));
    let crashes = Arc::new(AtomicU64::new(0));
    let storm = tokio::spawn({
        let (host, storming, crashes) = (host.clone(), storming.clone(), crashes.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for i in 0usize.. {
                tick.tick().await;
                if !storming.load(Ordering::Relaxed) {
                    continue;
                }
                let (host, crashes) = (host.clone(), crashes.clone());
                tokio::spawn(async move {
                    let to = format!("root/crash{}", i % CRASHERS);
                    let crashed = host.call(&to, b"trap".to_vec(), Duration::from_secs(5)).await;
                    if matches!(crashed, Err(warden::sandbox::MessageError::CalleeCrashed(_))) {
                        crashes.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    });
    let (mut calm, mut stormy) = (Vec::new(), Vec::new());
    let mut storm_time = Duration::ZERO;
    let payload = vec![7u8; 64];
    for phase in 0..2 * phases {
        let storm_phase = phase % 2 == 1;
        storming.store(storm_phase, Ordering::Relaxed);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(250) {
            let t = Instant::now();
            host.call("root/echo", payload.clone(), Duration::from_secs(5)).await?;
            let us = micros(t.elapsed());
            // The first 10 ms of a phase let the previous one settle.
            if start.elapsed() > Duration::from_millis(10) {
                if storm_phase { stormy.push(us) } else { calm.push(us) }
            }
        }
        if storm_phase {
            storm_time += start.elapsed();
        }
    }
    storming.store(false, Ordering::Relaxed);
    storm.abort();
    let rate = crashes.load(Ordering::Relaxed) as f64 / storm_time.as_secs_f64();
    host.shutdown().await;
    let mut s = scenario(
        "crash_storm",
        "us",
        stormy,
        "the same calls in the calm phases between storms",
        calm,
    );
    s.note = Some(format!(
        "{rate:.0} crashes/s during the storms; ratio is p99 (storm / calm) in ratio_p99"
    ));
    s.ratio_p99 = Some(s.warden_p99.unwrap_or_default() / s.baseline_p99.unwrap_or(1.0));
    Ok(s)
}

/// A `chaos` child with a 50 ms heartbeat timeout told to `hang:1000` (work without
/// heartbeats): from the call that starts the hang (its last sign of life: a child is
/// judged from the start of each call) to its `child_exited` with `killed(heartbeat)`,
/// from the event timestamps. The baseline is the timeout itself: the goal is every
/// kill within timeout + 20 ms.
async fn hang_detection(samples: usize) -> Result<Scenario> {
    const TIMEOUT: Duration = Duration::from_millis(50);
    let mut start = PluginStart::new(warden_tests::CHAOS);
    start.limits.heartbeat = Some(warden::sandbox::HeartbeatPolicy::Timeout(TIMEOUT));
    let (host, mut events) =
        never_giving_up(Strategy::OneForOne, vec![ChildSpec::plugin("c", start)]).await?;
    let mut kills = Vec::with_capacity(samples);
    for i in 0..samples + 2 {
        let sent = host.clock_us();
        let _ = host.call("root/c", b"hang:1000".to_vec(), Duration::from_secs(5)).await;
        let killed = next_event(&mut events, |e| {
            matches!(
                e,
                Event::ChildExited {
                    reason: warden::ExitReason::Killed { cause: warden::KillCause::Heartbeat },
                    ..
                }
            )
        })
        .await?;
        next_event(&mut events, |e| matches!(e, Event::ChildStarted { .. })).await?;
        if i >= 2 {
            kills.push((killed - sent) as f64 / 1e3);
        }
    }
    host.shutdown().await;
    let timeout_ms = TIMEOUT.as_secs_f64() * 1e3;
    let mut s = scenario(
        "hang_detection",
        "ms",
        kills,
        "the heartbeat timeout (goal: within it + 20 ms)",
        vec![timeout_ms; 100],
    );
    s.note = Some(format!("kill after the last sign of life, timeout {timeout_ms:.0} ms"));
    Ok(s)
}

/// Dynamic `echo` children of one simple_one_for_one supervisor, every one resident
/// (a live instance), started one after another until `target` or until the host
/// refuses an instance: the time to start them, resident memory per idle child, and
/// embedder → child → reply latency to children picked across all of them. On a
/// machine with default settings the kernel's `vm.max_map_count` (65,530) ends it
/// before 10,000: the host refuses the next instance with an error naming the sysctl
/// (counted here), where wasmtime would abort the process.
async fn scale(target: usize) -> Result<Scenario> {
    scale_children("scale", target, None).await
}

/// The same with children that hibernate after every message (they hold an instance
/// only while they handle one), toward `target` in the default engine.
async fn scale_hibernating(target: usize) -> Result<Scenario> {
    scale_children("scale_hibernating", target, Some(Duration::ZERO)).await
}

async fn scale_children(
    name: &'static str,
    target: usize,
    hibernate_after: Option<Duration>,
) -> Result<Scenario> {
    let Started { host, names, start_ms, rss_per_child, refused } =
        start_children(target, hibernate_after).await?;
    let mut us = Vec::new();
    let mut pick = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2_000 {
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        anyhow::ensure!(!names.is_empty(), "no child started: {refused:?}");
        let name = &names[(pick % names.len() as u64) as usize];
        let t = Instant::now();
        host.call(&format!("root/pool/{name}"), vec![7u8; 64], Duration::from_secs(5)).await?;
        us.push(micros(t.elapsed()));
    }
    us.sort_by(f64::total_cmp);
    host.shutdown().await;
    let started = names.len();
    Ok(Scenario {
        name,
        unit: "us",
        samples: us.len(),
        warden_p50: Some(percentile(&us, 0.5)),
        warden_p99: Some(percentile(&us, 0.99)),
        note: Some(format!(
            "{started} of {target} {} children started in {start_ms:.0} ms, {:.0} KiB \
             resident each; call p50/p99 across them{}",
            if hibernate_after.is_some() { "hibernating" } else { "resident" },
            rss_per_child / 1024.0,
            refused.as_deref().map(|e| format!("; then refused: {e}")).unwrap_or_default()
        )),
        details: Some(serde_json::json!({
            "target": target,
            "started": started,
            "start_ms": start_ms,
            "rss_per_child_kib": rss_per_child / 1024.0,
            "refused": refused,
        })),
        warden_samples: us,
        ..Scenario::default()
    })
}

/// A host with `target` dynamic `echo` children of one simple_one_for_one supervisor,
/// or as many as it would start.
pub(crate) struct Started {
    pub host: Host,
    /// The names of the children started.
    pub names: Vec<String>,
    /// How long starting them took, one after another.
    pub start_ms: f64,
    /// The process's resident growth, divided by the children started.
    pub rss_per_child: f64,
    /// Why the next child was refused, where one was.
    pub refused: Option<String>,
}

/// Starts `target` dynamic `echo` children (hibernating after `hibernate_after`, or
/// resident) one after another, until the host refuses one.
pub(crate) async fn start_children(
    target: usize,
    hibernate_after: Option<Duration>,
) -> Result<Started> {
    let engine = match hibernate_after {
        None => warden::sandbox::EngineConfig {
            max_instances: target,
            max_memory_bytes: 16 << 20,
            ..Default::default()
        },
        Some(_) => warden::sandbox::EngineConfig::default(),
    };
    let host = Host::builder().engine(engine).build()?;
    let mut start = PluginStart::new(warden_tests::ECHO).max_memory(16 << 20);
    start.hibernate_after = hibernate_after;
    let template = ChildSpec::plugin("echo", start);
    let mut pool = SupervisorSpec::new(Strategy::SimpleOneForOne, vec![template]);
    pool.intensity = 0;
    let root = SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::supervisor("pool", pool)]);
    host.start(root).await?;
    let rss_before = warden_tests::resident_bytes();
    let t = Instant::now();
    let mut names = Vec::with_capacity(target);
    let mut refused = None;
    while names.len() < target {
        match host.start_dynamic("root/pool", None, None).await {
            Ok(name) => names.push(name),
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let start_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_per_child = (warden_tests::resident_bytes().saturating_sub(rss_before)) as f64
        / names.len().max(1) as f64;
    Ok(Started { host, names, start_ms, rss_per_child, refused })
}

/// A started tree whose root restarts without limit, and its event stream.
async fn never_giving_up(
    strategy: Strategy,
    children: Vec<ChildSpec>,
) -> Result<(Host, warden::Events)> {
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
async fn next_event(events: &mut warden::Events, pred: impl Fn(&Event) -> bool) -> Result<u64> {
    let wait = async {
        loop {
            let received = events.next().await.context("the tree stopped")?;
            let warden::Received::Event(record) = received else {
                anyhow::bail!("the benchmark fell behind its events: {received:?}")
            };
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
    handle: wasmtime::component::ComponentExportIndex,
    terminate: wasmtime::component::ComponentExportIndex,
}

/// The `envelope` record of the WIT world.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub(crate) struct RawEnvelope {
    sender: Option<String>,
    payload: Vec<u8>,
    #[component(name = "expects-reply")]
    expects_reply: bool,
}

pub(crate) type HandleFunc =
    wasmtime::component::TypedFunc<(RawEnvelope,), (Result<Vec<u8>, String>,)>;

/// A live raw instance with its `handle` looked up.
struct RawInstance {
    store: wasmtime::Store<RawState>,
    handle: HandleFunc,
}

impl RawInstance {
    async fn handle(&mut self, payload: Vec<u8>) -> Result<Vec<u8>> {
        let envelope = RawEnvelope { sender: None, payload, expects_reply: true };
        let (reply,) = self.handle.call_async(&mut self.store, (envelope,)).await?;
        reply.map_err(anyhow::Error::msg)
    }
}

/// The `context` record of the WIT world, lowered the way `bindgen!` would.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub(crate) struct Ctx {
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
        let warden = warden::sandbox::EngineConfig::default();
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(1_000)
            .total_core_instances(8_000)
            .total_memories(2_000)
            .total_tables(4_000)
            .total_stacks(1_000)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(warden.max_memory_bytes)
            .linear_memory_keep_resident(warden.keep_resident)
            .table_keep_resident(16 << 10); // the engine's TABLE_KEEP_RESIDENT
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
            .get_export_index(None, "warden:plugin/guest@0.2.0")
            .context("no guest export")?;
        let init = component.get_export_index(Some(&guest), "init").context("no init")?;
        let handle = component.get_export_index(Some(&guest), "handle").context("no handle")?;
        let terminate =
            component.get_export_index(Some(&guest), "terminate").context("no terminate")?;
        Ok(Self { engine, pre, init, handle, terminate })
    }

    /// A live instance, initialised, with `handle` ready to call.
    async fn instance(&self) -> Result<RawInstance> {
        let (mut store, instance) = self.instantiate_and_init().await?;
        let handle = instance.get_typed_func(&mut store, self.handle)?;
        Ok(RawInstance { store, handle })
    }

    async fn instantiate_and_init(
        &self,
    ) -> Result<(wasmtime::Store<RawState>, wasmtime::component::Instance)> {
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
        Ok((store, instance))
    }

    /// Calls `terminate(shutdown)`, as a supervisor stopping the instance does.
    async fn terminate(
        &self,
        store: &mut wasmtime::Store<RawState>,
        instance: &wasmtime::component::Instance,
    ) -> Result<()> {
        let terminate = instance.get_func(&mut *store, self.terminate).context("no terminate")?;
        let reason = wasmtime::component::Val::Variant("shutdown".into(), None);
        terminate.call_async(&mut *store, &[reason], &mut []).await?;
        Ok(())
    }
}

pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

pub(crate) fn scenario(
    name: &'static str,
    unit: &'static str,
    mut warden: Vec<f64>,
    baseline: &'static str,
    mut base: Vec<f64>,
) -> Scenario {
    warden.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let warden_p50 = percentile(&warden, 0.5);
    // No baseline samples (a baseline not installed): no baseline figures.
    let baseline_at = |p| (!base.is_empty()).then(|| percentile(&base, p));
    let baseline_p50 = baseline_at(0.5);
    Scenario {
        name,
        unit,
        samples: warden.len(),
        warden_p50: Some(warden_p50),
        warden_p99: Some(percentile(&warden, 0.99)),
        baseline: Some(baseline),
        baseline_p50,
        baseline_p99: baseline_at(0.99),
        ratio_p50: baseline_p50.map(|b| warden_p50 / b),
        warden_samples: warden,
        baseline_samples: base,
        ..Scenario::default()
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
