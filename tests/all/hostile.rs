//! What a hostile plugin (the `hostile` fixture) or a hostile spec could once make the
//! host hold or do, and the OTP-exact edges around the core: timers bounded and owned
//! by the incarnation, dead letters that cannot flood the stream, durations that cannot
//! overflow, limits the engine cannot honour refused, host panics reported as such,
//! admin calls that answer after the fact, one tree per host.

use std::sync::Arc;
use std::time::Duration;
use warden::ExitReason;
use warden::events::Event;
use warden::messaging::CircuitConfig;
use warden::runtime::{Host, HostError};
use warden::sandbox::{
    BoxFuture, EngineConfig, HeartbeatPolicy, MessageError, Sandbox, SandboxConfig,
};
use warden::state::{MemoryStore, Op, Quota, StateError, StateStore, Usage};
use warden::supervisor::{Backoff, ChildSpec, ChildState, PluginStart, Strategy, SupervisorSpec};
use warden::testing::{Pattern, TestTree, exited, exited_with, started};
use warden_tests::{CHAOS, HOSTILE, engine};

fn hostile(id: &str, setup: impl FnOnce(&mut PluginStart)) -> ChildSpec {
    let mut start = PluginStart::new(HOSTILE);
    start.mailbox.targets = warden::messaging::Targets::any();
    setup(&mut start);
    ChildSpec::plugin(id, start)
}

fn chaos(id: &str) -> ChildSpec {
    ChildSpec::plugin(id, PluginStart::new(CHAOS))
}

async fn start(children: Vec<ChildSpec>) -> TestTree {
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, children);
    spec.intensity = 1000;
    TestTree::start(spec).await.expect("the tree starts")
}

fn text(reply: Result<Vec<u8>, MessageError>) -> String {
    String::from_utf8(reply.expect("a reply")).expect("UTF-8")
}

#[tokio::test]
async fn pending_timers_are_bounded_by_count_and_by_the_bytes_they_hold() {
    // Once: 1,000 timers of 1 MiB for an hour grew the host by 1 GB a call.
    let tree = start(vec![hostile("h", |s| s.limits.max_memory_bytes = 8 << 20)]).await;
    let reply = text(tree.call("root/h", "timers:1000:1048576:3600000").await);
    assert_eq!(
        reply,
        "set 4: too many timers: their payloads would hold 5242880 bytes, the limit is \
         4194304 (limits.timer_bytes)"
    );
    let reply = text(tree.call("root/h", "timers:2000:0:3600000").await);
    assert_eq!(reply, "set 1020: too many timers: 1024 pending, the limit is 1024 (limits.timers)");
    tree.shutdown().await;
}

#[tokio::test]
async fn the_bytes_waiting_in_a_mailbox_are_bounded() {
    // Once: a child sending itself 1,024 messages of 1 MiB while it handled one (so
    // none was read) made the host hold 1 GiB.
    let tree = start(vec![hostile("h", |_| {})]).await;
    let reply = text(tree.call("root/h", "sends:1024:1048576:root/h").await);
    assert_eq!(reply, "sent 16: mailbox full", "16 MiB by default (limits.mailbox_bytes)");
    // The next call waits behind the 16 it took, so they are all handled, and the
    // mailbox's room with them.
    assert_eq!(text(tree.call("root/h", "sends:16:1048576:root/h").await), "sent 16");
    tree.shutdown().await;
}

#[tokio::test]
async fn timers_survive_hibernation_and_go_with_the_incarnation() {
    let mut tree =
        start(vec![hostile("h", |s| s.hibernate_after = Some(Duration::ZERO)), chaos("victim")])
            .await;
    // Set, then the instance goes at once (it hibernates after every message): the
    // timer still fires, and its message crashes the victim.
    assert_eq!(text(tree.call("root/h", "after:50:root/victim:trap").await), "ok");
    let crash = tree.expect(exited("root/victim")).await;
    assert!(matches!(crash.event, Event::ChildExited { incarnation: 1, .. }));
    tree.expect(started("root/victim", 2)).await;

    // A timer of an incarnation that ended is cancelled with it: the trap set by
    // incarnation 1 never comes; the normal exit set later by incarnation 2 does.
    assert_eq!(text(tree.call("root/h", "after:200:root/victim:trap").await), "ok");
    assert!(tree.call("root/h", "panic:bye").await.is_err());
    tree.expect(started("root/h", 2)).await;
    assert_eq!(text(tree.call("root/h", "after:400:root/victim:exit:normal").await), "ok");
    let next = tree.expect(exited("root/victim")).await;
    assert!(
        matches!(&next.event, Event::ChildExited { reason: ExitReason::Normal, .. }),
        "the first exit is the later timer's: {next:?}"
    );
    tree.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_dead_letters_is_counted_but_cannot_flood_the_stream() {
    // 1,000 self-timers whose deliveries fail (the mailbox holds 1): one dead letter
    // each, but only a window's share of events, then one summing up the rest.
    let mut tree = start(vec![hostile("h", |s| s.mailbox.capacity = 1)]).await;
    // Timers of 1 ms: they fire while the child is busy setting the rest.
    assert_eq!(text(tree.call("root/h", "timers:1000:0:1").await), "set 1000");
    let summary = tree
        .expect(Pattern::new(
            "dead_letters_suppressed root/h",
            |e| matches!(e, Event::DeadLettersSuppressed { path, .. } if path == "root/h"),
        ))
        .await;
    let shown = tree
        .seen()
        .iter()
        .filter(|r| matches!(&r.event, Event::DeadLetter { path, .. } if path == "root/h"))
        .count() as u64;
    let Event::DeadLettersSuppressed { count, .. } = summary.event else { unreachable!() };
    assert_eq!(shown, 100, "one window's share");
    // Every timer is accounted for: delivered, or a dead letter shown or summed up.
    tree.within(tree.host().messages_settled()).await;
    let stats = tree.host().message_stats();
    assert_eq!(stats.dead_letters, shown + count, "{stats:?}");
    assert_eq!(stats.sent, 1001, "{stats:?}");
    tree.shutdown().await;
}

#[tokio::test]
async fn durations_too_long_for_the_clock_are_clamped_never_a_panic() {
    // Each of these once panicked adding to an `Instant`, killing a task of the host.
    let mut tree = start(vec![{
        let mut spec = ChildSpec::plugin("c", {
            let mut start = PluginStart::new(CHAOS);
            start.limits.heartbeat = Some(HeartbeatPolicy::Timeout(Duration::MAX));
            start.mailbox.circuit = Some(CircuitConfig { failures: 1, reset: Duration::MAX });
            start
        });
        spec.backoff =
            Backoff::Exponential { initial: Duration::MAX, max: Duration::MAX, jitter: 0.5 };
        spec
    }])
    .await;
    assert_eq!(text(tree.call("root/c", "busy:5").await), "ok");
    let crashed = tree.call("root/c", "trap").await;
    assert!(matches!(crashed, Err(MessageError::CalleeCrashed(_))), "{crashed:?}");
    // The circuit is open "forever", and the restart waits "forever": both answered.
    assert_eq!(tree.call("root/c", "echo:x").await, Err(MessageError::CircuitOpen));
    tree.assert_children("root", &[("c", ChildState::Restarting, 1)]).await;
    // A guest's call with the longest timeout is no panic either.
    let host = tree.host().clone();
    let far = host.call("root/c", b"echo:x".to_vec(), Duration::MAX);
    assert_eq!(tree.within(far).await, Err(MessageError::CircuitOpen));
    tree.expect(exited("root/c")).await;
    tree.shutdown().await;
}

#[tokio::test]
async fn an_open_circuit_goes_with_its_child_and_reports_nothing_after() {
    // The breaker's reset timer once held its mailbox and outlived the child: a
    // removed child's circuit half-opened, an event about a child that was gone.
    let mut tree = start(vec![
        ChildSpec::plugin("c", {
            let mut start = PluginStart::new(CHAOS);
            start.mailbox.circuit =
                Some(CircuitConfig { failures: 1, reset: Duration::from_millis(100) });
            start
        }),
        hostile("h", |_| {}),
        chaos("victim"),
    ])
    .await;
    assert!(tree.call("root/c", "trap").await.is_err());
    tree.expect(started("root/c", 2)).await;
    let host = tree.host().clone();
    host.terminate_child("root", "c").await.unwrap();
    host.delete_child("root", "c").await.unwrap();
    // A sentinel well after the reset: nothing about `c` may come before it.
    assert_eq!(text(tree.call("root/h", "after:300:root/victim:trap").await), "ok");
    tree.expect(exited("root/victim")).await;
    let late = tree.seen().iter().find(|r| {
        matches!(&r.event, Event::CircuitChanged { path, state, .. }
            if path == "root/c" && *state != warden::messaging::CircuitState::Open)
    });
    assert!(late.is_none(), "{late:?}");
    tree.shutdown().await;
}

#[tokio::test]
async fn a_memory_limit_the_engine_cannot_honour_is_refused_with_the_maximum() {
    // The engine's pool gives each memory 256 MiB: a 1 GiB limit would silently be
    // 256 MiB, and a large allocation an anonymous abort instead of `memory_limit`.
    let plugin = engine().load_file(CHAOS).unwrap();
    let mut config = SandboxConfig::new("root/big");
    config.limits.max_memory_bytes = 1 << 30;
    let refused = Sandbox::start(&plugin, config, 1).await.unwrap_err();
    let ExitReason::StartFailed { message } = refused else { panic!("{refused:?}") };
    assert!(
        message.contains("1073741824 bytes") && message.contains("268435456 bytes"),
        "{message}"
    );
    assert!(message.contains("EngineConfig::max_memory_bytes"), "{message}");
    assert_eq!(EngineConfig::default().max_memory_bytes, 256 << 20);
}

/// A state store whose reads panic: a bug in a host function of the embedding
/// application, as far as the child is concerned.
#[derive(Debug, Default)]
struct PanickingStore(MemoryStore);

impl StateStore for PanickingStore {
    fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StateError> {
        panic!("the store has a bug");
    }
    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        self.0.keys(scope, prefix)
    }
    fn write(
        &self,
        scope: &str,
        ops: Vec<Op>,
        quota: Quota,
    ) -> BoxFuture<'static, Result<Vec<bool>, StateError>> {
        self.0.write(scope, ops, quota)
    }
    fn remove_tree(&self, path: &str) -> BoxFuture<'static, Result<u64, StateError>> {
        self.0.remove_tree(path)
    }
    fn scopes(&self) -> Result<Vec<(String, Usage)>, StateError> {
        self.0.scopes()
    }
}

#[tokio::test]
async fn a_panic_in_the_host_serving_a_child_ends_it_with_host_panic_and_it_restarts() {
    let store: Arc<dyn StateStore> = Arc::new(PanickingStore::default());
    let host = Host::builder().shared_engine(engine().clone()).state(store).build().unwrap();
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, vec![chaos("c"), chaos("d")]);
    spec.intensity = 10;
    let mut tree = TestTree::start_in(host, spec).await.unwrap();
    let reply = tree.call("root/c", "state:get:k").await;
    let expected = ExitReason::HostPanic { message: "the store has a bug".into() };
    assert_eq!(reply, Err(MessageError::CalleeCrashed(expected.clone())));
    tree.expect(exited_with("root/c", move |r| *r == expected)).await;
    tree.expect(started("root/c", 2)).await;
    assert_eq!(text(tree.call("root/c", "echo:again").await), "again");
    // Stopping works as before, and the sibling never noticed.
    tree.assert_children("root", &[("c", ChildState::Running, 2), ("d", ChildState::Running, 1)])
        .await;
    tree.host().terminate_child("root", "c").await.unwrap();
    tree.shutdown().await;
}

#[tokio::test]
async fn terminate_child_answers_once_the_child_has_exited() {
    let mut config = PluginStart::new(CHAOS);
    config.config = br#"{"terminate_delay_ms": 300}"#.to_vec();
    let mut tree = start(vec![ChildSpec::plugin("slow", config)]).await;
    let host = tree.host().clone();
    let before = host.last_event_seq();
    host.terminate_child("root", "slow").await.unwrap();
    // Its exit was published before the call returned.
    let exit = tree.expect(exited("root/slow")).await;
    assert!(before < exit.seq && exit.seq <= host.last_event_seq(), "{exit:?}");
    assert_eq!(
        exit.event,
        Event::ChildExited {
            path: "root/slow".into(),
            incarnation: 1,
            reason: ExitReason::Shutdown,
            node: None,
        }
    );
    // restart_child too: it answers after the child's `child_started`.
    host.restart_child("root", "slow").await.unwrap();
    let start = tree.expect(started("root/slow", 2)).await;
    assert!(start.seq <= host.last_event_seq());
    tree.shutdown().await;
}

#[tokio::test]
async fn a_callee_crash_is_announced_before_the_caller_hears_of_it() {
    let mut tree = start(vec![chaos("c")]).await;
    let host = tree.host().clone();
    let reply = host.call("root/c", b"div0".to_vec(), Duration::from_secs(5)).await;
    let heard = host.last_event_seq();
    assert!(matches!(reply, Err(MessageError::CalleeCrashed(_))), "{reply:?}");
    let exit = tree.expect(exited("root/c")).await;
    assert!(exit.seq <= heard, "the exit ({}) was published before the reply ({heard})", exit.seq);
    tree.shutdown().await;
}

#[tokio::test]
async fn host_calls_never_wait_behind_each_other() {
    // A call busy for 1 s, a terminate_child waiting 1 s on a graceful shutdown, and
    // meanwhile the rest answers at once.
    let mut slow = PluginStart::new(CHAOS);
    slow.config = br#"{"terminate_delay_ms": 1000}"#.to_vec();
    let mut tree = start(vec![chaos("busy"), ChildSpec::plugin("slow", slow), chaos("free")]).await;
    let host = tree.host().clone();
    let busy = host.call("root/busy", b"busy:1000".to_vec(), Duration::from_secs(5));
    let terminating = host.terminate_child("root", "slow");
    let quick = async {
        tokio::task::yield_now().await;
        let answer = host.call("root/free", b"echo:now".to_vec(), Duration::from_secs(5)).await;
        // Nothing else has finished yet: neither waits on the other.
        (answer, host.last_event_seq())
    };
    let (busy, terminated, (quick, seq)) =
        tree.within(async { tokio::join!(busy, terminating, quick) }).await;
    assert_eq!(quick.as_deref(), Ok(&b"now"[..]));
    assert_eq!(busy.as_deref(), Ok(&b"ok"[..]));
    terminated.unwrap();
    let exit = tree.expect(exited("root/slow")).await;
    assert!(seq < exit.seq, "the quick call was answered before the slow stop ended");
    tree.shutdown().await;
}

#[tokio::test]
async fn one_tree_per_host_even_when_two_starts_race() {
    let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
    let spec = || SupervisorSpec::new(Strategy::OneForOne, vec![chaos("c")]);
    let (a, b) = tokio::join!(host.start(spec()), host.start(spec()));
    let refused = [&a, &b].iter().filter(|r| matches!(r, Err(HostError::AlreadyRunning))).count();
    assert_eq!((a.is_ok() as u8 + b.is_ok() as u8, refused), (1, 1), "{a:?} {b:?}");
    assert_eq!(host.shutdown().await, ExitReason::Shutdown);
    // Once stopped, it may start again.
    host.start(spec()).await.unwrap();
    host.shutdown().await;
}

#[tokio::test]
async fn a_child_flooding_its_log_is_held_to_its_rate_and_every_dropped_line_is_told() {
    let tree = start(vec![hostile("noisy", |_| {}), hostile("quiet", |_| {})]).await;
    let mut events = tree.host().subscribe();
    let line = "x".repeat(8);
    assert_eq!(text(tree.call("root/noisy", "log:1000:8").await), "ok");
    // The other child's line passes: the noisy one had only its own share of the bus.
    assert_eq!(text(tree.call("root/quiet", "log:1:5").await), "ok");
    // With no further line of the noisy child, the host's sweep tells its count
    // within a second or two: every line it offered is on the stream, as itself or
    // in the count of those dropped.
    let offered = 1000;
    let (mut passed, mut told) = (0, 0);
    let mut quiet = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while passed + told < offered {
        let received = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("{passed} passed, {told} told of {offered}"))
            .expect("the tree runs");
        let Some(record) = received.event() else { panic!("the test fell behind") };
        let Event::Log { path, message, .. } = record.event else { continue };
        match path.as_str() {
            "root/quiet" => quiet |= message == "xxxxx",
            "root/noisy" if message == line => passed += 1,
            "root/noisy" => {
                let count = message.strip_prefix("[warden: ").and_then(|m| m.split(' ').next());
                told += count.and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| {
                    panic!("a line that is neither the child's nor a count: {message}")
                });
                assert!(message.ends_with("over its 100 a second]"), "{message}");
            }
            _ => {}
        }
    }
    assert!(quiet, "the quiet child's line was on the stream");
    assert!(passed < 200, "{passed} of the noisy child's lines passed");
    tree.shutdown().await;
}
