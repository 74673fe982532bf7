//! A hostile guest at the canonical ABI, where no SDK stands between it and the host:
//! a component written by hand (WAT, given the WIT's types by `wit-component`) that
//! grows its table without end, answers the host's `cabi_realloc` with pointers out of
//! its memory or not at all, returns lists longer than its memory, and hands the host's
//! imports arguments that point nowhere. Each ends its incarnation with a typed reason,
//! its caller is told, the child restarts, and the host serves on.

use std::time::Duration;
use warden::events::Event;
use warden::sandbox::{MessageError, Plugin};
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use warden::testing::{TestTree, exited, started};
use warden::{ExitReason, KillCause, TrapKind};
use warden_tests::{ECHO, engine};

/// The guest. `handle` reads the payload's first byte:
///
/// | byte | what it does |
/// |---|---|
/// | `t` | grows its table by 1,000 elements until refused |
/// | `h` | answers ok with a list of 2 GiB at address 0 |
/// | `H` | answers with its return area out of its memory |
/// | `s` | calls `runtime.send` with a payload of 4 GiB at address 0 |
/// | `p` | calls `runtime.self-path` with its return area out of its memory |
/// | `r` | from now on, `cabi_realloc` answers with an address out of its memory |
/// | `l` | from now on, `cabi_realloc` never returns |
/// | anything else | answers ok with an empty list |
const GUEST: &str = r#"
(module
  (import "warden:plugin/runtime@0.2.0" "send" (func $send (param i32 i32 i32 i32 i32)))
  (import "warden:plugin/runtime@0.2.0" "self-path" (func $self_path (param i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 1024))
  (global $realloc (mut i32) (i32.const 0))
  (data (i32.const 16) "root/abi")

  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (if (i32.eq (global.get $realloc) (i32.const 0x72)) (then (return (i32.const -16))))
    (if (i32.eq (global.get $realloc) (i32.const 0x6c)) (then (loop $forever (br $forever))))
    ;; A bump allocator, 8-aligned, that grows memory as it goes.
    (local.set $at (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.const 1)
        (i32.shr_u (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
                   (i32.const 16)))))))
    (local.get $at))

  (func (export "warden:plugin/guest@0.2.0#init")
        (param i32 i32 i32 i32 i64 i32 i32) (result i32)
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.const 0))

  (func (export "warden:plugin/guest@0.2.0#handle")
        (param i32 i32 i32) (param $ptr i32) (param $len i32) (param i32) (result i32)
    (local $op i32)
    (if (local.get $len) (then (local.set $op (i32.load8_u (local.get $ptr)))))
    ;; ok, an empty list: the answer unless the op says otherwise
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (i32.const 0))
    (i32.store (i32.const 8) (i32.const 0))
    (block $done
      (if (i32.eq (local.get $op) (i32.const 0x74)) (then
        (loop $grow
          (br_if $done (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1)))
          (br $grow))))
      (if (i32.eq (local.get $op) (i32.const 0x68)) (then
        (i32.store (i32.const 8) (i32.const 0x7fffffff))
        (br $done)))
      (if (i32.eq (local.get $op) (i32.const 0x48)) (then (return (i32.const -4))))
      (if (i32.eq (local.get $op) (i32.const 0x73)) (then
        (call $send (i32.const 16) (i32.const 8) (i32.const 0) (i32.const -1) (i32.const 32))
        (br $done)))
      (if (i32.eq (local.get $op) (i32.const 0x70)) (then
        (call $self_path (i32.const -4))
        (br $done)))
      (global.set $realloc (local.get $op)))
    (i32.const 0))

  (func (export "warden:plugin/guest@0.2.0#terminate")
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32)))
"#;

/// [`GUEST`] as a component of the `plugin` world.
fn guest() -> Plugin {
    let mut module = wat::parse_str(GUEST).expect("the guest's WAT");
    let mut resolve = wit_parser::Resolve::default();
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit");
    let package = resolve.push_file(wit).expect("the WIT");
    let world = resolve.select_world(&[package], Some("plugin")).expect("the plugin world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("the WIT embeds");
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("the module fits the world")
        .validate(true)
        .encode()
        .expect("a component");
    engine().load("abi.wasm", &component).expect("the component loads")
}

async fn start() -> TestTree {
    let mut abi = PluginStart::new(guest());
    abi.limits.max_table_elements = 5_000;
    abi.limits.call_deadline = Some(Duration::from_millis(300));
    let echo = PluginStart::new(engine().load_file(ECHO).expect("echo loads"));
    let mut spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::plugin("abi", abi), ChildSpec::plugin("echo", echo)],
    );
    spec.intensity = 100;
    TestTree::start(spec).await.expect("the tree starts")
}

/// Sends `ops` to the guest (each `call`ed, the last one expected to end the
/// incarnation); returns the exit reason its caller and the event stream were given.
async fn crash(tree: &mut TestTree, incarnation: u64, ops: &[&str]) -> ExitReason {
    let (last, before) = ops.split_last().expect("an op");
    for op in before {
        assert_eq!(tree.call("root/abi", op).await, Ok(Vec::new()), "{op}");
    }
    let answer = tree.call("root/abi", last).await;
    let exit = tree.expect(exited("root/abi")).await;
    let Event::ChildExited { reason, incarnation: ended, .. } = exit.event else { unreachable!() };
    assert_eq!(ended, incarnation);
    assert_eq!(answer, Err(MessageError::CalleeCrashed(reason.clone())), "{ops:?}");
    tree.expect(started("root/abi", incarnation + 1)).await;
    assert_eq!(tree.call("root/echo", "still here").await.as_deref(), Ok(&b"still here"[..]));
    reason
}

fn trap(reason: &ExitReason) -> (TrapKind, &str) {
    match reason {
        ExitReason::Trap { trap, message, .. } => (*trap, message),
        other => panic!("not a trap: {other:?}"),
    }
}

#[tokio::test]
async fn a_guest_at_the_canonical_abi_cannot_harm_its_host() {
    let mut tree = start().await;
    assert_eq!(tree.call("root/abi", "ok").await, Ok(Vec::new()), "it works as a plugin");

    let grew = crash(&mut tree, 1, &["t"]).await;
    let (kind, message) = trap(&grew);
    assert_eq!(kind, TrapKind::MemoryLimit, "{grew:?}");
    assert!(message.contains("table limit reached"), "{message}");

    // What the canonical ABI refuses is a trap of its own kind, `other`, saying what.
    for (incarnation, ops, says) in [
        (2, &["h"][..], "list pointer/length out of bounds of memory"),
        (3, &["H"], "pointer out of bounds of memory"),
        (4, &["s"], "list pointer/length out of bounds of memory"),
        (5, &["p"], "pointer out of bounds"),
        (6, &["r", "next"], "realloc return: beyond end of memory"),
    ] {
        let reason = crash(&mut tree, incarnation, ops).await;
        assert_eq!(trap(&reason), (TrapKind::Other, says), "{ops:?}");
    }

    let forever = crash(&mut tree, 7, &["l", "next"]).await;
    assert_eq!(forever, ExitReason::Killed { cause: KillCause::Deadline });
    tree.shutdown().await;
}
