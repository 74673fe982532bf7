//! The manifest as plain serde data: what a file may say, and nothing more
//! (`deny_unknown_fields` everywhere). The JSON schema is generated from these types.

use crate::TrapKind;
use crate::spec::{AutoShutdown, Restart, Strategy};
use serde::Deserialize;
use std::path::PathBuf;

/// A manifest file's top level.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Where children's durable state is kept, relative to the manifest. The
    /// command line's `--data-dir` overrides it; without either, `warden run` uses a
    /// directory of its own per manifest (see the README).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// The root supervisor.
    pub root: SupervisorEntry,
}

/// The settings of a manifest beside its tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// `data_dir`, resolved against the manifest's directory.
    pub data_dir: Option<PathBuf>,
}

/// A supervisor in the manifest.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisorEntry {
    /// The restart strategy.
    pub strategy: Strategy,
    /// Restarts allowed within `period`; default 1.
    #[serde(default = "default_intensity")]
    pub intensity: i64,
    /// The intensity window, e.g. "5s"; default 5 s.
    #[serde(default)]
    pub period: Option<String>,
    /// Default never.
    #[serde(default)]
    pub auto_shutdown: AutoShutdown,
    /// The backoff of every child that sets none of its own; default none (OTP's
    /// immediate restarts).
    #[serde(default)]
    pub backoff: Option<BackoffEntry>,
    /// The children in start order.
    #[serde(default)]
    pub children: Vec<ChildEntry>,
}

fn default_intensity() -> i64 {
    1
}

/// A child in the manifest: a plugin or a nested supervisor.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildEntry {
    /// Unique among its siblings.
    pub name: String,
    /// The component file, relative to the manifest.
    #[serde(default)]
    pub plugin: Option<String>,
    /// A nested supervisor instead of a plugin.
    #[serde(default)]
    pub supervisor: Option<SupervisorEntry>,
    /// Default permanent.
    #[serde(default)]
    pub restart: Option<Restart>,
    /// "brutal_kill", "infinity" or a duration; default 5 s for plugins, infinity for
    /// supervisors.
    #[serde(default)]
    pub shutdown: Option<String>,
    /// Default false.
    #[serde(default)]
    pub significant: bool,
    /// Handed to `init` as JSON.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub config: Option<toml::Value>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<LimitsEntry>,
    /// Capabilities.
    #[serde(default)]
    pub grants: Option<GrantsEntry>,
    /// Delay before restarts.
    #[serde(default)]
    pub backoff: Option<BackoffEntry>,
    /// Trap kinds after which the child is not restarted.
    #[serde(default)]
    pub no_restart_on: Vec<TrapKind>,
    /// How its heartbeats are judged while it is busy; none by default.
    #[serde(default)]
    pub heartbeat: Option<HeartbeatEntry>,
    /// A circuit breaker on calls to it; none by default.
    #[serde(default)]
    pub circuit: Option<CircuitEntry>,
    /// Incarnations a sent message may crash before it is dead-lettered; default 1
    /// (as in OTP: the message that crashed the child is not tried again).
    #[serde(default)]
    pub poison_after: Option<u32>,
    /// Its durable state: quotas, and whether it is kept when the spec is dropped.
    #[serde(default)]
    pub state: Option<StateEntry>,
    /// Drop its instance after it has been idle this long (e.g. "1s", or "0s": after
    /// every message) and create it again, `init` included, for the next message.
    #[serde(default)]
    pub hibernate_after: Option<String>,
    /// In a cluster: the only node it runs on. Default where its supervisor runs.
    #[serde(default)]
    pub node: Option<String>,
    /// In a cluster: the nodes it may run on; it starts on the first one that is up.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
}

/// A plugin child's durable state: `{ max_bytes = "1MiB", max_keys = 1000, max_value =
/// "64KiB", keep = false }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    /// Keys and values together, e.g. "1MiB"; default 64 MiB.
    #[serde(default)]
    pub max_bytes: Option<String>,
    /// Number of keys; default 100,000.
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Largest value, e.g. "64KiB"; default 1 MiB.
    #[serde(default)]
    pub max_value: Option<String>,
    /// Keep the state when the child's spec is dropped (a temporary or dynamic child
    /// that ended, `delete_child`); default false: it is removed.
    #[serde(default)]
    pub keep: bool,
}

/// A heartbeat policy: `{ timeout = "200ms" }`, or `{ detector = "phi" }` with any of
/// the φ-accrual parameters.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatEntry {
    /// "fixed" (the default, needs `timeout`) or "phi".
    #[serde(default)]
    pub detector: Option<String>,
    /// Fixed: killed after this long without a beat, e.g. "200ms".
    #[serde(default)]
    pub timeout: Option<String>,
    /// φ: the suspicion threshold; default 8.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// φ: the least standard deviation assumed; default "100ms".
    #[serde(default)]
    pub min_std_dev: Option<String>,
    /// φ: a pause accepted on top of the mean interval; default "3s".
    #[serde(default)]
    pub acceptable_pause: Option<String>,
    /// φ: intervals kept; default 1000.
    #[serde(default)]
    pub max_samples: Option<usize>,
    /// φ: the interval assumed before any is measured; default "1s".
    #[serde(default)]
    pub first_estimate: Option<String>,
}

/// A circuit breaker: `{ failures = 3, reset = "1s" }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitEntry {
    /// Consecutive failed calls that open it (at least 1).
    pub failures: u32,
    /// How long it stays open before one probe call, e.g. "1s".
    pub reset: String,
}

/// Limits in human units.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    /// Linear memory, e.g. "16MiB".
    pub memory: Option<String>,
    /// CPU deadline per call, e.g. "500ms", or "none".
    pub deadline: Option<String>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// The largest message it accepts, e.g. "64KiB"; default 1 MiB.
    pub message_size: Option<String>,
    /// Messages that may wait in its mailbox; default 1024.
    pub mailbox: Option<usize>,
    /// Payload bytes the messages waiting in its mailbox may hold together, e.g.
    /// "4MiB"; default 16 MiB.
    pub mailbox_bytes: Option<String>,
    /// `send-after` timers it may have pending; default 1024.
    pub timers: Option<usize>,
    /// Bytes of payload its pending timers may hold, e.g. "1MiB"; default 4 MiB.
    pub timer_bytes: Option<String>,
    /// Bytes a second its stdout, stderr and log lines may take together (each line
    /// costs 64 bytes more), e.g. "64KiB"; past it lines are dropped, counted. Default
    /// 1 MiB.
    pub output: Option<String>,
}

/// Capabilities.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsEntry {
    /// Directories, relative to the manifest.
    #[serde(default)]
    pub dirs: Vec<DirEntry>,
    /// Environment variables by name, with their values.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Sockets and name lookups: `true` for any, or the rules that allow them
    /// (`"127.0.0.1:8080"`, `"tcp:10.0.0.0/8:443"`, `"udp:[::1]:53"`, `"dns"`).
    #[serde(default)]
    pub network: NetworkEntry,
    /// The application's interfaces it may import (`acme:shop/inventory`, or
    /// `acme:shop/*`); only an embedding application provides any.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Whom it may send to and call: paths, subtrees (`root/pool/*`) or `*`; itself
    /// always.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// One granted directory.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// On the host, relative to the manifest.
    pub host: String,
    /// Where the guest sees it.
    pub guest: String,
    /// Default false.
    #[serde(default)]
    pub writable: bool,
}

/// Backoff in human units.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffEntry {
    /// "fixed", "linear" or "exponential".
    pub kind: String,
    /// The first delay.
    pub initial: String,
    /// Added per attempt (linear).
    #[serde(default)]
    pub step: Option<String>,
    /// The largest delay.
    #[serde(default)]
    pub max: Option<String>,
    /// Random fraction (exponential), 0 to 1.
    #[serde(default)]
    pub jitter: f64,
    /// How long a child must run for its backoff to start over; default 10 s.
    #[serde(default)]
    pub reset_after: Option<String>,
}

/// `grants.network`: everything or nothing, or an allow-list of rules.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(
    untagged,
    expecting = "true, false, or a list of rules such as [\"127.0.0.1:8080\", \"tcp:10.0.0.0/8:443\", \"dns\"]"
)]
pub enum NetworkEntry {
    /// `true` for any address and name lookups, `false` for none.
    All(bool),
    /// `[tcp:|udp:]ADDRESS[/PREFIX][:PORT[-PORT]]`, or `dns`.
    Only(Vec<String>),
}

impl Default for NetworkEntry {
    fn default() -> Self {
        NetworkEntry::All(false)
    }
}
