//! `warden new`: a project that builds, and whose plugin runs supervised.

use crate::common::{Running, cmd};
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn a_new_plugin_project_builds_checks_and_runs_supervised() {
    let dir = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| cmd().current_dir(dir.path()).arg("new").args(args).output().unwrap();
    let out = new(&["hello-world", "--path", repo().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let project = dir.path().join("hello-world");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "tests/supervised.rs",
        "warden.toml",
        "README.md",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(readme.contains("cargo build --release --target wasm32-wasip2\ncargo test"));

    // What is refused, and why.
    let out = new(&["hello-world"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = new(&["Hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a plugin name"));
    let out = new(&["other", "--path", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Warden checkout"));

    // The README's first command builds the component (in a target dir of this
    // repository's, kept between runs).
    let built = Command::new(env!("CARGO"))
        .current_dir(&project)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", repo().join("target/new-plugin"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let wasm = repo().join("target/new-plugin/wasm32-wasip2/release/hello_world.wasm");
    let manifest = std::fs::read_to_string(project.join("warden.toml")).unwrap();
    let manifest =
        manifest.replace("target/wasm32-wasip2/release/hello_world.wasm", wasm.to_str().unwrap());
    std::fs::write(project.join("warden.toml"), manifest).unwrap();

    let check = cmd().arg("check").arg(project.join("warden.toml")).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    // Supervised: it answers, crashes, is restarted and keeps its count.
    let mut warden = Running::start_with(&project.join("warden.toml"), &["--in-memory"]);
    warden.expect("started", |e| e["event"] == "child_started");
    warden.command(r#"{"cmd":"call","id":1,"to":"root/hello-world","payload":"incr"}"#);
    assert_eq!(warden.reply(1)["result"], "1");
    warden.command(r#"{"cmd":"call","id":2,"to":"root/hello-world","payload":"crash"}"#);
    let (reply, before) = warden.expect("reply 2", |e| e["event"] == "reply" && e["id"] == 2);
    assert!(reply["error"].as_str().unwrap().contains("asked to crash at 1"), "{reply}");
    // The restart may come before the reply or after it.
    warden.expect_unless_seen(&before, "#2", |e| {
        e["event"] == "child_started" && e["incarnation"] == 2
    });
    warden.command(r#"{"cmd":"call","id":3,"to":"root/hello-world","payload":"get"}"#);
    assert_eq!(warden.reply(3)["result"], "1", "the count survived");
    warden.command(r#"{"cmd":"shutdown"}"#);
    assert_eq!(warden.exit_code(), 0);
}

#[test]
fn a_new_python_plugin_project_builds_and_passes_its_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd().current_dir(dir.path()).args(["new", "hello-py", "--lang", "python"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let project = dir.path().join("hello-py");
    for file in [
        "app.py",
        "wit/plugin.wit",
        "tests/supervised.toml",
        "warden.toml",
        "README.md",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let build = "componentize-py -d wit -w plugin componentize app -o hello-py.wasm";
    assert!(readme.contains(&format!("{build}\nwarden test")), "{readme}");

    // The README's two commands.
    let tool = warden_tests::componentize_py(repo());
    let built = Command::new(tool)
        .current_dir(&project)
        .args(build.split(' ').skip(1))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let tested = cmd().current_dir(&project).arg("test").output().unwrap();
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{stdout}{}", String::from_utf8_lossy(&tested.stderr));
    assert!(stdout.contains("scenario tests/supervised.toml ... ok (9 steps"), "{stdout}");
    assert!(stdout.ends_with("1 passed, 0 failed\n"), "{stdout}");
}
