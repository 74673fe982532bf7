//! The quick-start demo: three real plugins in sandboxes, faults injected into one of
//! them, each crash contained and followed by a restart, while the others carry on.
//!
//! ```text
//! cargo run -p warden-tests --example demo
//! ```
//!
//! The restart loop here is deliberately simple (restart at once, count); the
//! supervision tree with OTP's semantics replaces it.

use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::sandbox::{ChildLimits, Engine, Plugin, Sandbox, SandboxConfig};
use warden::state::{MemoryStore, StateStore};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let engine = Engine::new()?;
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let config = |path: &str| {
        let mut c = SandboxConfig::new(path);
        c.state = Arc::clone(&store);
        c.limits = ChildLimits {
            max_memory_bytes: 8 << 20,
            call_deadline: Some(Duration::from_millis(100)),
            ..ChildLimits::default()
        };
        c
    };
    let chaos = engine.load_file(warden_tests::CHAOS)?;
    let counter = engine.load_file(warden_tests::COUNTER)?;
    let echo = engine.load_file(warden_tests::ECHO)?;
    println!("loaded 3 plugins in {:?}", started.elapsed());

    let mut echo_child = Sandbox::start(&echo, config("root/echo"), 1).await?;
    let mut counter_child = Child::start(&counter, config("root/counter")).await;
    let mut chaos_child = Child::start(&chaos, config("root/chaos")).await;

    for fault in ["trap", "panic", "div0", "oob", "stack", "oom", "loop", "exit:error"] {
        counter_child.send("incr").await;
        chaos_child.send(fault).await;
        let reply = echo_child.handle(None, format!("echo survives {fault}").into(), true).await?;
        println!("  root/echo      replied {:?}", String::from_utf8_lossy(&reply.reply.unwrap()));
    }
    counter_child.send("crash").await;
    counter_child.send("get").await;
    println!("done in {:?}: the host never went down", started.elapsed());
    Ok(())
}

/// A child restarted at once whenever its incarnation ends.
struct Child {
    plugin: Plugin,
    config: SandboxConfig,
    sandbox: Sandbox,
    incarnation: u64,
}

impl Child {
    async fn start(plugin: &Plugin, config: SandboxConfig) -> Child {
        let sandbox = Sandbox::start(plugin, config.clone(), 1).await.expect("starts");
        println!("  {:<14} started (incarnation 1)", config.path);
        Child { plugin: plugin.clone(), config, sandbox, incarnation: 1 }
    }

    async fn send(&mut self, message: &str) {
        let path = &self.config.path;
        let exit = match self.sandbox.handle(None, message.into(), true).await {
            Ok(handled) => {
                let reply = match &handled.reply {
                    Ok(bytes) => format!("replied {:?}", String::from_utf8_lossy(bytes)),
                    Err(error) => format!("answered error {error:?}"),
                };
                println!("  {path:<14} {message:<11} -> {reply}");
                handled.exit
            }
            Err(reason) => Some(reason),
        };
        if let Some(reason) = exit {
            println!(
                "  {path:<14} {message:<11} -> exited: {}",
                serde_json::to_string(&reason).unwrap()
            );
            self.incarnation += 1;
            self.sandbox = Sandbox::start(&self.plugin, self.config.clone(), self.incarnation)
                .await
                .expect("restarts");
            println!("  {path:<14} restarted (incarnation {})", self.incarnation);
        }
    }
}
