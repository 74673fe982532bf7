//! Durable state through the binary: a host killed with SIGKILL in the middle of a
//! stream of sets loses none that returned, one data dir per host, a corrupted
//! database refused and left alone, and `warden state` to read and edit it offline.

mod common;

use common::{Running, cmd, manifest};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

const WRITER: &str = r#"
[root]
strategy = "one_for_one"

[[root.children]]
name = "w"
plugin = "CHAOS"
"#;

fn started(e: &Value) -> bool {
    e["event"] == "child_started" && e["path"] == "root/w"
}

/// `warden state ARGS --data-dir DIR`: status, stdout, stderr.
fn state(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cmd().arg("state").args(args).arg("--data-dir").arg(dir).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The keys of `root/w`, read offline.
fn stored_keys(dir: &Path) -> BTreeSet<String> {
    let (code, out, err) = state(dir, &["ls", "root/w"]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect()
}

/// `warden run MANIFEST --data-dir DATA` with stdin closed, to its end.
fn run_once(manifest: &Path, data: &Path) -> std::process::Output {
    cmd()
        .arg("run")
        .arg(manifest)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn sigkill_in_a_stream_of_sets_loses_none_that_returned() {
    let (tmp, path) = manifest(WRITER);
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut acknowledged = BTreeSet::new();
    for round in 0..40u32 {
        let mut run = Running::start_with(&path, &["--data-dir", data_arg]);
        // Each start opens the store the last kill left, cleanly (recovered by redb).
        run.expect("the writer's start", started);
        // Sets whose reply was seen, then more in flight, then the kill: the kill
        // point moves with the round and with whatever the writer thread is doing.
        let answered = 1 + (round * 7) % 23;
        let in_flight = (round * 5) % 11;
        for i in 0..answered + in_flight {
            let set = format!(
                r#"{{"cmd":"call","id":{i},"to":"root/w","payload":"state:set:r{round}-{i}:v{i}"}}"#
            );
            run.command(&set);
        }
        // Replies to concurrent commands come in the order they finish, not always
        // the order of their lines.
        let mut waiting: BTreeSet<i64> = (0..answered).map(i64::from).collect();
        while !waiting.is_empty() {
            let (reply, _) = run.expect("a set's reply", |e| {
                e["event"] == "reply" && e["id"].as_i64().is_some_and(|id| waiting.contains(&id))
            });
            assert_eq!(reply["ok"], true, "{reply}");
            let i = reply["id"].as_i64().unwrap();
            waiting.remove(&i);
            acknowledged.insert(format!("r{round}-{i}"));
        }
        run.signal("KILL");
        assert_eq!(run.exit_code(), -1, "killed by the signal");
        let stored = stored_keys(&data);
        let lost: Vec<_> = acknowledged.difference(&stored).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged sets lost: {lost:?}");
    }
    // The values are whole too.
    let (code, out, _) = state(&data, &["get", "root/w", "r39-3"]);
    assert_eq!((code, out.as_str()), (0, "v3"));
}

#[test]
fn a_data_dir_serves_one_host_and_a_corrupted_database_is_not_touched() {
    let (tmp, path) = manifest(WRITER);
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut first = Running::start_with(&path, &["--data-dir", data_arg]);
    first.expect("the writer's start", started);
    let second = run_once(&path, &data);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    let expected = format!("data dir {} is in use by pid {}", data.display(), first.pid());
    assert!(err.contains(&expected), "{err}");
    let (code, _, err) = state(&data, &["ls"]);
    assert!(code != 0 && err.contains(&expected), "offline tools wait their turn too: {err}");
    first.command(r#"{"cmd":"shutdown","id":1}"#);
    assert_eq!(first.exit_code(), 0);

    let file = data.join("state.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..512].fill(0x42);
    std::fs::write(&file, &bytes).unwrap();
    let run = run_once(&path, &data);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("state.redb is corrupted") && err.contains("left as it is"), "{err}");
    assert!(run.stdout.is_empty(), "nothing started");
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "the damaged file is as it was");
}

#[test]
fn warden_state_lists_gets_dumps_sets_and_removes_offline() {
    let (tmp, path) = manifest(&format!(
        "data_dir = \"state\"\n{WRITER}\n[[root.children]]\nname = \"x\"\nplugin = \"CHAOS\"\n"
    ));
    let mut run = Running::start(&path);
    run.expect("the writer's start", started);
    for (id, (to, payload)) in
        [("root/w", "state:set:a:1"), ("root/w", "state:set:b:22"), ("root/x", "state:set:k:v")]
            .into_iter()
            .enumerate()
    {
        run.command(&format!(r#"{{"cmd":"call","id":{id},"to":"{to}","payload":"{payload}"}}"#));
        assert_eq!(run.reply(id as i64)["ok"], true);
    }
    run.command(r#"{"cmd":"shutdown","id":9}"#);
    assert_eq!(run.exit_code(), 0);

    // The manifest's data_dir, relative to it; `--manifest` finds it the same way.
    let data = tmp.path().join("state");
    let by_manifest =
        cmd().args(["state", "ls", "--manifest", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&by_manifest.stdout),
        "root/w\t2 keys\t5 bytes\nroot/x\t1 keys\t2 bytes\n"
    );
    assert_eq!(state(&data, &["ls", "root/w"]).1, "a\t1 bytes\nb\t2 bytes\n");
    assert_eq!(state(&data, &["get", "root/w", "b"]).1, "22");
    let dump: Vec<Value> =
        state(&data, &["dump"]).1.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dump[0], serde_json::json!({"path": "root/w", "key": "a", "value": "1"}));
    assert_eq!(dump.len(), 3);
    assert_eq!(state(&data, &["dump", "root/x"]).1.lines().count(), 1);

    assert_eq!(state(&data, &["set", "root/w", "c", "333"]).0, 0);
    assert_eq!(state(&data, &["rm", "root/w", "a"]).1, "removed root/w a\n");
    let (code, _, err) = state(&data, &["get", "root/w", "a"]);
    assert_eq!((code, err.as_str()), (1, "no key \"a\" under root/w\n"));
    assert_eq!(state(&data, &["ls", "root/w"]).1, "b\t2 bytes\nc\t3 bytes\n");
    assert_eq!(state(&data, &["rm", "root"]).1, "removed 3 keys of root and below\n");
    assert_eq!(state(&data, &["ls"]).1, "");

    let (code, _, err) = state(&tmp.path().join("nothing"), &["ls"]);
    assert!(code != 0 && err.contains("no state here"), "{err}");
    assert!(!tmp.path().join("nothing").exists(), "a mistyped dir is not created");
}

#[test]
fn by_default_state_lives_in_a_directory_of_the_manifests_own() {
    let (_tmp, path) = manifest(WRITER);
    for expected in ["1", "2"] {
        let mut run = Running::start(&path);
        run.expect("the writer's start", started);
        run.command(r#"{"cmd":"call","id":1,"to":"root/w","payload":"state:get:n"}"#);
        let previous = run.reply(1);
        if expected == "2" {
            assert_eq!(
                previous["result"], "1",
                "the second run finds the first's state: {previous}"
            );
        }
        let set =
            format!(r#"{{"cmd":"call","id":2,"to":"root/w","payload":"state:set:n:{expected}"}}"#);
        run.command(&set);
        assert_eq!(run.reply(2)["ok"], true);
        run.command(r#"{"cmd":"shutdown","id":3}"#);
        assert_eq!(run.exit_code(), 0);
    }
    let ls = cmd().args(["state", "-m", path.to_str().unwrap(), "ls"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "root/w\t1 keys\t2 bytes\n");
}
