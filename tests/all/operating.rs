//! What an operator sees of a running tree through the embedding API: `Host::inspect`.

use std::time::Duration;
use warden::prelude::*;
use warden::sandbox::HeartbeatPolicy;
use warden::supervisor::UpgradeStep;
use warden_tests::{CHAOS, ECHO, engine};

#[tokio::test]
async fn inspect_shows_each_supervisor_s_intensity_and_each_child_s_history_and_messages() {
    // An engine of its own: its instances are this tree's only.
    let engine = warden::sandbox::EngineConfig {
        max_instances: 8,
        max_memory_bytes: 64 << 20,
        ..Default::default()
    };
    let host = Host::builder().engine(engine).build().unwrap();
    let group = SupervisorSpec::new(
        Strategy::OneForAll,
        vec![ChildSpec::plugin("x", ECHO), ChildSpec::plugin("y", ECHO)],
    );
    let a = ChildSpec::plugin(
        "a",
        PluginStart::new(CHAOS).heartbeat(HeartbeatPolicy::Timeout(Duration::from_secs(5))),
    );
    let spec =
        SupervisorSpec::new(Strategy::OneForOne, vec![a, ChildSpec::supervisor("group", group)])
            .intensity(5, Duration::from_secs(60));
    host.start(spec).await.unwrap();

    let deadline = Duration::from_secs(10);
    host.call("root/a", b"echo:hi".to_vec(), deadline).await.unwrap();
    assert!(host.call("root/a", b"trap".to_vec(), deadline).await.is_err());
    host.call("root/group/y", b"hello".to_vec(), deadline).await.unwrap();
    // The restart is done once the new incarnation answers.
    host.call("root/a", b"echo:again".to_vec(), deadline).await.unwrap();

    let report = host.inspect().await;
    let root = report.tree.expect("a tree runs");
    assert_eq!(
        (root.path.as_str(), root.strategy, root.intensity),
        ("root", Strategy::OneForOne, 5)
    );
    assert_eq!((root.period_ms, root.restarts_in_period), (60_000, 1));

    let a = &root.children[0];
    assert_eq!((a.info.name.as_str(), a.info.incarnation, a.info.restarts), ("a", 2, 1));
    assert!(matches!(a.info.last_exit, Some(ExitReason::Trap { .. })), "{:?}", a.info.last_exit);
    let messages = a.messages.as_ref().expect("a plugin child's messages");
    assert_eq!((messages.handled, messages.failed), (2, 1), "across incarnations");
    assert_eq!(messages.handle_time.cumulative.last(), Some(&2));
    let mailbox = a.mailbox.expect("its mailbox");
    assert_eq!((mailbox.queued, mailbox.capacity, mailbox.queued_bytes), (0, 1024, 0));
    assert_eq!(mailbox.max_queued_bytes, warden::MailboxConfig::default().max_queued_bytes);
    let heartbeat = a.heartbeat.expect("its heartbeat policy is reported");
    assert_eq!((heartbeat.judged, heartbeat.patience_ms), (false, 5_000));

    let group = root.children[1].supervisor.as_ref().expect("the nested supervisor's report");
    assert_eq!(
        (group.path.as_str(), group.strategy, group.restarts_in_period),
        ("root/group", Strategy::OneForAll, 0)
    );
    let y = &group.children[1];
    assert_eq!(y.messages.as_ref().map(|m| m.handled), Some(1));
    assert!(y.heartbeat.is_none(), "no policy, no heartbeat report");

    assert_eq!((report.instances, report.max_instances), (3, 8), "a, x and y run");
    assert_eq!((report.messages.handled, report.messages.failed), (3, 1));
    host.shutdown().await;
    assert!(host.inspect().await.tree.is_none(), "no tree, no report");
}

/// The next event about `path` matching `pred`, within the deadline.
async fn event_about(events: &mut warden::Events, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let received =
            tokio::time::timeout_at(deadline, events.next()).await.expect("the event in time");
        if let Some(Received::Event(record)) = received
            && pred(&record.event)
        {
            return record.event;
        }
    }
}

#[tokio::test]
async fn an_upgrade_keeps_the_mailbox_and_state_and_a_failed_one_brings_the_old_version_back() {
    use warden::Upgrade;
    use warden_tests::COUNTER;
    let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::plugin("c", COUNTER), ChildSpec::plugin("other", ECHO)],
    );
    host.start(spec).await.unwrap();
    let deadline = Duration::from_secs(10);
    for _ in 0..3 {
        host.call("root/c", b"incr".to_vec(), deadline).await.unwrap();
    }
    let mut events = host.subscribe();

    // Version 2 (the chaos plugin) starts slowly: a call made while it starts waits in
    // the mailbox and is answered by it.
    let slow = Upgrade::new(CHAOS).config(r#"{"init_delay_ms":200}"#);
    let upgrading = tokio::spawn({
        let host = host.clone();
        async move { host.upgrade_child("root", "c", slow).await }
    });
    let exited = event_about(
        &mut events,
        |e| matches!(e, Event::ChildExited { path, .. } if path == "root/c"),
    )
    .await;
    assert!(
        matches!(exited, Event::ChildExited { incarnation: 1, reason: ExitReason::Shutdown, .. }),
        "{exited:?}"
    );
    let queued = host.call("root/c", b"echo:queued".to_vec(), deadline).await;
    assert_eq!(queued.unwrap(), b"queued", "handled by the new version");
    assert_eq!(upgrading.await.unwrap().expect("the upgrade succeeds"), UpgradeStep::Started);
    let upgraded = event_about(&mut events, |e| matches!(e, Event::ChildUpgraded { .. })).await;
    let Event::ChildUpgraded { path, incarnation, from, to } = upgraded else { unreachable!() };
    assert_eq!((path.as_str(), incarnation), ("root/c", 2));
    assert!(
        from.starts_with("counter.wasm@sha256:") && to.starts_with("chaos.wasm@sha256:"),
        "{from} -> {to}"
    );
    let asked = host.call("root/c", b"upgraded-from".to_vec(), deadline).await.unwrap();
    assert_eq!(String::from_utf8(asked).unwrap(), from, "init learnt what it replaced");
    let count = host.call("root/c", b"state:get:count".to_vec(), deadline).await.unwrap();
    assert_eq!(count, b"3", "the state carried over");

    // A version that fails to start: the old one (chaos, as it was) comes back.
    let failing = Upgrade::new(CHAOS).config(r#"{"fail_init":true}"#);
    let refused = host.upgrade_child("root", "c", failing).await;
    assert!(
        matches!(&refused, Err(HostError::UpgradeFailed { path, .. }) if path == "root/c"),
        "{refused:?}"
    );
    let failed = event_about(&mut events, |e| matches!(e, Event::UpgradeFailed { .. })).await;
    assert!(
        matches!(&failed, Event::UpgradeFailed { path, reason: ExitReason::StartFailed { .. }, .. } if path == "root/c"),
        "{failed:?}"
    );
    event_about(
        &mut events,
        |e| matches!(e, Event::ChildStarted { path, incarnation: 4, .. } if path == "root/c"),
    )
    .await;
    let back = host.call("root/c", b"state:get:count".to_vec(), deadline).await.unwrap();
    assert_eq!(back, b"3", "the old version runs again, with its state");
    let asked = host.call("root/c", b"upgraded-from".to_vec(), deadline).await.unwrap();
    assert_eq!(asked, b"none", "a revert is no upgrade");

    // A change of one limit keeps the others (the heartbeat policy here).
    let watched = ChildSpec::plugin(
        "w",
        PluginStart::new(CHAOS).heartbeat(HeartbeatPolicy::Timeout(Duration::from_secs(5))),
    );
    host.start_child("root", watched).await.unwrap();
    let shorter = Upgrade::new(CHAOS).change(|start| {
        start.limits.call_deadline = Some(Duration::from_millis(100));
    });
    host.upgrade_child("root", "w", shorter).await.unwrap();
    let hung = host.call("root/w", b"hang:400".to_vec(), deadline).await;
    let killed = ExitReason::Killed { cause: warden::KillCause::Deadline };
    assert_eq!(hung, Err(warden::sandbox::MessageError::CalleeCrashed(killed)));
    let report = host.inspect().await.tree.unwrap();
    let w = report.children.iter().find(|c| c.info.name == "w").unwrap();
    assert_eq!(w.heartbeat.map(|h| h.patience_ms), Some(5_000), "the heartbeat policy stays");

    // What cannot be upgraded is refused before the child is touched.
    let missing = host.upgrade_child("root", "c", Upgrade::new("/nonexistent.wasm")).await;
    assert!(matches!(missing, Err(HostError::Load { .. })), "{missing:?}");
    let nobody = host.upgrade_child("root", "nobody", Upgrade::new(CHAOS)).await;
    assert!(matches!(nobody, Err(HostError::NotFound { .. })), "{nobody:?}");
    let info = host.which_children("root").await.unwrap();
    assert_eq!((info[0].incarnation, info[1].incarnation), (4, 1), "the sibling was not touched");
    assert_eq!(info[2].incarnation, 3, "w: started, upgraded, restarted after its deadline");
    host.shutdown().await;
}

#[tokio::test]
async fn a_dynamic_supervisor_s_children_are_upgraded_one_at_a_time_stopping_at_the_first_failure()
{
    use warden::Upgrade;
    let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
    let spec = SupervisorSpec::new(Strategy::SimpleOneForOne, vec![ChildSpec::plugin("w", ECHO)]);
    host.start(spec).await.unwrap();
    for name in ["w1", "w2", "w3"] {
        host.start_dynamic("root", Some(name.into()), None).await.unwrap();
    }
    let upgraded = host.upgrade_children("root", Upgrade::new(CHAOS)).await.unwrap();
    let started = UpgradeStep::Started;
    assert_eq!(
        upgraded,
        [("root/w1".into(), started), ("root/w2".into(), started), ("root/w3".into(), started)]
    );
    let deadline = Duration::from_secs(10);
    let answer = host.call("root/w2", b"echo:v2".to_vec(), deadline).await.unwrap();
    assert_eq!(answer, b"v2", "chaos answers echo:TEXT with TEXT, echo would echo it all");
    // Children started from now on run the new version too.
    host.start_dynamic("root", Some("w4".into()), None).await.unwrap();
    assert_eq!(host.call("root/w4", b"echo:v2".to_vec(), deadline).await.unwrap(), b"v2");

    // A failing version: the first child fails, comes back, and the rest are untouched.
    let failing = Upgrade::new(CHAOS).config(r#"{"fail_init":true}"#);
    let refused = host.upgrade_children("root", failing).await;
    assert!(
        matches!(&refused, Err(HostError::UpgradeFailed { path, .. }) if path == "root/w1"),
        "{refused:?}"
    );
    let children = host.which_children("root").await.unwrap();
    let incarnations: Vec<u64> = children.iter().map(|c| c.incarnation).collect();
    assert_eq!(incarnations, [4, 2, 2, 1], "w1 tried and brought back; w2, w3, w4 untouched");
    assert!(children.iter().all(|c| c.state == warden::ChildState::Running));
    host.shutdown().await;
}
