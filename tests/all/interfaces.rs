//! The application's own interfaces, as an embedder gives them: bindings from
//! `bindgen!`, implementations registered on the `HostBuilder` with a factory of
//! per-incarnation state, granted per child; the `importer` fixture calls them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warden::exit::HostFunctionFailure;
use warden::runtime::{ExportError, Host, HostError};
use warden::sandbox::{ChildIdentity, EngineConfig, HeartbeatPolicy, MessageError};
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use warden::testing::{TestTree, exited_with, started};
use warden::wasmtime::component::HasSelf;
use warden::{ExitReason, SpecError, SpecProblem};
use warden_tests::{ECHO, IMPORTER};

warden::wasmtime::component::bindgen!({
    path: "wit",
    world: "test:app/importer",
    wasmtime_crate: warden::wasmtime,
    imports: {
        "test:app/calc.fail": trappable,
        "test:app/clock.sleep": async | trappable,
    },
    // Warden's engine is async: exports are called with `call_async`.
    exports: { default: async },
});

use exports::test::app::report;
use test::app::{calc, clock, secret};

/// One incarnation's state: who it is for, and how many calls it served.
struct Calc {
    child: ChildIdentity,
    served: u32,
    /// Every incarnation the factory made state for, across the test.
    made: Arc<AtomicU32>,
}

impl calc::Host for Calc {
    fn add(&mut self, a: u32, b: u32) -> u32 {
        self.served += 1;
        a.wrapping_add(b)
    }

    fn fail(&mut self, message: String) -> warden::wasmtime::Result<()> {
        Err(warden::wasmtime::Error::msg(message))
    }

    fn boom(&mut self, message: String) {
        panic!("{message}");
    }

    fn whoami(&mut self) -> String {
        let config = String::from_utf8_lossy(&self.child.config);
        format!("{}#{} {config}", self.child.path, self.child.incarnation)
    }

    fn served(&mut self) -> u32 {
        self.served += 1;
        self.made.load(Ordering::Relaxed) * 1000 + self.served
    }
}

/// `clock`, which says when a sleep begins.
struct Clock {
    sleeping: Arc<tokio::sync::Notify>,
}

impl clock::Host for Clock {
    async fn sleep(&mut self, ms: u32) -> warden::wasmtime::Result<()> {
        self.sleeping.notify_one();
        if ms > 10_000 {
            return Err(warden::wasmtime::Error::msg(format!("refusing to sleep {ms} ms")));
        }
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        Ok(())
    }
}

struct Secret;

impl secret::Host for Secret {
    fn reveal(&mut self) -> String {
        "s3cret".into()
    }
}

/// A host that gives plugins `calc` and `clock`, and `secret` when `with_secret`;
/// how many `calc` states it made, and a notice of each sleep in the host.
fn host(with_secret: bool) -> (Host, Arc<AtomicU32>, Arc<tokio::sync::Notify>) {
    let made = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&made);
    let sleeping = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&sleeping);
    let mut builder = Host::builder()
        .engine(EngineConfig { max_instances: 16, ..EngineConfig::default() })
        .interface(
            "test:app/calc@0.1.0",
            |linker, get| calc::add_to_linker::<_, HasSelf<Calc>>(linker, get),
            move |child: &ChildIdentity| {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(Calc { child: child.clone(), served: 0, made: Arc::clone(&counter) })
            },
        )
        .interface(
            "test:app/clock@0.1.0",
            |linker, get| clock::add_to_linker::<_, HasSelf<Clock>>(linker, get),
            move |_: &ChildIdentity| Ok(Clock { sleeping: Arc::clone(&notify) }),
        );
    if with_secret {
        builder = builder.interface(
            "test:app/secret@0.1.0",
            |linker, get| secret::add_to_linker::<_, HasSelf<Secret>>(linker, get),
            |_: &ChildIdentity| Ok(Secret),
        );
    }
    (builder.build().expect("the host builds"), made, sleeping)
}

fn importer(id: &str, grants: &[&str]) -> ChildSpec {
    let mut start = PluginStart::new(IMPORTER);
    start.grants.interfaces = grants.iter().map(|g| (*g).to_owned()).collect();
    start.config = br#"{"shop":"north"}"#.to_vec();
    ChildSpec::plugin(id, start)
}

async fn tree(host: Host, children: Vec<ChildSpec>) -> TestTree {
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, children);
    spec.intensity = 100;
    TestTree::start_in(host, spec).await.expect("the tree starts")
}

fn text(reply: Result<Vec<u8>, MessageError>) -> String {
    String::from_utf8(reply.expect("a reply")).expect("UTF-8")
}

#[tokio::test]
async fn a_plugin_calls_the_applications_functions_on_state_made_for_its_incarnation() {
    let (host, ..) = host(true);
    let echo = ChildSpec::plugin("echo", PluginStart::new(ECHO));
    let tree = tree(host, vec![importer("shop", &["test:app/*"]), echo]).await;
    assert_eq!(text(tree.call("root/shop", "add:2:40").await), "42");
    assert_eq!(text(tree.call("root/shop", "whoami").await), r#"root/shop#1 {"shop":"north"}"#);
    assert_eq!(text(tree.call("root/shop", "reveal").await), "s3cret");
    // The async one suspends the guest's fiber, not the thread: on this test's one
    // thread, another child answers while the first sleeps in the host.
    {
        let mut sleeping = std::pin::pin!(tree.call("root/shop", "sleep:2000"));
        tokio::select! {
            biased;
            _ = &mut sleeping => panic!("the sleep ended before the other child could answer"),
            echoed = tree.call("root/echo", "meanwhile") => assert_eq!(text(echoed), "meanwhile"),
        }
        assert_eq!(text(sleeping.await), "slept");
    }
    tree.shutdown().await;
}

#[tokio::test]
async fn an_interface_the_child_is_not_granted_stops_it_at_start_naming_the_interface() {
    let (host, ..) = host(true);
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![importer("shop", &["test:app/calc", "test:app/clock"])],
    );
    let refused = host.start(spec).await.expect_err("the child must not start");
    let HostError::InvalidSpec(problems) = &refused else { panic!("{refused:?}") };
    let not_granted = SpecProblem::NotGranted { import: "test:app/secret@0.1.0".into() };
    assert_eq!(problems, &[SpecError { path: "root/shop".into(), problem: not_granted }]);
    assert_eq!(
        problems[0].to_string(),
        "supervisor root, child \"shop\": its plugin imports `test:app/secret@0.1.0`, which \
         its grants do not name (grants.interfaces)"
    );
    // Added at run time, it is refused the same way, before it starts.
    host.start(SupervisorSpec::new(Strategy::OneForOne, vec![])).await.unwrap();
    let refused = host.start_child("root", importer("late", &["test:app/calc"])).await;
    assert!(
        matches!(&refused, Err(HostError::InvalidSpec(p)) if p.len() == 2 && p[0].path == "root/late"),
        "{refused:?}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn an_interface_the_host_does_not_provide_is_refused_when_the_plugin_loads() {
    let (host, ..) = host(false);
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![importer("shop", &["test:app/*"])]);
    let message = host.start(spec).await.expect_err("the plugin must not load").to_string();
    assert!(
        message.contains(
            "imports something the host does not provide: the application interface \
             `test:app/secret@0.1.0`, which this host does not provide (it provides \
             test:app/calc@0.1.0, test:app/clock@0.1.0)"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_host_function_that_fails_ends_only_that_incarnation_which_is_restarted() {
    let (host, made, _) = host(true);
    let mut tree = tree(
        host,
        vec![importer("shop", &["test:app/*"]), ChildSpec::plugin("echo", PluginStart::new(ECHO))],
    )
    .await;
    assert_eq!(text(tree.call("root/shop", "served").await), "1001");
    let crashed = tree.call("root/shop", "fail:the database is down").await;
    let Err(MessageError::CalleeCrashed(ExitReason::HostFunctionFailed(failure))) = crashed else {
        panic!("expected a host function failure, got {crashed:?}");
    };
    let HostFunctionFailure { interface, function, message, panic } = *failure;
    assert_eq!(
        (interface.as_str(), message.as_str(), panic),
        ("test:app/calc@0.1.0", "the database is down", false)
    );
    // `calc` has several functions: which one failed cannot be told.
    assert_eq!(function, None);
    tree.expect(started("root/shop", 2)).await;
    // `clock` has one: it is named.
    let crashed = tree.call("root/shop", "sleep:60000").await;
    let expected = ExitReason::HostFunctionFailed(Box::new(HostFunctionFailure {
        interface: "test:app/clock@0.1.0".into(),
        function: Some("sleep".into()),
        message: "refusing to sleep 60000 ms".into(),
        panic: false,
    }));
    assert!(
        matches!(&crashed, Err(MessageError::CalleeCrashed(r)) if *r == expected),
        "{crashed:?}"
    );
    tree.expect(exited_with("root/shop", move |r| *r == expected)).await;
    tree.expect(started("root/shop", 3)).await;
    // A new incarnation, on state made anew; the host and the other child carried on.
    assert_eq!(text(tree.call("root/shop", "served").await), "3001");
    assert_eq!(made.load(Ordering::Relaxed), 3);
    assert_eq!(text(tree.call("root/echo", "still here").await), "still here");
    tree.shutdown().await;
}

#[tokio::test]
async fn a_host_function_that_panics_ends_only_that_incarnation_with_the_panic_message() {
    let (host, ..) = host(true);
    let mut tree = tree(host, vec![importer("shop", &["test:app/*"])]).await;
    let crashed = tree.call("root/shop", "boom:an index out of range").await;
    let Err(MessageError::CalleeCrashed(ExitReason::HostFunctionFailed(failure))) = crashed else {
        panic!("expected a host function failure, got {crashed:?}");
    };
    let HostFunctionFailure { interface, message, panic, .. } = *failure;
    assert_eq!(
        (interface.as_str(), message.as_str(), panic),
        ("test:app/calc@0.1.0", "an index out of range", true)
    );
    tree.expect(started("root/shop", 2)).await;
    assert_eq!(text(tree.call("root/shop", "add:1:1").await), "2");
    tree.shutdown().await;
}

#[tokio::test]
async fn time_in_an_async_host_function_counts_against_neither_the_deadline_nor_heartbeats() {
    let (host, ..) = host(true);
    let mut start = PluginStart::new(IMPORTER);
    start.grants.interfaces = vec!["test:app/*".into()];
    start.limits.call_deadline = Some(Duration::from_millis(100));
    start.limits.heartbeat = Some(HeartbeatPolicy::Timeout(Duration::from_millis(100)));
    let tree = tree(host, vec![ChildSpec::plugin("shop", start)]).await;
    assert_eq!(text(tree.call("root/shop", "sleep:400").await), "slept");
    // The same deadline still stops the guest's own spinning.
    let spun = tree.call("root/shop", "spin").await;
    assert!(
        matches!(spun, Err(MessageError::CalleeCrashed(ExitReason::Killed { .. }))),
        "{spun:?}"
    );
    tree.shutdown().await;
}

#[tokio::test]
async fn interfaces_are_refused_on_a_shared_engine_and_bad_names_at_build() {
    let shared = Host::builder()
        .shared_engine(warden_tests::engine().clone())
        .interface(
            "test:app/secret@0.1.0",
            |linker, get| secret::add_to_linker::<_, HasSelf<Secret>>(linker, get),
            |_: &ChildIdentity| Ok(Secret),
        )
        .build();
    assert!(matches!(shared, Err(HostError::InterfacesOnSharedEngine)), "{shared:?}");
    let bad = Host::builder()
        .interface(
            "secret",
            |linker, get| secret::add_to_linker::<_, HasSelf<Secret>>(linker, get),
            |_: &ChildIdentity| Ok(Secret),
        )
        .build()
        .expect_err("a bad name");
    assert!(bad.to_string().contains("\"secret\" is not a WIT interface name"), "{bad}");
}

/// Calls `report` in the child at `path`, typed: `call` gets the loaded interface.
async fn report<R: Send + 'static>(
    host: &Host,
    path: &str,
    call: impl for<'a> FnOnce(
        report::Guest,
        &'a mut warden::wasmtime::Store<warden::sandbox::StoreData>,
    ) -> warden::sandbox::BoxFuture<'a, warden::wasmtime::Result<R>>
    + Send
    + 'static,
) -> Result<R, ExportError> {
    host.call_export(
        path,
        Duration::from_secs(10),
        |store, instance| {
            report::GuestIndices::new(&instance.instance_pre(&*store))?.load(store, instance)
        },
        call,
    )
    .await
}

#[tokio::test]
async fn the_application_calls_a_plugins_export_typed_through_the_supervised_child() {
    let (host, ..) = host(true);
    let echo = ChildSpec::plugin("echo", PluginStart::new(ECHO));
    let mut tree = tree(host, vec![importer("shop", &["test:app/*"]), echo]).await;
    let host = tree.host().clone();
    let summary = |topic: &'static str| {
        let host = host.clone();
        async move {
            report(&host, "root/shop", move |r, store| {
                Box::pin(async move { r.call_summary(store, topic).await })
            })
            .await
        }
    };
    // Typed both ways: a string in, a result<string, string> out, errors included.
    assert_eq!(summary("apples").await, Ok(Ok("apples: 1001".to_owned())));
    assert_eq!(summary("").await, Ok(Err("an empty topic".to_owned())));

    // A crash in the export is the child's: `callee-crashed`, and it is restarted.
    let crashed =
        report(&host, "root/shop", |r, store| Box::pin(async move { r.call_crash(store).await }))
            .await;
    assert!(
        matches!(
            &crashed,
            Err(ExportError::Message(MessageError::CalleeCrashed(ExitReason::Trap { panic: true, message, .. })))
                if message.contains("a crash the application asked for")
        ),
        "{crashed:?}"
    );
    tree.expect(started("root/shop", 2)).await;
    assert_eq!(summary("pears").await, Ok(Ok("pears: 2001".to_owned())));

    // A plugin without the export is the caller's mistake: the child carries on.
    let missing =
        report(&host, "root/echo", |r, store| Box::pin(async move { r.call_spin(store).await }))
            .await;
    assert!(
        matches!(&missing, Err(ExportError::Missing(m)) if m.contains("test:app/report@0.1.0")),
        "{missing:?}"
    );
    assert_eq!(text(tree.call("root/echo", "still here").await), "still here");
    let unknown = summary_at(&host, "root/nobody").await;
    assert_eq!(
        unknown,
        Err(ExportError::Message(MessageError::UnknownTarget("root/nobody".into())))
    );
    tree.shutdown().await;
}

async fn summary_at(host: &Host, path: &str) -> Result<Result<String, String>, ExportError> {
    report(host, path, |r, store| Box::pin(async move { r.call_summary(store, "x").await })).await
}

#[tokio::test]
async fn a_typed_call_is_bounded_by_the_childs_deadline() {
    let (host, ..) = host(true);
    let mut start = PluginStart::new(IMPORTER);
    start.grants.interfaces = vec!["test:app/*".into()];
    start.limits.call_deadline = Some(Duration::from_millis(50));
    let mut tree = tree(host, vec![ChildSpec::plugin("shop", start)]).await;
    let host = tree.host().clone();
    let spun =
        report(&host, "root/shop", |r, store| Box::pin(async move { r.call_spin(store).await }))
            .await;
    assert_eq!(
        spun,
        Err(ExportError::Message(MessageError::CalleeCrashed(ExitReason::Killed {
            cause: warden::KillCause::Deadline
        })))
    );
    tree.expect(started("root/shop", 2)).await;
    assert_eq!(summary_at(&host, "root/shop").await, Ok(Ok("x: 2001".to_owned())));
    tree.shutdown().await;
}

#[tokio::test]
async fn a_child_waiting_in_a_host_function_is_still_stopped_by_its_supervisor() {
    let (host, _, sleeping) = host(true);
    let mut child = importer("shop", &["test:app/*"]);
    child.shutdown = warden::sandbox::Shutdown::Timeout(Duration::from_millis(50));
    let mut tree = tree(host, vec![child]).await;
    // The child waits in the host for nine seconds; its supervisor stops it meanwhile.
    let host = tree.host().clone();
    let call = tokio::spawn(async move {
        host.call("root/shop", b"sleep:9000".to_vec(), Duration::from_secs(20)).await
    });
    tree.within(sleeping.notified()).await;
    let started = std::time::Instant::now();
    let stopped = tree.within(tree.host().terminate_child("root", "shop")).await;
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped only after {:?}",
        started.elapsed()
    );
    tree.expect(exited_with("root/shop", |r| {
        matches!(r, ExitReason::Killed { cause: warden::KillCause::ShutdownTimeout })
    }))
    .await;
    let answer = call.await.unwrap();
    assert!(matches!(answer, Err(MessageError::CalleeCrashed(_))), "{answer:?}");
}
