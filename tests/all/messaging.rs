//! Messaging between real plugins: mailboxes that survive restarts, calls answered
//! at once when the callee crashes, limits and allow-lists, dead letters, the
//! account of every message, heartbeats, the circuit breaker, call cycles. Every wait
//! is for an event or an answer, with a deadline; nothing sleeps.

use std::time::Duration;
use warden::events::{DeadLetterReason, Event};
use warden::messaging::{CircuitConfig, CircuitState, Targets};
use warden::sandbox::{HeartbeatPolicy, MessageError, PhiAccrual};
use warden::supervisor::{ChildSpec, ChildState, PluginStart, Restart, Strategy, SupervisorSpec};
use warden::testing::{
    Fault, TestTree, circuit, dead_letter, exited, heartbeat_missed, killed, started,
};
use warden::{ExitReason, KillCause, TrapKind};
use warden_tests::{CHAOS, RELAY};

fn chaos(id: &str, config: &str, setup: impl FnOnce(&mut PluginStart)) -> ChildSpec {
    let mut start = PluginStart::new(CHAOS).config(config);
    setup(&mut start);
    ChildSpec::plugin(id, start)
}

fn relay(id: &str) -> ChildSpec {
    let mut start = PluginStart::new(RELAY);
    start.mailbox.targets = Targets::any();
    ChildSpec::plugin(id, start)
}

fn allow(targets: &[&str]) -> impl FnOnce(&mut PluginStart) {
    let targets = Targets::new(targets.iter().copied()).expect("valid targets");
    move |start| start.mailbox.targets = targets
}

/// A one_for_one tree that tolerates many restarts.
fn tree(children: Vec<ChildSpec>) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, children);
    spec.intensity = 1000;
    spec
}

async fn start(children: Vec<ChildSpec>) -> TestTree {
    TestTree::start(tree(children)).await.expect("the tree starts")
}

fn text(reply: Result<Vec<u8>, MessageError>) -> String {
    String::from_utf8(reply.expect("a reply")).expect("UTF-8")
}

#[tokio::test]
async fn queued_messages_survive_a_crash_and_the_next_incarnation_handles_them_in_order() {
    let mut tree = start(vec![
        chaos("c", "", |s| {
            s.mailbox.poison_after = 1;
            s.mailbox.targets = Targets::new(["root/rec"]).unwrap();
        }),
        relay("rec"),
    ])
    .await;
    // c is busy while the rest is queued behind: the crash, then three forwards.
    for msg in ["busy:50", "trap", "send:root/rec:1", "send:root/rec:2", "send:root/rec:3"] {
        tree.send("root/c", msg).unwrap();
    }
    tree.expect(exited("root/c")).await;
    tree.expect(started("root/c", 2)).await;
    tree.within(tree.host().messages_settled()).await;
    assert_eq!(text(tree.call("root/rec", "!log").await), "1,2,3");
    let stats = tree.host().message_stats();
    assert_eq!((stats.dead_letters, stats.pending), (1, 0), "{stats:?}");
    tree.shutdown().await;
}

#[tokio::test]
async fn an_embedder_calling_a_child_that_crashes_mid_call_hears_at_once() {
    let mut tree = start(vec![chaos("c", "", |s| {
        s.limits.call_deadline = Some(Duration::from_millis(100));
    })])
    .await;
    // A 60 s timeout, and the test's 10 s deadline: only an answer at the crash passes.
    let host = tree.host().clone();
    let call = host.call("root/c", b"loop".to_vec(), Duration::from_secs(60));
    let reply = tree.within(call).await;
    let answered = host.last_event_seq();
    assert_eq!(
        reply,
        Err(MessageError::CalleeCrashed(ExitReason::Killed { cause: KillCause::Deadline }))
    );
    // The crash was announced before the caller heard of it.
    let crash = tree.expect(killed("root/c", KillCause::Deadline)).await;
    assert!(crash.seq <= answered, "{crash:?} after the answer ({answered})");
    tree.shutdown().await;
}

#[tokio::test]
async fn a_guest_calling_a_child_that_crashes_mid_call_hears_at_once() {
    let mut tree = start(vec![
        chaos("a", r#"{"call_timeout_ms": 60000}"#, allow(&["root/c"])),
        chaos("c", "", |s| s.limits.call_deadline = Some(Duration::from_millis(100))),
    ])
    .await;
    let reply = tree.call("root/a", "call:root/c:loop").await;
    let answered = tree.host().last_event_seq();
    // The guest saw callee-crashed(killed(deadline)) and answered with it as its error.
    match reply {
        Err(MessageError::Application(e)) => assert_eq!(e, "callee crashed: killed (deadline)"),
        other => panic!("expected the guest's error, got {other:?}"),
    }
    let crash = tree.expect(killed("root/c", KillCause::Deadline)).await;
    assert!(crash.seq <= answered, "{crash:?} after the answer ({answered})");
    // The caller itself is fine.
    assert_eq!(text(tree.call("root/a", "echo:still here").await), "still here");
    tree.shutdown().await;
}

#[tokio::test]
async fn waiting_for_a_reply_does_not_count_against_the_callers_deadline() {
    let mut tree = start(vec![
        chaos("a", "", |s| {
            s.mailbox.targets = Targets::new(["root/b"]).unwrap();
            s.limits.call_deadline = Some(Duration::from_millis(50));
        }),
        chaos("b", "", |_| {}),
    ])
    .await;
    // a waits 300 ms for b inside one call with a 50 ms deadline: host time.
    let reply = tree.call("root/a", "call:root/b:busy:300").await;
    assert_eq!(text(reply), "ok");
    // Its own spinning still counts.
    let reply = tree.call("root/a", "hang:300").await;
    assert_eq!(
        reply,
        Err(MessageError::CalleeCrashed(ExitReason::Killed { cause: KillCause::Deadline }))
    );
    tree.expect(killed("root/a", KillCause::Deadline)).await;
    tree.shutdown().await;
}

#[tokio::test]
async fn full_oversized_forbidden_and_unknown_sends_are_rejected_each_with_its_error() {
    let tree = start(vec![
        chaos("c", "", |s| {
            s.mailbox.capacity = 2;
            s.mailbox.max_message_bytes = 16;
        }),
        chaos("denied", "", |_| {}),
        ChildSpec::plugin("allowed", {
            let mut start = PluginStart::new(RELAY);
            start.mailbox.targets = Targets::new(["root/c"]).unwrap();
            start
        }),
    ])
    .await;
    // Busy for a while; then at most the one being handled plus two can be accepted.
    tree.send("root/c", "busy:300").unwrap();
    let mut accepted = 0;
    let full = loop {
        match tree.send("root/c", "echo:x") {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted <= 3, "a mailbox of 2 took {accepted}");
    };
    assert_eq!(full, MessageError::MailboxFull);
    // A guest gets the same typed error. (At most one slot can have freed since: the
    // busy message's, if it was still queued; after that c is busy for 300 ms.)
    let guest = text(tree.call("root/allowed", "!flood:3:root/c:x").await);
    assert!(
        ["sent 0 rejected 3", "sent 1 rejected 2"].iter().any(|s| guest.starts_with(s))
            && guest.ends_with(": mailbox full"),
        "{guest}"
    );

    assert_eq!(tree.send("root/c", [0u8; 17]), Err(MessageError::TooLarge(16)));
    assert_eq!(
        tree.send("root/nobody", "x"),
        Err(MessageError::UnknownTarget("root/nobody".into()))
    );
    for msg in ["send:root/c:x", "call:root/c:x"] {
        let e = tree.call("root/denied", msg).await.unwrap_err();
        assert_eq!(e, MessageError::Application("not allowed to send to root/c".into()));
    }
    // Itself it may always message.
    assert_eq!(text(tree.call("root/denied", "send:root/denied:echo:me").await), "ok");

    tree.within(tree.host().messages_settled()).await;
    let stats = tree.host().message_stats();
    assert_eq!(stats.sent, stats.rejected + stats.handled + stats.failed + stats.dead_letters);
    tree.shutdown().await;
}

#[tokio::test]
async fn a_message_that_crashes_its_handler_costs_one_crash_and_is_dead_lettered() {
    // OTP's default intensity (1 in 5 s): one bad message must not take down the
    // supervisor, as it would if it were tried again.
    let mut spec = tree(vec![chaos("c", "", |_| {})]);
    spec.intensity = 1;
    let mut tree = TestTree::start(spec).await.expect("the tree starts");
    tree.send("root/c", "trap").unwrap();
    let host = tree.host().clone();
    let next = host.call("root/c", b"echo:next".to_vec(), Duration::from_secs(10));
    let (reply, ()) = tokio::join!(next, async {
        tree.expect(exited("root/c")).await;
        tree.expect(dead_letter("root/c", DeadLetterReason::Crashed)).await;
        tree.expect(started("root/c", 2)).await;
    });
    assert_eq!(text(reply), "next", "the message behind the bad one goes to the next incarnation");
    let dead = tree
        .seen()
        .iter()
        .find(|r| dead_letter("root/c", DeadLetterReason::Crashed).matches(&r.event))
        .expect("a dead letter")
        .event
        .clone();
    match dead {
        Event::DeadLetter {
            crashes: 1,
            size: 4,
            sender: None,
            exit: Some(ExitReason::Trap { trap: TrapKind::Unreachable, .. }),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    tree.assert_children("root", &[("c", ChildState::Running, 2)]).await;
    let stats = tree.host().message_stats();
    assert_eq!((stats.dead_letters, stats.handled, stats.pending), (1, 1, 0), "{stats:?}");
    tree.shutdown().await;
}

#[tokio::test]
async fn poison_after_opts_in_to_retries_then_dead_letters_the_poison() {
    let mut tree = start(vec![chaos("c", "", |s| s.mailbox.poison_after = 3)]).await;
    tree.send("root/c", "trap").unwrap();
    let host = tree.host().clone();
    let next = host.call("root/c", b"echo:next".to_vec(), Duration::from_secs(10));
    let (reply, ()) = tokio::join!(next, async {
        for n in 1..=3 {
            tree.expect(exited("root/c")).await;
            tree.expect(started("root/c", n + 1)).await;
        }
    });
    assert_eq!(text(reply), "next", "the message behind the poison one is served");
    let dead = tree
        .seen()
        .iter()
        .find(|r| dead_letter("root/c", DeadLetterReason::Poison).matches(&r.event))
        .expect("a dead letter")
        .event
        .clone();
    match dead {
        Event::DeadLetter {
            crashes: 3,
            size: 4,
            exit: Some(ExitReason::Trap { trap, .. }),
            ..
        } => {
            assert_eq!(trap, TrapKind::Unreachable)
        }
        other => panic!("{other:?}"),
    }
    tree.assert_children("root", &[("c", ChildState::Running, 4)]).await;
    tree.shutdown().await;
}

#[tokio::test]
async fn a_removed_child_dead_letters_what_it_left_and_is_no_longer_a_target() {
    let mut tree = start(vec![chaos("t", "", |_| {}).restart(Restart::Temporary)]).await;
    for msg in ["busy:30", "exit:normal", "echo:lost"] {
        tree.send("root/t", msg).unwrap();
    }
    tree.expect(exited("root/t")).await;
    let dead = tree.expect(dead_letter("root/t", DeadLetterReason::TargetRemoved)).await;
    assert!(matches!(dead.event, Event::DeadLetter { size: 9, .. }), "{dead:?}");
    assert_eq!(tree.send("root/t", "x"), Err(MessageError::UnknownTarget("root/t".into())));
    tree.shutdown().await;
}

#[tokio::test]
async fn a_call_to_a_child_no_restart_will_start_is_answered_noproc_at_once() {
    // OTP's gen_server:call to a process that is not there exits `noproc` at once; a
    // call does not wait out its timeout for a start that nobody will make.
    let grant = |s: &mut PluginStart| s.mailbox.targets = Targets::new(["root/rec"]).unwrap();
    let mut tree = start(vec![
        chaos("s", "", grant),
        chaos("t", "", |_| {}).restart(Restart::Transient),
        relay("rec"),
    ])
    .await;
    let host = tree.host().clone();
    let long = Duration::from_secs(600);
    // A call waiting behind a busy one when its child is stopped is answered then.
    let (busy, queued, stopped) = tree
        .within(async {
            tokio::join!(
                host.call("root/s", b"busy:200".to_vec(), long),
                host.call("root/s", b"echo:queued".to_vec(), long),
                async {
                    tokio::task::yield_now().await;
                    host.terminate_child("root", "s").await
                },
            )
        })
        .await;
    stopped.unwrap();
    assert!(busy.is_ok() || matches!(busy, Err(MessageError::CalleeCrashed(_))), "{busy:?}");
    assert_eq!(queued, Err(MessageError::NotRunning("root/s".into())));
    // After terminate_child: refused at once; a sent message waits for restart_child.
    let refused = tree.within(host.call("root/s", b"echo:x".to_vec(), long)).await;
    assert_eq!(refused, Err(MessageError::NotRunning("root/s".into())));
    tree.send("root/s", "send:root/rec:kept").unwrap();
    let waiting = host.mailbox("root/s").expect("s keeps its mailbox");
    assert_eq!((waiting.queued, waiting.queued_bytes), (1, "send:root/rec:kept".len()));
    host.restart_child("root", "s").await.unwrap();
    assert_eq!(text(tree.call("root/s", "echo:back").await), "back");
    let handled = host.mailbox("root/s").expect("s keeps its mailbox");
    assert_eq!((handled.queued, handled.queued_bytes), (0, 0));
    assert_eq!(text(tree.call("root/rec", "!log").await), "kept");
    // A transient child that ended normally is not restarted: the same.
    tree.send("root/t", "exit:normal").unwrap();
    tree.expect(exited("root/t")).await;
    let refused = tree.within(host.call("root/t", b"echo:x".to_vec(), long)).await;
    assert_eq!(refused, Err(MessageError::NotRunning("root/t".into())));
    // A child that crashed is restarted, and called as before.
    assert!(matches!(tree.inject("root/s", Fault::Trap).await, ExitReason::Trap { .. }));
    assert_eq!(text(tree.call("root/s", "echo:again").await), "again");
    let stats = host.message_stats();
    assert_eq!((stats.rejected, stats.pending), (2, 0), "{stats:?}");
    tree.shutdown().await;
}

#[tokio::test]
async fn every_message_is_accounted_for_under_load_with_random_crashes() {
    const MESSAGES: u64 = 100_000;
    let children: Vec<ChildSpec> =
        (0..4).map(|i| chaos(&format!("c{i}"), "", |s| s.mailbox.capacity = 256)).collect();
    let tree = start(children).await.deadline(Duration::from_secs(120));
    let host = tree.host().clone();
    let mut events = host.subscribe();
    let dead_letters = tokio::spawn(async move {
        let mut n = 0u64;
        // Every incarnation's start is published before its exit, however fast a
        // restarted child crashes on what was queued for it.
        // (The first incarnations started before this subscription.)
        let mut started: std::collections::HashSet<(String, u64)> =
            (0..4).map(|i| (format!("root/c{i}"), 1)).collect();
        while let Some(warden::Received::Event(record)) = events.next().await {
            match record.event {
                Event::DeadLetter { .. } => n += 1,
                Event::ChildStarted { path, incarnation, .. } => {
                    started.insert((path, incarnation));
                }
                Event::ChildExited { path, incarnation, .. } => {
                    assert!(
                        started.contains(&(path.clone(), incarnation)),
                        "{path} #{incarnation}"
                    );
                }
                Event::SupervisorStopped { ref path, .. } if path == "root" => break,
                _ => {}
            }
        }
        n
    });
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut rejected, mut calls) = (0u64, Vec::new());
    for i in 0..MESSAGES {
        let target = format!("root/c{}", random() % 4);
        // About one message in a thousand crashes its handler.
        let crash = random() % 1000 == 0;
        let payload = if crash { "trap".to_string() } else { format!("echo:{i}") };
        if i % 10 == 0 {
            let host = host.clone();
            calls.push(tokio::spawn(async move {
                host.call(&target, payload.into_bytes(), Duration::from_secs(60)).await
            }));
        } else if host.send(&target, payload.into_bytes()).is_err() {
            rejected += 1;
            tokio::task::yield_now().await; // let the children catch up
        }
    }
    let (mut answered, mut failed, mut call_rejected) = (0u64, 0u64, 0u64);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) | Err(MessageError::Application(_)) => answered += 1,
            Err(MessageError::CalleeCrashed(_)) => failed += 1,
            Err(MessageError::MailboxFull) => call_rejected += 1,
            Err(other) => panic!("unexpected call error {other:?}"),
        }
    }
    tree.within(host.messages_settled()).await;
    let stats = host.message_stats();
    assert_eq!(stats.sent, MESSAGES);
    assert_eq!(stats.pending, 0);
    assert_eq!(
        stats.handled + stats.failed + stats.dead_letters + stats.rejected,
        stats.sent,
        "{stats:?}"
    );
    assert_eq!(stats.rejected, rejected + call_rejected, "{stats:?}");
    assert_eq!(stats.failed, failed, "only calls that crashed their callee fail: {stats:?}");
    assert!(stats.handled >= answered);
    assert!(failed + stats.dead_letters > 0, "crashes were injected: {stats:?}");
    tree.shutdown().await;
    assert_eq!(dead_letters.await.unwrap(), stats.dead_letters, "one event per dead letter");
}

#[tokio::test]
async fn a_child_hung_without_heartbeats_is_killed_within_its_timeout_and_restarted() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let mut tree = start(vec![chaos("c", "", |s| {
        s.limits.heartbeat = Some(HeartbeatPolicy::Timeout(TIMEOUT));
    })])
    .await;
    // Busy for five timeouts, beating: left alone.
    assert_eq!(text(tree.call("root/c", "busy:500").await), "ok");
    // Idle for longer than the timeout: not expected to beat.
    let idle = tree.host().call("root/c", b"busy:150".to_vec(), Duration::from_secs(5));
    assert_eq!(text(idle.await), "ok");

    let asked_us = tree.host().clock_us();
    let reply = tree.call("root/c", Fault::Hang(Duration::from_secs(5)).message()).await;
    assert_eq!(
        reply,
        Err(MessageError::CalleeCrashed(ExitReason::Killed { cause: KillCause::Heartbeat }))
    );
    let missed = tree.expect(heartbeat_missed("root/c")).await;
    let crash = tree.expect(killed("root/c", KillCause::Heartbeat)).await;
    let took = Duration::from_micros(crash.ts_us - asked_us);
    assert!(
        took >= TIMEOUT && took <= TIMEOUT + Duration::from_millis(20),
        "killed after {took:?}"
    );
    assert!(
        matches!(missed.event, Event::HeartbeatMissed { since_ms: 100..=120, .. }),
        "{missed:?}"
    );
    tree.expect(started("root/c", 2)).await;
    tree.assert_children("root", &[("c", ChildState::Running, 2)]).await;
    tree.shutdown().await;
}

#[tokio::test]
async fn the_phi_accrual_detector_learns_the_beat_and_catches_a_hang() {
    let phi = PhiAccrual {
        acceptable_pause: Duration::ZERO,
        min_std_dev: Duration::from_millis(10),
        first_estimate: Duration::from_millis(20),
        ..PhiAccrual::default()
    };
    let mut tree = start(vec![chaos("c", "", |s| {
        s.limits.heartbeat = Some(HeartbeatPolicy::PhiAccrual(phi));
    })])
    .await;
    // Beating every millisecond for a while is fine, however long.
    assert_eq!(text(tree.call("root/c", "busy:300").await), "ok");
    // Learned ~1 ms beats with a 10 ms floor on the deviation: suspected long before
    // the call's 5 s deadline would kill it.
    let reply = tree.call("root/c", "hang:5000").await;
    assert_eq!(
        reply,
        Err(MessageError::CalleeCrashed(ExitReason::Killed { cause: KillCause::Heartbeat }))
    );
    tree.expect(heartbeat_missed("root/c")).await;
    tree.expect(started("root/c", 2)).await;
    tree.shutdown().await;
}

#[tokio::test]
async fn a_guest_waiting_on_a_call_is_not_judged_by_its_watchdog() {
    let mut tree = start(vec![
        chaos("a", "", |s| {
            s.limits.heartbeat = Some(HeartbeatPolicy::Timeout(Duration::from_millis(50)));
            s.mailbox.targets = Targets::new(["root/b"]).unwrap();
        }),
        chaos("b", "", |_| {}),
    ])
    .await;
    assert_eq!(text(tree.call("root/a", "call:root/b:busy:300").await), "ok");
    tree.assert_children("root", &[("a", ChildState::Running, 1), ("b", ChildState::Running, 1)])
        .await;
    // The same wait outside a call is a hang.
    tree.inject("root/a", Fault::Hang(Duration::from_millis(300))).await;
    tree.expect(killed("root/a", KillCause::Heartbeat)).await;
    tree.shutdown().await;
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_fails_fast_and_half_opens() {
    let mut tree = start(vec![chaos("c", "", |s| {
        s.mailbox.circuit = Some(CircuitConfig { failures: 2, reset: Duration::from_millis(200) });
    })])
    .await;
    tree.inject("root/c", Fault::Trap).await;
    tree.inject("root/c", Fault::Panic).await;
    let opened = tree.expect(circuit("root/c", CircuitState::Open)).await;
    assert!(matches!(opened.event, Event::CircuitChanged { failures: 2, .. }));

    // Failed fast: the message never reached the callee's mailbox.
    let before = tree.host().message_stats();
    assert_eq!(tree.call("root/c", "echo:x").await, Err(MessageError::CircuitOpen));
    let after = tree.host().message_stats();
    assert_eq!((after.rejected - before.rejected, after.pending), (1, 0));
    assert_eq!(tree.host().mailbox("root/c").unwrap().circuit, Some(CircuitState::Open));

    // After the reset timeout: half-open; a failing probe opens it again.
    let open_us = opened.ts_us;
    let half = tree.expect(circuit("root/c", CircuitState::HalfOpen)).await;
    assert!(half.ts_us - open_us >= 200_000, "half-opened after {} µs", half.ts_us - open_us);
    tree.inject("root/c", Fault::Trap).await;
    tree.expect(circuit("root/c", CircuitState::Open)).await;
    tree.expect(circuit("root/c", CircuitState::HalfOpen)).await;
    // A successful probe closes it; calls go through again.
    assert_eq!(text(tree.call("root/c", "echo:probe").await), "probe");
    tree.expect(circuit("root/c", CircuitState::Closed)).await;
    assert_eq!(text(tree.call("root/c", "echo:again").await), "again");
    // An application error is an answer, not a failure.
    for _ in 0..3 {
        assert!(matches!(tree.call("root/c", "nonsense").await, Err(MessageError::Application(_))));
    }
    assert_eq!(tree.host().mailbox("root/c").unwrap().circuit, Some(CircuitState::Closed));
    tree.shutdown().await;
}

#[tokio::test]
async fn a_call_that_would_close_a_cycle_is_refused_at_once_and_names_it() {
    // Long timeouts: a cycle found only when they ran out would fail the test.
    let long = r#"{"call_timeout_ms": 60000}"#;
    let tree = start(vec![
        chaos("a", long, allow(&["root/b"])),
        chaos("b", long, allow(&["root/a", "root/c"])),
        chaos("c", long, allow(&["root/a"])),
    ])
    .await;
    // a calls b, which calls a: a waits on b, so b's call would wait on a.
    let reply = tree.call("root/a", "call:root/b:call:root/a:echo:x").await;
    // b's call is refused; b answers a with that error, and a answers its caller.
    assert_eq!(
        reply,
        Err(MessageError::Application("deadlock: root/a -> root/b -> root/a".into()))
    );
    // Three children: a -> b -> c -> a.
    let reply = tree.call("root/a", "call:root/b:call:root/c:call:root/a:echo:x").await;
    assert_eq!(
        reply,
        Err(MessageError::Application("deadlock: root/a -> root/b -> root/c -> root/a".into()))
    );
    // A child calling itself waits on itself.
    let reply = tree.call("root/b", "call:root/b:echo:x").await;
    assert_eq!(reply, Err(MessageError::Application("deadlock: root/b -> root/b".into())));
    // Nothing was stuck: every call got its answer, and all three still serve.
    tree.within(tree.host().messages_settled()).await;
    for child in ["a", "b", "c"] {
        assert_eq!(text(tree.call(&format!("root/{child}"), "echo:here").await), "here");
    }
    tree.shutdown().await;
}

#[tokio::test]
async fn an_embedder_calling_into_a_cycle_gets_its_answer() {
    // The embedder is not part of the wait-for graph: its call to a, which calls b,
    // which calls a, ends with b's refusal passed up, not with a timeout.
    let long = r#"{"call_timeout_ms": 60000}"#;
    let tree =
        start(vec![chaos("a", long, allow(&["root/b"])), chaos("b", long, allow(&["root/a"]))])
            .await;
    let host = tree.host().clone();
    let first =
        host.call("root/a", b"call:root/b:call:root/a:echo:x".to_vec(), Duration::from_secs(60));
    let second = host.call("root/b", b"echo:meanwhile".to_vec(), Duration::from_secs(60));
    let (first, second) = tree.within(async { tokio::join!(first, second) }).await;
    assert_eq!(
        first,
        Err(MessageError::Application("deadlock: root/a -> root/b -> root/a".into()))
    );
    assert_eq!(second.as_deref(), Ok(&b"meanwhile"[..]));
    tree.shutdown().await;
}

#[tokio::test]
async fn a_message_cut_short_by_a_sibling_restart_is_not_the_childs_fault() {
    // one_for_all: a's crash stops b mid-message (brutally); that message stays at the
    // head of b's mailbox for b's next incarnation, not a dead letter.
    let mut b = chaos("b", "", |_| {});
    b.shutdown = warden::sandbox::Shutdown::BrutalKill;
    let mut spec = SupervisorSpec::new(Strategy::OneForAll, vec![chaos("a", "", |_| {}), b]);
    spec.intensity = 10;
    let mut tree = TestTree::start(spec).await.expect("the tree starts");
    tree.send("root/b", "busy:300").unwrap();
    assert!(tree.call("root/a", "trap").await.is_err());
    tree.expect(started("root/b", 2)).await;
    tree.within(tree.host().messages_settled()).await;
    let stats = tree.host().message_stats();
    assert_eq!((stats.dead_letters, stats.handled, stats.failed), (0, 1, 1), "{stats:?}");
    assert!(tree.seen().iter().all(|r| !matches!(r.event, Event::DeadLetter { .. })));
    tree.shutdown().await;
}

#[tokio::test]
async fn a_restarted_child_crashing_at_once_is_announced_started_then_exited() {
    // Twenty bad messages queued: each incarnation crashes on its first message,
    // microseconds after it started; its start is still published before its exit.
    let mut tree = start(vec![chaos("c", "", |_| {})]).await;
    for _ in 0..20 {
        tree.send("root/c", "trap").unwrap();
    }
    tree.expect(started("root/c", 21)).await;
    let mut started_ones = std::collections::HashSet::from([1]);
    for record in tree.seen() {
        match &record.event {
            Event::ChildStarted { incarnation, .. } => {
                started_ones.insert(*incarnation);
            }
            Event::ChildExited { incarnation, .. } => {
                assert!(
                    started_ones.contains(incarnation),
                    "#{incarnation} exited before it started"
                );
            }
            _ => {}
        }
    }
    tree.shutdown().await;
}
