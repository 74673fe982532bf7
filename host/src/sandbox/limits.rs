//! Per-child limits and capabilities: deny by default, and say so.

use super::heartbeat::HeartbeatPolicy;
use crate::state::Quota;
use std::path::PathBuf;
use std::time::Duration;

/// Resource limits of one child. Each incarnation gets a fresh budget.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildLimits {
    /// Largest linear memory, in bytes. Growing past it ends the incarnation with
    /// `trap(memory_limit)` (like Erlang's `max_heap_size` kill). Default 64 MiB.
    pub max_memory_bytes: usize,
    /// Most elements in any table. Default 20,000.
    pub max_table_elements: usize,
    /// Most core instances, tables and memories a component may create. Default 32.
    pub max_instances: usize,
    /// How long an export call may run in the guest before it is killed with
    /// `killed(deadline)`: the call's wall time less the time it waited on the host
    /// (a `call` waiting for a reply, a WASI sleep, a state write's commit), checked at
    /// every epoch tick, so the kill comes within one tick of it. A host function that
    /// returns without waiting counts as the guest's time. `None` = no deadline.
    /// Default 5 s.
    pub call_deadline: Option<Duration>,
    /// Fuel for one export call; running out ends the incarnation with
    /// `trap(out_of_fuel)`. Needs an engine built with fuel on. Default `None`.
    pub fuel_per_call: Option<u64>,
    /// How the child's heartbeats are judged while it is busy in an export call; a
    /// child judged hung ends with `killed(heartbeat)`. `None` = no watchdog (the
    /// default: only the call deadline bounds a call).
    pub heartbeat: Option<HeartbeatPolicy>,
    /// How much durable state the child may keep (keys, bytes, largest value).
    pub state: Quota,
    /// Bytes a second its stdout, stderr and `log` lines may cost together (each line
    /// also costs 64 bytes), with a burst of one second's worth; past it, lines are
    /// dropped and counted, and a note says how many. Default 1 MiB.
    pub output_per_second: usize,
}

impl Default for ChildLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 << 20,
            max_table_elements: 20_000,
            max_instances: 32,
            call_deadline: Some(Duration::from_secs(5)),
            fuel_per_call: None,
            heartbeat: None,
            state: Quota::default(),
            output_per_second: 1 << 20,
        }
    }
}

/// What a child may reach outside its sandbox. The default grants nothing: no
/// directory, no environment variable, no network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Host directories visible to the guest. Paths are resolved with cap-std, so
    /// neither `..`, an absolute path nor a symlink leads outside them. Default none.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the guest sees, as name and value. Default none.
    pub env: Vec<(String, String)>,
    /// Whether the guest may open sockets and resolve names. Default false.
    pub network: bool,
}

/// One host directory granted to a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: String,
    /// Whether the guest may create, write and delete files there.
    pub writable: bool,
}

/// The store's `ResourceLimiter`: a refused grow is an error (so a trap the host can
/// classify exactly as `memory_limit`), never a silent -1 a Rust guest would turn into
/// an indistinguishable abort.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) max_memory_bytes: usize,
    pub(crate) max_table_elements: usize,
    pub(crate) max_instances: usize,
}

/// Raised by the limiter; the classifier turns it into `trap(memory_limit)`.
#[derive(Debug, thiserror::Error)]
#[error("{what} limit reached: wanted {desired} {unit}, limit is {limit}")]
pub(crate) struct LimitExceeded {
    pub(crate) what: &'static str,
    pub(crate) desired: usize,
    pub(crate) limit: usize,
    pub(crate) unit: &'static str,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded {
                what: "memory",
                desired,
                limit: self.max_memory_bytes,
                unit: "bytes",
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Err(wasmtime::Error::new(LimitExceeded {
                what: "table",
                desired,
                limit: self.max_table_elements,
                unit: "elements",
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}
