//! Where `warden run` and `warden check` keep compiled plugins, so that a second start
//! of the same plugins does not compile them again: wasmtime's cache, keyed by the
//! component's bytes and the engine's configuration (a new wasmtime or other settings
//! compile again).

use std::path::PathBuf;

/// The compile cache options of `run` and `check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CacheArgs {
    /// Where compiled plugins are kept (in its `compiled` directory, which wasmtime
    /// manages and cleans). Default: $XDG_CACHE_HOME/warden (or ~/.cache/warden).
    #[arg(long, conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin, keep nothing.
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    /// The directory to use, if any. A directory the user chose is used as it is
    /// (an unusable one fails the engine, saying why); the default one is skipped,
    /// with a warning, when it cannot be created.
    pub(crate) fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let dir = default_dir()?;
        match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                eprintln!(
                    "warden: cannot use the compile cache {} ({e}); compiling every plugin \
                     (choose a place with --cache-dir)",
                    dir.display()
                );
                None
            }
        }
    }
}

/// $XDG_CACHE_HOME/warden, or ~/.cache/warden.
fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".cache")))?;
    Some(base.join("warden"))
}
