//! Bad plugins get a clear error naming the file and what is wrong; the host goes on.

use warden::sandbox::{LoadError, Sandbox, SandboxConfig};
use warden_tests::{ECHO, engine};

/// Loads `bytes` under `name`, expects a failure, and shows the host still serves.
async fn refused(name: &str, bytes: &[u8]) -> LoadError {
    let err = engine().load(name, bytes).expect_err("the plugin is refused");
    assert!(err.to_string().starts_with(name), "the error names the file: {err}");
    let echo = engine().load_file(ECHO).expect("echo still loads");
    let mut child = Sandbox::start(&echo, SandboxConfig::new("root/echo"), 1).await.unwrap();
    let handled = child.handle(None, b"still fine".to_vec(), true).await.unwrap();
    assert_eq!(handled.reply.as_deref(), Ok(&b"still fine"[..]));
    err
}

#[tokio::test]
async fn bytes_that_are_not_wasm() {
    let err = refused("notes.txt", b"hello, I am not WebAssembly").await;
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err:?}");
    assert!(err.to_string().contains("not a WebAssembly file"));
}

#[tokio::test]
async fn a_core_module_instead_of_a_component() {
    let module = wat::parse_str(r#"(module (func (export "handle")))"#).unwrap();
    let err = refused("core.wasm", &module).await;
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err:?}");
    assert!(err.to_string().contains("wasm32-wasip2"), "says how to fix it: {err}");
}

#[tokio::test]
async fn a_component_without_the_guest_export() {
    let component = wat::parse_str("(component)").unwrap();
    let err = refused("empty.wasm", &component).await;
    assert!(matches!(err, LoadError::BadExports { .. }), "{err:?}");
    assert!(err.to_string().contains("warden:plugin/guest@0.2.0"), "{err}");
}

#[tokio::test]
async fn a_component_whose_init_has_the_wrong_signature() {
    let component = wat::parse_str(
        r#"(component
            (core module $m
                (func (export "init") (param i32))
                (func (export "handle") (param i32))
                (func (export "terminate") (param i32)))
            (core instance $i (instantiate $m))
            (func $init (param "ctx" u32) (canon lift (core func $i "init")))
            (func $handle (param "msg" u32) (canon lift (core func $i "handle")))
            (func $terminate (param "reason" u32) (canon lift (core func $i "terminate")))
            (instance $guest
                (export "init" (func $init))
                (export "handle" (func $handle))
                (export "terminate" (func $terminate)))
            (export "warden:plugin/guest@0.2.0" (instance $guest)))"#,
    )
    .unwrap();
    let err = refused("wrong-signature.wasm", &component).await;
    assert!(matches!(err, LoadError::BadExports { .. }), "{err:?}");
    assert!(err.to_string().contains("init"), "names the function: {err}");
}

#[tokio::test]
async fn a_component_importing_an_interface_the_host_lacks() {
    let component = wat::parse_str(
        r#"(component (import "acme:vault/secrets@1.0.0" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    let err = refused("importer.wasm", &component).await;
    assert!(matches!(err, LoadError::UnsupportedImport { .. }), "{err:?}");
    assert!(err.to_string().contains("acme:vault/secrets@1.0.0"), "names the import: {err}");
}

#[tokio::test]
async fn a_truncated_file() {
    let echo = std::fs::read(ECHO).unwrap();
    let err = refused("half.wasm", &echo[..echo.len() / 2]).await;
    assert!(matches!(err, LoadError::Invalid { .. }), "{err:?}");
    let err = refused("header.wasm", &echo[..6]).await;
    assert!(matches!(err, LoadError::Truncated { len: 6, .. }), "{err:?}");
}

#[tokio::test]
async fn a_missing_file() {
    let err = engine().load_file("/no/such/plugin.wasm").expect_err("missing");
    assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/no/such/plugin.wasm"), "{err}");
}

#[tokio::test]
async fn the_same_bytes_compile_once() {
    let a = engine().load_file(ECHO).unwrap();
    let b = engine().load("copy-of-echo.wasm", &std::fs::read(ECHO).unwrap()).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(b.name(), a.name(), "the cached plugin is returned");
}

mod sources {
    //! A child's component from a file, from bytes, or from a plugin loaded once.

    use warden::runtime::Host;
    use warden::supervisor::{ChildSpec, PluginSource, PluginStart, Strategy, SupervisorSpec};
    use warden::testing::TestTree;
    use warden_tests::{ECHO, engine};

    fn tree(children: Vec<ChildSpec>) -> SupervisorSpec {
        SupervisorSpec::new(Strategy::OneForOne, children)
    }

    #[tokio::test]
    async fn children_start_from_bytes_and_from_one_plugin_loaded_once() {
        let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
        let echo = host.load(ECHO).expect("loads");
        let bytes = std::fs::read(ECHO).unwrap();
        let mut children: Vec<ChildSpec> = (0..3)
            .map(|i| ChildSpec::plugin(format!("loaded{i}"), PluginStart::new(echo.clone())))
            .collect();
        let from_bytes = PluginStart::new(PluginSource::bytes("echo (bytes)", bytes));
        children.push(ChildSpec::plugin("bytes", from_bytes));
        let tree = TestTree::start_in(host, tree(children)).await.expect("starts");
        for child in ["root/loaded0", "root/loaded1", "root/loaded2", "root/bytes"] {
            assert_eq!(tree.call(child, "hi").await.as_deref(), Ok(&b"hi"[..]), "{child}");
        }
        tree.shutdown().await;
    }

    #[tokio::test]
    async fn bad_bytes_and_a_plugin_of_another_engine_fail_the_start_naming_them() {
        let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
        let bad = PluginStart::new(PluginSource::bytes("uploaded.wasm", &b"not wasm"[..]));
        let refused = host.start(tree(vec![ChildSpec::plugin("a", bad)])).await.unwrap_err();
        assert!(refused.to_string().contains("uploaded.wasm: not a WebAssembly file"), "{refused}");

        let other = warden::sandbox::Engine::with_config(warden::sandbox::EngineConfig {
            max_instances: 2,
            ..Default::default()
        })
        .unwrap();
        let foreign = other.load_file(ECHO).unwrap();
        let host = Host::builder().shared_engine(engine().clone()).build().unwrap();
        let spec = tree(vec![ChildSpec::plugin("a", PluginStart::new(foreign))]);
        let refused = host.start(spec).await.unwrap_err().to_string();
        assert!(refused.contains("was loaded by another engine than this host's"), "{refused}");
    }
}
