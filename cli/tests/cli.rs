//! The `warden` binary end to end (an integration test of the host package, so that
//! cargo builds the binary for it; the fixture plugins come from `warden-tests`): manifests, the JSON-lines events and control
//! protocol, exit status, and bad input. Every read has a deadline.

mod common;
#[path = "cli/new.rs"]
mod new;
#[path = "cli/operating.rs"]
mod operating;
#[path = "cli/scenarios.rs"]
mod scenarios;
#[path = "cli/view.rs"]
mod view;

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
    // Not before its timeout (how soon after it is the isolated tests' business).
    assert!(since >= 100, "{since}");
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

#[test]
fn check_refuses_a_plugin_that_imports_an_application_interface_and_a_bad_grant() {
    let (_d, path) = manifest(&format!(
        "[root]\nstrategy = \"one_for_one\"\n[[root.children]]\nname = \"a\"\nplugin = {:?}\n\
         grants = {{ interfaces = [\"acme:*\", \"test:app/*\"] }}\n",
        warden_tests::IMPORTER
    ));
    let check = cmd().args(["check", path.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(2), "{out}");
    for expected in [
        "child \"a\": grants.interfaces: \"acme:*\" is not an interface grant",
        "imports something the host does not provide: the application interface \
         `test:app/calc@0.1.0`, which this host does not provide (it provides none: an \
         application that embeds Warden gives its own)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn a_second_check_or_run_takes_compiled_plugins_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let demo = examples().join("demo.toml");
    let check = |extra: &[&str]| {
        let mut args = vec!["check", demo.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = ["--cache-dir", cache.path().to_str().unwrap()];
    // The demo names four plugins.
    assert!(check(&dir).ends_with("demo.toml (compiled 4, 0 from the cache)\n"));
    assert!(check(&dir).ends_with("demo.toml (compiled 0, 4 from the cache)\n"));
    assert!(check(&["--no-cache"]).ends_with("demo.toml\n"));
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
        "docs/manifest.schema.json is stale: cargo run --bin warden -- schema > docs/manifest.schema.json"
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

#[test]
fn commands_run_concurrently_and_a_bad_line_gets_an_error_not_the_end() {
    let (_dir, path) = manifest(ABC);
    let mut warden = Running::start(&path);
    warden.expect("c started", |e| e["event"] == "child_started" && e["path"] == "root/c");
    // A call busy for a second, then a count: the count is answered first.
    warden.command(r#"{"cmd":"call","id":1,"to":"root/a","payload":"busy:1000"}"#);
    warden.command(r#"{"cmd":"count_children","id":2,"supervisor":"root"}"#);
    let (first, _) = warden.expect("a reply", |e| e["event"] == "reply");
    assert_eq!(first["id"], 2, "the slow call does not hold the count back: {first}");
    assert_eq!(warden.reply(1)["result"], "ok");

    // Invalid UTF-8, then an overlong line: each an error reply, and the loop goes on.
    warden.write(b"{\"cmd\":\"\xff\xfe\"}\n");
    let (bad, _) = warden.expect("an error reply", |e| e["event"] == "reply");
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().starts_with("malformed command"), "{bad}");
    warden.command(r#"{"cmd":"frobnicate","id":"x"}"#);
    let unknown = warden.expect("reply x", |e| e["event"] == "reply" && e["id"] == "x").0;
    assert!(unknown["error"].as_str().unwrap().starts_with("unknown command \"frobnicate\""));
    warden.command(r#"{"cmd":"call","id":3,"to":"root/c","payload":"still here"}"#);
    assert_eq!(warden.reply(3)["result"], "still here");

    // A start_child whose durations would overflow the clock is refused, and the tree
    // goes on answering.
    warden.command(
        &r#"{"cmd":"start_child","id":4,"supervisor":"root","spec":{"name":"d","plugin":"CHAOS","heartbeat":{"timeout":"500000000000y"}}}"#
            .replace("CHAOS", CHAOS),
    );
    let refused = warden.reply(4);
    assert!(
        refused["error"].as_str().unwrap().contains("longer than the longest allowed"),
        "{refused}"
    );
    warden.command(r#"{"cmd":"count_children","id":5,"supervisor":"root"}"#);
    assert_eq!(warden.reply(5)["result"]["specs"], 3);
    warden.command(r#"{"cmd":"shutdown","id":6}"#);
    assert_eq!(warden.reply(6)["ok"], true);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn a_call_chain_replies_after_every_crash_it_caused() {
    // The CLI calls a, which calls b, which crashes: both b's exit and a's answer come
    // before the CLI's reply.
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"
intensity = 10

[[root.children]]
name = "a"
plugin = "CHAOS"
grants = { targets = ["root/b"] }

[[root.children]]
name = "b"
plugin = "CHAOS"
grants = { targets = ["root/a"] }
"#,
    );
    let mut warden = Running::start(&path);
    warden.expect("b started", |e| e["event"] == "child_started" && e["path"] == "root/b");
    warden.command(r#"{"cmd":"call","id":1,"to":"root/a","payload":"call:root/b:div0"}"#);
    let (reply, before) = warden.expect("reply 1", |e| e["event"] == "reply" && e["id"] == 1);
    assert!(
        before.iter().any(|e| e["event"] == "child_exited" && e["path"] == "root/b"),
        "b's crash is printed before the reply: {before:#?}"
    );
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("callee crashed: trap (integer division by zero): "), "{error}");
    warden.command(r#"{"cmd":"call","id":2,"to":"root/a","payload":"call:root/b:call:root/a:x"}"#);
    assert_eq!(warden.reply(2)["error"], "deadlock: root/a -> root/b -> root/a");
    warden.command(r#"{"cmd":"shutdown","id":3}"#);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn a_stderr_nobody_reads_does_not_wedge_the_host() {
    // Two children log 2 MB at error level into a pipe that is never read: once, the
    // host blocked on it, calls timed out and neither shutdown nor SIGTERM ended it.
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "a"
plugin = "HOSTILE"

[[root.children]]
name = "b"
plugin = "HOSTILE"

[[root.children]]
name = "echo"
plugin = "ECHO"
"#,
    );
    let mut warden = Running::spawn(
        cmd()
            .args(["run", path.to_str().unwrap(), "--events", "jsonl", "--in-memory"])
            .stderr(Stdio::piped()), // and never read
    );
    warden.expect("echo", |e| e["event"] == "child_started" && e["path"] == "root/echo");
    warden.command(r#"{"cmd":"call","id":1,"to":"root/a","payload":"log:10000:100"}"#);
    warden.command(r#"{"cmd":"call","id":2,"to":"root/b","payload":"log:10000:100"}"#);
    // Concurrent commands: the replies come in either order.
    let (first, _) = warden.expect("a reply", |e| e["event"] == "reply");
    let (second, _) = warden.expect("another reply", |e| e["event"] == "reply");
    let mut ids = [first["id"].as_i64(), second["id"].as_i64()];
    ids.sort();
    assert_eq!(ids, [Some(1), Some(2)]);
    assert_eq!((&first["result"], &second["result"]), (&Value::from("ok"), &Value::from("ok")));
    warden.command(r#"{"cmd":"call","id":3,"to":"root/echo","payload":"hi","timeout_ms":5000}"#);
    assert_eq!(warden.reply(3)["result"], "hi");
    warden.command(r#"{"cmd":"shutdown","id":4}"#);
    assert_eq!(warden.reply(4)["ok"], true);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn what_a_guest_says_reaches_the_pretty_log_escaped() {
    // A panic message with a newline and an escape sequence: once, it printed a forged
    // "supervisor gave up" line and retitled the terminal.
    let (_dir, path) = manifest(
        "[root]\nstrategy = \"one_for_one\"\n[[root.children]]\nname = \"h\"\nplugin = \"HOSTILE\"\n",
    );
    let mut warden = cmd()
        .args(["run", path.to_str().unwrap(), "--events", "pretty", "--in-memory"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = warden.stdin.take().unwrap();
    let forged =
        r"panic:boom\n     1.000s  root                     supervisor gave up\e]0;pwned\a";
    writeln!(stdin, r#"{{"cmd":"send","to":"root/h","payload":{forged:?}}}"#).unwrap();
    writeln!(stdin, r#"{{"cmd":"call","to":"root/h","payload":"fail:x\\n\\e[2Jy"}}"#).unwrap();
    writeln!(stdin, r#"{{"cmd":"shutdown"}}"#).unwrap();
    let out = warden.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(!log.contains('\x1b'), "no raw escape reaches the terminal:\n{log:?}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().all(|l| !l.trim_start().starts_with("1.000s")), "no forged line:\n{log}");
    let exit = lines.iter().find(|l| l.contains("root/h") && l.contains("exited #1")).unwrap();
    assert!(exit.contains(r"boom\n     1.000s"), "{exit}");
    assert!(log.contains(r"error: x\n\u{1b}[2Jy"), "the application error, escaped:\n{log}");
}

#[test]
fn a_memory_limit_above_the_default_pool_is_honoured() {
    // The default pool gives a memory 256 MiB; a 300 MiB limit once became an
    // anonymous abort at 256 MiB. `warden run` sizes the pool to the largest limit.
    let (_dir, path) = manifest(
        "[root]\nstrategy = \"one_for_one\"\n[[root.children]]\nname = \"big\"\nplugin = \"CHAOS\"\n\
         limits = { memory = \"300MiB\" }\n",
    );
    let mut warden = Running::start_with(&path, &["--in-memory"]);
    warden.expect("big", |e| e["event"] == "child_started" && e["path"] == "root/big");
    warden.command(r#"{"cmd":"call","id":1,"to":"root/big","payload":"oom"}"#);
    let (exited, _) = warden.expect("big's exit", |e| e["event"] == "child_exited");
    assert_eq!(
        (&exited["reason"]["trap"], &exited["reason"]["message"]),
        (&Value::from("memory_limit"), &exited["reason"]["message"])
    );
    assert!(exited["reason"]["message"].as_str().unwrap().contains("314572800"), "{exited}");
    warden.command(r#"{"cmd":"shutdown","id":2}"#);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn a_script_piped_at_once_takes_effect_in_line_order() {
    // Commands run concurrently, but each is sent on its way before the next line is
    // read: commands to one supervisor or child act in order, and `shutdown` answers
    // the commands before it first.
    let (_dir, path) = manifest(ABC);
    let script = [
        r#"{"cmd":"send","id":1,"to":"root/a","payload":"busy:300"}"#,
        r#"{"cmd":"terminate_child","id":2,"supervisor":"root","child":"b"}"#,
        r#"{"cmd":"restart_child","id":3,"supervisor":"root","child":"b"}"#,
        r#"{"cmd":"which_children","id":4,"supervisor":"root"}"#,
        r#"{"cmd":"call","id":5,"to":"root/a","payload":"echo:after the busy one"}"#,
        r#"{"cmd":"shutdown","id":6}"#,
    ]
    .join("\n");
    let out = cmd()
        .args(["run", path.to_str().unwrap(), "--events", "jsonl", "--in-memory"])
        .stdin(
            std::fs::File::open({
                let file = path.with_extension("jsonl");
                std::fs::write(&file, script + "\n").unwrap();
                file
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reply = |id: i64| {
        events
            .iter()
            .find(|e| e["event"] == "reply" && e["id"] == id)
            .unwrap_or_else(|| panic!("no reply {id} in {events:#?}"))
    };
    assert!((1..=3).all(|id| reply(id)["ok"] == true), "{events:#?}");
    assert_eq!(summary(reply(4)), running(&[("a", 1), ("b", 2), ("c", 1)]));
    assert_eq!(reply(5)["result"], "after the busy one");
    let last = events.last().unwrap();
    assert_eq!((&last["event"], &last["id"]), (&Value::from("reply"), &Value::from(6)));
}

#[test]
fn a_call_that_times_out_cancels_its_chain_below_on_the_event_stream() {
    let (_dir, path) = manifest(
        r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "a"
plugin = "CHAOS"
grants = { targets = ["root/c"] }

[[root.children]]
name = "c"
plugin = "CHAOS"
"#,
    );
    let mut warden = Running::start(&path);
    warden.expect("c started", |e| e["event"] == "child_started" && e["path"] == "root/c");
    warden.command(
        r#"{"cmd":"call","id":1,"to":"root/a","payload":"call:root/c:patient:5000","timeout_ms":200}"#,
    );
    // The chain's cancellation is published before the reply, as everything its
    // command caused.
    let (reply, before) = warden.expect("reply 1", |e| e["event"] == "reply" && e["id"] == 1);
    assert_eq!(reply["error"], "timeout");
    let cancelled = |path: &str| {
        before
            .iter()
            .find(|e| e["event"] == "call_cancelled" && e["path"] == path)
            .unwrap_or_else(|| panic!("no call_cancelled for {path}: {before:#?}"))
    };
    let (a, c) = (cancelled("root/a"), cancelled("root/c"));
    let deadline = serde_json::json!({"kind": "deadline", "call_to": "root/a"});
    assert_eq!((&a["reason"], a.get("caller")), (&deadline, None), "{a}");
    assert_eq!((&c["reason"], &c["caller"]), (&deadline, &Value::from("root/a")), "{c}");
    assert_eq!(a["chain"], c["chain"], "one operation, one chain id");
    // c stopped early and its next call failed `cancelled`: what it stored says so.
    warden.command(r#"{"cmd":"call","id":2,"to":"root/c","payload":"state:get:patient"}"#);
    let said = warden.reply(2)["result"].as_str().unwrap().to_owned();
    assert!(said.starts_with("stopped after "), "{said}");
    assert!(said.contains("cancelled: the deadline of the call to root/a passed"), "{said}");
    warden.command(r#"{"cmd":"shutdown","id":3}"#);
    assert_eq!(warden.exit_code(), 0);
}
