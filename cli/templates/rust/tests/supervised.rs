//! {{name}} under a real supervisor: it answers, crashes when asked, is restarted, and
//! keeps its count. Build the plugin first:
//!     cargo build --release --target wasm32-wasip2

use warden::ChildState;
use warden::testing::{TestTree, exited, started};

#[tokio::test]
async fn it_answers_crashes_restarts_and_keeps_its_count() {
    let manifest = include_str!("../warden.toml");
    let mut tree = TestTree::from_manifest(manifest, env!("CARGO_MANIFEST_DIR"))
        .await
        .expect("the tree starts (built the plugin? cargo build --release --target wasm32-wasip2)");
    assert_eq!(tree.call("root/{{name}}", "echo:hi").await.unwrap(), b"hi");
    assert_eq!(tree.call("root/{{name}}", "incr").await.unwrap(), b"1");
    assert_eq!(tree.call("root/{{name}}", "incr").await.unwrap(), b"2");

    tree.call("root/{{name}}", "crash").await.expect_err("it crashes");
    tree.expect(exited("root/{{name}}")).await;
    tree.expect(started("root/{{name}}", 2)).await;
    assert_eq!(tree.call("root/{{name}}", "get").await.unwrap(), b"2", "the count survived");

    tree.assert_children("root", &[("{{name}}", ChildState::Running, 2)]).await;
    tree.shutdown().await;
}
