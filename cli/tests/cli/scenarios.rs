//! `warden test`: scenarios run against a manifest's tree, each on a fresh one; a
//! failure names its step and shows what came instead; a bad scenario is refused with
//! every problem and its place.

use crate::common::{cmd, manifest};

const TREE: &str = r#"
[root]
strategy = "one_for_one"
intensity = 5

[[root.children]]
name = "a"
plugin = "CHAOS"

[[root.children]]
name = "c"
plugin = "ECHO"
"#;

/// Writes `scenarios` (name, text) into `tests/` beside a manifest of `TREE`.
fn project(scenarios: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = manifest(TREE);
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    for (name, text) in scenarios {
        std::fs::write(dir.path().join("tests").join(name), text).unwrap();
    }
    (dir, path)
}

const PASSES: &str = r#"
[[step]]
command = { cmd = "terminate_child", supervisor = "root", child = "nobody" }
reply = { ok = false, error = "not_found" }

[[step]]
command = { cmd = "call", to = "root/a", payload = "state:set:k:1" }

[[step]]
name = "a crash, and its restart"
command = { cmd = "call", to = "root/a", payload = "div0" }
reply = { ok = false }

[[step]]
event = { event = "child_exited", path = "root/a", reason = { kind = "trap", trap = "integer_division_by_zero" } }

[[step]]
event = { event = "child_started", path = "root/a", incarnation = 2 }

[[step]]
command = { cmd = "call", to = "root/a", payload = "state:get:k" }
reply = { ok = true, result = "1" }

[[step]]
command = { cmd = "which_children", supervisor = "root" }
reply = { ok = true, result = [{ name = "a", incarnation = 2, restarts = 1 }, { name = "c", state = "running" }] }
"#;

#[test]
fn scenarios_pass_each_on_a_fresh_tree_and_a_failure_names_its_step() {
    // The same passing scenario twice: the second starts from nothing (its state too).
    let fails = r#"
[[step]]
command = { cmd = "call", to = "root/c", payload = "hi" }
reply = { result = "hi" }

[[step]]
name = "a wrong reply"
command = { cmd = "call", to = "root/c", payload = "hello" }
reply = { result = "goodbye" }
"#;
    let times_out = r#"
[[step]]
command = { cmd = "call", to = "root/a", payload = "echo:x" }

[[step]]
event = { event = "child_started", path = "root/a", incarnation = 2 }
within = "300ms"
"#;
    // The first start of root/c came before this step's command: it is not the event
    // this step waits for.
    let old_events = r#"
[[step]]
command = { cmd = "call", to = "root/c", payload = "hi" }

[[step]]
event = { event = "child_started", path = "root/c" }
within = "200ms"
"#;
    let (dir, manifest) = project(&[
        ("1-passes.toml", PASSES),
        ("2-passes-again.toml", PASSES),
        ("3-fails.toml", fails),
        ("4-times-out.toml", times_out),
        ("5-old-events-are-not-taken.toml", old_events),
    ]);
    let out = cmd().current_dir(dir.path()).args(["test", "-m"]).arg(&manifest).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let dir = dir.path().join("tests");
    let scenario = |name: &str| format!("scenario {} ...", dir.join(name).display());
    for expected in [
        format!("running 5 scenarios against {}", manifest.display()),
        format!("{} ok (7 steps", scenario("1-passes.toml")),
        format!("{} ok (7 steps", scenario("2-passes-again.toml")),
        format!("{} FAILED", scenario("3-fails.toml")),
        r#"  step 2 (call root/c: a wrong reply): expected a reply like {"result":"goodbye"}"#
            .to_owned(),
        r#"       got {"event":"reply","id":2,"ok":true,"result":"hello"}"#.to_owned(),
        format!("{} FAILED", scenario("4-times-out.toml")),
        r#"  step 2 (event child_started): expected an event like {"event":"child_started","incarnation":2,"path":"root/a"}: none within 300ms"#.to_owned(),
        "  no event since the step's commands began".to_owned(),
        format!("{} FAILED", scenario("5-old-events-are-not-taken.toml")),
        "2 passed, 3 failed".to_owned(),
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(&expected)), "no {expected:?} in:\n{stdout}");
    }
}

#[test]
fn a_bad_scenario_or_manifest_is_refused_with_its_place() {
    let (dir, manifest) = project(&[
        ("bad.toml", "[[step]]\ncommand = { cmd = \"shutdown\" }\n\n[[step]]\nevent = \"x\"\n"),
        ("typo.toml", "[[step]]\ncomand = {}\n"),
    ]);
    let out = cmd().args(["test", "-m"]).arg(&manifest).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let tests = dir.path().join("tests");
    for expected in [
        format!(
            "{}: step 1: command: `shutdown` is not taken in a scenario",
            tests.join("bad.toml").display()
        ),
        format!("{}: step 2: event: must be a table", tests.join("bad.toml").display()),
        format!("{}: TOML parse error at line 2", tests.join("typo.toml").display()),
    ] {
        assert!(stderr.contains(&expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("unknown field `comand`"), "{stderr}");

    // No scenarios at all, and a manifest that does not load.
    let empty = tempfile::tempdir().unwrap();
    let (_m, path) = manifest_in(empty.path());
    let out = cmd().args(["test", "-m"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenarios:"));
    let nothing = tempfile::tempdir().unwrap();
    let out = cmd().current_dir(nothing.path()).arg("test").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warden.toml: cannot read"), "{stderr}");
}

/// A manifest of `TREE` in `dir`, with no scenarios beside it.
fn manifest_in(dir: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let (from, path) = manifest(TREE);
    let here = dir.join("warden.toml");
    std::fs::copy(&path, &here).unwrap();
    (from, here)
}
