//! The embedding API as an application meets it: everything from the crate root,
//! errors it can match on, a checked runtime, a blocking host, an event stream that
//! ends, and a host that starts again after its tree gave up.

use std::time::Duration;
use warden::prelude::*;
use warden::{AdminError, LoadError, SpecError, SpecProblem};
use warden_tests::{CHAOS, ECHO, engine};

const DEADLINE: Duration = Duration::from_secs(10);

fn host() -> Host {
    Host::builder().shared_engine(engine().clone()).build().expect("the host builds")
}

/// A one_for_one tree of chaos children that gives up at the first restart.
fn fragile(ids: &[&str]) -> SupervisorSpec {
    let children = ids.iter().map(|id| ChildSpec::plugin(*id, CHAOS)).collect();
    SupervisorSpec::new(Strategy::OneForOne, children).intensity(0, Duration::from_secs(5))
}

/// The next event, failing the test past the deadline, on a miss or at the end.
async fn next(events: &mut warden::Events) -> Event {
    let received = tokio::time::timeout(DEADLINE, events.next()).await.expect("an event in time");
    received.and_then(Received::event).expect("an event, none missed").event
}

#[tokio::test]
async fn a_plugin_that_cannot_load_is_a_typed_error_with_the_childs_path_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "not wasm at all").unwrap();
    let missing = dir.path().join("missing.wasm");
    let host = host();
    let mut events = host.subscribe();
    let sub = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::plugin("echo", ECHO), ChildSpec::plugin("notes", &*text)],
    );
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::plugin("first", ECHO), ChildSpec::supervisor("sub", sub)],
    );
    match host.start(spec).await {
        Err(HostError::Load { path, error: LoadError::NotWasm { file } }) => {
            assert_eq!(path, "root/sub/notes");
            assert_eq!(file, text.display().to_string());
        }
        other => panic!("expected a load error for root/sub/notes, got {other:?}"),
    }
    let tree = SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::plugin("m", &*missing)]);
    let refused = host.start(tree).await;
    assert!(
        matches!(
            &refused,
            Err(HostError::Load { path, error: LoadError::Read { kind: std::io::ErrorKind::NotFound, .. } })
                if path == "root/m"
        ),
        "{refused:?}"
    );
    // Nothing started, and the host is free for a good tree.
    assert!(events.try_next().is_none(), "no event before a good start");
    host.start(SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::plugin("e", ECHO)]))
        .await
        .expect("a good tree starts after refused ones");
    assert!(
        matches!(next(&mut events).await, Event::ChildStarted { path, .. } if path == "root/e")
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_child_added_with_a_bad_plugin_is_refused_typed_and_announced_as_a_failed_start() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let host = host();
    host.start(fragile(&["a"])).await.unwrap();
    let mut events = host.subscribe();
    let refused = host.start_child("root", ChildSpec::plugin("b", &*core)).await;
    assert!(
        matches!(&refused, Err(HostError::Load { path, error: LoadError::CoreModule { .. } }) if path == "root/b"),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().starts_with("root/b: "));
    match next(&mut events).await {
        Event::ChildStartFailed { path, message } => {
            assert_eq!(path, "root/b");
            assert!(message.contains("core WebAssembly module"), "{message}");
        }
        other => panic!("expected child_start_failed, got {other:?}"),
    }
    let names: Vec<String> =
        host.which_children("root").await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["a"], "no spec is kept for a child that never started (OTP's rule)");
    host.shutdown().await;
}

#[tokio::test]
async fn every_problem_of_a_spec_comes_typed_with_its_path() {
    let host = host(); // its engine has no fuel
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![
            ChildSpec::plugin("a", ECHO),
            ChildSpec::plugin("a", ECHO),
            ChildSpec::plugin("slow", PluginStart::new(ECHO).fuel_per_call(1_000_000)),
            ChildSpec::plugin("big", PluginStart::new(ECHO).max_memory(1 << 30)),
            ChildSpec::plugin("late", ECHO).backoff(
                Backoff::Exponential {
                    initial: Duration::from_millis(1),
                    max: Duration::from_secs(1),
                    jitter: 2.0,
                },
                Duration::from_secs(10),
            ),
        ],
    );
    let Err(HostError::InvalidSpec(problems)) = host.start(spec).await else {
        panic!("the spec must be refused")
    };
    let at = |path: &str, problem: SpecProblem| SpecError { path: path.into(), problem };
    assert_eq!(
        problems,
        [
            at("root/a", SpecProblem::DuplicateId),
            at("root/late", SpecProblem::Jitter { jitter: 2.0 }),
            at("root/slow", SpecProblem::FuelOff),
            at("root/big", SpecProblem::MemoryOverPool { limit: 1 << 30, pool: 256 << 20 }),
        ]
    );
    assert_eq!(
        problems[1].to_string(),
        "supervisor root, child \"late\": backoff jitter must be between 0 and 1, not 2"
    );
    // A child added at run time is checked the same way, before it starts.
    host.start(fragile(&["x"])).await.unwrap();
    let fuelled = ChildSpec::plugin("f", PluginStart::new(ECHO).fuel_per_call(10));
    let refused = host.start_child("root", fuelled).await;
    assert!(
        matches!(&refused, Err(HostError::InvalidSpec(p)) if p == &[at("root/f", SpecProblem::FuelOff)]),
        "{refused:?}"
    );
    let names: Vec<String> =
        host.which_children("root").await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["x"]);
    host.shutdown().await;
}

#[tokio::test]
async fn a_host_whose_root_gave_up_starts_a_new_tree_without_a_shutdown_first() {
    let host = host();
    let mut events = host.subscribe();
    host.start(fragile(&["a"])).await.unwrap();
    let crashed = host.call("root/a", b"panic".to_vec(), DEADLINE).await;
    assert!(matches!(crashed, Err(MessageError::CalleeCrashed(_))), "{crashed:?}");
    assert_eq!(tokio::time::timeout(DEADLINE, host.wait()).await.unwrap(), ExitReason::Shutdown);
    assert!(host.root_gave_up());
    // The stream of the tree that gave up ends after its last event.
    let mut last = None;
    while let Some(received) = tokio::time::timeout(DEADLINE, events.next()).await.unwrap() {
        last = received.event().map(|r| r.event);
    }
    assert!(
        matches!(&last, Some(Event::SupervisorStopped { path, .. }) if path == "root"),
        "{last:?}"
    );
    assert!(events.is_ended() && events.next().await.is_none());
    // A stream subscribed now follows the next tree, from its first event.
    let mut fresh = host.subscribe();
    host.start(fragile(&["b"])).await.expect("a new tree starts");
    assert!(matches!(next(&mut fresh).await, Event::ChildStarted { path, .. } if path == "root/b"));
    assert!(!host.root_gave_up());
    assert_eq!(host.call("root/b", b"echo:hi".to_vec(), DEADLINE).await.unwrap(), b"hi");
    // A second start while it runs is refused.
    assert!(matches!(host.start(fragile(&["c"])).await, Err(HostError::AlreadyRunning)));
    host.shutdown().await;
}

/// Polls `future` once.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) {
    tokio::select! {
        biased;
        _ = future => panic!("expected it to be under way, not done"),
        () = std::future::ready(()) => {}
    }
}

#[tokio::test]
async fn no_tree_starts_while_a_shutdown_is_under_way_and_a_dropped_shutdown_goes_on() {
    let host = host();
    let slow =
        ChildSpec::plugin("slow", PluginStart::new(CHAOS).config(r#"{"terminate_delay_ms":200}"#));
    host.start(SupervisorSpec::new(Strategy::OneForOne, vec![slow.clone()])).await.unwrap();
    let mut stopping = Box::pin(host.shutdown());
    poll_once(&mut stopping).await;
    assert!(matches!(host.start(fragile(&["x"])).await, Err(HostError::AlreadyRunning)));
    let waiting = host.shutdown(); // a second shutdown waits for the same end
    let (first, second) = tokio::join!(stopping, waiting);
    assert_eq!((first, second), (ExitReason::Shutdown, ExitReason::Shutdown));
    // A shutdown dropped midway: the tree still stops, and a new one may start.
    host.start(SupervisorSpec::new(Strategy::OneForOne, vec![slow])).await.unwrap();
    let mut dropped = Box::pin(host.shutdown());
    poll_once(&mut dropped).await;
    drop(dropped);
    assert_eq!(tokio::time::timeout(DEADLINE, host.wait()).await.unwrap(), ExitReason::Shutdown);
    host.start(fragile(&["y"])).await.expect("a tree starts after the stop");
    host.shutdown().await;
}

#[tokio::test]
async fn start_child_answers_as_the_supervisor_would_before_loading_anything() {
    let host = host();
    host.start(fragile(&["a"])).await.unwrap();
    let mut events = host.subscribe();
    let bad = |id: &str| ChildSpec::plugin(id, "/nonexistent/plugin.wasm");
    let refused = host.start_child("root/nope", bad("b")).await;
    assert!(
        matches!(&refused, Err(HostError::NotFound { path }) if path == "root/nope"),
        "{refused:?}"
    );
    let refused = host.start_child("root", bad("a")).await;
    assert!(matches!(refused, Err(HostError::Admin(AdminError::AlreadyStarted))), "{refused:?}");
    // One shape for spec problems, whoever finds them.
    let jittery = ChildSpec::plugin("j", ECHO).backoff(
        Backoff::Exponential { initial: Duration::ZERO, max: Duration::ZERO, jitter: -1.0 },
        Duration::from_secs(1),
    );
    let refused = host.start_child("root", jittery).await;
    let expected =
        SpecError { path: "root/j".into(), problem: SpecProblem::Jitter { jitter: -1.0 } };
    assert!(matches!(&refused, Err(HostError::InvalidSpec(p)) if p == &[expected]), "{refused:?}");
    // None of these was a start that failed.
    assert!(events.try_next().is_none());
    host.shutdown().await;
}

#[tokio::test]
async fn a_tree_whose_child_fails_to_start_names_it() {
    let host = host();
    let failing = ChildSpec::plugin("x", PluginStart::new(CHAOS).config(r#"{"fail_init":true}"#));
    let sub =
        SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::plugin("ok", ECHO), failing]);
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::supervisor("sub", sub)]);
    match host.start(spec).await {
        Err(HostError::TreeStart { path, reason: ExitReason::StartFailed { message } }) => {
            assert_eq!(path, "root/sub/x");
            assert!(message.starts_with("failed_to_start_child sub: "), "{message}");
            assert!(message.contains("failed_to_start_child x: "), "{message}");
        }
        other => panic!("expected the tree not to start, got {other:?}"),
    }
    assert!(matches!(host.which_children("root").await, Err(HostError::NotFound { .. })));
}

#[test]
fn a_host_built_outside_a_runtime_says_what_it_needs() {
    let built = Host::builder().shared_engine(engine().clone()).build();
    assert!(matches!(built, Err(HostError::NoRuntime)), "{built:?}");
    let no_timers = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let built =
        Host::builder().shared_engine(engine().clone()).runtime(no_timers.handle().clone()).build();
    assert!(matches!(built, Err(HostError::NoTimers)), "{built:?}");
    assert!(built.unwrap_err().to_string().contains("enable_time"));
}

#[test]
fn a_host_given_a_runtime_runs_its_tree_there() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    // Built on a thread with no runtime of its own.
    let host = Host::builder()
        .shared_engine(engine().clone())
        .runtime(runtime.handle().clone())
        .build()
        .expect("the runtime given is used");
    runtime.block_on(async {
        host.start(fragile(&["a"])).await.unwrap();
        assert_eq!(host.call("root/a", b"echo:x".to_vec(), DEADLINE).await.unwrap(), b"x");
        host.shutdown().await;
    });
}

/// Runs `future` on this thread outside any tokio runtime, as another executor would.
fn block_on_elsewhere<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn a_call_awaited_outside_any_tokio_runtime_is_answered_not_a_panic() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Host::builder()
        .shared_engine(engine().clone())
        .runtime(runtime.handle().clone())
        .build()
        .unwrap();
    block_on_elsewhere(host.start(fragile(&["a"]))).expect("the tree starts");
    let reply = block_on_elsewhere(host.call("root/a", b"echo:far".to_vec(), DEADLINE));
    assert_eq!(reply.unwrap(), b"far");
    let slow =
        block_on_elsewhere(host.call("root/a", b"busy:300".to_vec(), Duration::from_millis(50)));
    assert_eq!(slow, Err(MessageError::Timeout));
    assert_eq!(block_on_elsewhere(host.shutdown()), ExitReason::Shutdown);
}

#[test]
fn a_synchronous_application_runs_a_tree_with_the_blocking_host() {
    let host = warden::blocking::Host::build(Host::builder().shared_engine(engine().clone()))
        .expect("the blocking host brings its own runtime");
    let mut events = host.subscribe();
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::plugin("a", CHAOS)])
        .intensity(5, Duration::from_secs(5));
    host.start(spec).unwrap();
    assert_eq!(host.call("root/a", b"echo:hi".to_vec(), DEADLINE).unwrap(), b"hi");
    let crashed = host.call("root/a", b"panic".to_vec(), DEADLINE);
    assert!(matches!(crashed, Err(MessageError::CalleeCrashed(_))), "{crashed:?}");
    let mut seen = Vec::new();
    while let Some(received) = events.blocking_next() {
        let event = received.event().expect("none missed").event;
        let restarted = matches!(&event, Event::ChildStarted { incarnation: 2, .. });
        seen.push(event);
        if restarted {
            break;
        }
    }
    assert!(
        matches!(
            &seen[..],
            [
                Event::ChildStarted { incarnation: 1, .. },
                Event::ChildExited {
                    reason: ExitReason::Trap { trap: TrapKind::Unreachable, .. },
                    ..
                },
                Event::ChildRestarting { .. },
                Event::ChildStarted { incarnation: 2, .. },
            ]
        ),
        "{seen:#?}"
    );
    let info = host.which_children("root").unwrap();
    assert_eq!(info[0].incarnation, 2);
    host.send("root/a", b"echo:later".to_vec()).unwrap();
    assert_eq!(host.shutdown(), ExitReason::Shutdown);
    // The stream ends once the tree has stopped.
    while events.blocking_next().is_some() {}
    assert!(events.is_ended());
}
