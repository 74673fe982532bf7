//! A plugin: a component compiled once, checked against the `warden:plugin` world,
//! and pre-instantiated so every incarnation is a cheap new instance.

use super::bindings;
use super::engine::Engine;
use super::heartbeat::Heartbeat;
use super::output::Budget;
use super::registry::{AppImport, app_imports};
use super::store::{Links, StoreData};
use crate::services::{NoMessaging, NoState};
use crate::spec::{ChildLimits, LoadedPlugin, PluginSource};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;
use wasmtime_wasi::WasiCtxBuilder;

/// Why a plugin could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read the plugin: {message}")]
    Read {
        /// The plugin file.
        file: String,
        /// What kind of failure: `NotFound` for a missing file, `PermissionDenied`...
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// The host is shutting down: nothing more is loaded.
    #[error("{file}: not loaded: the host is shutting down")]
    ShuttingDown {
        /// The plugin file.
        file: String,
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
    /// A plugin another engine loaded (each host has its own engine unless it shares
    /// one): a plugin runs only in the engine that compiled it.
    #[error(
        "{file}: was loaded by another engine than this host's: load it with this host's (Host::load)"
    )]
    OtherEngine {
        /// The plugin's name.
        file: String,
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
    pub(crate) pre: bindings::PluginPre<StoreData>,
    /// Where the world's exports are, found once.
    pub(crate) indices: bindings::PluginIndices,
    pub(crate) hash: [u8; 32],
    /// The component itself, for a cluster node that publishes it to the node it
    /// places a child on.
    pub(crate) bytes: Arc<[u8]>,
    /// The application's interfaces it imports.
    pub(crate) app_imports: Vec<AppImport>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

const MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer words: a core module is `01 00 00 00`; a component `0d 00 01 00`.
const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];

/// The engine's plugins by content hash, held weakly and opaquely by the engine.
type PluginCache = HashMap<[u8; 32], std::sync::Weak<dyn std::any::Any + Send + Sync>>;

/// Loading plugins: on the engine, so that `engine.load_file(path)` reads naturally,
/// but here, beside what a plugin is.
impl Engine {
    /// Loads, validates and pre-instantiates the component at `path`. Loading the same
    /// bytes again returns the same compiled plugin.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            file: path.display().to_string(),
            kind: e.kind(),
            message: e.to_string(),
        })?;
        self.load(&path.display().to_string(), &bytes)
    }

    /// Loads, validates and pre-instantiates a component from `bytes`; `name` is used
    /// in errors and logs.
    ///
    /// # Errors
    /// [`LoadError`] naming `name` and what is wrong.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(bytes).into();
        let cached = self.plugins().get(&hash).and_then(std::sync::Weak::upgrade);
        if let Some(inner) = cached.and_then(|any| any.downcast::<PluginInner>().ok()) {
            return Ok(Plugin { inner });
        }
        let plugin = Plugin::compile(self, name, bytes, hash)?;
        let mut plugins = self.plugins();
        plugins.retain(|_, p| p.strong_count() > 0);
        let entry: Arc<dyn std::any::Any + Send + Sync> = plugin.inner.clone();
        plugins.insert(hash, Arc::downgrade(&entry));
        Ok(plugin)
    }

    fn plugins(&self) -> std::sync::MutexGuard<'_, PluginCache> {
        self.inner.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
        let app_imports =
            app_imports(&engine.inner.engine, &engine.inner.interfaces, &component)
                .map_err(|message| LoadError::UnsupportedImport { file: file.clone(), message })?;
        let instance_pre = engine.inner.linker.instantiate_pre(&component).map_err(|e| {
            LoadError::UnsupportedImport { file: file.clone(), message: format!("{e:#}") }
        })?;
        let pre = bindings::PluginPre::new(instance_pre)
            .map_err(|e| LoadError::BadExports { file: file.clone(), message: format!("{e:#}") })?;
        check_exports(engine, &pre)
            .map_err(|message| LoadError::BadExports { file: file.clone(), message })?;
        let indices = bindings::PluginIndices::new(pre.instance_pre())
            .map_err(|e| LoadError::BadExports { file: file.clone(), message: format!("{e:#}") })?;
        let bytes = Arc::from(bytes);
        let inner = PluginInner {
            name: file,
            engine: engine.clone(),
            pre,
            indices,
            hash,
            bytes,
            app_imports,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The component's bytes.
    pub(crate) fn bytes(&self) -> &Arc<[u8]> {
        &self.inner.bytes
    }

    /// The name the plugin was loaded under (its file path, usually).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The SHA-256 of the component's bytes, in hex.
    pub fn hash(&self) -> String {
        self.inner.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The application interfaces it imports, as it names them
    /// (`acme:shop/inventory@0.1.0`): a child running it must be granted each.
    pub fn application_imports(&self) -> impl Iterator<Item = &str> {
        self.inner.app_imports.iter().map(|import| import.name.as_str())
    }

    /// The engine the plugin was compiled for.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The plugin a spec holds, if `engine` loaded it.
    ///
    /// # Errors
    /// [`LoadError::OtherEngine`]: another engine loaded it (a plugin runs only in the
    /// engine that compiled it).
    pub(crate) fn from_loaded(loaded: &LoadedPlugin, engine: &Engine) -> Result<Self, LoadError> {
        let other = || LoadError::OtherEngine { file: loaded.name().to_owned() };
        let inner = Arc::clone(loaded.get()).downcast::<PluginInner>().map_err(|_| other())?;
        if !Arc::ptr_eq(&inner.engine.inner, &engine.inner) {
            return Err(other());
        }
        Ok(Self { inner })
    }
}

/// A plugin as a spec's source: start as many children from it as wanted.
impl From<Plugin> for PluginSource {
    fn from(plugin: Plugin) -> Self {
        let name = plugin.inner.name.clone();
        PluginSource::Loaded(LoadedPlugin::new(name, plugin.inner))
    }
}

/// Type-checks a plugin's exports against the world by instantiating it once in a
/// throwaway Store, without calling any export (`PluginPre::new` checks names only).
///
/// Instantiation runs no guest code but core start functions, which Rust and C
/// components do not have; a second of epoch ticks bounds any that exist.
fn check_exports(engine: &Engine, pre: &bindings::PluginPre<StoreData>) -> Result<(), String> {
    let _slot = engine.acquire_slot().map_err(|e| e.to_string())?;
    let limits = ChildLimits::default();
    let links = Links {
        messenger: Arc::new(NoMessaging),
        state: Arc::new(NoState),
        heartbeat: Heartbeat::new(),
        host_waits: Arc::default(),
        output: Budget::new(0, None),
        interfaces: Arc::clone(&engine.inner.interfaces),
    };
    let data = StoreData::new(WasiCtxBuilder::new().build(), &limits, "(validation)", links);
    let mut store = Store::new(&engine.inner.engine, data);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(engine.ticks(Duration::from_secs(1)));
    if engine.config().fuel {
        // A Store starts with no fuel: without this no plugin would load.
        store.set_fuel(u64::MAX).map_err(|e| format!("{e:#}"))?;
    }
    let instance = poll_to_end(pre.instance_pre().instantiate_async(&mut store))
        .map_err(|e| format!("{e:#}"))?;
    // Check each export on its own so the error names the function at fault.
    use bindings::warden::plugin::types::{Context, Envelope, ExitReason as WitExit};
    const GUEST: &str = "warden:plugin/guest@0.2.0";
    let guest = instance
        .get_export_index(&mut store, None, GUEST)
        .ok_or_else(|| format!("no exported instance `{GUEST}`"))?;
    let mut export = |name: &str| {
        instance
            .get_export_index(&mut store, Some(&guest), name)
            .ok_or_else(|| format!("`{GUEST}` has no function `{name}`"))
    };
    let (init, handle, terminate) = (export("init")?, export("handle")?, export("terminate")?);
    fn mismatch(name: &'static str) -> impl Fn(wasmtime::Error) -> String {
        move |e| format!("function `{name}` has the wrong type: {e:#}")
    }
    instance
        .get_typed_func::<(&Context,), (Result<(), String>,)>(&mut store, &init)
        .map_err(mismatch("init"))?;
    instance
        .get_typed_func::<(&Envelope,), (Result<Vec<u8>, String>,)>(&mut store, &handle)
        .map_err(mismatch("handle"))?;
    instance
        .get_typed_func::<(&WitExit,), ()>(&mut store, &terminate)
        .map_err(mismatch("terminate"))?;
    Ok(())
}

/// Drives a future that never waits on I/O (instantiation calls no host function) to
/// its end on this thread. Loading is synchronous and may happen inside or outside a
/// tokio runtime, so no runtime's `block_on` fits.
fn poll_to_end<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}
