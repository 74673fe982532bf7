//! Per-child limits and capabilities: deny by default, and say so.

use super::heartbeat::HeartbeatPolicy;
use super::network::Network;
use std::path::PathBuf;
use std::time::Duration;

/// Resource limits of one child. Each incarnation gets a fresh budget.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grants {
    /// Host directories visible to the guest. wasmtime-wasi resolves guest paths in
    /// them with cap-std, so neither `..`, an absolute path nor a symlink leads outside
    /// them. Default none.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the guest sees, as name and value. Default none.
    pub env: Vec<(String, String)>,
    /// Which sockets the guest may use, and whether it may resolve names. Default
    /// none.
    pub network: Network,
    /// The application's interfaces the guest may import: names
    /// (`acme:shop/inventory`, any version unless one is given) or whole packages
    /// (`acme:shop/*`). A plugin importing one it is not granted does not start.
    /// Default none.
    pub interfaces: Vec<String>,
}

impl Grants {
    /// Whether the guest may import the application interface `import` (as the
    /// component names it).
    pub fn allows_interface(&self, import: &str) -> bool {
        self.interfaces.iter().any(|grant| super::interfaces::grant_covers(grant, import))
    }
}

/// One host directory granted to a child.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: String,
    /// Whether the guest may create, write and delete files there.
    pub writable: bool,
}

/// How much state one child may keep. A write that would take the child past a limit
/// fails with `quota-exceeded` (or `value-too-large`) and
/// changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    /// Keys and values together, in bytes. Default 64 MiB.
    pub max_bytes: u64,
    /// Number of keys. Default 100,000.
    pub max_keys: u64,
    /// Largest value, in bytes. Default 1 MiB.
    pub max_value_bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_keys: 100_000, max_value_bytes: 1 << 20 }
    }
}
