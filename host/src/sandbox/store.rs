//! The data of one incarnation's Store: what its host functions reach, its limits,
//! and the bookkeeping of the export call in progress.

use super::heartbeat::Heartbeat;
use super::limits::Limiter;
use super::output::Budget;
use super::registry::{AppStates, LoadedExports, Registry};
use crate::ExitReason;
use crate::services::{Messenger, StateStore};
use crate::spec::HeartbeatPolicy;
use crate::spec::{ChildLimits, Quota};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of one incarnation's Store: what its host functions run on. Opaque; an
/// application names it only to add its own interfaces to the engine's
/// `Linker<StoreData>` (see [`super::HostInterfaces`]).
pub struct StoreData {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) path: Arc<str>,
    pub(crate) messenger: Arc<dyn Messenger>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) quota: Quota,
    pub(crate) heartbeat: Arc<Heartbeat>,
    /// What its output may cost (its `log` lines here; stdout and stderr in WASI).
    pub(crate) output: Arc<Budget>,
    /// The heartbeat policy, judged at epoch ticks, and when to judge next.
    pub(crate) watch: Option<HeartbeatPolicy>,
    pub(crate) next_judgement: Option<Instant>,
    pub(crate) exit_request: Option<ExitReason>,
    pub(crate) abort_reason: Option<String>,
    /// The current export call's deadline, when it began, and how long it has spent
    /// waiting on the host (which does not count against the deadline).
    pub(crate) deadline: Option<Duration>,
    pub(crate) call_started: Instant,
    pub(crate) host_waits: Arc<HostWaits>,
    /// The states of the application's interfaces this incarnation imports.
    pub(crate) app: AppStates,
    pub(crate) interfaces: Arc<Registry>,
    /// What typed calls into its exports loaded.
    pub(crate) loaded_exports: LoadedExports,
    /// The version this incarnation replaces, when an upgrade started it.
    pub(crate) upgraded_from: Option<String>,
}

impl std::fmt::Debug for StoreData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreData").field("path", &self.path).finish_non_exhaustive()
    }
}

/// How long the current export call has spent waiting on the host: suspended in a
/// host function that awaits (a `call`'s reply, a WASI sleep, a state commit).
///
/// The sandbox measures it from outside the call, as the time between a poll of the
/// call that returned pending and the next poll, so a call that never waits reads no
/// clock for it (a call hook would run on every entry and exit of the guest). A
/// pending poll is a wait unless the epoch callback had just yielded to the runtime:
/// time spent yielded is the guest's own.
#[derive(Debug, Default)]
pub(crate) struct HostWaits {
    nanos: AtomicU64,
    /// Set by the epoch callback as it yields; taken by the next pending poll.
    pub(crate) yielding: AtomicBool,
    /// The application interface whose function the guest called last, plus one (0:
    /// none since): set by that interface's getter, cleared by Warden's and WASI's.
    interface: AtomicUsize,
}

impl HostWaits {
    pub(crate) fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn reset(&self) {
        self.nanos.store(0, Ordering::Relaxed);
        self.yielding.store(false, Ordering::Relaxed);
    }

    /// The guest is in a function of application interface `index`.
    pub(crate) fn enter_interface(&self, index: usize) {
        self.interface.store(index + 1, Ordering::Relaxed);
    }

    /// The guest called one of Warden's or WASI's functions.
    pub(crate) fn leave_interface(&self) {
        self.interface.store(0, Ordering::Relaxed);
    }

    /// The application interface whose function the guest called last, if it has
    /// called none of Warden's or WASI's since.
    pub(crate) fn interface(&self) -> Option<usize> {
        self.interface.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Polls `call` to completion, counting the time it waited on the host. While it
    /// waits in an application's function, `heartbeat` (if any) is not owed either,
    /// as during a `call`.
    pub(crate) async fn count<R>(
        &self,
        heartbeat: Option<&Arc<Heartbeat>>,
        call: impl Future<Output = R>,
    ) -> R {
        let mut call = pin!(call);
        let mut waiting_since = None;
        let mut in_application = None;
        std::future::poll_fn(|cx| {
            if let Some(since) = waiting_since.take() {
                let waited = Instant::now().duration_since(since);
                let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
                self.nanos.fetch_add(nanos, Ordering::Relaxed);
            }
            in_application = None;
            let polled = call.as_mut().poll(cx);
            if polled.is_pending() && !self.yielding.swap(false, Ordering::Relaxed) {
                waiting_since = Some(Instant::now());
                if self.interface().is_some() {
                    in_application = heartbeat.map(|h| h.wait_in_host());
                }
            }
            polled
        })
        .await
    }
}

/// What the host functions of one Store reach outside it.
pub(crate) struct Links {
    pub(crate) messenger: Arc<dyn Messenger>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) heartbeat: Arc<Heartbeat>,
    pub(crate) host_waits: Arc<HostWaits>,
    pub(crate) output: Arc<Budget>,
    /// The application's interfaces, as the engine was given them.
    pub(crate) interfaces: Arc<Registry>,
}

impl StoreData {
    pub(crate) fn new(wasi: WasiCtx, limits: &ChildLimits, path: &str, links: Links) -> Self {
        let Links { messenger, state, heartbeat, host_waits, output, interfaces } = links;
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory_bytes: limits.max_memory_bytes,
                max_table_elements: limits.max_table_elements,
                max_instances: limits.max_instances,
            },
            path: Arc::from(path),
            messenger,
            state,
            quota: limits.state,
            heartbeat,
            output,
            watch: limits.heartbeat,
            next_judgement: None,
            exit_request: None,
            abort_reason: None,
            deadline: None,
            call_started: Instant::now(),
            host_waits,
            app: AppStates::new(interfaces.len()),
            interfaces,
            loaded_exports: LoadedExports::default(),
            upgraded_from: None,
        }
    }
}

impl WasiView for StoreData {
    /// Every WASI function reaches the Store through here.
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.host_waits.leave_interface();
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
