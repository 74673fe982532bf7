//! The application's own interfaces: a guest calling an application function, and
//! the application calling a plugin's export typed, each beside raw wasmtime doing
//! the same with the same `bindgen!` bindings and the same plugin (`importer`).

use crate::{Ctx, HandleFunc, RawEnvelope, Scenario, micros, scenario};
use anyhow::{Context as _, Result};
use std::time::{Duration, Instant};
use warden::runtime::Host;
use warden::sandbox::ChildIdentity;
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../tests/wit",
    world: "test:app/importer",
    imports: { "test:app/clock.sleep": async },
    exports: { default: async },
});

use exports::test::app::report;
use test::app::{calc, clock, secret};

/// The application's `calc`: the same implementation on both sides.
#[derive(Default)]
struct Calc {
    served: u32,
}

impl calc::Host for Calc {
    fn add(&mut self, a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
    fn fail(&mut self, _: String) {}
    fn boom(&mut self, _: String) {}
    fn whoami(&mut self) -> String {
        String::new()
    }
    fn served(&mut self) -> u32 {
        self.served += 1;
        self.served
    }
}

struct Clock;

impl clock::Host for Clock {
    async fn sleep(&mut self, ms: u32) {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }
}

struct Secret;

impl secret::Host for Secret {
    fn reveal(&mut self) -> String {
        String::new()
    }
}

/// How many `add` calls one `handle` makes in the host-function scenario.
const ADDS: u32 = 1_000;

/// A Warden host giving the importer its interfaces, with the importer running.
async fn warden_host() -> Result<Host> {
    let host = Host::builder()
        .interface(
            "test:app/calc@0.1.0",
            |l, get| calc::add_to_linker::<_, HasSelf<Calc>>(l, get),
            |_: &ChildIdentity| Ok(Calc::default()),
        )
        .interface(
            "test:app/clock@0.1.0",
            |l, get| clock::add_to_linker::<_, HasSelf<Clock>>(l, get),
            |_: &ChildIdentity| Ok(Clock),
        )
        .interface(
            "test:app/secret@0.1.0",
            |l, get| secret::add_to_linker::<_, HasSelf<Secret>>(l, get),
            |_: &ChildIdentity| Ok(Secret),
        )
        .build()?;
    let mut start = PluginStart::new(warden_tests::IMPORTER);
    start.grants.interfaces = vec!["test:app/*".into()];
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::plugin("shop", start)]);
    host.start(spec).await?;
    Ok(host)
}

/// Per `calc.add` call made by the guest: one `handle` making [`ADDS`] calls, through
/// Warden (`Host::call`) and on a raw instance, divided by [`ADDS`].
pub(crate) async fn host_function(samples: usize) -> Result<Scenario> {
    let host = warden_host().await?;
    let mut raw = Raw::new().await?;
    let message = format!("adds:{ADDS}").into_bytes();
    let (mut warden_ns, mut raw_ns) = (Vec::new(), Vec::new());
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let reply = host.call("root/shop", message.clone(), Duration::from_secs(5)).await?;
        let w = t.elapsed();
        let t = Instant::now();
        let raw_reply = raw.handle(message.clone()).await?;
        let r = t.elapsed();
        anyhow::ensure!(reply == raw_reply, "the two sides disagree");
        if i >= samples / 10 {
            warden_ns.push(micros(w) * 1e3 / f64::from(ADDS));
            raw_ns.push(micros(r) * 1e3 / f64::from(ADDS));
        }
    }
    host.shutdown().await;
    Ok(scenario(
        "host_function",
        "ns",
        warden_ns,
        "raw wasmtime, the same bindgen! host function, plain instance",
        raw_ns,
    ))
}

/// A typed call of the exported `report.summary` (which calls `calc.served`): through
/// Warden (`Host::call_export`, loading the export in the child's incarnation) and on
/// a raw instance whose export was loaded once.
pub(crate) async fn typed_call(samples: usize) -> Result<Scenario> {
    let host = warden_host().await?;
    let mut raw = Raw::new().await?;
    let (mut warden_us, mut raw_us) = (Vec::new(), Vec::new());
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let summary = host
            .call_export(
                "root/shop",
                Duration::from_secs(5),
                |store, instance| {
                    report::GuestIndices::new(&instance.instance_pre(&*store))?
                        .load(store, instance)
                },
                |report, store| Box::pin(async move { report.call_summary(store, "x").await }),
            )
            .await?;
        let w = t.elapsed();
        let t = Instant::now();
        let raw_summary = raw.report.call_summary(&mut raw.store, "x").await?;
        let r = t.elapsed();
        anyhow::ensure!(summary == raw_summary, "{summary:?} != {raw_summary:?}");
        if i >= samples / 10 {
            warden_us.push(micros(w));
            raw_us.push(micros(r));
        }
    }
    host.shutdown().await;
    Ok(scenario(
        "typed_call",
        "us",
        warden_us,
        "raw wasmtime call_async of the same typed export, live instance",
        raw_us,
    ))
}

/// The importer on a plain wasmtime instance: WASI, the application's interfaces,
/// Warden's own imports left as traps (the paths measured do not call them).
struct Raw {
    store: wasmtime::Store<RawState>,
    handle: HandleFunc,
    report: report::Guest,
}

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
    calc: Calc,
    clock: Clock,
    secret: Secret,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Raw {
    async fn new() -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config)?;
        let component = wasmtime::component::Component::from_file(&engine, warden_tests::IMPORTER)?;
        let mut linker = Linker::<RawState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        calc::add_to_linker::<_, HasSelf<Calc>>(&mut linker, |s| &mut s.calc)?;
        clock::add_to_linker::<_, HasSelf<Clock>>(&mut linker, |s| &mut s.clock)?;
        secret::add_to_linker::<_, HasSelf<Secret>>(&mut linker, |s| &mut s.secret)?;
        linker.define_unknown_imports_as_traps(&component)?;
        let state = RawState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            calc: Calc::default(),
            clock: Clock,
            secret: Secret,
        };
        let mut store = wasmtime::Store::new(&engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate_async(&mut store, &component).await?;
        let guest = instance
            .get_export_index(&mut store, None, "warden:plugin/guest@0.2.0")
            .context("no guest export")?;
        let init_index =
            instance.get_export_index(&mut store, Some(&guest), "init").context("no init")?;
        let handle_index =
            instance.get_export_index(&mut store, Some(&guest), "handle").context("no handle")?;
        let init =
            instance.get_typed_func::<(&Ctx,), (Result<(), String>,)>(&mut store, &init_index)?;
        let context = Ctx {
            name: "shop".into(),
            path: "root/shop".into(),
            incarnation: 1,
            config: Vec::new(),
        };
        let (initialised,) = init.call_async(&mut store, (&context,)).await?;
        initialised.map_err(anyhow::Error::msg)?;
        let handle = instance.get_typed_func(&mut store, handle_index)?;
        let report = report::GuestIndices::new(&instance.instance_pre(&store))?
            .load(&mut store, &instance)?;
        Ok(Self { store, handle, report })
    }

    async fn handle(&mut self, payload: Vec<u8>) -> Result<Vec<u8>> {
        let envelope = RawEnvelope { sender: None, payload, expects_reply: true };
        let (reply,) = self.handle.call_async(&mut self.store, (envelope,)).await?;
        reply.map_err(anyhow::Error::msg)
    }
}
