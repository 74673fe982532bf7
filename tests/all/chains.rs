//! Call chains as operations: a call made while handling a call is a frame of the same
//! chain, with at most the time the chain has left; when a frame's caller is gone,
//! every frame below it is cancelled within milliseconds, its handler can tell, its
//! calls fail `cancelled`, and nothing is left waiting.

use std::time::Duration;
use warden::events::{Event, EventRecord};
use warden::messaging::Targets;
use warden::services::CancelReason;
use warden::supervisor::{ChildSpec, PluginStart, Shutdown, Strategy, SupervisorSpec};
use warden::testing::{TestTree, call_cancelled, exited};
use warden::{MailboxConfig, MessageError, MessageStats};
use warden_tests::CHAOS;

/// A chaos child that may message anyone.
fn chaos(id: &str) -> ChildSpec {
    let mailbox = MailboxConfig { targets: Targets::any(), ..MailboxConfig::default() };
    ChildSpec::plugin(id, PluginStart::new(CHAOS).mailbox(mailbox))
}

/// What `patient:MS` left in `path`'s state.
fn patient(tree: &TestTree, path: &str) -> String {
    let stored = tree.host().state().get(path, "patient").expect("the state store answers");
    String::from_utf8(stored.expect("the patient handler stored what happened")).unwrap()
}

fn cancelled(record: &EventRecord) -> (u64, Option<String>, CancelReason) {
    match &record.event {
        Event::CallCancelled { chain, caller, reason, .. } => {
            (*chain, caller.clone(), reason.clone())
        }
        other => panic!("expected call_cancelled, got {other:?}"),
    }
}

/// How long after `earlier` `later` was published.
fn after(later: &EventRecord, earlier: &EventRecord) -> Duration {
    Duration::from_micros(later.ts_us.saturating_sub(earlier.ts_us))
}

/// Waits until every message is settled; the account then.
async fn settled(tree: &TestTree) -> MessageStats {
    tree.within(tree.host().messages_settled()).await;
    tree.host().message_stats()
}

#[tokio::test]
async fn a_deadline_shrinks_down_a_chain_of_three_and_its_passing_cancels_every_frame() {
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![chaos("a"), chaos("b"), chaos("c")]);
    let mut tree = TestTree::start(spec).await.unwrap();
    // a and b call with chaos' own 5 s timeout; the application gives the chain 300 ms.
    let started = tokio::time::Instant::now();
    let chain = "call:root/b:call:root/c:patient:5000".as_bytes().to_vec();
    let answer = tree.host().call("root/a", chain, Duration::from_millis(300)).await;
    assert_eq!(answer, Err(MessageError::Timeout), "the application's own deadline");
    let waited = started.elapsed();
    let deadline = CancelReason::Deadline { call_to: "root/a".into() };
    let a = tree.expect(call_cancelled("root/a")).await;
    let b = tree.expect(call_cancelled("root/b")).await;
    let c = tree.expect(call_cancelled("root/c")).await;
    let chain = cancelled(&a).0;
    assert_eq!(cancelled(&a), (chain, None, deadline.clone()));
    assert_eq!(cancelled(&b), (chain, Some("root/a".into()), deadline.clone()));
    assert_eq!(cancelled(&c), (chain, Some("root/b".into()), deadline.clone()));
    assert!(after(&c, &a) < Duration::from_millis(50), "top down at once: {:?}", after(&c, &a));
    // c's handler saw the flag, stopped early (not after its 5 s), and its next call
    // failed `cancelled`, naming whose deadline it was.
    let stats = settled(&tree).await;
    let said = patient(&tree, "root/c");
    let ms: u64 = said
        .strip_prefix("stopped after ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("c did not stop early: {said}"));
    assert!(ms < waited.as_millis() as u64 + 100, "c stopped after {ms} ms: {said}");
    assert!(
        said.ends_with("a call then failed: cancelled: the deadline of the call to root/a passed"),
        "{said}"
    );
    // Three calls cancelled and their replies discarded; c's call refused at once.
    assert_eq!(
        (stats.sent, stats.rejected, stats.handled, stats.failed, stats.cancelled, stats.pending),
        (4, 1, 0, 3, 3, 0),
        "{stats:?}"
    );
    assert_eq!(stats.sent, stats.rejected + stats.handled + stats.failed + stats.dead_letters);
    // Nothing is left waiting: had b's wait on c stayed in the wait-for graph, c calling
    // b would now be refused as a deadlock.
    let back =
        tree.host().call("root/c", b"call:root/b:echo:free".to_vec(), Duration::from_secs(5));
    assert_eq!(back.await.unwrap(), b"free");
    tree.shutdown().await;
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_chain_cancels_the_frames_below_within_milliseconds() {
    // b waits on c when its sibling x crashes and one_for_all kills it (brutal_kill:
    // at once, mid-call).
    let b = chaos("b").shutdown(Shutdown::BrutalKill);
    let sub = SupervisorSpec::new(Strategy::OneForAll, vec![b, chaos("x")])
        .intensity(5, Duration::from_secs(5));
    let spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![chaos("a"), chaos("c"), ChildSpec::supervisor("sub", sub)],
    );
    let mut tree = TestTree::start(spec).await.unwrap();
    let host = tree.host().clone();
    let chain = "call:root/sub/b:call:root/c:patient:5000".as_bytes().to_vec();
    let call =
        tokio::spawn(async move { host.call("root/a", chain, Duration::from_secs(10)).await });
    // x works 400 ms (the chain reaches c meanwhile), then crashes.
    tree.send("root/sub/x", "busy:400").unwrap();
    tree.send("root/sub/x", "panic").unwrap();
    let crash = tree.expect(exited("root/sub/x")).await;
    let c = tree.expect(call_cancelled("root/c")).await;
    let (_, caller, reason) = cancelled(&c);
    assert_eq!(caller.as_deref(), Some("root/sub/b"));
    assert_eq!(reason, CancelReason::CallerGone { caller: Some("root/sub/b".into()) });
    assert!(after(&c, &crash) < Duration::from_millis(50), "{:?}", after(&c, &crash));
    // a heard of b's end at once, as before: its answer says so.
    let answer = tree.within(call).await.unwrap();
    match answer {
        Err(MessageError::Application(text)) => {
            assert!(text.starts_with("callee crashed: killed"), "{text}");
        }
        other => panic!("expected a's answer about b's end, got {other:?}"),
    }
    let stats = settled(&tree).await;
    let said = patient(&tree, "root/c");
    assert!(said.starts_with("stopped after "), "{said}");
    assert!(
        said.ends_with("a call then failed: cancelled: the caller root/sub/b is gone"),
        "{said}"
    );
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.cancelled, 1, "b → c: handled for nobody, its reply discarded: {stats:?}");
    assert_eq!(stats.sent, stats.rejected + stats.handled + stats.failed + stats.dead_letters);
    tree.shutdown().await;
}

#[tokio::test]
async fn an_application_that_drops_its_call_cancels_the_chain_below_it() {
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![chaos("a"), chaos("c")]);
    let mut tree = TestTree::start(spec).await.unwrap();
    let chain = "call:root/c:patient:5000".as_bytes().to_vec();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        tree.host().call("root/a", chain, Duration::from_secs(10)),
    )
    .await;
    assert!(dropped.is_err(), "the application gave up on its own clock");
    let a = tree.expect(call_cancelled("root/a")).await;
    assert_eq!(cancelled(&a).2, CancelReason::CallerGone { caller: None });
    let c = tree.expect(call_cancelled("root/c")).await;
    assert_eq!(
        cancelled(&c).2,
        CancelReason::CallerGone { caller: None },
        "the same reason, below"
    );
    let stats = settled(&tree).await;
    assert!(patient(&tree, "root/c").starts_with("stopped after "));
    assert_eq!((stats.cancelled, stats.pending), (2, 0), "{stats:?}");
    // The children carry on: a new chain is not cancelled.
    let answer =
        tree.host().call("root/a", b"call:root/c:echo:fine".to_vec(), Duration::from_secs(5));
    assert_eq!(answer.await.unwrap(), b"fine");
    tree.shutdown().await;
}
