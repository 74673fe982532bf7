//! Tests that need the process to themselves: bounds on time or resident memory, and
//! what reaches `tracing`'s process-wide registry. They run one at a time (see
//! [`serial`]) in a process of their own, so other tests cannot skew them.

mod soak;
mod stdout;

use std::time::{Duration, Instant};
use warden::sandbox::{ChildLimits, Sandbox, SandboxConfig};
use warden::{ExitReason, KillCause};
use warden_tests::{CHAOS, engine, resident_bytes};

/// Holds the process to one measuring test at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn chaos_config(deadline: Duration) -> SandboxConfig {
    let mut config = SandboxConfig::new("root/chaos");
    config.limits = ChildLimits { call_deadline: Some(deadline), ..ChildLimits::default() };
    config
}

#[tokio::test(flavor = "current_thread")]
async fn loop_is_killed_by_its_cpu_deadline_within_10ms_of_it() {
    let _serial = serial().await;
    let plugin = engine().load_file(CHAOS).unwrap();
    for deadline in [Duration::from_millis(50), Duration::from_millis(200)] {
        let mut child = Sandbox::start(&plugin, chaos_config(deadline), 1).await.unwrap();
        let started = Instant::now();
        let reason =
            child.handle(None, b"loop".to_vec(), true).await.expect_err("the loop is killed");
        let took = started.elapsed();
        assert_eq!(reason, ExitReason::Killed { cause: KillCause::Deadline });
        assert!(took >= deadline, "killed early, after {took:?} of {deadline:?}");
        assert!(
            took <= deadline + Duration::from_millis(10),
            "killed late, after {took:?} of {deadline:?}"
        );
        let mut next = Sandbox::start(&plugin, chaos_config(deadline), 2).await.unwrap();
        let reply = next.handle(None, b"echo:alive".to_vec(), true).await.unwrap();
        assert_eq!(reply.reply.as_deref(), Ok(&b"alive"[..]));
    }
}

/// 10,000 crash-and-reinstantiate cycles leave resident memory within 10% of where it
/// stood after the first 100: nothing of a dead incarnation is kept.
#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_crash_cycles_do_not_grow_resident_memory() {
    let _serial = serial().await;
    let plugin = engine().load_file(CHAOS).unwrap();
    let faults: [&[u8]; 4] = [b"trap", b"panic", b"oob", b"div0"];
    let mut baseline = 0;
    for cycle in 1..=10_000u64 {
        let mut child =
            Sandbox::start(&plugin, chaos_config(Duration::from_secs(1)), cycle).await.unwrap();
        let fault = faults[(cycle % 4) as usize];
        let reason =
            child.handle(None, fault.to_vec(), true).await.expect_err("the fault crashes it");
        assert!(matches!(reason, ExitReason::Trap { .. }), "cycle {cycle}: {reason:?}");
        drop(child);
        if cycle == 100 {
            baseline = resident_bytes();
        }
    }
    let after = resident_bytes();
    let limit = baseline + baseline / 10;
    assert!(
        after <= limit,
        "resident memory grew from {baseline} to {after} bytes over 9,900 cycles"
    );
    assert_eq!(engine().instances().0, 0, "every instance slot was returned");
}

/// An engine reserves address space for its instance pool (about 8 TiB at the default
/// 1,000 slots, of 128 TiB there is). One that loaded a plugin must give it back when
/// its last user drops it: 30 engines one after another, each loading and running a
/// plugin, would run out otherwise.
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_engine_gives_back_its_pool() {
    let _serial = serial().await;
    for round in 0..30 {
        let engine = warden::sandbox::Engine::new()
            .unwrap_or_else(|e| panic!("engine {round}: {e} (earlier engines leaked?)"));
        let plugin = engine.load_file(CHAOS).unwrap();
        let mut child = Sandbox::start(&plugin, SandboxConfig::new("root/chaos"), 1).await.unwrap();
        let handled = child.handle(None, b"echo:hi".to_vec(), true).await.unwrap();
        assert_eq!(handled.reply.as_deref(), Ok(&b"hi"[..]));
    }
}

/// A caller hears of its callee's crash within 10 ms of the crash's event (the worker
/// announces the exit, then answers the call at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hears_of_the_crash_within_10ms_of_it() {
    use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
    use warden::testing::{TestTree, killed};
    let _serial = serial().await;
    let mut start = PluginStart::new(CHAOS);
    start.limits.call_deadline = Some(Duration::from_millis(100));
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![ChildSpec::plugin("c", start)]);
    let mut tree = TestTree::start(spec).await.unwrap();
    let host = tree.host().clone();
    let asked = Instant::now();
    let reply = host.call("root/c", b"loop".to_vec(), Duration::from_secs(30)).await;
    let answered = host.clock_us();
    assert!(asked.elapsed() < Duration::from_secs(2), "not at its timeout: {:?}", asked.elapsed());
    assert!(reply.is_err());
    let crash = tree.expect(killed("root/c", KillCause::Deadline)).await;
    let late = answered - crash.ts_us;
    assert!(late <= 10_000, "answered {late} µs after the crash");
    tree.shutdown().await;
}

/// Writing to stdout is charged to the child's CPU deadline: 160 MB of newlines in a
/// child with a 200 ms deadline is killed within twice its deadline. (A line splitter
/// that rescanned its buffer once ran 11.6 s of host CPU on this before the kill.)
#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_stdout_is_charged_to_the_deadline() {
    let _serial = serial().await;
    let plugin = engine().load_file(warden_tests::HOSTILE).unwrap();
    let deadline = Duration::from_millis(200);
    let mut child = Sandbox::start(&plugin, chaos_config(deadline), 1).await.unwrap();
    let started = Instant::now();
    let outcome = child.handle(None, b"stdout:160000000".to_vec(), true).await;
    let took = started.elapsed();
    assert_eq!(outcome.map(|h| h.reply), Err(ExitReason::Killed { cause: KillCause::Deadline }));
    assert!(took <= deadline * 2, "killed after {took:?} of {deadline:?}");
}

/// 64 children overflowing their stacks at once, three times after a first, leave
/// resident memory within 10 MiB of where it stood after the first. Found by the chaos soak: each overflow left its call
/// stack's pool slot resident (about 0.5 MiB), so concurrent overflows, slot after
/// slot, grew the host by up to a stack per pooled instance, charged to no child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflows_give_their_stacks_back() {
    let _serial = serial().await;
    let children = (0..64)
        .map(|i| {
            warden::supervisor::ChildSpec::plugin(
                format!("c{i}"),
                warden::supervisor::PluginStart::new(CHAOS),
            )
        })
        .collect();
    let mut spec =
        warden::supervisor::SupervisorSpec::new(warden::supervisor::Strategy::OneForOne, children);
    spec.intensity = u32::MAX;
    // Linear memories keep nothing resident here, so that what is measured is the stacks.
    let config = warden::sandbox::EngineConfig { keep_resident: 0, ..Default::default() };
    let engine = warden::sandbox::Engine::with_config(config).unwrap();
    let host = warden::runtime::Host::builder().shared_engine(engine).build().unwrap();
    host.start(spec).await.unwrap();
    let all = |payload: &'static str| {
        let calls = (0..64).map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                host.call(&format!("root/c{i}"), payload.into(), Duration::from_secs(10)).await
            })
        });
        futures_join(calls.collect())
    };
    // Warm: a round of overflows and restarts touches the slots the next rounds use.
    let mut before = 0;
    for round in 0..4 {
        if round == 1 {
            before = resident_bytes();
        }
        for reply in all("stack").await {
            assert!(matches!(reply, Err(warden::sandbox::MessageError::CalleeCrashed(_))));
        }
        // Each restarted, answering again.
        for reply in all("echo:again").await {
            assert_eq!(reply.as_deref(), Ok(&b"again"[..]));
        }
    }
    let grew = resident_bytes().saturating_sub(before);
    assert!(grew < 10 << 20, "resident memory grew by {} KiB", grew >> 10);
    host.shutdown().await;
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("the call's task"));
    }
    out
}
