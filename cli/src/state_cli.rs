//! `warden state`: children's durable state, read and edited offline (the data dir is
//! locked while a host runs, so this never races a running tree).

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use warden::state::{DB_FILE, DiskStore, Op, Quota, StateStore, in_tree};

/// The data dir, by path or by the manifest that uses it.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The data directory.
    #[arg(long, global = true, conflicts_with = "manifest")]
    data_dir: Option<PathBuf>,
    /// The manifest whose data directory to use (its `data_dir`, else the default
    /// `warden run` uses for it).
    #[arg(long, short, global = true)]
    manifest: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Lists the children that have state, with their keys and bytes; or, given a
    /// path, that child's keys with their sizes.
    Ls {
        /// A child's path, e.g. root/counter.
        path: Option<String>,
    },
    /// Prints the value under KEY of the child at PATH, as it is (bytes).
    Get {
        /// The child's path.
        path: String,
        /// The key.
        key: String,
    },
    /// Prints every entry (of PATH and below, if given) as JSON lines:
    /// {"path", "key", "value"} (or "value_b64" for a value that is not UTF-8).
    Dump {
        /// Only this child and the children below it.
        path: Option<String>,
    },
    /// Stores VALUE under KEY for the child at PATH.
    Set {
        /// The child's path.
        path: String,
        /// The key.
        key: String,
        /// The value (text).
        value: String,
    },
    /// Removes KEY of the child at PATH; without KEY, the state of PATH and of every
    /// child below it.
    Rm {
        /// The child's path.
        path: String,
        /// The key.
        key: Option<String>,
    },
}

pub(crate) fn main(args: Args) -> Result<ExitCode> {
    let dir = match (args.data_dir, args.manifest) {
        (Some(dir), _) => dir,
        (None, Some(manifest)) => {
            let (_, settings) = warden::manifest::load_with_settings(&manifest)?;
            settings.data_dir.unwrap_or_else(|| warden::state::default_data_dir(&manifest))
        }
        (None, None) => bail!("say which data dir: --data-dir DIR or --manifest FILE"),
    };
    if !dir.join(DB_FILE).is_file() {
        bail!("{}: no state here (no {DB_FILE})", dir.display());
    }
    let store = DiskStore::open(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut out = std::io::stdout().lock();
    match args.action {
        Action::Ls { path: None } => {
            for (scope, usage) in store.scopes()? {
                let scope = warden::escape::printable(&scope);
                writeln!(out, "{scope}\t{} keys\t{} bytes", usage.keys, usage.bytes)?;
            }
        }
        Action::Ls { path: Some(path) } => {
            for key in store.keys(&path, "")? {
                let size = store.get(&path, &key)?.map_or(0, |v| v.len());
                // Keys are the guest's: escaped, one per line.
                writeln!(out, "{}\t{size} bytes", warden::escape::printable(&key))?;
            }
        }
        Action::Get { path, key } => match store.get(&path, &key)? {
            Some(value) => out.write_all(&value)?,
            None => {
                eprintln!("no key {key:?} under {path}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Action::Dump { path } => {
            for (scope, _) in store.scopes()? {
                if path.as_deref().is_some_and(|path| !in_tree(&scope, path)) {
                    continue;
                }
                for key in store.keys(&scope, "")? {
                    let Some(value) = store.get(&scope, &key)? else { continue };
                    let mut line = serde_json::json!({ "path": scope, "key": key });
                    match String::from_utf8(value) {
                        Ok(text) => line["value"] = text.into(),
                        Err(e) => {
                            line["value_b64"] = base64::engine::general_purpose::STANDARD
                                .encode(e.as_bytes())
                                .into();
                        }
                    }
                    writeln!(out, "{line}")?;
                }
            }
        }
        Action::Set { path, key, value } => {
            let write =
                store.write(&path, vec![Op::Set(key, value.into_bytes())], Quota::default());
            runtime.block_on(write).with_context(|| format!("set under {path}"))?;
        }
        Action::Rm { path, key: Some(key) } => {
            let write = store.write(&path, vec![Op::Delete(key.clone())], Quota::default());
            let present = runtime.block_on(write)?;
            if present.first() != Some(&true) {
                eprintln!("no key {key:?} under {path}");
                return Ok(ExitCode::FAILURE);
            }
            writeln!(out, "removed {path} {key}")?;
        }
        Action::Rm { path, key: None } => {
            let removed = runtime.block_on(store.remove_tree(&path))?;
            writeln!(out, "removed {removed} keys of {path} and below")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
