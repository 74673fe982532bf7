//! Durable per-child state as plugins use it in a supervised tree, on the disk store:
//! continuity across crashes and host restarts, quotas and bad input answered with
//! WIT errors, atomic batches, and state that goes (or stays) with a dropped spec.

use std::sync::Arc;
use warden::runtime::Host;
use warden::state::{DiskStore, StateStore};
use warden::supervisor::ChildState::Running;
use warden::testing::{TestTree, exited, started};
use warden_tests::{CHAOS, COUNTER, engine};

/// A disk store in a temporary directory (kept as long as the directory).
fn disk_store() -> (tempfile::TempDir, Arc<DiskStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DiskStore::open(dir.path()).unwrap());
    (dir, store)
}

/// A host on `store` in the tests' shared engine.
fn host(store: &Arc<DiskStore>) -> Host {
    let store: Arc<dyn StateStore> = Arc::clone(store) as _;
    Host::builder().shared_engine(engine().clone()).state(store).build().unwrap()
}

async fn tree(store: &Arc<DiskStore>, manifest: &str) -> TestTree {
    let text = manifest.replace("CHAOS", CHAOS).replace("COUNTER", COUNTER);
    TestTree::from_manifest_in(host(store), &text, "/").await.expect("the tree starts")
}

fn text(reply: Vec<u8>) -> String {
    String::from_utf8(reply).expect("a text reply")
}

#[tokio::test]
async fn the_counter_continues_after_a_crash_and_after_a_host_restart() {
    let (_dir, store) = disk_store();
    let manifest = r#"
        [root]
        strategy = "one_for_one"
        [[root.children]]
        name = "counter"
        plugin = "COUNTER"
    "#;
    let mut t = tree(&store, manifest).await;
    for n in 1..=5 {
        assert_eq!(text(t.call("root/counter", "incr").await.unwrap()), n.to_string());
    }
    let crash = t.call("root/counter", "crash").await;
    assert!(crash.is_err(), "{crash:?}");
    t.expect(started("root/counter", 2)).await;
    assert_eq!(text(t.call("root/counter", "incr").await.unwrap()), "6");
    t.shutdown().await;

    // A new host on the same store: the first incarnation starts where the last ended.
    let t = tree(&store, manifest).await;
    assert_eq!(text(t.call("root/counter", "get").await.unwrap()), "6");
    assert_eq!(text(t.call("root/counter", "incr").await.unwrap()), "7");
    t.shutdown().await;
    assert_eq!(store.get("root/counter", "count").unwrap().as_deref(), Some(&b"7"[..]));
}

#[tokio::test]
async fn a_child_past_its_quota_gets_the_error_and_keeps_running_beside_others() {
    let (_dir, store) = disk_store();
    let t = tree(
        &store,
        r#"
        [root]
        strategy = "one_for_one"
        [[root.children]]
        name = "small"
        plugin = "CHAOS"
        state = { max_keys = 3, max_bytes = "1KiB", max_value = "200B" }
        [[root.children]]
        name = "big"
        plugin = "CHAOS"
    "#,
    )
    .await;
    let keys = text(t.call("root/small", "state:fill:10:100").await.unwrap());
    assert!(keys.starts_with("stored 3: state quota exceeded: "), "{keys}");
    assert!(keys.contains("4 keys, the limit is 3"), "{keys}");
    // Within its key count, its bytes: 3 keys of 300 bytes would be 900 + keys.
    let value = t.call("root/small", format!("state:set:v:{}", "x".repeat(201))).await;
    let value = value.unwrap_err().to_string();
    assert_eq!(value, "value too large: the limit is 200 bytes");
    // Still running, first incarnation, its stored state intact.
    assert_eq!(text(t.call("root/small", "echo:alive").await.unwrap()), "alive");
    assert_eq!(text(t.call("root/small", "state:keys:").await.unwrap()), "fill0,fill1,fill2");
    // The other child is not limited by its neighbour's quota.
    assert_eq!(text(t.call("root/big", "state:fill:10:100").await.unwrap()), "stored 10");
    t.assert_children("root", &[("small", Running, 1), ("big", Running, 1)]).await;
    assert!(t.seen().iter().all(|r| !exited("root/small").matches(&r.event)));
}

#[tokio::test]
async fn bad_keys_are_refused_and_batches_are_all_or_nothing() {
    let (_dir, store) = disk_store();
    let t = tree(
        &store,
        r#"
        [root]
        strategy = "one_for_one"
        [[root.children]]
        name = "c"
        plugin = "CHAOS"
        state = { max_keys = 2 }
    "#,
    )
    .await;
    let empty = t.call("root/c", "state:set::value").await.unwrap_err().to_string();
    assert_eq!(empty, "bad key: keys are 1 to 1024 bytes");
    let long = format!("state:set:{}:value", "k".repeat(64 * 1024));
    let long = t.call("root/c", long).await.unwrap_err().to_string();
    assert_eq!(long, "bad key: keys are 1 to 1024 bytes");

    assert_eq!(text(t.call("root/c", "state:batch:a=1,b=2,-a").await.unwrap()), "ok");
    assert_eq!(text(t.call("root/c", "state:keys:").await.unwrap()), "b");
    // Three keys would be one too many: none of the batch is applied.
    let refused = t.call("root/c", "state:batch:-b,c=3,d=4,e=5").await.unwrap_err().to_string();
    assert!(refused.starts_with("state quota exceeded: "), "{refused}");
    assert_eq!(text(t.call("root/c", "state:keys:").await.unwrap()), "b");
    assert_eq!(text(t.call("root/c", "state:del:b").await.unwrap()), "true");
    assert_eq!(text(t.call("root/c", "state:del:b").await.unwrap()), "false");
    t.assert_children("root", &[("c", Running, 1)]).await;
}

#[tokio::test]
async fn state_goes_with_a_dropped_spec_unless_kept_and_survives_escalation() {
    let (_dir, store) = disk_store();
    let mut t = tree(
        &store,
        r#"
        [root]
        strategy = "one_for_one"
        intensity = 10
        [[root.children]]
        name = "services"
        supervisor = { strategy = "one_for_all", intensity = 0, children = [
            { name = "permanent", plugin = "CHAOS" },
            { name = "job", plugin = "CHAOS", restart = "temporary" },
            { name = "kept", plugin = "CHAOS", restart = "temporary", state = { keep = true } },
        ] }
    "#,
    )
    .await;
    for child in ["permanent", "job", "kept"] {
        let path = format!("root/services/{child}");
        assert_eq!(text(t.call(&path, "state:set:k:v").await.unwrap()), "ok");
    }
    // A temporary child that ends is dropped; with it, its state (unless kept).
    t.call("root/services/job", "exit:normal").await.unwrap();
    t.expect(exited("root/services/job")).await;
    t.call("root/services/kept", "exit:normal").await.unwrap();
    t.expect(exited("root/services/kept")).await;
    t.assert_children("root/services", &[("permanent", Running, 1)]).await;
    assert_eq!(store.get("root/services/job", "k").unwrap(), None);
    assert_eq!(store.get("root/services/kept", "k").unwrap().as_deref(), Some(&b"v"[..]));

    // `services` gives up (intensity 0) and root restarts it: its children's specs are
    // new, but a restart is not a removal.
    let _ = t.call("root/services/permanent", "panic").await;
    t.expect(started("root/services", 2)).await;
    assert_eq!(text(t.call("root/services/permanent", "state:get:k").await.unwrap()), "v");

    // `delete_child` removes the state of the child and of its subtree.
    t.host().terminate_child("root", "services").await.unwrap();
    t.host().delete_child("root", "services").await.unwrap();
    assert_eq!(store.get("root/services/permanent", "k").unwrap(), None);
    assert_eq!(store.get("root/services/kept", "k").unwrap(), None);
    assert!(store.scopes().unwrap().is_empty());
}

/// 20 counters in an engine with room for 4 live instances: hibernating after every
/// message, they all run, keep counting through their state, and restart as usual.
#[tokio::test]
async fn hibernating_children_outnumber_the_instances_and_keep_their_state() {
    use std::time::Duration;
    use warden::sandbox::{Engine, EngineConfig};
    use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
    let small = || {
        Engine::with_config(EngineConfig { max_instances: 4, ..Default::default() })
            .expect("a small engine")
    };
    let counters = |hibernate_after: Option<Duration>| {
        let children = (0..20)
            .map(|i| {
                let mut start = PluginStart::new(COUNTER);
                start.hibernate_after = hibernate_after;
                ChildSpec::plugin(format!("c{i}"), start)
            })
            .collect();
        SupervisorSpec::new(Strategy::OneForOne, children)
    };
    // Resident, the fifth does not fit.
    let host = Host::builder().shared_engine(small()).build().unwrap();
    let refused = TestTree::start_in(host, counters(None)).await.unwrap_err().to_string();
    assert!(refused.contains("child c4") && refused.contains("limit is 4"), "{refused}");

    let host = Host::builder().shared_engine(small()).build().unwrap();
    let mut t = TestTree::start_in(host, counters(Some(Duration::ZERO))).await.unwrap();
    for round in 1..=2 {
        for i in 0..20 {
            let reply = t.call(&format!("root/c{i}"), "incr").await.unwrap();
            assert_eq!(text(reply), round.to_string(), "c{i}, round {round}");
        }
    }
    let all: Vec<(String, _, u64)> = t.children("root").await;
    assert!(all.iter().all(|(_, state, n)| *state == Running && *n == 1), "{all:?}");
    // A crash in an activation ends the incarnation; the next one goes on counting.
    assert!(t.call("root/c7", "crash").await.is_err());
    t.expect(started("root/c7", 2)).await;
    assert_eq!(text(t.call("root/c7", "incr").await.unwrap()), "3");
}

/// A child that hibernates after a second idle keeps its instance until then, and
/// gives it up after (on tokio's paused clock: the second passes without waiting).
#[tokio::test(start_paused = true)]
async fn a_hibernating_child_gives_up_its_instance_once_idle() {
    use std::time::Duration;
    use warden::sandbox::{Engine, EngineConfig};
    use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
    let one = Engine::with_config(EngineConfig { max_instances: 1, ..Default::default() })
        .expect("an engine with one instance");
    let counter = |id: &str, after: Duration| {
        let mut start = PluginStart::new(COUNTER);
        start.hibernate_after = Some(after);
        ChildSpec::plugin(id, start)
    };
    let spec = SupervisorSpec::new(Strategy::OneForOne, vec![counter("a", Duration::from_secs(1))]);
    let host = Host::builder().shared_engine(one).build().unwrap();
    let t = TestTree::start_in(host, spec).await.unwrap();
    assert_eq!(text(t.call("root/a", "incr").await.unwrap()), "1");
    // `a` is still resident: there is no instance for `b`.
    let refused = t.host().start_child("root", counter("b", Duration::ZERO)).await;
    assert!(refused.unwrap_err().to_string().contains("limit is 1"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Idle for a second, `a` hibernated: `b` starts (and hibernates at once), and `a`
    // wakes for its next message.
    t.host().start_child("root", counter("b", Duration::ZERO)).await.unwrap();
    assert_eq!(text(t.call("root/a", "incr").await.unwrap()), "2");
    t.assert_children("root", &[("a", Running, 1), ("b", Running, 1)]).await;
}
