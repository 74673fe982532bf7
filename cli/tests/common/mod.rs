//! What the binary's end-to-end tests share: the binary, manifests in temporary
//! directories, and a running `warden run` with its event stream and stdin.
#![allow(dead_code, reason = "each test binary uses part of it")]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use warden_tests::{CHAOS, ECHO, HOSTILE};

pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// The `warden` binary, built by cargo for this package's integration tests.
pub(crate) fn warden() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden"))
}

/// A `warden` command whose default data dirs and compile cache are in this test
/// run's own directory (as for a user, one data dir per manifest), not in the home
/// directory.
pub(crate) fn cmd() -> Command {
    static STATE_HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let home = STATE_HOME.get_or_init(|| tempfile::tempdir().unwrap());
    let mut cmd = Command::new(warden());
    cmd.env("XDG_STATE_HOME", home.path()).env("XDG_CACHE_HOME", home.path());
    cmd
}

pub(crate) fn manifest(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tree.toml");
    let text = text.replace("CHAOS", CHAOS).replace("ECHO", ECHO).replace("HOSTILE", HOSTILE);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

pub(crate) struct Running {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Running {
    pub(crate) fn start(manifest: &std::path::Path) -> Running {
        Running::start_with(manifest, &[])
    }

    /// `warden run MANIFEST --events jsonl` with `args` after it.
    pub(crate) fn start_with(manifest: &std::path::Path, args: &[&str]) -> Running {
        Running::spawn(
            cmd().args(["run", manifest.to_str().unwrap(), "--events", "jsonl"]).args(args),
        )
    }

    /// Runs `command` (a `warden run ... --events jsonl`) with piped stdin and stdout;
    /// stderr as the command says, inherited if it says nothing.
    pub(crate) fn spawn(command: &mut Command) -> Running {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        Running { child: Some(child), stdin, lines }
    }

    pub(crate) fn command(&mut self, json: &str) {
        self.write(format!("{json}\n").as_bytes());
    }

    /// Writes raw bytes to its stdin.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// The next event matching `pred`; the events skipped on the way are returned too.
    pub(crate) fn expect(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}; saw {skipped:#?}"));
            let event: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if pred(&event) {
                return (event, skipped);
            }
            skipped.push(event);
        }
    }

    /// As [`Running::expect`], for an event that may have come already, among `seen`
    /// (the events an earlier `expect` skipped): one that can come before or after the
    /// one awaited first.
    pub(crate) fn expect_unless_seen(
        &mut self,
        seen: &[Value],
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        match seen.iter().find(|e| pred(e)) {
            Some(event) => event.clone(),
            None => self.expect(what, pred).0,
        }
    }

    pub(crate) fn reply(&mut self, id: i64) -> Value {
        self.expect(&format!("reply {id}"), |e| e["event"] == "reply" && e["id"] == id).0
    }

    /// Its stderr, when the command piped it.
    pub(crate) fn take_stderr(&mut self) -> std::process::ChildStderr {
        self.child.as_mut().unwrap().stderr.take().expect("stderr was piped")
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args(["-s", name, &pid]).status().unwrap();
        assert!(status.success(), "kill -s {name} {pid}");
    }

    pub(crate) fn exit_code(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(status) => status.unwrap().code().unwrap_or(-1),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("warden did not exit within {DEADLINE:?}");
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
    }
}
