//! A plugin: a component compiled once, checked against the `warden:plugin` world,
//! and pre-instantiated so every incarnation is a cheap new instance.

use super::bindings;
use super::engine::Engine;
use super::instance::ChildState;
use std::fmt;
use std::sync::Arc;

/// Why a plugin could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read the plugin: {message}")]
    Read {
        /// The plugin file.
        file: String,
        /// The operating system's message.
        message: String,
    },
    /// The bytes are not WebAssembly at all.
    #[error("{file}: not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm {
        /// The plugin file.
        file: String,
    },
    /// The file ends before its WebAssembly header does.
    #[error("{file}: truncated: {len} bytes, shorter than a WebAssembly header")]
    Truncated {
        /// The plugin file.
        file: String,
        /// Its length.
        len: usize,
    },
    /// A core module where a component is needed.
    #[error(
        "{file}: is a core WebAssembly module, not a component; build the plugin for \
         wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The plugin file.
        file: String,
    },
    /// The component failed to decode, validate or compile (e.g. it is truncated).
    #[error("{file}: invalid component: {message}")]
    Invalid {
        /// The plugin file.
        file: String,
        /// The decoder's or compiler's explanation, with the offset where it has one.
        message: String,
    },
    /// The component imports something the host does not provide.
    #[error("{file}: imports something the host does not provide: {message}")]
    UnsupportedImport {
        /// The plugin file.
        file: String,
        /// Which import, and why it does not match.
        message: String,
    },
    /// The component does not export the `warden:plugin/guest` interface as the host
    /// expects.
    #[error("{file}: does not export `warden:plugin/guest@0.2.0` as expected: {message}")]
    BadExports {
        /// The plugin file.
        file: String,
        /// Which export is missing or has the wrong type.
        message: String,
    },
}

/// A compiled, validated, pre-instantiated plugin. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    pub(crate) name: String,
    pub(crate) engine: Engine,
    pub(crate) pre: bindings::PluginPre<ChildState>,
    pub(crate) hash: [u8; 32],
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

const MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer words: a core module is `01 00 00 00`; a component `0d 00 01 00`.
const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];

impl Plugin {
    pub(crate) fn compile(
        engine: &Engine,
        name: &str,
        bytes: &[u8],
        hash: [u8; 32],
    ) -> Result<Self, LoadError> {
        let file = name.to_owned();
        if bytes.len() < 8 {
            return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(4)]) && !bytes.is_empty() {
                LoadError::Truncated { file, len: bytes.len() }
            } else {
                LoadError::NotWasm { file }
            });
        }
        if &bytes[..4] != MAGIC {
            return Err(LoadError::NotWasm { file });
        }
        if bytes[4..8] == CORE_MODULE {
            return Err(LoadError::CoreModule { file });
        }
        let component = wasmtime::component::Component::new(&engine.inner.engine, bytes)
            .map_err(|e| LoadError::Invalid { file: file.clone(), message: format!("{e:#}") })?;
        let instance_pre = engine.inner.linker.instantiate_pre(&component).map_err(|e| {
            LoadError::UnsupportedImport { file: file.clone(), message: format!("{e:#}") }
        })?;
        let pre = bindings::PluginPre::new(instance_pre)
            .map_err(|e| LoadError::BadExports { file: file.clone(), message: format!("{e:#}") })?;
        super::instance::check_exports(engine, &pre)
            .map_err(|message| LoadError::BadExports { file: file.clone(), message })?;
        Ok(Self { inner: Arc::new(PluginInner { name: file, engine: engine.clone(), pre, hash }) })
    }

    /// The name the plugin was loaded under (its file path, usually).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SHA-256 of the component's bytes, in hex.
    pub fn hash(&self) -> String {
        self.inner.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The engine the plugin was compiled for.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}
