//! A plugin written in Python (componentize-py against the `warden:plugin` world),
//! supervised like the Rust fixtures: it answers calls, reaches its siblings by send
//! and call, keeps its count in durable state, crashes with a typed reason that
//! carries the Python exception, restarts, and beats its heartbeat while busy.

use warden::exit::{ExitReason, TrapKind};
use warden::sandbox::MessageError;
use warden::supervisor::ChildState::Running;
use warden::testing::{TestTree, exited_with, started};
use warden_tests::{COUNTER, ECHO, engine, python_counter};

async fn tree(extra: &str) -> TestTree {
    let manifest = format!(
        r#"
        [root]
        strategy = "one_for_one"
        intensity = 5
        period = "5s"

        [[root.children]]
        name = "py"
        plugin = "{py}"
        grants = {{ targets = ["root/echo", "root/counter"] }}
        {extra}

        [[root.children]]
        name = "echo"
        plugin = "{ECHO}"

        [[root.children]]
        name = "counter"
        plugin = "{COUNTER}"
        "#,
        py = python_counter().display(),
    );
    let host = warden::runtime::Host::builder().shared_engine(engine().clone()).build().unwrap();
    TestTree::from_manifest_in(host, &manifest, "/").await.expect("the tree starts")
}

fn text(reply: Result<Vec<u8>, MessageError>) -> String {
    String::from_utf8(reply.expect("an answer")).unwrap()
}

#[tokio::test]
async fn a_python_plugin_answers_crashes_with_its_exception_restarts_and_keeps_its_state() {
    let mut tree = tree("").await;
    assert_eq!(text(tree.call("root/py", "echo:hi").await), "hi");
    assert_eq!(text(tree.call("root/py", "incr").await), "1");
    assert_eq!(text(tree.call("root/py", "incr").await), "2");
    assert_eq!(text(tree.call("root/py", "whoami").await), "root/py incarnation 1");

    // Its siblings, by call and by send (a send lands before a later call's message).
    assert_eq!(text(tree.call("root/py", "call:root/echo:yo").await), "yo");
    assert_eq!(text(tree.call("root/py", "send:root/counter:incr").await), "sent");
    assert_eq!(text(tree.call("root/counter", "get").await), "1");
    // The allow-list holds for Python as for Rust: a refusal is the typed error.
    let refused = tree.call("root/py", "call:root/py2:x").await.unwrap_err();
    assert_eq!(
        refused,
        MessageError::Application("not_allowed: root/py2".into()),
        "the host's refusal reaches the Python code as a typed error it can name"
    );

    // A Python exception is a trap whose message is the exception, not a bare trap.
    let crashed = tree.call("root/py", "crash").await.unwrap_err();
    let expected = "python: RuntimeError: asked to crash at 2";
    assert!(
        matches!(&crashed, MessageError::CalleeCrashed(ExitReason::Trap { trap: TrapKind::Unreachable, message, .. }) if message == expected),
        "{crashed:?}"
    );
    tree.expect(exited_with("root/py", move |r| {
        matches!(r, ExitReason::Trap { trap: TrapKind::Unreachable, message, .. } if message == expected)
    }))
    .await;
    tree.expect(started("root/py", 2)).await;
    assert_eq!(text(tree.call("root/py", "get").await), "2", "the count survived the crash");

    // An exit it asks for is the typed reason it names.
    assert_eq!(text(tree.call("root/py", "exit:error:bye").await), "exiting");
    tree.expect(exited_with("root/py", |r| *r == ExitReason::Error { message: "bye".into() }))
        .await;
    tree.expect(started("root/py", 3)).await;

    // An application error is an answer, not a crash; so is a message it cannot read.
    let unknown = tree.call("root/py", "nope").await.unwrap_err();
    assert_eq!(unknown, MessageError::Application("unknown message 'nope'".into()));
    let binary = tree.call("root/py", [0xff, 0xfe]).await.unwrap_err();
    assert_eq!(binary, MessageError::Application("messages are UTF-8 text".into()));
    let busy = tree.call("root/py", "busy:soon").await.unwrap_err();
    assert_eq!(
        busy,
        MessageError::Application("busy:MS needs a number of milliseconds, not 'soon'".into())
    );
    tree.assert_children(
        "root",
        &[("py", Running, 3), ("echo", Running, 1), ("counter", Running, 1)],
    )
    .await;
    tree.shutdown().await;
}

#[tokio::test]
async fn a_busy_python_plugin_beats_its_heartbeat_and_is_not_killed() {
    // Without heartbeats, 600 ms in one export is three timeouts: the watchdog would kill it.
    let tree = tree(r#"heartbeat = { timeout = "200ms" }"#).await;
    let reply = text(tree.call("root/py", "busy:600").await);
    assert!(reply.starts_with("beat "), "{reply}");
    assert_eq!(text(tree.call("root/py", "whoami").await), "root/py incarnation 1");
    tree.assert_children(
        "root",
        &[("py", Running, 1), ("echo", Running, 1), ("counter", Running, 1)],
    )
    .await;
    tree.shutdown().await;
}
