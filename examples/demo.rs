//! The quick-start demo: a small supervision tree of real plugins. Faults are injected
//! into chaos children; every event the host publishes is printed as the JSON line
//! the CLI contract defines: crashes, restarts, a nested supervisor giving up and the
//! root restarting it (escalation), and finally an orderly shutdown.
//!
//! ```text
//! cargo run -p warden-tests --example demo
//! ```
//!
//! ```text
//! root (one_for_one, 10 restarts in 5 s)
//! ├── echo       echo plugin
//! ├── counter    keeps its count in state across restarts
//! ├── chaos      takes every fault
//! └── pair       one_for_all, 1 restart in 5 s
//!     ├── left   chaos
//!     └── right  chaos
//! ```

use std::time::Duration;
use warden::runtime::Host;
use warden::sandbox::ChildLimits;
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};

fn plugin(id: &str, file: &str) -> ChildSpec {
    ChildSpec::plugin(
        id,
        PluginStart {
            limits: ChildLimits {
                max_memory_bytes: 8 << 20,
                call_deadline: Some(Duration::from_millis(100)),
                ..ChildLimits::default()
            },
            ..PluginStart::new(file)
        },
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let host = Host::builder().build()?;
    let mut events = host.subscribe();
    let printer = tokio::spawn(async move {
        while let Some(warden::Received::Event(record)) = events.next().await {
            println!("{}", serde_json::to_string(&record).expect("events serialise"));
        }
    });

    let pair = SupervisorSpec::new(
        Strategy::OneForAll,
        vec![plugin("left", warden_tests::CHAOS), plugin("right", warden_tests::CHAOS)],
    );
    let mut root = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![
            plugin("echo", warden_tests::ECHO),
            plugin("counter", warden_tests::COUNTER),
            plugin("chaos", warden_tests::CHAOS),
            ChildSpec::supervisor("pair", pair),
        ],
    );
    root.intensity = 10;
    host.start(root).await?;

    let call = |path: &'static str, msg: &'static str| {
        let host = host.clone();
        async move {
            let reply = host.call(path, msg.as_bytes().to_vec(), Duration::from_secs(2)).await;
            let shown = match reply {
                Ok(bytes) => format!("replied {:?}", String::from_utf8_lossy(&bytes)),
                Err(e) => format!("failed: {e}"),
            };
            eprintln!("# call {path} {msg:?} -> {shown}");
        }
    };

    // A crash of one child restarts only it (one_for_one); the others carry on.
    for fault in ["panic", "oom", "loop"] {
        call("root/chaos", fault).await;
        call("root/echo", "echo still answers").await;
    }
    // The counter's state survives its own crash.
    call("root/counter", "incr").await;
    call("root/counter", "incr").await;
    call("root/counter", "crash").await;
    call("root/counter", "get").await;
    // Two crashes in the pair within 5 s exceed its intensity: it gives up, and root
    // restarts it (escalation).
    call("root/pair/left", "trap").await;
    call("root/pair/right", "div0").await;
    call("root/pair/left", "echo:the pair is back").await;

    eprintln!("# shutting down");
    let reason = host.shutdown().await;
    eprintln!("# the tree stopped: {reason}");
    drop(host);
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    Ok(())
}
