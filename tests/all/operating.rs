//! What an operator sees of a running tree through the embedding API: `Host::inspect`.

use std::time::Duration;
use warden::prelude::*;
use warden::sandbox::HeartbeatPolicy;
use warden_tests::{CHAOS, ECHO, engine};

#[tokio::test]
async fn inspect_shows_each_supervisor_s_intensity_and_each_child_s_history_and_messages() {
    let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
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
    assert_eq!((mailbox.queued, mailbox.capacity), (0, 1024));
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

    assert_eq!(report.instances, 3, "a, x and y run");
    assert!(report.max_instances >= 3);
    assert_eq!((report.messages.handled, report.messages.failed), (3, 1));
    host.shutdown().await;
    assert!(host.inspect().await.tree.is_none(), "no tree, no report");
}
