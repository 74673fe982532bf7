//! A cluster through the embedding API: two hosts of one process as two nodes on a
//! real NATS server (the CLI's tests run each node as a process of its own).

use std::time::Duration;
use warden::cluster::{ClusterConfig, ClusterError};
use warden::prelude::*;
use warden_tests::nats::Nats;
use warden_tests::{CHAOS, ECHO, engine};

const DEADLINE: Duration = Duration::from_secs(10);

fn node(name: &str, nats: &Nats) -> Host {
    let cluster = ClusterConfig::new(name, &nats.url).ttl(Duration::from_secs(2));
    Host::builder().shared_engine(engine().clone()).cluster(cluster).build().unwrap()
}

/// The next event that `pred` accepts, failing the test past the deadline.
async fn expect(events: &mut warden::Events, pred: impl Fn(&Event) -> bool) -> Event {
    let wait = async {
        loop {
            let received = events.next().await.expect("the stream goes on");
            if let Some(record) = received.event()
                && pred(&record.event)
            {
                return record.event;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.expect("the event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_places_a_child_on_another_node_and_calls_it() {
    let nats = Nats::start();
    let b = node("b", &nats);
    b.join().await.expect("b joins");
    let a = node("a", &nats);
    let mut events = a.subscribe();
    let echo = ChildSpec::plugin("echo", ECHO).node("b");
    a.start(SupervisorSpec::new(Strategy::OneForOne, vec![echo])).await.expect("the tree starts");
    let started = expect(&mut events, |e| matches!(e, Event::ChildStarted { .. })).await;
    assert_eq!(
        started,
        Event::ChildStarted { path: "root/echo".into(), incarnation: 1, node: Some("b".into()) }
    );
    let answer = a.call("root/echo", b"hello".to_vec(), DEADLINE).await;
    assert_eq!(answer, Ok(b"hello".to_vec()));
    // A send from a thread outside the runtime reaches it too (and does not panic).
    let sender = a.clone();
    let sent = std::thread::spawn(move || sender.send("root/echo", b"from a thread".to_vec()));
    assert_eq!(sent.join().expect("the send does not panic"), Ok(()));
    let children = a.which_children("root").await.unwrap();
    assert_eq!(children[0].node.as_deref(), Some("b"));

    // A second node named b is refused, by name, as often as it tries: a failed join
    // leaves it out of the cluster (it serves nothing under b's name).
    let again = node("b", &nats);
    for _ in 0..2 {
        match again.join().await {
            Err(HostError::Cluster(ClusterError::NameTaken { node })) => assert_eq!(node, "b"),
            other => panic!("expected the name to be taken, got {other:?}"),
        }
    }
    assert_eq!(a.call("root/echo", b"still b".to_vec(), DEADLINE).await, Ok(b"still b".to_vec()));

    a.shutdown().await;
    a.leave().await;
    b.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_child_stopped_on_another_node_is_answered_noproc_at_once() {
    // As on one node (OTP's gen_server:call to a process that is not there exits
    // `noproc`): after terminate_child, a call to a child placed on another node, whose
    // mailbox stays on that node, is refused at once instead of waiting out its timeout.
    let nats = Nats::start();
    let b = node("b", &nats);
    b.join().await.expect("b joins");
    let a = node("a", &nats);
    let mut events = a.subscribe();
    let echo = ChildSpec::plugin("echo", ECHO).node("b");
    let transient = ChildSpec::plugin("t", CHAOS).node("b").restart(Restart::Transient);
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![echo, transient]);
    a.start(spec).await.expect("the tree starts");
    let started = |path: &'static str| move |e: &Event| matches!(e, Event::ChildStarted { path: p, .. } if p == path);
    expect(&mut events, started("root/echo")).await;
    expect(&mut events, started("root/t")).await;
    assert_eq!(a.call("root/echo", b"hello".to_vec(), DEADLINE).await, Ok(b"hello".to_vec()));

    // A transient child that ended normally is not restarted: the same.
    a.send("root/t", b"exit:normal".to_vec()).expect("sent");
    expect(&mut events, |e| matches!(e, Event::ChildExited { path, .. } if path == "root/t")).await;
    let long = Duration::from_secs(600);
    let refused = tokio::time::timeout(DEADLINE, a.call("root/t", b"echo:x".to_vec(), long))
        .await
        .expect("answered, not left to wait out its timeout");
    assert_eq!(refused, Err(MessageError::NotRunning("root/t".into())));

    a.terminate_child("root", "echo").await.expect("terminated");
    for caller in [&a, &b] {
        let refused = tokio::time::timeout(DEADLINE, caller.call("root/echo", b"x".to_vec(), long))
            .await
            .expect("answered, not left to wait out its timeout");
        assert_eq!(refused, Err(MessageError::NotRunning("root/echo".into())));
    }

    // Started again (on b again), it answers calls again.
    a.restart_child("root", "echo").await.expect("restarted");
    assert_eq!(a.call("root/echo", b"back".to_vec(), DEADLINE).await, Ok(b"back".to_vec()));

    a.shutdown().await;
    a.leave().await;
    b.leave().await;
}

#[tokio::test]
async fn a_child_placed_on_a_node_by_a_host_in_no_cluster_is_refused_before_anything_starts() {
    let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
    let placed = ChildSpec::plugin("echo", ECHO).nodes(["b", "c"]);
    match host.start(SupervisorSpec::new(Strategy::OneForOne, vec![placed])).await {
        Err(HostError::InvalidSpec(problems)) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "root/echo");
            assert_eq!(
                problems[0].problem,
                SpecProblem::NoCluster { nodes: vec!["b".into(), "c".into()] }
            );
        }
        other => panic!("expected the placement to be refused, got {other:?}"),
    }
    let sub = ChildSpec::supervisor("sub", SupervisorSpec::new(Strategy::OneForOne, vec![]));
    let refused = host.start(SupervisorSpec::new(Strategy::OneForOne, vec![sub.node("b")])).await;
    assert!(
        matches!(&refused, Err(HostError::InvalidSpec(p)) if p.iter().any(|e| e.problem == SpecProblem::PlacedSupervisor)),
        "{refused:?}"
    );
}
