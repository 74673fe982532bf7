//! Supervision with real chaos plugins: strategies, restart types, escalation,
//! shutdown, retries, dynamic children, auto shutdown. Every wait is for an event,
//! with a deadline; nothing sleeps.

use std::time::Duration;
use warden::events::Event;
use warden::runtime::{Host, HostError};
use warden::sandbox::{MessageError, Shutdown};
use warden::supervisor::{
    AdminError, AutoShutdown, ChildSpec, ChildState, PluginStart, Restart, Strategy, SupervisorSpec,
};
use warden::testing::{Pattern, TestTree, exited, gave_up, started};
use warden::{ExitReason, KillCause};
use warden_tests::CHAOS;

const DEADLINE: Duration = Duration::from_secs(10);

fn chaos(id: &str, restart: Restart, config: &str) -> ChildSpec {
    let mut spec = ChildSpec::plugin(id, PluginStart::new(CHAOS).config(config));
    spec.restart = restart;
    spec
}

fn tree(strategy: Strategy, intensity: u32, children: Vec<ChildSpec>) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new(strategy, children);
    spec.intensity = intensity;
    spec
}

/// Awaits `f`, failing the test instead of hanging if it takes past the deadline.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.expect("finished within the deadline")
}

/// Waits for the first event matching `pattern`, failing with what was seen instead.
async fn expect(events: &mut warden::Events, pattern: Pattern) -> Event {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            let received = events.next().await.expect("the event stream is open");
            let record = received.event().expect("no event is missed");
            if pattern.matches(&record.event) {
                return record.event;
            }
            seen.push(record.event);
        }
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(event) => event,
        Err(_) => panic!("no {pattern:?} within {DEADLINE:?}; saw {seen:#?}"),
    }
}

async fn host_with(spec: SupervisorSpec) -> (Host, warden::Events) {
    let host = Host::builder().shared_engine(warden_tests::engine().clone()).build().unwrap();
    let events = host.subscribe();
    host.start(spec).await.expect("the tree starts");
    (host, events)
}

async fn incarnations(host: &Host, supervisor: &str) -> Vec<(String, ChildState, u64)> {
    host.which_children(supervisor)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.state, c.incarnation))
        .collect()
}

fn abc(strategy: Strategy) -> SupervisorSpec {
    tree(
        strategy,
        5,
        vec![
            chaos("a", Restart::Permanent, ""),
            chaos("b", Restart::Permanent, ""),
            chaos("c", Restart::Permanent, ""),
        ],
    )
}

fn running(names: &[(&str, u64)]) -> Vec<(String, ChildState, u64)> {
    names.iter().map(|(n, i)| (n.to_string(), ChildState::Running, *i)).collect()
}

#[tokio::test]
async fn one_for_one_restarts_the_crashed_child_and_a_caller_learns_why_at_once() {
    let (host, mut events) = host_with(abc(Strategy::OneForOne)).await;
    assert!(!host.root_gave_up());
    let reply = host.call("root/b", b"trap".to_vec(), DEADLINE).await;
    match reply {
        Err(MessageError::CalleeCrashed(ExitReason::Trap { .. })) => {}
        other => panic!("expected callee-crashed, got {other:?}"),
    }
    expect(
        &mut events,
        Pattern::new(
            "b restarting",
            |e| matches!(e, Event::ChildRestarting { path, attempt: 1, .. } if path == "root/b"),
        ),
    )
    .await;
    expect(&mut events, started("root/b", 2)).await;
    assert_eq!(incarnations(&host, "root").await, running(&[("a", 1), ("b", 2), ("c", 1)]));
    let echo = host.call("root/b", b"echo:back".to_vec(), DEADLINE).await.unwrap();
    assert_eq!(echo, b"back");
    assert_eq!(within(host.shutdown()).await, ExitReason::Shutdown);
}

#[tokio::test]
async fn one_for_all_restarts_every_child() {
    let (host, mut events) = host_with(abc(Strategy::OneForAll)).await;
    let crashed = host.call("root/b", b"panic".to_vec(), DEADLINE).await;
    assert!(matches!(crashed, Err(MessageError::CalleeCrashed(_))), "{crashed:?}");
    // Each child's first incarnation exits once, announced once, as #1: the stop of a
    // sibling is reported for the incarnation stopped, not the one about to start.
    let mut exits = Vec::new();
    let wait = async {
        loop {
            let received = events.next().await.expect("the event stream is open");
            let record = received.event().expect("no event is missed");
            match record.event {
                Event::ChildExited { path, incarnation, .. } => exits.push((path, incarnation)),
                Event::ChildStarted { path, incarnation: 2, .. } if path == "root/c" => break,
                _ => {}
            }
        }
    };
    within(wait).await;
    exits.sort();
    let expected = ["root/a", "root/b", "root/c"].map(|p| (p.to_owned(), 1));
    assert_eq!(exits, expected);
    assert_eq!(incarnations(&host, "root").await, running(&[("a", 2), ("b", 2), ("c", 2)]));
    within(host.shutdown()).await;
}

#[tokio::test]
async fn rest_for_one_restarts_the_crashed_child_and_later_ones_only() {
    let (host, mut events) = host_with(abc(Strategy::RestForOne)).await;
    let crashed = host.call("root/b", b"oob".to_vec(), DEADLINE).await;
    assert!(matches!(crashed, Err(MessageError::CalleeCrashed(_))), "{crashed:?}");
    expect(&mut events, started("root/c", 2)).await;
    assert_eq!(incarnations(&host, "root").await, running(&[("a", 1), ("b", 2), ("c", 2)]));
    within(host.shutdown()).await;
}

#[tokio::test]
async fn transient_and_temporary_children_follow_their_restart_type() {
    let spec = tree(
        Strategy::OneForOne,
        5,
        vec![
            chaos("t", Restart::Transient, ""),
            chaos("tmp", Restart::Temporary, ""),
            chaos("p", Restart::Permanent, ""),
        ],
    );
    let (host, mut events) = host_with(spec).await;
    host.send("root/t", b"exit:normal".to_vec()).unwrap();
    expect(&mut events, exited("root/t")).await;
    host.send("root/tmp", b"trap".to_vec()).unwrap();
    expect(&mut events, exited("root/tmp")).await;
    host.send("root/p", b"exit:normal".to_vec()).unwrap();
    expect(&mut events, started("root/p", 2)).await;
    assert_eq!(
        incarnations(&host, "root").await,
        [("t".to_string(), ChildState::Stopped, 1), ("p".to_string(), ChildState::Running, 2)]
    );
    within(host.shutdown()).await;
}

#[tokio::test]
async fn giving_up_escalates_through_three_levels() {
    let leaf = tree(Strategy::OneForOne, 0, vec![chaos("w", Restart::Permanent, "")]);
    let mid = tree(Strategy::OneForOne, 0, vec![ChildSpec::supervisor("leaf", leaf)]);
    let root = tree(
        Strategy::OneForOne,
        0,
        vec![chaos("sibling", Restart::Permanent, ""), ChildSpec::supervisor("mid", mid)],
    );
    let (host, mut events) = host_with(root).await;
    host.send("root/mid/leaf/w", b"trap".to_vec()).unwrap();
    expect(&mut events, gave_up("root/mid/leaf")).await;
    expect(&mut events, gave_up("root/mid")).await;
    expect(&mut events, gave_up("root")).await;
    expect(&mut events, exited("root/sibling")).await;
    assert_eq!(within(host.wait()).await, ExitReason::Shutdown);
    assert!(host.root_gave_up(), "the embedder can tell giving up from a clean stop");
}

#[tokio::test]
async fn shutdown_stops_children_newest_first_and_kills_one_that_ignores_terminate() {
    let mut stubborn = chaos("stubborn", Restart::Permanent, r#"{"ignore_terminate": true}"#);
    stubborn.shutdown = Shutdown::Timeout(Duration::from_millis(100));
    let spec = tree(
        Strategy::OneForOne,
        1,
        vec![chaos("a", Restart::Permanent, ""), stubborn, chaos("c", Restart::Permanent, "")],
    );
    let (host, mut events) = host_with(spec).await;
    let stopping = tokio::spawn({
        let host = host.clone();
        async move { within(host.shutdown()).await }
    });
    let mut order = Vec::new();
    for _ in 0..3 {
        match expect(
            &mut events,
            Pattern::new("a child exit", |e| matches!(e, Event::ChildExited { .. })),
        )
        .await
        {
            Event::ChildExited { path, reason, .. } => order.push((path, reason)),
            _ => unreachable!(),
        }
    }
    assert_eq!(
        order,
        [
            ("root/c".to_string(), ExitReason::Shutdown),
            ("root/stubborn".to_string(), ExitReason::Killed { cause: KillCause::ShutdownTimeout }),
            ("root/a".to_string(), ExitReason::Shutdown),
        ]
    );
    assert_eq!(stopping.await.unwrap(), ExitReason::Shutdown);
}

#[tokio::test]
async fn failed_restarts_are_retried_and_count_until_the_supervisor_gives_up() {
    let spec = tree(
        Strategy::OneForOne,
        3,
        vec![
            chaos("a", Restart::Permanent, ""),
            chaos("f", Restart::Permanent, r#"{"fail_init_from": 2}"#),
        ],
    );
    let (host, mut events) = host_with(spec).await;
    host.send("root/f", b"trap".to_vec()).unwrap();
    let mut failures = 0;
    let failure_or_give_up = || {
        Pattern::new("a start failure or giving up", |e| {
            matches!(e, Event::ChildStartFailed { .. } | Event::SupervisorGaveUp { .. })
        })
    };
    while let Event::ChildStartFailed { path, message } =
        expect(&mut events, failure_or_give_up()).await
    {
        assert_eq!(path, "root/f");
        assert!(message.contains("fail_init_from 2"), "{message}");
        failures += 1;
    }
    // The crash counts once and each of the three failed attempts once more: the
    // fourth restart in the window exceeds intensity 3.
    assert_eq!(failures, 3);
    assert_eq!(within(host.wait()).await, ExitReason::Shutdown);
}

#[tokio::test]
async fn a_start_up_failure_stops_the_started_children_and_names_the_child() {
    let host = Host::builder().shared_engine(warden_tests::engine().clone()).build().unwrap();
    let mut events = host.subscribe();
    let spec = tree(
        Strategy::OneForOne,
        1,
        vec![
            chaos("a", Restart::Permanent, ""),
            chaos("b", Restart::Permanent, r#"{"fail_init": true}"#),
            chaos("c", Restart::Permanent, ""),
        ],
    );
    let err = host.start(spec).await.expect_err("b fails to start");
    assert!(err.to_string().contains("failed_to_start_child b"), "{err}");
    expect(&mut events, exited("root/a")).await;
    assert!(matches!(
        host.call("root/c", b"echo:x".to_vec(), DEADLINE).await,
        Err(MessageError::UnknownTarget(_))
    ));
}

#[tokio::test]
async fn dynamic_children_start_from_the_template_and_restart_with_their_config() {
    let mut template = chaos("worker", Restart::Permanent, "");
    template.shutdown = Shutdown::Timeout(Duration::from_secs(1));
    let pool = tree(Strategy::SimpleOneForOne, 5, vec![template]);
    let spec = tree(Strategy::OneForOne, 1, vec![ChildSpec::supervisor("pool", pool)]);
    let (host, mut events) = host_with(spec).await;
    let first = host.start_dynamic("root/pool", None, None).await.unwrap();
    let second = host
        .start_dynamic(
            "root/pool",
            Some("picky".into()),
            Some(br#"{"fail_init_from": 3}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("worker-1", "picky"));
    host.send("root/pool/picky", b"trap".to_vec()).unwrap();
    expect(&mut events, started("root/pool/picky", 2)).await;
    // Same config after the restart: incarnation 3 would fail.
    host.send("root/pool/picky", b"trap".to_vec()).unwrap();
    expect(
        &mut events,
        Pattern::new(
            "picky fails at #3",
            |e| matches!(e, Event::ChildStartFailed { path, .. } if path == "root/pool/picky"),
        ),
    )
    .await;
    let counts = host.count_children("root/pool").await.unwrap();
    assert_eq!((counts.specs, counts.workers), (1, 2));
    assert!(matches!(
        host.restart_child("root/pool", "worker-1").await,
        Err(HostError::Admin(AdminError::SimpleOneForOne))
    ));
    within(host.shutdown()).await;
}

#[tokio::test]
async fn a_significant_child_shuts_its_supervisor_down() {
    let mut job = chaos("job", Restart::Transient, "");
    job.significant = true;
    let mut spec = tree(Strategy::OneForOne, 1, vec![chaos("helper", Restart::Permanent, ""), job]);
    spec.auto_shutdown = AutoShutdown::AnySignificant;
    let (host, mut events) = host_with(spec).await;
    host.send("root/job", b"exit:normal".to_vec()).unwrap();
    expect(&mut events, exited("root/helper")).await;
    assert_eq!(within(host.wait()).await, ExitReason::Shutdown);
}

#[tokio::test]
async fn admin_requests_answer_with_otps_results() {
    let (host, _events) = host_with(abc(Strategy::OneForOne)).await;
    let admin = |r: Result<(), HostError>| match r {
        Ok(()) => "ok".to_string(),
        Err(HostError::Admin(e)) => e.to_string(),
        Err(HostError::NotFound { path }) => format!("not_found {path}"),
        Err(e) => format!("other: {e}"),
    };
    assert_eq!(admin(host.restart_child("root", "a").await), "running");
    assert_eq!(admin(host.delete_child("root", "a").await), "running");
    // One "not found" for a child and a supervisor alike, with the path looked for.
    assert_eq!(admin(host.terminate_child("root", "nope").await), "not_found root/nope");
    assert_eq!(admin(host.terminate_child("root/x", "a").await), "not_found root/x");
    assert_eq!(
        admin(host.start_child("root", chaos("a", Restart::Permanent, "")).await),
        "already_started"
    );
    assert_eq!(admin(host.terminate_child("root", "a").await), "ok");
    assert_eq!(
        admin(host.start_child("root", chaos("a", Restart::Permanent, "")).await),
        "already_present"
    );
    let counts = host.count_children("root").await.unwrap();
    assert_eq!((counts.specs, counts.active, counts.workers, counts.supervisors), (3, 2, 3, 0));
    assert_eq!(admin(host.restart_child("root", "a").await), "ok");
    assert_eq!(host.call("root/a", b"echo:back".to_vec(), DEADLINE).await.unwrap(), b"back");
    assert_eq!(admin(host.terminate_child("root", "a").await), "ok");
    assert_eq!(admin(host.delete_child("root", "a").await), "ok");
    assert_eq!(admin(host.start_child("root", chaos("d", Restart::Permanent, "")).await), "ok");
    let names: Vec<String> =
        host.which_children("root").await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["b", "c", "d"]);
    assert!(matches!(
        host.which_children("root/nope").await,
        Err(HostError::NotFound { path }) if path == "root/nope"
    ));
    within(host.shutdown()).await;
}

#[tokio::test]
async fn a_child_waiting_to_be_restarted_shows_as_restarting_while_requests_are_answered() {
    let mut picky = chaos("picky", Restart::Permanent, r#"{"fail_init_from": 2}"#);
    picky.backoff = warden::supervisor::Backoff::Fixed(Duration::from_millis(300));
    let spec = tree(Strategy::OneForOne, 10, vec![chaos("a", Restart::Permanent, ""), picky]);
    let (host, mut events) = host_with(spec).await;
    host.send("root/picky", b"trap".to_vec()).unwrap();
    expect(
        &mut events,
        Pattern::new(
            "picky restarting",
            |e| matches!(e, Event::ChildRestarting { path, .. } if path == "root/picky"),
        ),
    )
    .await;
    // Within its 300 ms backoff the supervisor answers, and picky is not active.
    let children = incarnations(&host, "root").await;
    assert_eq!(children[1].1, ChildState::Restarting);
    assert_eq!(host.count_children("root").await.unwrap().active, 1);
    let refused = host.restart_child("root", "picky").await;
    assert!(matches!(refused, Err(HostError::Admin(AdminError::Restarting))), "{refused:?}");
    // terminate_child cancels the pending restart and is not a restart.
    host.terminate_child("root", "picky").await.unwrap();
    assert_eq!(incarnations(&host, "root").await[1].1, ChildState::Stopped);
    within(host.shutdown()).await;
}

#[test]
fn host_handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Host>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_knows_of_an_exit_before_the_caller_hears_its_answer() {
    // Once: the worker answered `exit:normal`, then told its supervisor, so a
    // `which_children` sent after the answer could still list the child as running.
    let tree =
        TestTree::start(tree(Strategy::OneForOne, 1000, vec![])).await.expect("the tree starts");
    for i in 0..200 {
        let id = format!("t{i}");
        let mut spec = ChildSpec::plugin(&id, PluginStart::new(CHAOS));
        spec.restart = Restart::Temporary;
        tree.host().start_child("root", spec).await.expect("starts");
        let path = format!("root/{id}");
        assert!(tree.call(&path, "exit:normal").await.is_ok());
        let children = tree.host().which_children("root").await.unwrap();
        assert!(
            children.iter().all(|c| c.name != id),
            "{id} still listed after its exit: {children:?}"
        );
    }
    // The same for a crash: after `callee-crashed`, never the crashed incarnation running.
    let permanent = ChildSpec::plugin("p", PluginStart::new(CHAOS));
    tree.host().start_child("root", permanent).await.expect("starts");
    for crash in 1..=20 {
        let crashed = tree.call("root/p", "trap").await;
        assert!(matches!(crashed, Err(MessageError::CalleeCrashed(_))), "{crashed:?}");
        let children = tree.host().which_children("root").await.unwrap();
        let p = children.iter().find(|c| c.name == "p").expect("p is listed");
        assert!(
            p.incarnation > crash || p.state != ChildState::Running,
            "incarnation {crash} still running after its crash: {p:?}"
        );
    }
    tree.shutdown().await;
}
