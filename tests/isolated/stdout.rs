//! Guest stdout reaches `tracing` under the child's path.
//!
//! This reads what a thread-local subscriber (`set_default`) was given. `tracing`
//! caches each callsite's interest process-wide, and a callsite first reached on
//! another thread while this test installs its subscriber can be cached as "nobody
//! listens" (the line is then never written: seen once in CI among the `all` tests).
//! Here the test holds [`serial`](super::serial), so no other test emits meanwhile.

use std::sync::{Arc, Mutex};
use warden::sandbox::{Sandbox, SandboxConfig};
use warden_tests::{PROBE, engine};

/// Captures what `tracing` writes on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn guest_stdout_is_captured_into_tracing_under_the_child_path() {
    let _serial = super::serial().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let plugin = engine().load_file(PROBE).unwrap();
    let mut probe = Sandbox::start(&plugin, SandboxConfig::new("root/probe"), 1).await.unwrap();
    probe.handle(None, b"print:hello from the guest".to_vec(), true).await.unwrap();
    drop(probe);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("hello from the guest"))
        .unwrap_or_else(|| panic!("not captured: {log}"));
    assert!(line.contains("child=\"root/probe\"") || line.contains("child=root/probe"), "{line}");
    assert!(line.contains("stdout"), "{line}");
}
