//! Fixture plugins for Warden's integration tests, built from `plugins/` by this
//! crate's build script, and small helpers the tests share.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

pub mod browser;
pub mod nats;

use std::sync::OnceLock;
use warden::sandbox::Engine;

/// One engine for a whole test binary (the test kit's): compiled plugins are shared,
/// as in a host, and parallel tests do not each reserve an instance pool.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(warden::testing::engine)
}

/// The resident set size of this process, in bytes (Linux).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm is readable");
    let pages: u64 =
        statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm has RSS");
    pages * 4096
}

/// The Python fixture, the template of `warden new --lang python`
/// (`cli/templates/python/app.py`), built into
/// `target/plugins/python/counter.wasm` with componentize-py the first time a test
/// asks for it in a process, unless the build there is newer than its sources.
///
/// componentize-py is `$COMPONENTIZE_PY`, else the one `.ci/run` installs in
/// `target/componentize-py`, else `componentize-py` on the PATH; without any, this
/// panics saying how to install it.
pub fn python_counter() -> &'static std::path::Path {
    try_python_counter().unwrap_or_else(|e| panic!("{e}"))
}

/// As [`python_counter`], saying why when it cannot be built.
pub fn try_python_counter() -> Result<&'static std::path::Path, String> {
    static BUILT: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let source = root.join("cli/templates/python");
        let wit = root.join("wit");
        let out = root.join("target/plugins/python/counter.wasm");
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        // A build is reused when it is newer than both sources and was made by the same
        // componentize-py (its version is kept beside it).
        let sources = [source.join("app.py"), wit.join("plugin.wit")];
        let newest_source = sources.iter().map(|p| modified(p)).collect::<Option<Vec<_>>>();
        let newest_source = newest_source.and_then(|times| times.into_iter().max());
        let tool = find_componentize_py(&root)?;
        let version = std::process::Command::new(&tool)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        let stamp = out.with_extension("version");
        let fresh = newest_source.is_some_and(|newest| modified(&out) > Some(newest));
        if fresh && std::fs::read_to_string(&stamp).is_ok_and(|built_by| built_by == version) {
            return Ok(out);
        }
        // Built beside, then renamed: another test process never loads half a file.
        let building = out.with_extension(format!("{}.wasm", std::process::id()));
        let parent = out.parent().expect("has a parent");
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let output = std::process::Command::new(&tool)
            .current_dir(&source)
            // No __pycache__ left in the template's folder.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(&wit)
            .args(["-w", "plugin", "componentize", "app", "-o"])
            .arg(&building)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
        if !output.status.success() {
            return Err(format!(
                "componentize-py failed to build {}:\n{}{}",
                source.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        std::fs::rename(&building, &out).map_err(|e| format!("{}: {e}", out.display()))?;
        std::fs::write(&stamp, version).map_err(|e| format!("{}: {e}", stamp.display()))?;
        Ok(out)
    });
    built.as_deref().map_err(Clone::clone)
}

/// Where componentize-py is (see [`python_counter`]); `root` is the repository's.
pub fn componentize_py(root: &std::path::Path) -> std::path::PathBuf {
    find_componentize_py(root).unwrap_or_else(|e| panic!("{e}"))
}

fn find_componentize_py(root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    if let Some(tool) = std::env::var_os("COMPONENTIZE_PY") {
        return Ok(tool.into());
    }
    let installed = root.join("target/componentize-py/bin/componentize-py");
    if installed.exists() {
        return Ok(installed);
    }
    let on_path = std::process::Command::new("componentize-py").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Ok("componentize-py".into());
    }
    Err("the Python fixture needs componentize-py: run .ci/run, or `python3 -m venv \
         target/componentize-py && target/componentize-py/bin/pip install \
         componentize-py==0.25.1` (or set COMPONENTIZE_PY to one)"
        .to_owned())
}
