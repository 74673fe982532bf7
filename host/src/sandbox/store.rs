//! The data of one incarnation's Store: what its host functions reach, its limits,
//! and the bookkeeping of the export call in progress.

use super::heartbeat::Heartbeat;
use super::limits::Limiter;
use super::output::Budget;
use crate::ExitReason;
use crate::services::{Messenger, StateStore};
use crate::spec::HeartbeatPolicy;
use crate::spec::{ChildLimits, Quota};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of one incarnation's Store.
pub(crate) struct StoreData {
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
}

impl HostWaits {
    pub(crate) fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn reset(&self) {
        self.nanos.store(0, Ordering::Relaxed);
        self.yielding.store(false, Ordering::Relaxed);
    }

    /// Polls `call` to completion, counting the time it waited on the host.
    pub(crate) async fn count<R>(&self, call: impl Future<Output = R>) -> R {
        let mut call = pin!(call);
        let mut waiting_since = None;
        std::future::poll_fn(|cx| {
            if let Some(since) = waiting_since.take() {
                let waited = Instant::now().duration_since(since);
                let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
                self.nanos.fetch_add(nanos, Ordering::Relaxed);
            }
            let polled = call.as_mut().poll(cx);
            if polled.is_pending() && !self.yielding.swap(false, Ordering::Relaxed) {
                waiting_since = Some(Instant::now());
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
}

impl StoreData {
    pub(crate) fn new(wasi: WasiCtx, limits: &ChildLimits, path: &str, links: Links) -> Self {
        let Links { messenger, state, heartbeat, host_waits, output } = links;
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
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
