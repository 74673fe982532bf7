//! Operating a running tree from outside: the control socket and `warden ctl`.

use crate::common::{Running, cmd, manifest};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

const TREE: &str = r#"
[root]
strategy = "one_for_one"
intensity = 5

[[root.children]]
name = "a"
plugin = "CHAOS"

[[root.children]]
name = "echo"
plugin = "ECHO"
"#;

/// A connection to a control socket, reading JSON lines with a deadline.
struct Client {
    writer: UnixStream,
    lines: std::io::Lines<BufReader<UnixStream>>,
}

impl Client {
    fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(crate::common::DEADLINE)).unwrap();
        Client { writer: stream.try_clone().unwrap(), lines: BufReader::new(stream).lines() }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.writer, "{line}").unwrap();
    }

    fn next(&mut self) -> Value {
        let line = self.lines.next().expect("the connection closed").expect("no line in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The lines up to the one `pred` accepts, that one last.
    fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.next();
            let done = pred(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

/// `warden run` of TREE with its control socket at a path of the test's.
fn start(dir: &Path, path: &Path) -> (Running, PathBuf) {
    let socket = dir.join("ctl.sock");
    let mut warden = Running::start_with(path, &["--control", socket.to_str().unwrap()]);
    warden.expect("echo started", |e| e["event"] == "child_started" && e["path"] == "root/echo");
    (warden, socket)
}

fn ctl(socket: &Path, args: &[&str]) -> std::process::Output {
    cmd().arg("ctl").arg("--socket").arg(socket).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn each_client_of_the_socket_gets_its_own_replies_and_the_events_it_asks_for() {
    let (dir, path) = manifest(TREE);
    let (mut warden, socket) = start(dir.path(), &path);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner only");

    let mut follower = Client::connect(&socket);
    follower.send(r#"{"cmd":"subscribe","id":"f"}"#);
    let reply = follower.next();
    assert_eq!((reply["event"].as_str(), reply["id"].as_str()), (Some("reply"), Some("f")));

    let mut caller = Client::connect(&socket);
    caller.send(r#"{"cmd":"call","id":"c","to":"root/a","payload":"trap"}"#);
    caller.send(r#"{"cmd":"call","id":"e","to":"root/echo","payload":"hi"}"#);
    let replies = [caller.next(), caller.next()];
    let by_id = |id: &str| replies.iter().find(|r| r["id"] == id).unwrap().clone();
    assert!(by_id("c")["error"].as_str().unwrap().starts_with("callee_crashed: trap"));
    assert_eq!(by_id("e")["result"], "hi");

    // The follower sees the crash and the restart, and none of the caller's replies.
    let seen = follower.until(|e| e["event"] == "child_started" && e["path"] == "root/a");
    assert!(seen.iter().any(|e| e["event"] == "child_exited" && e["path"] == "root/a"));
    assert!(seen.iter().all(|e| e["event"] != "reply"), "{seen:#?}");
    assert!(seen.iter().all(|e| e["ts_us"].is_u64()));
    // stdout has the events too, and none of the socket's replies.
    let (_, skipped) =
        warden.expect("a restarted", |e| e["event"] == "child_started" && e["path"] == "root/a");
    assert!(skipped.iter().all(|e| e["event"] != "reply"), "{skipped:#?}");

    // A second subscribe on the same session is refused, with its id.
    follower.send(r#"{"cmd":"subscribe","id":2}"#);
    let reply = follower.until(|e| e["event"] == "reply").pop().unwrap();
    assert_eq!((reply["id"].as_i64(), reply["ok"].as_bool()), (Some(2), Some(false)));

    // `shutdown` from a socket client: its reply comes to it, and the run ends with 0.
    caller.send(r#"{"cmd":"shutdown","id":"s"}"#);
    let reply = caller.next();
    assert_eq!((reply["id"].as_str(), reply["ok"].as_bool()), (Some("s"), Some(true)));
    let seen = follower.until(|e| e["event"] == "supervisor_stopped" && e["path"] == "root");
    assert!(seen.iter().any(|e| e["event"] == "child_exited" && e["path"] == "root/echo"));
    assert_eq!(warden.exit_code(), 0);
    assert!(!socket.exists(), "the socket's file goes with the run");
}

#[test]
fn warden_ctl_reads_well_and_says_when_it_failed() {
    let (dir, path) = manifest(TREE);
    let (mut warden, socket) = start(dir.path(), &path);

    let out = ctl(&socket, &["which-children", "root"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "NAME  TYPE    STATE    INCARNATION  NODE\n\
         a     worker  running  1\n\
         echo  worker  running  1\n"
    );
    let out = ctl(&socket, &["call", "root/echo", "hello there"]);
    assert_eq!(text(&out.stdout), "hello there\n");

    let out = ctl(&socket, &["--json", "count-children", "root"]);
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["result"]["workers"], 2);

    // A refused command: the protocol's word on stderr, exit 1.
    let out = ctl(&socket, &["restart-child", "root/a"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "warden ctl: running\n");
    let out = ctl(&socket, &["terminate-child", "root"]);
    assert_eq!(out.status.code(), Some(2), "not a child's path");

    let out = ctl(&socket, &["terminate-child", "root/a"]);
    assert!(out.status.success());
    warden.expect("a stopped", |e| e["event"] == "child_exited" && e["path"] == "root/a");
    let out = ctl(&socket, &["restart-child", "root/a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    warden.expect("a again", |e| e["event"] == "child_started" && e["path"] == "root/a");

    // `events` follows, readably: a crash caused from another client shows up.
    let mut follow = cmd()
        .args(["ctl", "--socket", socket.to_str().unwrap(), "events", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut said = String::new();
    BufReader::new(follow.stderr.take().unwrap()).read_line(&mut said).unwrap();
    assert!(said.contains("following the events"), "subscribed: {said}");
    let _ = ctl(&socket, &["send", "root/a", "trap"]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.by_ref().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(crate::common::DEADLINE).expect("no crash shown");
        if line.contains("root/a") && line.contains("exited #2: trap unreachable") {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    warden.signal("TERM");
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn a_taken_or_stale_socket_is_named_and_a_stale_one_is_replaced() {
    let (dir, path) = manifest(TREE);
    let (warden, socket) = start(dir.path(), &path);

    // A second run on the same socket is refused before it starts anything.
    let (dir2, path2) = manifest(TREE);
    let out = cmd()
        .args(["run", path2.to_str().unwrap(), "--in-memory", "--control"])
        .arg(&socket)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "another warden run is listening on the control socket {}",
            socket.display()
        )),
        "{}",
        text(&out.stderr)
    );
    drop(dir2);

    // Killed outright, the run leaves its socket file behind: stale.
    warden.signal("KILL");
    let _ = warden.exit_code();
    assert!(socket.exists());
    let out = ctl(&socket, &["which-children", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is stale: nothing listens on it"), "{}", text(&out.stderr));
    let out = ctl(&dir.path().join("none.sock"), &["which-children", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no control socket at"), "{}", text(&out.stderr));

    // The next run replaces the stale socket.
    let (mut warden, socket) = start(dir.path(), &path);
    let out = ctl(&socket, &["call", "root/echo", "back"]);
    assert_eq!(text(&out.stdout), "back\n");
    warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn the_default_socket_is_in_the_run_s_state_directory_and_printed_at_start() {
    let (_dir, path) = manifest(TREE);
    let mut warden = Running::spawn(
        cmd()
            .args(["run", path.to_str().unwrap(), "--events", "jsonl", "--in-memory"])
            .stderr(std::process::Stdio::piped()),
    );
    warden.expect("echo started", |e| e["event"] == "child_started" && e["path"] == "root/echo");
    // `--manifest` finds it.
    let out = cmd()
        .args(["ctl", "--manifest", path.to_str().unwrap(), "call", "root/echo", "found"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "found\n", "{}", text(&out.stderr));
    let stderr = warden.take_stderr();
    warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(warden.exit_code(), 0);
    let mut first = String::new();
    BufReader::new(stderr).read_line(&mut first).unwrap();
    let printed = first.trim().strip_prefix("warden: control socket at ").expect(&first);
    assert!(printed.ends_with("/control.sock"), "{printed}");
    assert!(!Path::new(printed).exists(), "removed at the end");
}

#[test]
fn what_guests_write_is_in_the_event_stream_and_every_line_has_its_wall_clock_time() {
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "h"
plugin = "HOSTILE"
"#,
    );
    let before = std::time::SystemTime::now();
    let mut warden = Running::start_with(&path, &["--in-memory"]);
    let (started, _) = warden.expect("h started", |e| e["event"] == "child_started");
    let time = humantime::parse_rfc3339(started["time"].as_str().expect("a time")).unwrap();
    let after = std::time::SystemTime::now();
    assert!(before <= time + std::time::Duration::from_millis(1) && time <= after, "{started}");

    warden.command(r#"{"cmd":"call","id":1,"to":"root/h","payload":"log:2:5"}"#);
    let (log, _) = warden.expect("a log line", |e| e["event"] == "log");
    assert_eq!(
        (&log["path"], &log["stream"], &log["level"], &log["message"]),
        (&"root/h".into(), &"log".into(), &"error".into(), &"xxxxx".into())
    );
    warden.expect("the second", |e| e["event"] == "log");
    let reply = warden.reply(1);
    assert!(reply["time"].is_string(), "the CLI's own lines too: {reply}");
    warden.command(r#"{"cmd":"call","id":2,"to":"root/h","payload":"stdout:2"}"#);
    let (line, _) = warden.expect("stdout", |e| e["event"] == "log");
    assert_eq!(
        (&line["stream"], &line["level"], &line["message"]),
        (&"stdout".into(), &"info".into(), &"".into())
    );
    warden.reply(2);
    warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(warden.exit_code(), 0);

    // The readable log shows them, after the child's path.
    let out = cmd()
        .args(["run", path.to_str().unwrap(), "--in-memory", "--events", "pretty"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = out.stdin.as_ref().unwrap();
    writeln!(stdin, r#"{{"cmd":"call","to":"root/h","payload":"log:1:3"}}"#).unwrap();
    writeln!(stdin, r#"{{"cmd":"shutdown"}}"#).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(out.wait_with_output());
    });
    let out = rx.recv_timeout(crate::common::DEADLINE).expect("the run ends").unwrap();
    let shown = text(&out.stdout);
    assert!(shown.lines().any(|l| l.contains("root/h") && l.ends_with("[error] xxx")), "{shown}");
}

#[test]
fn warden_ctl_upgrades_a_child_and_watch_upgrades_it_when_a_build_replaces_its_file() {
    let dir = tempfile::tempdir().unwrap();
    // The plugin the manifest names is a copy the test replaces, as a build would.
    let plugin = dir.path().join("plugin.wasm");
    std::fs::copy(warden_tests::COUNTER, &plugin).unwrap();
    let manifest_path = dir.path().join("tree.toml");
    std::fs::write(
        &manifest_path,
        "[root]\nstrategy = \"one_for_one\"\n\n[[root.children]]\nname = \"c\"\nplugin = \"plugin.wasm\"\n",
    )
    .unwrap();
    let socket = dir.path().join("ctl.sock");
    let mut warden = Running::start_with(
        &manifest_path,
        &["--in-memory", "--watch", "--control", socket.to_str().unwrap()],
    );
    warden.expect("c started", |e| e["event"] == "child_started" && e["path"] == "root/c");
    assert_eq!(text(&ctl(&socket, &["call", "root/c", "incr"]).stdout), "1\n");

    // `warden ctl upgrade`: the chaos plugin takes over, with the count.
    let out = ctl(&socket, &["upgrade", "root/c", warden_tests::CHAOS]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "upgraded root/c\n");
    let (upgraded, _) = warden.expect("upgraded", |e| e["event"] == "child_upgraded");
    assert_eq!((&upgraded["path"], &upgraded["incarnation"]), (&"root/c".into(), &2.into()));
    assert!(upgraded["from"].as_str().unwrap().starts_with("plugin.wasm@sha256:"), "{upgraded}");
    assert_eq!(text(&ctl(&socket, &["call", "root/c", "state:get:count"]).stdout), "1\n");

    // New limits with it: the deadline given replaces the child's (5 s by default).
    let out = ctl(
        &socket,
        &["upgrade", "root/c", warden_tests::CHAOS, "--limits", r#"{"deadline":"100ms"}"#],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    warden.expect("#3", |e| e["event"] == "child_upgraded" && e["incarnation"] == 3);
    let out = ctl(&socket, &["call", "root/c", "hang:400"]);
    assert_eq!(text(&out.stderr), "warden ctl: callee_crashed: killed: deadline\n");
    warden.expect("#4", |e| e["event"] == "child_started" && e["incarnation"] == 4);
    let out = ctl(
        &socket,
        &["upgrade", "root/c", warden_tests::CHAOS, "--limits", r#"{"memroy":"1MiB"}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("memroy"), "a bad table is named: {}", text(&out.stderr));
    let mailbox = ["upgrade", "root/c", warden_tests::CHAOS, "--limits", r#"{"mailbox":5}"#];
    let out = ctl(&socket, &mailbox);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("limits.mailbox is the mailbox's"), "{}", text(&out.stderr));

    // A bad upgrade is refused with its reason, and the child goes on.
    let out = ctl(
        &socket,
        &["upgrade", "root/c", warden_tests::CHAOS, "--config", r#"{"fail_init":true}"#],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("warden ctl: upgrade_failed: start failed:"),
        "{}",
        text(&out.stderr)
    );
    warden.expect("failed", |e| e["event"] == "upgrade_failed" && e["path"] == "root/c");
    warden.expect("back", |e| e["event"] == "child_started" && e["incarnation"] == 6);

    // --watch: a build renames a new file over the plugin; its users are upgraded.
    let staged = dir.path().join("plugin.wasm.tmp");
    std::fs::copy(warden_tests::ECHO, &staged).unwrap();
    std::fs::rename(&staged, &plugin).unwrap();
    let (upgraded, _) = warden.expect("watched", |e| e["event"] == "child_upgraded");
    assert_eq!(upgraded["incarnation"], 7);
    assert!(upgraded["to"].as_str().unwrap().starts_with("plugin.wasm@sha256:"), "{upgraded}");
    assert_ne!(upgraded["from"], upgraded["to"]);
    assert_eq!(text(&ctl(&socket, &["call", "root/c", "echo:x"]).stdout), "echo:x\n", "echo now");

    warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn every_shutdown_asked_is_answered_even_when_another_stopped_the_tree_first() {
    let (dir, path) = manifest(TREE);
    let (warden, socket) = start(dir.path(), &path);
    let mut slow = Client::connect(&socket);
    // Its shutdown waits for its call, which is still running when the other stops
    // the tree.
    slow.send(r#"{"cmd":"call","id":"busy","to":"root/a","payload":"busy:500","timeout_ms":5000}"#);
    slow.send(r#"{"cmd":"shutdown","id":"second"}"#);
    let mut first = Client::connect(&socket);
    first.send(r#"{"cmd":"shutdown","id":"first"}"#);
    let reply = first.next();
    assert_eq!((reply["id"].as_str(), reply["ok"].as_bool()), (Some("first"), Some(true)));
    let replies = [slow.next(), slow.next()];
    let second = replies.iter().find(|r| r["id"] == "second").expect("answered");
    assert_eq!(second["ok"], true, "{replies:?}");
    assert!(replies.iter().any(|r| r["id"] == "busy"), "{replies:?}");
    assert_eq!(warden.exit_code(), 0);
}
