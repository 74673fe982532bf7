//! The `warden` binary end to end (an integration test of the host package, so that
//! cargo builds the binary for it; the fixture plugins come from `warden-tests`): manifests, the JSON-lines events and control
//! protocol, exit status, and bad input. Every read has a deadline.

mod common;

use common::{Running, cmd, manifest, warden};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use warden_tests::CHAOS;

const ABC: &str = r#"
[root]
strategy = "one_for_one"
intensity = 5

[[root.children]]
name = "a"
plugin = "CHAOS"

[[root.children]]
name = "b"
plugin = "CHAOS"

[[root.children]]
name = "c"
plugin = "ECHO"
"#;

#[test]
fn run_answers_every_command_and_shuts_down_in_order_with_status_0() {
    let (_dir, path) = manifest(ABC);
    let mut warden = Running::start(&path);
    warden.expect("c started", |e| e["event"] == "child_started" && e["path"] == "root/c");

    warden.command(r#"{"cmd":"call","id":1,"to":"root/c","payload":"hello","timeout_ms":2000}"#);
    let reply = warden.reply(1);
    assert_eq!(
        (reply["ok"].clone(), reply["result"].clone()),
        (Value::Bool(true), Value::from("hello"))
    );

    // A sent message that crashes its handler is not delivered again (OTP: the message
    // that killed a process is gone): it is dead-lettered, and the child restarted once.
    warden.command(r#"{"cmd":"send","id":2,"to":"root/b","payload":"panic"}"#);
    assert_eq!(warden.reply(2)["ok"], true);
    let (exited, _) =
        warden.expect("b exited", |e| e["event"] == "child_exited" && e["path"] == "root/b");
    assert_eq!(
        (&exited["incarnation"], &exited["reason"]["kind"], &exited["reason"]["trap"]),
        (&Value::from(1), &Value::from("trap"), &Value::from("unreachable"))
    );
    let (dead, _) = warden.expect("a dead letter", |e| e["event"] == "dead_letter");
    assert_eq!(
        (&dead["path"], &dead["reason"], &dead["size"], &dead["crashes"], &dead["exit"]["trap"]),
        (
            &Value::from("root/b"),
            &Value::from("crashed"),
            &Value::from(5),
            &Value::from(1),
            &Value::from("unreachable")
        )
    );
    warden.expect("b restarted", |e| {
        e["event"] == "child_started" && e["path"] == "root/b" && e["incarnation"] == 2
    });

    warden.command("this is not json");
    let (malformed, _) = warden.expect("an error reply", |e| e["event"] == "reply");
    assert_eq!(malformed["ok"], false);
    assert!(malformed["error"].as_str().unwrap().contains("malformed"));

    warden.command(r#"{"cmd":"which_children","id":3,"supervisor":"root"}"#);
    let reply = warden.reply(3);
    assert_eq!(summary(&reply), running(&[("a", 1), ("b", 2), ("c", 1)]));
    let children = &reply["result"];
    assert_eq!(children[0]["type"], "worker");
    assert_eq!(children[0]["path"], "root/a");

    warden.command(r#"{"cmd":"count_children","id":4,"supervisor":"root"}"#);
    assert_eq!(
        warden.reply(4)["result"],
        serde_json::json!({"specs":3,"active":3,"supervisors":0,"workers":3})
    );
    for (id, cmd, error) in [
        (5, r#"{"cmd":"terminate_child","id":5,"supervisor":"root","child":"nope"}"#, "not_found"),
        (6, r#"{"cmd":"restart_child","id":6,"supervisor":"root","child":"a"}"#, "running"),
        (7, r#"{"cmd":"delete_child","id":7,"supervisor":"root","child":"a"}"#, "running"),
        (8, r#"{"cmd":"call","id":8,"to":"root/zz","payload":"x"}"#, "not_found"),
        (9, r#"{"cmd":"which_children","id":9,"supervisor":"root/zz"}"#, "not_found"),
    ] {
        warden.command(cmd);
        let reply = warden.reply(id);
        assert_eq!(
            (reply["ok"].clone(), reply["error"].clone()),
            (Value::Bool(false), Value::from(error)),
            "{cmd}"
        );
    }
    // Admin commands answer once what they did is done: the reply follows its events.
    warden.command(r#"{"cmd":"terminate_child","id":10,"supervisor":"root","child":"a"}"#);
    let (exited, _) = warden.expect("a's exit or the reply", |e| {
        e["event"] == "reply" || (e["event"] == "child_exited" && e["path"] == "root/a")
    });
    assert_eq!(exited["reason"]["kind"], "shutdown", "the exit comes first: {exited}");
    assert_eq!(warden.reply(10)["ok"], true);
    warden.command(
        r#"{"cmd":"start_child","id":11,"supervisor":"root","spec":{"name":"a","plugin":"CHAOS"}}"#
            .replace("CHAOS", CHAOS)
            .as_str(),
    );
    assert_eq!(warden.reply(11)["error"], "already_present");
    warden.command(r#"{"cmd":"restart_child","id":12,"supervisor":"root","child":"a"}"#);
    let (started, _) = warden.expect("a's start or the reply", |e| {
        e["event"] == "reply" || (e["event"] == "child_started" && e["path"] == "root/a")
    });
    assert_eq!(started["incarnation"], 2, "the start comes first: {started}");
    assert_eq!(warden.reply(12)["ok"], true);

    // The shutdown's reply comes last, after the tree has stopped, newest first.
    warden.command(r#"{"cmd":"shutdown","id":13}"#);
    let (_, events) = warden.expect("reply 13", |e| e["event"] == "reply" && e["id"] == 13);
    let order: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "child_exited" || e["event"] == "supervisor_stopped")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["root/c", "root/b", "root/a", "root"], "in reverse start order");
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn run_exits_non_zero_when_the_root_gives_up() {
    let (_dir, path) = manifest(&ABC.replace("intensity = 5", "intensity = 0"));
    let mut warden = Running::start(&path);
    warden.expect("c started", |e| e["event"] == "child_started" && e["path"] == "root/c");
    warden.command(r#"{"cmd":"send","to":"root/a","payload":"div0"}"#);
    let (gave_up, _) = warden.expect("root gives up", |e| e["event"] == "supervisor_gave_up");
    assert_eq!(gave_up["reason"], "reached_max_restart_intensity");
    assert_eq!(warden.exit_code(), 1);
}

#[test]
fn messaging_limits_heartbeats_and_circuits_from_the_manifest() {
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"
intensity = 10

[[root.children]]
name = "small"
plugin = "CHAOS"
limits = { message_size = "8B" }
heartbeat = { timeout = "100ms" }
circuit = { failures = 1, reset = "1h" }

[[root.children]]
name = "caller"
plugin = "CHAOS"
grants = { targets = ["root/small"] }
"#,
    );
    let mut warden = Running::start(&path);
    warden.expect("caller", |e| e["event"] == "child_started" && e["path"] == "root/caller");
    warden.command(r#"{"cmd":"send","id":1,"to":"root/small","payload":"too long by far"}"#);
    assert_eq!(warden.reply(1)["error"], "too_large: the limit is 8 bytes");

    warden.command(r#"{"cmd":"call","id":2,"to":"root/small","payload":"hang:900"}"#);
    let (missed, _) = warden.expect("heartbeat_missed", |e| e["event"] == "heartbeat_missed");
    assert_eq!(
        (&missed["path"], &missed["incarnation"]),
        (&Value::from("root/small"), &Value::from(1))
    );
    let since = missed["since_ms"].as_u64().unwrap();
    assert!((100..=120).contains(&since), "{since}");
    // The breaker records the failure before the control loop publishes the reply.
    let (reply, skipped) = warden.expect("reply 2", |e| e["event"] == "reply" && e["id"] == 2);
    assert!(reply["error"].as_str().unwrap().starts_with("callee_crashed: killed"), "{reply}");
    let open = skipped.iter().find(|e| e["event"] == "circuit_changed").expect("circuit event");
    assert_eq!((&open["state"], &open["failures"]), (&Value::from("open"), &Value::from(1)));

    warden.command(r#"{"cmd":"call","id":3,"to":"root/small","payload":"echo:x"}"#);
    assert_eq!(warden.reply(3)["error"], "circuit_open");
    // A guest that may call it gets the same answer; one that may not, not_allowed.
    warden.command(r#"{"cmd":"call","id":4,"to":"root/caller","payload":"call:root/small:x"}"#);
    assert_eq!(warden.reply(4)["error"], "circuit open");
    warden.command(r#"{"cmd":"call","id":5,"to":"root/caller","payload":"send:root/elsewhere:x"}"#);
    assert_eq!(warden.reply(5)["error"], "not allowed to send to root/elsewhere");
    warden.command(r#"{"cmd":"shutdown","id":6}"#);
    assert_eq!(warden.reply(6)["ok"], true);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn bad_manifests_are_refused_with_every_problem_and_its_place() {
    let (dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"
intensity = -2

[[root.children]]
name = "a"
plugin = "missing.wasm"

[[root.children]]
name = "a"
plugin = "notes.wasm"
restart = "permanent"
significant = true
"#,
    );
    std::fs::write(dir.path().join("notes.wasm"), "not wasm at all").unwrap();
    let check = cmd().args(["check", path.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(2), "the same status as `run`");
    for expected in [
        "intensity must be a whole number from 0, not -2",
        "supervisor root, child \"a\": plugin file",
        "duplicate child id",
        "significant is true but the child is permanent",
        // The plugin is loaded too, so its problem is listed with the others.
        "notes.wasm: not a WebAssembly file",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(out.lines().all(|l| l.contains("tree.toml")), "every line names the file:\n{out}");

    let run = cmd().args(["run", path.to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("duplicate child id"));

    // Every unknown key and wrong type at once, each with its line and place, from
    // `check` and `run` alike.
    let (_d, unknown) = manifest(
        "[root]\nstrategy = \"one_for_one\"\nstratgy = 1\n[[root.children]]\nname = \"x\"\n\
         plugin = \"CHAOS\"\nrestart = 3\nlimits = { memroy = \"1MiB\" }\n",
    );
    let check = cmd().args(["check", unknown.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    let run = cmd().args(["run", unknown.to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    for expected in [
        "line 3, root.stratgy: unknown field `stratgy`",
        "line 7, root.children[0].restart: invalid type: integer, expected a name",
        "line 8, root.children[0].limits.memroy: unknown field `memroy`",
    ] {
        assert!(out.contains(expected), "check: missing {expected:?} in:\n{out}");
        assert!(err.contains(expected), "run: missing {expected:?} in:\n{err}");
    }
    assert_eq!((check.status.code(), run.status.code()), (Some(2), Some(2)));

    let (_d, not_component) = manifest(
        "[root]\nstrategy = \"one_for_one\"\n[[root.children]]\nname = \"n\"\nplugin = \"n.wasm\"\n",
    );
    std::fs::write(
        not_component.parent().unwrap().join("n.wasm"),
        wat::parse_str("(module)").unwrap(),
    )
    .unwrap();
    let check = cmd().args(["check", not_component.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("is a core WebAssembly module, not a component"), "{out}");
    // `run` refuses a plugin that cannot load as it refuses a bad manifest.
    let run =
        cmd().args(["run", not_component.to_str().unwrap()]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!((check.status.code(), run.status.code()), (Some(2), Some(2)), "{err}");
    assert!(
        err.contains("supervisor root, child \"n\": ") && err.contains("not a component"),
        "{err}"
    );
}

/// The repository's `examples/` directory.
fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn the_demo_shows_a_crash_a_dead_letter_an_escalation_and_ends_cleanly_with_stdin_closed() {
    let out = cmd()
        .args(["run", examples().join("demo.toml").to_str().unwrap(), "--events", "jsonl"])
        .stdin(Stdio::null()) // closed at once: the tree runs on regardless
        .output()
        .unwrap();
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let position = |what: &str, pred: &dyn Fn(&Value) -> bool| {
        events.iter().position(pred).unwrap_or_else(|| panic!("no {what} in {events:#?}"))
    };
    let crash = position("a crash", &|e| {
        e["event"] == "child_exited"
            && e["path"] == "root/services/flaky"
            && e["reason"]["kind"] == "trap"
    });
    let poison =
        position("a dead letter", &|e| e["event"] == "dead_letter" && e["reason"] == "crashed");
    let gave_up = position("an escalation", &|e| {
        e["event"] == "supervisor_gave_up" && e["path"] == "root/services"
    });
    let restarted = position("services restarted", &|e| {
        e["event"] == "child_started" && e["path"] == "root/services" && e["incarnation"] == 2
    });
    let clock_done = position("the clock's normal exit", &|e| {
        e["event"] == "child_exited" && e["path"] == "root/clock" && e["reason"]["kind"] == "normal"
    });
    assert!(crash < poison && poison < gave_up && gave_up < restarted && restarted < clock_done);
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["path"]),
        (&Value::from("supervisor_stopped"), &Value::from("root"))
    );
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_example_manifest_checks_and_shows_its_tree() {
    let mut manifests = vec![examples().join("demo.toml"), examples().join("tree.toml")];
    let mut features: Vec<PathBuf> = std::fs::read_dir(examples().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    features.sort();
    assert!(features.len() >= 8, "one manifest per feature: {features:?}");
    manifests.extend(features);
    let check = cmd().arg("check").args(&manifests).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok")).count(), manifests.len(), "{out}");
    for manifest in &manifests {
        let tree = cmd().arg("tree").arg(manifest).output().unwrap();
        let shown = String::from_utf8_lossy(&tree.stdout);
        assert!(tree.status.success() && shown.starts_with("root  supervisor "), "{shown}");
    }
}

#[test]
fn tree_and_schema_describe_a_manifest() {
    let (_dir, path) = manifest(ABC);
    let tree = cmd().args(["tree", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(tree.status.code(), Some(0));
    let shown = String::from_utf8_lossy(&tree.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "root  supervisor one_for_one, intensity 5 in 5s");
    assert!(lines[1].starts_with("├── a  worker chaos.wasm, shutdown 5s"), "{shown}");
    assert!(lines[3].starts_with("└── c  worker echo.wasm"), "{shown}");

    let (_dir, bad) = manifest("[root]\nstrategy = \"sideways\"\n");
    let tree = cmd().args(["tree", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(tree.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&tree.stderr).contains("line 2"));

    let schema = cmd().arg("schema").output().unwrap();
    let schema: Value = serde_json::from_slice(&schema.stdout).unwrap();
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(examples().join("../docs/manifest.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema, shipped,
        "docs/manifest.schema.json is stale: cargo run -p warden -- schema > docs/manifest.schema.json"
    );
    assert_eq!(schema["$defs"]["ChildEntry"]["additionalProperties"], false);
    assert!(schema["$defs"]["ChildEntry"]["properties"]["heartbeat"].is_object());
}

#[test]
fn pretty_events_are_a_readable_log() {
    let (_dir, path) = manifest(ABC);
    let out = cmd()
        .args(["run", path.to_str().unwrap(), "--events", "pretty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, r#"{{"cmd":"call","id":1,"to":"root/a","payload":"trap"}}"#)?;
            writeln!(stdin, r#"{{"cmd":"shutdown","id":2}}"#)?;
            child.wait_with_output()
        })
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(!log.contains('\x1b'), "no colour when stdout is not a terminal:\n{log}");
    for expected in [
        "root/a                   started #1",
        "root/a                   exited #1: trap unreachable",
        "reply                    1 error: callee_crashed: trap unreachable",
        "root                     supervisor stopped: shutdown",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
}

/// `(name, state, incarnation)` of a `which_children` reply.
fn summary(reply: &Value) -> Vec<(String, String, i64)> {
    reply["result"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {reply}"))
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap().to_owned();
            (text("name"), text("state"), c["incarnation"].as_i64().unwrap())
        })
        .collect()
}

fn running(children: &[(&str, i64)]) -> Vec<(String, String, i64)> {
    children.iter().map(|(n, i)| (n.to_string(), "running".to_string(), *i)).collect()
}

#[test]
fn one_for_all_and_rest_for_one_through_the_binary() {
    let mut warden = Running::start(&examples().join("manifests/strategies.toml"));
    warden.expect("store", |e| e["event"] == "child_started" && e["path"] == "root/pipeline/store");

    warden.command(r#"{"cmd":"call","id":1,"to":"root/group/b","payload":"trap"}"#);
    let c_restarted = |e: &Value| {
        e["event"] == "child_started" && e["path"] == "root/group/c" && e["incarnation"] == 2
    };
    let (reply, before) = warden.expect("reply 1", |e| e["event"] == "reply" && e["id"] == 1);
    assert!(reply["error"].as_str().unwrap().starts_with("callee_crashed: trap"));
    if !before.iter().any(c_restarted) {
        warden.expect("c #2", c_restarted);
    }
    warden.command(r#"{"cmd":"which_children","id":2,"supervisor":"root/group"}"#);
    assert_eq!(summary(&warden.reply(2)), running(&[("a", 2), ("b", 2), ("c", 2)]));

    warden.command(r#"{"cmd":"call","id":3,"to":"root/pipeline/parse","payload":"oob"}"#);
    let store_restarted = |e: &Value| {
        e["event"] == "child_started" && e["path"] == "root/pipeline/store" && e["incarnation"] == 2
    };
    // The reply follows the crash; the restart may come before or after it.
    let (reply, before) = warden.expect("reply 3", |e| e["event"] == "reply" && e["id"] == 3);
    assert!(reply["error"].as_str().unwrap().contains("memory_out_of_bounds"));
    let crash = |e: &Value| e["event"] == "child_exited" && e["path"] == "root/pipeline/parse";
    assert!(before.iter().any(crash), "the crash's event comes first: {before:#?}");
    if !before.iter().any(store_restarted) {
        warden.expect("store #2", store_restarted);
    }
    warden.command(r#"{"cmd":"which_children","id":4,"supervisor":"root/pipeline"}"#);
    assert_eq!(summary(&warden.reply(4)), running(&[("read", 1), ("parse", 2), ("store", 2)]));

    warden.command(r#"{"cmd":"shutdown","id":5}"#);
    let (_, events) = warden.expect("reply 5", |e| e["event"] == "reply" && e["id"] == 5);
    let order: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "supervisor_stopped")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["root/pipeline", "root/group", "root"], "newest first");
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn simple_one_for_one_through_the_binary() {
    let mut warden = Running::start(&examples().join("manifests/dynamic.toml"));
    warden.expect("pool", |e| e["event"] == "child_started" && e["path"] == "root/pool");
    warden.command(r#"{"cmd":"start_child","id":1,"supervisor":"root/pool","spec":{"name":"w1"}}"#);
    assert_eq!(warden.reply(1)["result"], serde_json::json!({"name":"w1","path":"root/pool/w1"}));
    warden.command(
        r#"{"cmd":"start_child","id":2,"supervisor":"root/pool","spec":{"config":{"fail_init":true}}}"#,
    );
    let failed = warden.reply(2);
    assert_eq!(failed["ok"], false);
    assert!(failed["error"].as_str().unwrap().contains("fail_init"), "{failed}");
    warden.command(r#"{"cmd":"start_child","id":3,"supervisor":"root/pool","spec":{}}"#);
    let started = warden.reply(3);
    let name = started["result"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("worker-"), "{started}");

    warden.command(r#"{"cmd":"call","id":4,"to":"root/pool/w1","payload":"exit:normal"}"#);
    let w1_exited = |e: &Value| e["event"] == "child_exited" && e["path"] == "root/pool/w1";
    // The exit it asked for is announced before the reply it came with.
    let (reply, skipped) = warden.expect("reply 4", |e| e["event"] == "reply" && e["id"] == 4);
    assert_eq!(reply["ok"], true);
    assert!(skipped.iter().any(w1_exited), "{skipped:#?}");
    warden.command(r#"{"cmd":"which_children","id":5,"supervisor":"root/pool"}"#);
    assert_eq!(summary(&warden.reply(5)), running(&[(&name, 1)]), "transient: not restarted");
    for (id, cmd, error) in [
        (
            6,
            r#"{"cmd":"delete_child","id":6,"supervisor":"root/pool","child":"x"}"#,
            "simple_one_for_one",
        ),
        (
            7,
            r#"{"cmd":"restart_child","id":7,"supervisor":"root/pool","child":"x"}"#,
            "simple_one_for_one",
        ),
        (8, r#"{"cmd":"start_child","id":8,"supervisor":"root/pool","spec":{"name":"w1x"}}"#, ""),
    ] {
        warden.command(cmd);
        let reply = warden.reply(id);
        if error.is_empty() {
            assert_eq!(reply["ok"], true, "{reply}");
        } else {
            assert_eq!(reply["error"], error, "{cmd}");
        }
    }
    // OTP counts one spec for a simple_one_for_one supervisor: the template.
    warden.command(r#"{"cmd":"count_children","id":9,"supervisor":"root/pool"}"#);
    assert_eq!(
        warden.reply(9)["result"],
        serde_json::json!({"specs":1,"active":2,"supervisors":0,"workers":2})
    );
    warden.command(r#"{"cmd":"shutdown","id":10}"#);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn sigterm_and_sigint_shut_the_tree_down_in_order_with_status_0() {
    for signal in ["TERM", "INT"] {
        let (_dir, path) = manifest(ABC);
        let mut warden = Running::start(&path);
        warden.expect("c started", |e| e["event"] == "child_started" && e["path"] == "root/c");
        warden.signal(signal);
        let mut order = Vec::new();
        for _ in 0..3 {
            let (e, _) = warden.expect("a child exit", |e| e["event"] == "child_exited");
            assert_eq!(e["reason"]["kind"], "shutdown", "{e}");
            order.push(e["path"].as_str().unwrap().to_owned());
        }
        assert_eq!(order, ["root/c", "root/b", "root/a"], "SIG{signal}: newest first");
        warden
            .expect("root stopped", |e| e["event"] == "supervisor_stopped" && e["path"] == "root");
        assert_eq!(warden.exit_code(), 0, "SIG{signal}");
    }
}

#[test]
fn on_a_terminal_run_shows_compile_progress_and_a_coloured_log() {
    // `script` gives the process a pseudo-terminal, as a person's shell would.
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"
auto_shutdown = "any_significant"

[[root.children]]
name = "job"
plugin = "TICKER"
restart = "transient"
significant = true
config = { interval_ms = 10, stop_after = 1 }
"#
        .replace("TICKER", warden_tests::TICKER)
        .as_str(),
    );
    let command = format!("{} run --in-memory {}", warden().display(), path.display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("script(1) runs a command on a pseudo-terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(screen.contains("compiling 0/1"), "a progress bar while compiling:\n{screen}");
    assert!(screen.contains("\x1b[32mroot/job"), "pretty and coloured by default:\n{screen}");
    assert!(screen.contains("started #1") && !screen.contains(r#""event""#), "{screen}");
}
