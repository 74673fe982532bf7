//! The README's first embedding program: a tree of two plugins, a call, a crash, a restart.

use std::time::Duration;
use warden::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = Host::builder().build()?; // needs a tokio runtime with timers: #[tokio::main]
    let mut events = host.subscribe(); // typed events, from now until the tree stops

    // `cargo build -p warden-tests` builds the repository's plugins into target/plugins/.
    let plugins = "target/plugins/wasm32-wasip2/release";
    let echo = ChildSpec::plugin("echo", format!("{plugins}/echo.wasm"));
    let chaos = ChildSpec::plugin(
        "chaos",
        PluginStart::new(format!("{plugins}/chaos.wasm"))
            .config(r#"{"call_timeout_ms":1000}"#) // what its `init` gets
            .max_memory(16 << 20)
            .call_deadline(Some(Duration::from_millis(500))),
    )
    .restart(Restart::Transient);
    // OTP's default is 1 restart in 5 s: a second crash within 5 s stops the tree.
    let tree = SupervisorSpec::new(Strategy::OneForOne, vec![echo, chaos])
        .intensity(10, Duration::from_secs(60));
    host.start(tree).await?; // HostError::Load { path, error } if a plugin cannot load

    let reply = host.call("root/echo", b"hello".to_vec(), Duration::from_secs(1)).await?;
    println!("echo answered {}", String::from_utf8_lossy(&reply));

    // A crash is the child's alone: the call fails at once with its exit reason...
    match host.call("root/chaos", b"panic".to_vec(), Duration::from_secs(1)).await {
        Err(MessageError::CalleeCrashed(reason)) => println!("chaos crashed: {reason}"),
        other => println!("unexpected: {other:?}"),
    }
    // ...and its supervisor restarts it.
    while let Some(received) = events.next().await {
        let Received::Event(record) = received else { continue }; // Missed(n): fell behind
        match record.event {
            Event::ChildExited { path, reason, .. } => println!("{path} exited: {reason}"),
            Event::ChildStarted { path, incarnation, .. } if incarnation > 1 => {
                println!("{path} restarted (incarnation {incarnation})");
                break;
            }
            _ => {}
        }
    }
    let children = host.which_children("root").await?; // OTP's admin calls, OTP's answers
    for child in children {
        println!("{} {:?} #{}", child.name, child.state, child.incarnation);
    }
    host.shutdown().await; // children newest first, each waited for
    Ok(())
}
