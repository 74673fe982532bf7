//! `warden new NAME`: a plugin project that builds and passes its own test out of the
//! box: the plugin (echo, and a counter in durable state), a manifest that runs it,
//! an integration test that crashes it and sees it restart, and a README saying how
//! to build, run and test it. In Rust, the test uses the test kit (`cargo test`); in
//! Python (componentize-py), it is a scenario `warden test` runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Creates a plugin project.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The project's directory and package name (lowercase letters, digits, `-`, `_`).
    name: String,
    /// The plugin's language.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Depend on a Warden checkout at DIR (its guest-sdk/ and host/) instead of the
    /// published crates. Default: the checkout this `warden` was built from, when it
    /// is still there.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// Depend on the published crates even when a checkout is found.
    #[arg(long, conflicts_with = "path")]
    published: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// Rust, with the `warden-guest` crate.
    Rust,
    /// Python, built into a component with componentize-py.
    Python,
}

/// The Rust template's files: where each goes, and its text.
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml.in")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("tests/supervised.rs", include_str!("../templates/rust/tests/supervised.rs")),
    ("warden.toml", include_str!("../templates/rust/warden.toml")),
    ("README.md", include_str!("../templates/rust/README.md")),
    (".gitignore", include_str!("../templates/rust/gitignore")),
];

/// The Python template's files. `wit/plugin.wit` is written beside them.
const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../templates/python/app.py")),
    ("tests/supervised.toml", include_str!("../templates/python/tests/supervised.toml")),
    ("warden.toml", include_str!("../templates/python/warden.toml")),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", include_str!("../templates/python/gitignore")),
    ("wit/plugin.wit", warden::sandbox::PLUGIN_WIT),
];

/// The version of the crates this `warden` belongs to.
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) fn main(args: Args) -> ExitCode {
    match create(&args) {
        Ok(dir) => {
            println!("created {}: build and test it with", dir.display());
            println!("  cd {}", dir.display());
            match args.lang {
                Lang::Rust => {
                    println!("  cargo build --release --target wasm32-wasip2");
                    println!("  cargo test");
                }
                Lang::Python => {
                    let name = dir.file_name().unwrap_or_default().to_string_lossy();
                    println!("  componentize-py -d wit -w plugin componentize app -o {name}.wasm");
                    println!("  warden test");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden new: {e}");
            ExitCode::from(2)
        }
    }
}

fn create(args: &Args) -> Result<PathBuf, String> {
    let dir = PathBuf::from(&args.name);
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    check_name(&name)?;
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    if args.lang != Lang::Rust && (args.path.is_some() || args.published) {
        return Err("--path and --published choose the Rust crates: a Python project has none \
                    (it builds against wit/plugin.wit)"
            .into());
    }
    let checkout = match (&args.path, args.published, args.lang) {
        (_, _, Lang::Python) => None,
        (Some(path), _, _) => Some(checkout(path)?),
        (None, true, _) => None,
        (None, false, Lang::Rust) => {
            checkout(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).ok()
        }
    };
    let (guest, host) = match &checkout {
        Some(root) => (
            format!("{{ path = {:?} }}", root.join("guest-sdk").display().to_string()),
            format!(
                "{{ path = {:?}, features = [\"testing\"] }}",
                root.join("host").display().to_string()
            ),
        ),
        None => (
            format!("\"{VERSION}\""),
            format!("{{ version = \"{VERSION}\", features = [\"testing\"] }}"),
        ),
    };
    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
                .collect::<String>()
        })
        .collect();
    let files = match args.lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
    };
    for (place, text) in files {
        let text = text
            .replace("{{name}}", &name)
            .replace("{{crate}}", &crate_name)
            .replace("{{type}}", &type_name)
            .replace("{{guest}}", &guest)
            .replace("{{host}}", &host);
        let file = dir.join(place);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    // With a checkout, the versions it was tested with (cargo drops what is not used).
    if let (Some(root), Lang::Rust) = (&checkout, args.lang) {
        let lock = dir.join("Cargo.lock");
        std::fs::copy(root.join("Cargo.lock"), &lock)
            .map_err(|e| format!("{}: {e}", lock.display()))?;
    }
    Ok(dir)
}

/// A name cargo takes for a package and Rust for a type.
fn check_name(name: &str) -> Result<(), String> {
    let fine =
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if name.is_empty() || !fine || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "{name:?} is not a plugin name: lowercase letters, digits, `-` and `_`, starting with a letter"
        ));
    }
    Ok(())
}

/// `path` if it is a Warden checkout (it has guest-sdk/ and host/), made absolute.
fn checkout(path: &Path) -> Result<PathBuf, String> {
    let root = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let root = root.canonicalize().unwrap_or(root);
    for part in ["guest-sdk/Cargo.toml", "host/Cargo.toml"] {
        if !root.join(part).is_file() {
            return Err(format!("{} is not a Warden checkout: no {part}", root.display()));
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("hello-world_2").is_ok());
        for bad in ["", "Hello", "2fast", "a b", "a/b", "-x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
