//! Every chaos fault ends only its own incarnation, with the right typed reason, and
//! the plugin's next incarnation serves again.

use std::time::Duration;
use warden::sandbox::{ChildLimits, Sandbox, SandboxConfig, Shutdown};
use warden::{ExitReason, KillCause, TrapKind};
use warden_tests::{CHAOS, engine};

fn config() -> SandboxConfig {
    let mut config = SandboxConfig::new("root/chaos");
    config.limits = ChildLimits {
        max_memory_bytes: 16 << 20,
        call_deadline: Some(Duration::from_millis(200)),
        ..ChildLimits::default()
    };
    config
}

async fn start(incarnation: u64) -> Sandbox {
    let plugin = engine().load_file(CHAOS).expect("chaos loads");
    Sandbox::start(&plugin, config(), incarnation).await.expect("chaos starts")
}

/// Injects `fault`, returns the exit reason, and checks the aftermath: the dead
/// sandbox is not re-entered and a new incarnation answers `echo`.
async fn inject(fault: &str) -> ExitReason {
    let mut child = start(1).await;
    let reason = match child.handle(None, fault.as_bytes().to_vec(), true).await {
        Err(reason) => reason,
        Ok(handled) => handled
            .exit
            .clone()
            .unwrap_or_else(|| panic!("{fault}: the child did not exit: {handled:?}")),
    };
    // The ended incarnation answers with its exit reason, without running.
    assert_eq!(child.handle(None, b"echo:again".to_vec(), true).await, Err(reason.clone()));
    let mut next = start(2).await;
    let reply =
        next.handle(None, b"echo:still here".to_vec(), true).await.expect("new incarnation runs");
    assert_eq!(reply.reply.as_deref(), Ok(&b"still here"[..]), "after {fault}");
    reason
}

fn assert_trap(reason: &ExitReason, kind: TrapKind) {
    match reason {
        ExitReason::Trap { trap, panic, .. } => {
            assert_eq!(*trap, kind, "{reason:?}");
            assert!(!panic, "a real trap is not a panic: {reason:?}");
        }
        other => panic!("expected trap {kind}, got {other:?}"),
    }
}

#[tokio::test]
async fn trap_is_unreachable_and_not_a_panic() {
    assert_trap(&inject("trap").await, TrapKind::Unreachable);
}

#[tokio::test]
async fn panic_is_unreachable_with_the_panic_message() {
    match inject("panic").await {
        ExitReason::Trap { trap: TrapKind::Unreachable, message, panic: true } => {
            assert!(message.contains("chaos: panic requested"), "{message}");
        }
        other => panic!("expected a reported panic, got {other:?}"),
    }
}

#[tokio::test]
async fn div0_is_integer_division_by_zero() {
    assert_trap(&inject("div0").await, TrapKind::IntegerDivisionByZero);
}

#[tokio::test]
async fn oob_is_memory_out_of_bounds() {
    assert_trap(&inject("oob").await, TrapKind::MemoryOutOfBounds);
}

#[tokio::test]
async fn stack_is_stack_overflow() {
    assert_trap(&inject("stack").await, TrapKind::StackOverflow);
}

#[tokio::test]
async fn oom_is_memory_limit_not_a_bare_abort() {
    let reason = inject("oom").await;
    assert_trap(&reason, TrapKind::MemoryLimit);
    assert!(reason.to_string().contains("limit is 16777216"), "{reason}");
}

#[tokio::test]
async fn exit_requests_end_the_incarnation_with_their_reason() {
    assert_eq!(inject("exit:normal").await, ExitReason::Normal);
    assert_eq!(inject("exit:shutdown").await, ExitReason::Shutdown);
    assert_eq!(
        inject("exit:error").await,
        ExitReason::Error { message: "chaos: exit:error requested".into() }
    );
}

#[tokio::test]
async fn an_application_error_is_a_reply_not_a_crash() {
    let mut child = start(1).await;
    let handled = child.handle(None, b"no such command".to_vec(), true).await.expect("still alive");
    assert!(handled.reply.unwrap_err().contains("unknown command"));
    assert_eq!(handled.exit, None);
    let again = child.handle(None, b"echo:ok".to_vec(), true).await.expect("still alive");
    assert_eq!(again.reply.as_deref(), Ok(&b"ok"[..]));
}

#[tokio::test]
async fn a_kill_switch_stops_a_busy_guest() {
    let mut child = start(1).await;
    let kill = child.kill_switch();
    let call = child.handle(None, b"busy:100000".to_vec(), true);
    let killer = async {
        // Kill only once the guest is inside its call: the first heartbeat says so.
        tokio::task::yield_now().await;
        kill.kill(KillCause::Heartbeat);
    };
    let (result, ()) = tokio::join!(call, killer);
    assert_eq!(result, Err(ExitReason::Killed { cause: KillCause::Heartbeat }));
}

#[tokio::test]
async fn fail_init_is_a_start_failure_with_the_guests_message() {
    let plugin = engine().load_file(CHAOS).unwrap();
    let mut config = config();
    config.config = br#"{"fail_init_from": 2}"#.to_vec();
    assert!(Sandbox::start(&plugin, config.clone(), 1).await.is_ok());
    let reason = Sandbox::start(&plugin, config.clone(), 2).await.expect_err("incarnation 2 fails");
    assert_eq!(
        reason,
        ExitReason::StartFailed {
            message: "chaos: fail_init_from 2, this is incarnation 2".into()
        }
    );
    config.config = br#"{"fail_init": true, "typo": 1}"#.to_vec();
    let reason = Sandbox::start(&plugin, config, 1).await.expect_err("bad config");
    assert!(reason.to_string().contains("unknown field `typo`"), "{reason}");
}

#[tokio::test]
async fn graceful_terminate_returns_the_given_reason() {
    let child = start(1).await;
    let reason =
        child.terminate(ExitReason::Shutdown, Shutdown::Timeout(Duration::from_secs(1))).await;
    assert_eq!(reason, ExitReason::Shutdown);
}

#[tokio::test]
async fn ignore_terminate_is_killed_at_the_shutdown_timeout() {
    let plugin = engine().load_file(CHAOS).unwrap();
    let mut config = config();
    config.config = br#"{"ignore_terminate": true}"#.to_vec();
    let child = Sandbox::start(&plugin, config, 1).await.unwrap();
    let reason =
        child.terminate(ExitReason::Shutdown, Shutdown::Timeout(Duration::from_millis(50))).await;
    assert_eq!(reason, ExitReason::Killed { cause: KillCause::ShutdownTimeout });
}

#[tokio::test]
async fn brutal_kill_does_not_run_terminate() {
    let plugin = engine().load_file(CHAOS).unwrap();
    let mut config = config();
    config.config = br#"{"terminate_delay_ms": 60000}"#.to_vec();
    let child = Sandbox::start(&plugin, config, 1).await.unwrap();
    let reason = child.terminate(ExitReason::Shutdown, Shutdown::BrutalKill).await;
    assert_eq!(reason, ExitReason::Killed { cause: KillCause::BrutalKill });
}

#[tokio::test]
async fn state_survives_into_the_next_incarnation_through_the_store() {
    let plugin = engine().load_file(CHAOS).unwrap();
    let store: std::sync::Arc<dyn warden::state::StateStore> =
        std::sync::Arc::new(warden::state::MemoryStore::new());
    let mut config = config();
    config.state = store;
    let mut first = Sandbox::start(&plugin, config.clone(), 1).await.unwrap();
    first.handle(None, b"state:set:color:blue".to_vec(), true).await.unwrap();
    assert!(first.handle(None, b"trap".to_vec(), true).await.is_err());
    let mut second = Sandbox::start(&plugin, config, 2).await.unwrap();
    let got = second.handle(None, b"state:get:color".to_vec(), true).await.unwrap();
    assert_eq!(got.reply.as_deref(), Ok(&b"blue"[..]));
}

#[tokio::test]
async fn messaging_without_a_messenger_is_an_error_not_a_trap() {
    let mut child = start(1).await;
    let handled = child.handle(None, b"send:root/x:hi".to_vec(), true).await.expect("no trap");
    let error = handled.reply.unwrap_err();
    assert_eq!(error, "messaging is not supported by this host");
}

#[tokio::test]
async fn the_host_refuses_instances_past_its_capacity_with_a_clear_error() {
    let engine = warden::sandbox::Engine::with_config(warden::sandbox::EngineConfig {
        max_instances: 2,
        ..Default::default()
    })
    .unwrap();
    let plugin = engine.load_file(CHAOS).unwrap();
    let a = Sandbox::start(&plugin, config(), 1).await.unwrap();
    let _b = Sandbox::start(&plugin, config(), 1).await.unwrap();
    let refused = Sandbox::start(&plugin, config(), 1).await.expect_err("a third is refused");
    assert!(refused.to_string().contains("2 are live and the limit is 2"), "{refused}");
    drop(a);
    assert_eq!(engine.instances(), (1, 2));
    Sandbox::start(&plugin, config(), 1).await.expect("a slot was freed");
}

#[tokio::test]
async fn time_waiting_in_the_host_does_not_count_against_the_deadline() {
    let plugin = engine().load_file(CHAOS).unwrap();
    let mut config = config();
    config.limits.call_deadline = Some(Duration::from_millis(50));
    // `init` sleeps 200 ms through WASI: host time, not the guest's.
    config.config = br#"{"init_delay_ms": 200}"#.to_vec();
    let mut child = Sandbox::start(&plugin, config, 1).await.expect("not killed while sleeping");
    assert!(child.handle(None, b"echo:ok".to_vec(), true).await.is_ok());
    // Spinning in the guest for longer than the deadline is killed.
    let reason = child.handle(None, b"hang:200".to_vec(), true).await.unwrap_err();
    assert_eq!(reason, ExitReason::Killed { cause: KillCause::Deadline });
}

#[tokio::test]
async fn fuel_ends_a_runaway_call_with_out_of_fuel() {
    let engine = warden::sandbox::Engine::with_config(warden::sandbox::EngineConfig {
        fuel: true,
        max_instances: 4,
        ..Default::default()
    })
    .unwrap();
    let plugin = engine.load_file(CHAOS).unwrap();
    let mut config = config();
    config.limits.fuel_per_call = Some(5_000_000);
    let mut child = Sandbox::start(&plugin, config.clone(), 1).await.unwrap();
    let echo = child.handle(None, b"echo:cheap".to_vec(), true).await.unwrap();
    assert_eq!(echo.reply.as_deref(), Ok(&b"cheap"[..]), "a cheap call fits its fuel");
    let reason = child.handle(None, b"loop".to_vec(), true).await.unwrap_err();
    assert_eq!(reason.trap_kind(), Some(TrapKind::OutOfFuel), "{reason:?}");
    // Asking for fuel on an engine without it is refused, not silently ignored.
    let refused = Sandbox::start(&engine_without_fuel_plugin(), config, 1).await.unwrap_err();
    assert!(refused.to_string().contains("built without fuel"), "{refused}");
}

fn engine_without_fuel_plugin() -> warden::sandbox::Plugin {
    engine().load_file(CHAOS).unwrap()
}

#[tokio::test]
async fn a_second_engine_loads_compiled_code_from_the_disk_cache() {
    let dir = tempfile::tempdir().unwrap();
    let engine = |dir: &std::path::Path| {
        warden::sandbox::Engine::with_config(warden::sandbox::EngineConfig {
            cache_dir: Some(dir.to_owned()),
            max_instances: 4,
            ..Default::default()
        })
        .unwrap()
    };
    let first = engine(dir.path());
    first.load_file(CHAOS).unwrap();
    let (hits, misses) = first.compile_cache_stats().unwrap();
    assert_eq!(hits, 0);
    assert!(misses > 0, "the first engine compiles");
    let second = engine(dir.path());
    let plugin = second.load_file(CHAOS).unwrap();
    let (hits, misses) = second.compile_cache_stats().unwrap();
    assert!(hits > 0, "the second engine finds the compiled component");
    assert_eq!(misses, 0, "and compiles nothing");
    let mut child = Sandbox::start(&plugin, config(), 1).await.unwrap();
    assert!(child.handle(None, b"echo:cached".to_vec(), true).await.is_ok());
}

#[tokio::test]
async fn a_call_dropped_mid_way_ends_the_sandbox_instead_of_reentering_it() {
    let mut child = start(1).await;
    // The caller gives up on a busy call (e.g. in its own select!) by dropping it.
    let call = child.handle(None, b"busy:1000".to_vec(), true);
    let gave_up = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(gave_up.is_err(), "still busy");
    let ended = ExitReason::Killed { cause: KillCause::BrutalKill };
    assert_eq!(child.exit_reason(), Some(&ended));
    assert_eq!(child.handle(None, b"echo:x".to_vec(), true).await, Err(ended));
}
