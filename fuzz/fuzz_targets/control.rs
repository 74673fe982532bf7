//! The control protocol: any bytes, as lines read by the CLI's own session loop
//! (`cli/src/control.rs`, compiled in here), against a live tree of fixture plugins.
//! Every command line gets exactly one reply, every command finishes (at the latest
//! once the tree is shut down), the host never panics and stops within a bound, and
//! once it has, every message sent is accounted for.
//!
//! The tree's plugins always answer at once (echo, counter), and the only files a
//! command can name beside the manifest are theirs, so a command that does not finish
//! within its bound is a defect, not a slow plugin.

#![no_main]
#![allow(dead_code, unreachable_pub, reason = "the CLI's modules, of which this uses part")]

#[path = "../../cli/src/line.rs"]
mod line;

#[path = "../../cli/src/control.rs"]
mod control;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use warden::runtime::Host;
use warden::sandbox::Engine;
use warden::supervisor::{ChildStart, SupervisorSpec};
use warden_fuzz::live::{every_message_accounted_for, within};

/// The tree every input runs against, its plugins compiled once.
const MANIFEST: &str = r#"
[root]
strategy = "one_for_one"
intensity = 1000
period = "1s"

[[root.children]]
name = "echo"
plugin = "echo.wasm"
grants = { targets = ["root/*"] }

[[root.children]]
name = "counter"
plugin = "counter.wasm"

[[root.children]]
name = "pool"

[root.children.supervisor]
strategy = "simple_one_for_one"
intensity = 1000
period = "1s"

[[root.children.supervisor.children]]
name = "worker"
plugin = "echo.wasm"
restart = "temporary"
"#;

/// The largest input read: a few hundred commands.
const MAX_INPUT: usize = 16 << 10;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    spec: SupervisorSpec,
    /// The manifest's directory: the fixture plugins, and nothing else.
    dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, file) in
            [("echo.wasm", warden_tests::ECHO), ("counter.wasm", warden_tests::COUNTER)]
        {
            std::fs::copy(file, dir.path().join(name)).expect("the fixture plugins are built");
        }
        let engine = Engine::new().expect("an engine");
        let mut spec = warden::manifest::parse("fuzz.toml", MANIFEST, dir.path()).expect("valid");
        load(&engine, &mut spec);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        Fixture { runtime, engine, spec, dir }
    })
}

/// Every plugin of `spec` compiled now, so that no input pays for it.
fn load(engine: &Engine, spec: &mut SupervisorSpec) {
    for child in &mut spec.children {
        match &mut child.start {
            ChildStart::Plugin(start) => {
                let file = start.plugin.file().expect("a file").to_owned();
                start.plugin = engine.load_file(&file).expect("the fixture loads").into();
            }
            ChildStart::Supervisor(sub) => load(engine, sub),
        }
    }
}

/// How many replies `input` must bring: one per non-blank line, up to and including
/// the first `shutdown` (after which the session reads no more).
fn replies_due(input: &[u8]) -> usize {
    let mut due = 0;
    for line in input.split(|&b| b == b'\n') {
        if line.trim_ascii().is_empty() {
            continue;
        }
        due += 1;
        let value: Option<serde_json::Value> = serde_json::from_slice(line).ok();
        if value.as_ref().and_then(|v| v.get("cmd")).and_then(|c| c.as_str()) == Some("shutdown") {
            break;
        }
    }
    due
}

fuzz_target!(|data: &[u8]| {
    let input = &data[..data.len().min(MAX_INPUT)];
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let host = Host::builder().shared_engine(fixture.engine.clone()).build().expect("a host");
        host.start(fixture.spec.clone()).await.expect("the tree starts");
        let (replies_tx, mut replies) = mpsc::unbounded_channel::<control::Reply>();
        // Replies are taken as they come, as a session's writer takes them: a reply
        // held frees its command's pending slot only once written (dropped).
        let written = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(reply) = replies.recv().await {
                lines.push(serde_json::to_value(&reply.line).expect("a reply is JSON"));
            }
            lines
        });
        let (shutdown_tx, mut shutdown) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let session = control::Session { replies: replies_tx, subscribe: None };
        let base = fixture.dir.path().to_owned();
        let lines = std::io::Cursor::new(input.to_vec());
        let mut serve =
            tokio::spawn(control::serve(host.clone(), base, lines, session, shutdown_tx, stop));
        // A `shutdown` line waits for the commands before it, and a call waits as long as
        // its `timeout_ms` says (a message to a child stopped by `terminate_child` stays
        // in its mailbox for a `restart_child`): past a while, the run is stopped as
        // SIGTERM stops it, and then everything must end.
        let mut running = match tokio::time::timeout(Duration::from_secs(5), &mut serve).await {
            Ok(done) => done.expect("the session does not panic"),
            Err(_) => {
                let _ = stop_tx.send(true);
                within(Duration::from_secs(10), "the stopped session", serve)
                    .await
                    .expect("the session does not panic")
            }
        };
        let finish = async { while running.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), finish).await;
        within(Duration::from_secs(20), "the shutdown", host.shutdown()).await;
        // A `shutdown` asked is answered by the run, once the tree has stopped.
        if let Ok((id, to)) = shutdown.try_recv() {
            let _ = to.send(control::Reply::new(&host, id, Ok(serde_json::Value::Null)));
        }
        drop(shutdown);
        // With the tree gone, every command still waiting is answered at once.
        let finish = async { while running.join_next().await.is_some() {} };
        within(Duration::from_secs(10), "the commands after the shutdown", finish).await;

        // Every sender is gone with the commands: the writer has them all.
        drop(running);
        let lines =
            within(Duration::from_secs(10), "the replies", written).await.expect("no panic");
        for json in &lines {
            assert_eq!(json["event"], "reply", "{json}");
            assert!(json["ok"].is_boolean(), "{json}");
        }
        assert_eq!(lines.len(), replies_due(input), "a reply per command line");

        // Nothing sent is unaccounted for once the tree is gone.
        every_message_accounted_for(&host, &lines).await;
    });
});
