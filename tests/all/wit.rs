//! The WIT contract has one source, the workspace's `wit/`; the host and the guest SDK
//! each carry a copy so that they can be published, and the copies must not drift.

#[test]
fn every_crate_carries_the_same_wit_as_the_workspace() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |dir: &str| {
        let path = root.join(dir).join("plugin.wit");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let source = read("wit");
    for copy in ["host/wit", "guest-sdk/wit"] {
        assert!(
            read(copy) == source,
            "{copy}/plugin.wit differs from wit/plugin.wit: cp wit/plugin.wit {copy}/"
        );
    }
}
