//! Every fixture plugin is exercised by some test.

#[test]
fn every_fixture_plugin_is_used_by_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = String::new();
    let mut dirs: Vec<_> =
        ["all", "isolated", "../cli/tests", "../examples/embedding"].map(|d| dir.join(d)).into();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n != "fixtures.rs") {
                sources += &std::fs::read_to_string(path).unwrap();
            }
        }
    }
    for (name, _) in warden_tests::ALL {
        let constant = name.replace('-', "_").to_uppercase();
        assert!(sources.contains(&constant), "no test uses the `{name}` fixture ({constant})");
    }
}
