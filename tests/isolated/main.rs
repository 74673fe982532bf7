//! Tests that assert bounds on time or resident memory. They run one at a time (see
//! [`serial`]) in a process of their own, so other tests cannot skew them.

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
