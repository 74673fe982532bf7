//! The one wasmtime `Engine` every sandbox shares, its epoch ticker, and the
//! capacity guard that refuses instances before the process reaches a ceiling.

use super::bindings;
use super::capacity::{Capacity, Slot};
pub use super::error::SandboxError;
use super::interfaces::HostInterfaces;
use super::registry::Registry;
use super::store::StoreData;
use crate::spec::{ChildLimits, SpecProblem};
use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};

/// How the shared engine is built.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How often the epoch advances; CPU deadlines are counted in these ticks, so a
    /// deadline fires within one tick of its time. Default 1 ms.
    pub epoch_tick: Duration,
    /// Whether export calls can be metered with fuel ([`super::ChildLimits::fuel_per_call`]).
    /// Fuel costs about 7% per call. Default false.
    pub fuel: bool,
    /// Use the pooling allocator (fast instantiation, memory reserved up front).
    /// Default true.
    pub pooling: bool,
    /// Most live instances at once; the pool is sized for it, and the host refuses
    /// more with [`SandboxError::Capacity`]. It is lowered further if the kernel's
    /// `vm.max_map_count` would not allow as many. Default 1,000.
    pub max_instances: usize,
    /// Largest linear memory any child may be given, in bytes (the pool's slot size).
    /// Default 256 MiB.
    pub max_memory_bytes: usize,
    /// Bytes at the start of each linear memory that a freed pool slot keeps resident,
    /// zeroed with `memset`, instead of handing them back to the kernel with
    /// `madvise`. The next instance in the slot then starts without page faults
    /// there, and no TLB shootdown is paid for the slot: a restart takes about half
    /// as long (see README "Performance"). wasmtime keeps at most 100 freed slots
    /// warm, so this holds at most 100 × this much. `0` hands everything back.
    /// Default 256 KiB.
    pub keep_resident: usize,
    /// Where compiled components are cached (wasmtime's cache, keyed by the
    /// component's bytes and the engine's configuration), so a second start skips
    /// compilation. The cache lives in a `compiled` directory under it, which wasmtime
    /// manages: it removes whatever it does not recognise there, so nothing else
    /// belongs in that directory. `None` disables the on-disk cache. Default `None`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick: Duration::from_millis(1),
            fuel: false,
            pooling: true,
            max_instances: 1_000,
            max_memory_bytes: 256 << 20,
            keep_resident: 256 << 10,
            cache_dir: None,
        }
    }
}

/// The directory under [`EngineConfig::cache_dir`] that wasmtime's cache manages.
const COMPILE_CACHE: &str = "compiled";

/// The part of a freed table slot kept resident (2,048 entries): a plugin's tables
/// are small, and zeroing a whole 20,000-entry slot would cost more than it saves.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

/// The part of a freed call stack kept resident (zeroed with memset); the rest is given
/// back to the system. Without this, a guest that recursed deep (a stack overflow) left
/// its slot's whole stack resident, and slot after slot the host's memory grew by up to
/// a stack per pooled instance, charged to no child.
const STACK_KEEP_RESIDENT: usize = 64 << 10;

/// The shared engine. Cheap to clone; dropping the last clone stops the ticker.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) config: EngineConfig,
    pub(crate) capacity: Arc<Capacity>,
    /// The application's interfaces, in the linker and here by name.
    pub(crate) interfaces: Arc<Registry>,
    cache: Option<wasmtime::Cache>,
    /// Loaded plugins by content hash. Weak: a plugin holds its engine, so a strong
    /// entry would keep every engine that ever loaded a plugin alive (with its pool's
    /// reservation of address space) after its last user dropped it. Opaque here:
    /// plugins are built on the engine, not the other way round.
    pub(crate) plugins: Mutex<HashMap<[u8; 32], Weak<dyn Any + Send + Sync>>>,
    _ticker: Ticker,
}

impl std::fmt::Debug for EngineInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Takes a slot for one live instance, or says why not.
    pub(crate) fn acquire_slot(&self) -> Result<Slot, SandboxError> {
        self.inner.capacity.acquire()
    }

    /// An engine with the default configuration.
    ///
    /// # Errors
    /// [`SandboxError::Config`] if wasmtime refuses the configuration (e.g. the pool
    /// cannot be reserved).
    pub fn new() -> Result<Self, SandboxError> {
        Self::with_config(EngineConfig::default())
    }

    /// An engine built from `config`.
    ///
    /// # Errors
    /// [`SandboxError::Config`] if wasmtime refuses the configuration.
    pub fn with_config(config: EngineConfig) -> Result<Self, SandboxError> {
        Self::with_interfaces(config, HostInterfaces::new())
    }

    /// An engine built from `config` whose plugins may import the application's
    /// `interfaces` (each child only those its grants name).
    ///
    /// # Errors
    /// [`SandboxError::Config`] if wasmtime refuses the configuration or an
    /// interface's functions (e.g. one defined twice), naming the interface.
    pub fn with_interfaces(
        config: EngineConfig,
        interfaces: HostInterfaces,
    ) -> Result<Self, SandboxError> {
        let err = |e: wasmtime::Error| SandboxError::Config(format!("{e:#}"));
        let capacity = Arc::new(Capacity::new(config.max_instances));
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true).consume_fuel(config.fuel).wasm_component_model(true);
        if config.pooling {
            let slots = u32::try_from(capacity.instances().1).unwrap_or(u32::MAX);
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            // A Rust wasm32-wasip2 component holds a handful of core instances, one or
            // two memories and a few tables; room for more keeps odd guests working.
            pool.total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(8))
                .total_memories(slots.saturating_mul(2))
                .total_tables(slots.saturating_mul(4))
                .total_stacks(slots)
                .max_core_instances_per_component(32)
                .max_memories_per_component(4)
                .max_tables_per_component(16)
                .max_memory_size(config.max_memory_bytes)
                .linear_memory_keep_resident(config.keep_resident)
                .table_keep_resident(config.keep_resident.min(TABLE_KEEP_RESIDENT))
                .async_stack_keep_resident(STACK_KEEP_RESIDENT);
            wasm.async_stack_zeroing(true);
            wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let cache = match &config.cache_dir {
            Some(dir) => {
                let mut cache_config = wasmtime::CacheConfig::new();
                // A directory of its own: wasmtime's cleanup deletes unknown files.
                cache_config.with_directory(dir.join(COMPILE_CACHE));
                let cache = wasmtime::Cache::new(cache_config).map_err(err)?;
                wasm.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let engine = wasmtime::Engine::new(&wasm).map_err(err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, warden_getter)
            .map_err(err)?;
        let interfaces = Arc::new(interfaces.link(&mut linker).map_err(SandboxError::Config)?);
        let ticker = Ticker::start(engine.clone(), config.epoch_tick).map_err(|e| {
            SandboxError::Config(format!("cannot start the epoch ticker thread: {e}"))
        })?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                config,
                capacity,
                interfaces,
                cache,
                plugins: Mutex::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// What in `limits` this engine cannot honour: fuel without fuel on, a memory
    /// limit past what its pool gives a memory. Checked before a tree or child
    /// starts (and again when an instance is made).
    pub fn cannot_honour(&self, limits: &ChildLimits) -> Option<SpecProblem> {
        let config = &self.inner.config;
        if limits.fuel_per_call.is_some() && !config.fuel {
            return Some(SpecProblem::FuelOff);
        }
        (config.pooling && limits.max_memory_bytes > config.max_memory_bytes).then_some(
            SpecProblem::MemoryOverPool {
                limit: limits.max_memory_bytes,
                pool: config.max_memory_bytes,
            },
        )
    }

    /// Compiled components found in and missing from the on-disk cache so far, as
    /// `(hits, misses)`; `None` without a cache directory.
    pub fn compile_cache_stats(&self) -> Option<(usize, usize)> {
        self.inner.cache.as_ref().map(|c| (c.cache_hits(), c.cache_misses()))
    }

    /// Instances live now, and the most allowed at once.
    pub fn instances(&self) -> (usize, usize) {
        self.inner.capacity.instances()
    }

    /// How many epoch ticks `d` spans, at least one.
    pub(crate) fn ticks(&self, d: Duration) -> u64 {
        let tick = self.inner.config.epoch_tick.as_micros().max(1);
        u64::try_from(d.as_micros().div_ceil(tick)).unwrap_or(u64::MAX).max(1)
    }
}

/// How Warden's own functions reach the Store: the guest has left any application
/// interface it was in.
fn warden_getter(data: &mut StoreData) -> &mut StoreData {
    data.host_waits.leave_interface();
    data
}

/// Advances the engine's epoch every tick on a thread of its own, so CPU deadlines
/// fire even when every runtime thread is busy running guests.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts the ticker; without it no CPU deadline would ever fire, so failing to
    /// start it fails the engine.
    fn start(engine: wasmtime::Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("warden-epoch".into()).spawn(move || {
            // An absolute schedule: sleep() oversleeps by tens of microseconds, and
            // relative sleeps would stretch every deadline by that much per tick.
            let start = std::time::Instant::now();
            let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
            let mut ticks: u64 = 0;
            while !flag.load(Ordering::Relaxed) {
                ticks += 1;
                let next = start + Duration::from_nanos(tick_ns.saturating_mul(ticks));
                if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                engine.increment_epoch();
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
