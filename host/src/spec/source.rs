//! Where a plugin child's component comes from: a file, bytes, or a plugin the host
//! already loaded (compiled and checked once, started as many children as wanted).

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a plugin child's component comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum PluginSource {
    /// A component file, loaded when the child first starts (compiled, or found in
    /// the engine's caches).
    File(PathBuf),
    /// A component's bytes; `name` names it in errors and logs.
    Bytes {
        /// The name used in errors and logs.
        name: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
    /// A plugin the host's engine already loaded (`Host::load`, `Engine::load`).
    Loaded(LoadedPlugin),
}

impl PluginSource {
    /// The component in `bytes`, named `name` in errors and logs.
    pub fn bytes(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::Bytes { name: name.into(), bytes: bytes.into() }
    }

    /// What errors and logs call it: the file's path, or the given name.
    pub fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Bytes { name, .. } => name.clone(),
            Self::Loaded(loaded) => loaded.name.clone(),
        }
    }

    /// The file, for a file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            _ => None,
        }
    }
}

impl fmt::Debug for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Bytes { name, bytes } => {
                f.debug_struct("Bytes").field("name", name).field("len", &bytes.len()).finish()
            }
            Self::Loaded(loaded) => f.debug_tuple("Loaded").field(&loaded.name).finish(),
        }
    }
}

impl From<PathBuf> for PluginSource {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&Path> for PluginSource {
    fn from(path: &Path) -> Self {
        Self::File(path.to_owned())
    }
}

impl From<&str> for PluginSource {
    fn from(path: &str) -> Self {
        Self::File(path.into())
    }
}

impl From<String> for PluginSource {
    fn from(path: String) -> Self {
        Self::File(path.into())
    }
}

/// A loaded plugin, as a spec holds it: opaque here (the sandbox's `Plugin` is built
/// above the specs), made by `From<Plugin>`.
#[derive(Clone)]
pub struct LoadedPlugin {
    name: String,
    plugin: Arc<dyn Any + Send + Sync>,
}

impl LoadedPlugin {
    pub(crate) fn new(name: String, plugin: Arc<dyn Any + Send + Sync>) -> Self {
        Self { name, plugin }
    }

    pub(crate) fn get(&self) -> &Arc<dyn Any + Send + Sync> {
        &self.plugin
    }

    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoadedPlugin").field(&self.name).finish()
    }
}
