//! A plugin in Python (componentize-py: CPython and the app in one component) beside
//! Rust ones, measured in the same process, interleaved sample by sample.

use crate::{Scenario, micros, never_giving_up, next_event, scenario};
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::events::Event;
use warden::sandbox::{Engine, Sandbox, SandboxConfig};
use warden::state::MemoryStore;
use warden::supervisor::{ChildSpec, PluginStart, Strategy};

/// The Python fixture's component, or why it cannot be built here.
fn python() -> Result<&'static std::path::Path> {
    warden_tests::try_python_counter().map_err(|e| anyhow::anyhow!("{e}"))
}

/// A new incarnation of the Python counter (instantiate, then its `init`, which reads
/// its count from state), beside the Rust echo's, both through Warden. The details
/// give each component's size and the resident memory each live incarnation holds.
pub(crate) async fn instantiate(samples: usize) -> Result<Scenario> {
    let engine = Engine::new()?;
    let file = python()?;
    let python = engine.load_file(file)?;
    let echo = engine.load_file(warden_tests::ECHO)?;
    let state: Arc<dyn warden::state::StateStore> = Arc::new(MemoryStore::new());
    let config =
        |path: &str| SandboxConfig { state: Arc::clone(&state), ..SandboxConfig::new(path) };
    let start = |plugin| async move {
        Sandbox::start(plugin, config("root/p"), 1).await.map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut python_us = Vec::with_capacity(samples);
    let mut echo_us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let child = start(&python).await?;
        let p = t.elapsed();
        drop(child);
        let t = Instant::now();
        let child = start(&echo).await?;
        let r = t.elapsed();
        drop(child);
        if i >= samples / 10 {
            python_us.push(micros(p));
            echo_us.push(micros(r));
        }
    }
    // What a live incarnation holds: the resident growth over 20 of them.
    let mut resident = serde_json::Map::new();
    for (name, plugin) in [("python", &python), ("rust_echo", &echo)] {
        let before = warden_tests::resident_bytes();
        let mut live = Vec::new();
        for _ in 0..20 {
            live.push(start(plugin).await?);
        }
        let per = (warden_tests::resident_bytes().saturating_sub(before)) / 20;
        resident.insert(format!("{name}_resident_bytes_per_incarnation"), per.into());
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    resident.insert("python_component_bytes".into(), size(file).into());
    resident.insert(
        "rust_echo_component_bytes".into(),
        size(std::path::Path::new(warden_tests::ECHO)).into(),
    );
    let mut measured = scenario(
        "instantiate_py",
        "us",
        python_us,
        "the Rust echo, instantiate + init through Warden",
        echo_us,
    );
    measured.details = Some(resident.into());
    Ok(measured)
}

/// A one_for_one Python child crashing (an exception: a trap) and restarted: from
/// `child_exited` to the new incarnation's `child_started`, beside the Rust counter
/// doing the same under the same supervisor, alternately.
pub(crate) async fn restart(samples: usize) -> Result<Scenario> {
    let children = vec![
        ChildSpec::plugin("py", PluginStart::new(python()?)),
        ChildSpec::plugin("rust", PluginStart::new(warden_tests::COUNTER)),
    ];
    let (host, mut events) = never_giving_up(Strategy::OneForOne, children).await?;
    let mut python_us = Vec::with_capacity(samples);
    let mut rust_us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        for (path, out) in [("root/py", &mut python_us), ("root/rust", &mut rust_us)] {
            let _ = host.call(path, b"crash".to_vec(), Duration::from_secs(5)).await;
            let exited =
                next_event(&mut events, |e| matches!(e, Event::ChildExited { .. })).await?;
            let started =
                next_event(&mut events, |e| matches!(e, Event::ChildStarted { .. })).await?;
            if i >= samples / 10 {
                out.push((started - exited) as f64);
            }
        }
    }
    host.shutdown().await;
    Ok(scenario("restart_py", "us", python_us, "the Rust counter, the same restart", rust_us))
}
