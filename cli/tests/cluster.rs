//! Several nodes on a real NATS server: `warden run --node` with `warden node`
//! members, each a process of its own, seen through their event streams and replies.
//! Node deaths are SIGKILLs; a partition is the NATS server stopped (SIGSTOP).

mod common;

use common::{Running, cmd, manifest};
use serde_json::Value;
use std::time::{Duration, Instant};
use warden_tests::nats::Nats;

/// The node TTL of these tests: a dead node is noticed within it.
const TTL: Duration = Duration::from_secs(2);
const TTL_ARG: &str = "2s";

/// `warden node NAME` on `nats`.
fn member(nats: &Nats, name: &str) -> Running {
    member_with(nats, name, &[])
}

/// `warden node NAME` on `nats`, with `args`.
fn member_with(nats: &Nats, name: &str, args: &[&str]) -> Running {
    let mut node = Running::spawn(
        cmd()
            .args(["node", "--name", name, "--nats", &nats.url, "--events", "jsonl"])
            .args(["--node-ttl", TTL_ARG])
            .args(args),
    );
    node.expect("its own node_up", |e| e["event"] == "node_up" && e["node"] == name);
    node
}

/// `warden run MANIFEST` as node `a` of the cluster on `nats`.
fn root(nats: &Nats, manifest: &std::path::Path) -> Running {
    Running::start_with(
        manifest,
        &["--in-memory", "--node", "a", "--nats", &nats.url, "--node-ttl", TTL_ARG],
    )
}

fn started(path: &'static str, incarnation: i64, node: &'static str) -> impl Fn(&Value) -> bool {
    move |e| {
        e["event"] == "child_started"
            && e["path"] == path
            && e["incarnation"] == incarnation
            && e["node"] == node
    }
}

fn exited(path: &'static str, incarnation: i64) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == "child_exited" && e["path"] == path && e["incarnation"] == incarnation
}

#[test]
fn a_member_joins_and_a_second_node_with_its_name_is_refused() {
    let nats = Nats::start();
    let mut b = member(&nats, "b");
    let out = cmd()
        .args(["node", "--name", "b", "--nats", &nats.url, "--node-ttl", TTL_ARG])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"node name "b" is taken"#), "{stderr}");
    // The first is still a member, and sees the next one join.
    let _c = member(&nats, "c");
    b.expect("node_up c", |e| e["event"] == "node_up" && e["node"] == "c");
    b.signal("TERM");
    assert_eq!(b.exit_code(), 0);
}

#[test]
fn a_node_that_joins_again_under_its_name_is_seen_to_die_again() {
    let nats = Nats::start();
    let mut c = member(&nats, "c");
    for round in 0..2 {
        let b = member(&nats, "b");
        c.expect("node_up b", |e| e["event"] == "node_up" && e["node"] == "b");
        let killed = Instant::now();
        b.signal("KILL");
        let (down, _) = c.expect("node_down b", |e| e["event"] == "node_down" && e["node"] == "b");
        assert_eq!(down["reason"], "expired");
        let waited = killed.elapsed();
        assert!(waited < TTL + Duration::from_secs(1), "round {round}: {waited:?}");
    }
}

#[test]
fn nothing_listens_at_the_nats_address_and_the_node_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = cmd().args(["node", "--name", "b", "--nats", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot connect to NATS at {url}")), "{stderr}");
}

const PLACED: &str = r#"
[root]
strategy = "one_for_one"
intensity = 5

[[root.children]]
name = "a"
plugin = "CHAOS"
node = "b"

[[root.children]]
name = "local"
plugin = "CHAOS"
limits = { deadline = "none" }
grants = { targets = ["*"] }
"#;

#[test]
fn a_remote_child_starts_answers_crashes_typed_and_restarts_on_its_node() {
    let nats = Nats::start();
    let mut b = member(&nats, "b");
    let (_dir, path) = manifest(PLACED);
    let mut a = root(&nats, &path);
    a.expect("a on b", started("root/a", 1, "b"));
    b.expect("a on b, on b's stream", started("root/a", 1, "b"));

    a.command(r#"{"cmd":"call","id":1,"to":"root/a","payload":"echo:hi"}"#);
    assert_eq!(a.reply(1)["result"], "hi");
    // A sibling here calls it there.
    a.command(r#"{"cmd":"call","id":2,"to":"root/local","payload":"call:root/a:echo:via"}"#);
    assert_eq!(a.reply(2)["result"], "via", "{}", a.reply(2));

    a.command(r#"{"cmd":"call","id":3,"to":"root/a","payload":"trap"}"#);
    let (exit, _) = a.expect("a #1 exited", exited("root/a", 1));
    assert_eq!(exit["reason"]["kind"], "trap");
    assert_eq!(exit["reason"]["trap"], "unreachable");
    assert_eq!(exit["node"], "b");
    let (reply, seen) = a.expect("reply 3", |e| e["event"] == "reply" && e["id"] == 3);
    assert!(reply["error"].as_str().unwrap().starts_with("callee_crashed: trap"), "{reply}");
    // The restart may be announced before the reply or after it.
    a.expect_unless_seen(&seen, "a #2 on b", started("root/a", 2, "b"));
    let (exit, _) = b.expect("a #1 exited on b's stream", exited("root/a", 1));
    assert_eq!(exit["reason"]["kind"], "trap");

    a.command(r#"{"cmd":"which_children","id":4,"supervisor":"root"}"#);
    let children = a.reply(4)["result"].clone();
    assert_eq!(children[0]["name"], "a");
    assert_eq!(children[0]["node"], "b");
    assert_eq!(children[0]["incarnation"], 2);
    assert!(children[1].get("node").is_none(), "a local child names no node: {children}");

    // Stopped from here, through its node, as an OTP terminate_child.
    a.command(r#"{"cmd":"terminate_child","id":5,"supervisor":"root","child":"a"}"#);
    let (exit, _) = a.expect("a #2 stopped", exited("root/a", 2));
    assert_eq!(exit["reason"]["kind"], "shutdown");
    assert_eq!(a.reply(5)["ok"], true);
    a.command(r#"{"cmd":"restart_child","id":6,"supervisor":"root","child":"a"}"#);
    a.expect("a #3 on b", started("root/a", 3, "b"));
    assert_eq!(a.reply(6)["ok"], true);

    a.command(r#"{"cmd":"shutdown","id":7}"#);
    a.expect("a #3 stopped", exited("root/a", 3));
    assert_eq!(a.exit_code(), 0);
    b.expect("a #3 stopped on b", exited("root/a", 3));
}

#[test]
fn a_remote_child_that_ignores_terminate_is_killed_at_its_shutdown_timeout_by_its_node() {
    let nats = Nats::start();
    let mut b = member(&nats, "b");
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "stubborn"
plugin = "CHAOS"
node = "b"
shutdown = "300ms"
config = { ignore_terminate = true }
"#,
    );
    let mut a = root(&nats, &path);
    a.expect("stubborn on b", started("root/stubborn", 1, "b"));
    let asked = Instant::now();
    a.command(r#"{"cmd":"terminate_child","id":1,"supervisor":"root","child":"stubborn"}"#);
    let (exit, _) = a.expect("stubborn stopped", exited("root/stubborn", 1));
    assert_eq!(exit["reason"], serde_json::json!({"kind": "killed", "cause": "shutdown_timeout"}));
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(a.reply(1)["ok"], true);
    let (exit, _) = b.expect("killed on b", exited("root/stubborn", 1));
    assert_eq!(exit["reason"]["cause"], "shutdown_timeout");
}

#[test]
fn a_child_placed_on_a_node_that_is_down_fails_to_start_as_in_otp() {
    let nats = Nats::start();
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "early"
plugin = "CHAOS"

[[root.children]]
name = "nowhere"
plugin = "CHAOS"
nodes = ["x", "y"]
"#,
    );
    // At the tree's start: the start fails, what started is stopped, the run exits 1.
    let mut a = root(&nats, &path);
    let (failed, _) = a.expect("start failed", |e| e["event"] == "child_start_failed");
    assert_eq!(failed["path"], "root/nowhere");
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains(r#"none of its nodes ["x", "y"] is up"#), "{message}");
    a.expect("early stopped", exited("root/early", 1));
    assert_eq!(a.exit_code(), 1);
}

#[test]
fn a_member_takes_children_up_to_its_memory_size_and_refuses_larger_ones_saying_so() {
    let nats = Nats::start();
    let _b = member(&nats, "b");
    let _c = member_with(&nats, "c", &["--max-memory", "1GiB"]);
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "big"
plugin = "CHAOS"
node = "c"
limits = { memory = "512MiB" }
"#,
    );
    let mut a = root(&nats, &path);
    a.expect("big on c", started("root/big", 1, "c"));
    let spec = r#"{"name":"big2","plugin":"CHAOS","node":"b","limits":{"memory":"512MiB"}}"#;
    let command = format!(r#"{{"cmd":"start_child","id":1,"supervisor":"root","spec":{spec}}}"#);
    a.command(&command.replace("CHAOS", warden_tests::CHAOS));
    let (failed, _) = a.expect("big2 refused", |e| e["event"] == "child_start_failed");
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("536870912") && message.contains("268435456"), "{message}");
    assert_eq!(a.reply(1)["ok"], false);
}

#[test]
fn one_for_all_spans_nodes() {
    let nats = Nats::start();
    let mut b = member(&nats, "b");
    let mut c = member(&nats, "c");
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_all"
intensity = 5

[[root.children]]
name = "x"
plugin = "CHAOS"
node = "b"

[[root.children]]
name = "y"
plugin = "CHAOS"
node = "c"

[[root.children]]
name = "z"
plugin = "CHAOS"
"#,
    );
    let mut a = root(&nats, &path);
    a.expect("z", |e| e["event"] == "child_started" && e["path"] == "root/z");
    a.command(r#"{"cmd":"send","id":1,"to":"root/x","payload":"trap"}"#);
    let (exit, _) = a.expect("x crashed", exited("root/x", 1));
    assert_eq!(exit["reason"]["kind"], "trap");
    // Its siblings stop, newest first, each with `shutdown`, the one on c included.
    let (z, _) = a.expect("z stopped", exited("root/z", 1));
    assert_eq!(z["reason"]["kind"], "shutdown");
    let (y, _) = a.expect("y stopped", exited("root/y", 1));
    assert_eq!(y["reason"]["kind"], "shutdown");
    assert_eq!(y["node"], "c");
    a.expect("x #2", started("root/x", 2, "b"));
    a.expect("y #2", started("root/y", 2, "c"));
    c.expect("y #1 stopped on c", exited("root/y", 1));
    c.expect("y #2 on c", started("root/y", 2, "c"));
    b.expect("x #2 on b", started("root/x", 2, "b"));
}

#[test]
fn a_killed_member_s_children_restart_on_a_survivor_within_the_ttl_and_read_their_state() {
    let nats = Nats::start();
    let b = member(&nats, "b");
    let mut c = member(&nats, "c");
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"
intensity = 5

[[root.children]]
name = "w"
plugin = "CHAOS"
nodes = ["b", "c"]
limits = { deadline = "none" }
"#,
    );
    let mut a = root(&nats, &path);
    a.expect("w on b", started("root/w", 1, "b"));
    // What it wrote there is read back where it restarts.
    a.command(r#"{"cmd":"call","id":0,"to":"root/w","payload":"state:batch:k=v,n=1"}"#);
    assert_eq!(a.reply(0)["result"], "ok");
    // A caller waiting on it when its node dies.
    a.command(r#"{"cmd":"call","id":1,"to":"root/w","payload":"busy:60000","timeout_ms":60000}"#);
    let killed = Instant::now();
    b.signal("KILL");
    let (down, _) = a.expect("node_down b", |e| e["event"] == "node_down" && e["node"] == "b");
    assert_eq!(down["reason"], "expired");
    let (exit, _) = a.expect("w #1 lost", exited("root/w", 1));
    assert_eq!(exit["reason"], serde_json::json!({"kind": "killed", "cause": "node_down"}));
    assert!(killed.elapsed() < TTL + Duration::from_secs(1), "took {:?}", killed.elapsed());
    let reply = a.reply(1);
    assert_eq!(reply["error"], "callee_crashed: killed: node_down", "{reply}");
    a.expect("w #2 on c", started("root/w", 2, "c"));
    c.expect("w #2 on c's stream", started("root/w", 2, "c"));
    a.command(r#"{"cmd":"call","id":2,"to":"root/w","payload":"state:get:k"}"#);
    assert_eq!(a.reply(2)["result"], "v");
    a.command(r#"{"cmd":"call","id":3,"to":"root/w","payload":"state:keys:"}"#);
    assert_eq!(a.reply(3)["result"], "k,n");
}

#[test]
fn children_of_a_killed_root_node_are_stopped_by_their_own_node() {
    let nats = Nats::start();
    let mut b = member(&nats, "b");
    let (_dir, path) = manifest(PLACED);
    let mut a = root(&nats, &path);
    a.expect("a on b", started("root/a", 1, "b"));
    b.expect("a on b's stream", started("root/a", 1, "b"));
    a.signal("KILL");
    let (down, _) = b.expect("node_down a", |e| e["event"] == "node_down" && e["node"] == "a");
    assert_eq!(down["reason"], "expired");
    // Killed at once: its supervisor's node may come back and start it elsewhere.
    let (exit, _) = b.expect("the orphan stopped", exited("root/a", 1));
    assert_eq!(exit["reason"], serde_json::json!({"kind": "killed", "cause": "node_down"}));
}

#[test]
fn a_node_cut_off_from_nats_fences_itself_and_stops_its_children() {
    let nats = Nats::start();
    let mut b = member(&nats, "b");
    let (_dir, path) = manifest(PLACED);
    let mut a = root(&nats, &path);
    a.expect("a on b", started("root/a", 1, "b"));
    b.expect("a on b's stream", started("root/a", 1, "b"));
    let cut = Instant::now();
    nats.signal("STOP");
    let (fenced, _) = b.expect("b fenced", |e| e["event"] == "node_down" && e["node"] == "b");
    assert_eq!(fenced["reason"], "fenced");
    let (exit, _) = b.expect("its child killed", exited("root/a", 1));
    assert_eq!(exit["reason"], serde_json::json!({"kind": "killed", "cause": "node_down"}));
    // Before its key can expire (a TTL after its last renewal, made before the cut),
    // so before any other node may count it dead and start its children elsewhere.
    let waited = cut.elapsed();
    assert!(waited < TTL, "fenced {waited:?} after the cut, TTL {TTL:?}");
    // Back in touch, it joins again.
    nats.signal("CONT");
    b.expect("b up again", |e| e["event"] == "node_up" && e["node"] == "b");
}
