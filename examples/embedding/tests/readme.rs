//! The README's embedding program is `src/bin/hello.rs`, verbatim, and does what the
//! README says when run from the repository's root.

use std::path::Path;
use std::process::Command;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("examples/embedding")
}

#[test]
fn the_readmes_embedding_program_is_hello_rs_verbatim() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let hello = include_str!("../src/bin/hello.rs");
    let embedding = &readme[readme.find("## Embedding").expect("an Embedding section")..];
    let block = embedding
        .split("```rust")
        .nth(1)
        .and_then(|b| b.split_once('\n'))
        .and_then(|(_, b)| b.split("```").next())
        .expect("a Rust block in the Embedding section");
    assert_eq!(block, hello, "README.md's first embedding block and src/bin/hello.rs differ");
}

#[test]
fn the_readmes_embedding_program_runs_a_tree_crashes_a_child_and_sees_it_restart() {
    let out = Command::new(env!("CARGO_BIN_EXE_hello"))
        .current_dir(workspace())
        .output()
        .expect("the hello program runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "echo answered hello");
    assert!(lines[1].starts_with("chaos crashed: trap unreachable"), "{stdout}");
    assert!(stdout.contains("root/chaos exited: trap unreachable"), "{stdout}");
    assert!(stdout.contains("root/chaos restarted (incarnation 2)"), "{stdout}");
    let tail = &lines[lines.len() - 2..];
    assert_eq!(tail, ["echo Running #1", "chaos Running #2"], "{stdout}");
}
