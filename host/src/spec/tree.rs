//! What a supervisor is told: its flags and its children's specs, checked with
//! OTP's rules (`supervisor:check_flags/1`, `check_childspec/2`).

use super::heartbeat::HeartbeatPolicy;
use super::limits::{ChildLimits, Grants};
use super::mailbox::MailboxConfig;
use super::source::PluginSource;
use crate::TrapKind;
use std::fmt;
use std::time::Duration;

/// How a supervisor restarts children when one of them exits.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the child that exited is restarted.
    OneForOne,
    /// All children are stopped (newest first) and started again (in order).
    OneForAll,
    /// The exited child and every child started after it are stopped and restarted.
    RestForOne,
    /// Children are started at run time from one template, each with its own config.
    SimpleOneForOne,
}

/// When a child is restarted (OTP's `restart` of a child spec).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted after an abnormal exit only (normal: `normal`, `shutdown`,
    /// `shutdown_with`).
    Transient,
    /// Never restarted; its spec is dropped when it exits.
    Temporary,
}

/// When a supervisor shuts itself down because significant children exited.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AutoShutdown {
    /// Never (the default).
    #[default]
    Never,
    /// When any significant child exits without being restarted.
    AnySignificant,
    /// When no significant child is left running.
    AllSignificant,
}

/// Delay before a restart (beyond OTP, which restarts at once).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Backoff {
    /// Restart at once, as OTP does (the default).
    #[default]
    None,
    /// The same delay before every restart.
    Fixed(Duration),
    /// `initial`, then `step` more per consecutive attempt, at most `max`.
    Linear {
        /// Delay before the first restart.
        initial: Duration,
        /// Added for each further attempt.
        step: Duration,
        /// The largest delay.
        max: Duration,
    },
    /// `initial`, doubled per consecutive attempt, at most `max`, less a random part
    /// of up to `jitter` (0.0–1.0) of it so crash-looping siblings spread out.
    Exponential {
        /// Delay before the first restart.
        initial: Duration,
        /// The largest delay.
        max: Duration,
        /// The fraction of each delay that is random.
        jitter: f64,
    },
}

impl Backoff {
    /// The delay before consecutive attempt `attempt` (1 for the first), with `random`
    /// in `[0, 1)` for the jitter.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let n = attempt.max(1) - 1;
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(d) => d,
            Backoff::Linear { initial, step, max } => {
                initial.saturating_add(step.saturating_mul(n)).min(max)
            }
            Backoff::Exponential { initial, max, jitter } => {
                let full = initial.saturating_mul(2u32.saturating_pow(n.min(31))).min(max);
                let factor = 1.0 - jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
                // `mul_f64` panics where the float rounds past `Duration::MAX`.
                Duration::try_from_secs_f64(full.as_secs_f64() * factor).unwrap_or(full)
            }
        }
    }
}

/// What a child is.
#[derive(Clone, Debug)]
pub enum ChildStart {
    /// A plugin run in a sandbox.
    Plugin(Box<PluginStart>),
    /// A nested supervisor.
    Supervisor(Box<SupervisorSpec>),
}

/// How to start a plugin child.
#[derive(Clone, Debug)]
pub struct PluginStart {
    /// The component: a file, bytes, or a plugin already loaded.
    pub plugin: PluginSource,
    /// Bytes given to `init` (JSON from a manifest).
    pub config: Vec<u8>,
    /// Resource limits.
    pub limits: ChildLimits,
    /// Capabilities.
    pub grants: Grants,
    /// Its mailbox, whom it may message, its circuit breaker.
    pub mailbox: MailboxConfig,
    /// Keep its durable state when its spec is dropped (a temporary or dynamic child
    /// that ended, `delete_child`). Default false: the state goes with the spec.
    pub keep_state: bool,
    /// Hibernate: drop the instance after it has been idle this long, and create it
    /// again (running `init` again, same incarnation) when the next message arrives.
    /// An idle hibernating child holds no instance, so far more children than the
    /// instance ceiling can be supervised; what must outlive an activation belongs in
    /// its durable state. `Some(ZERO)` drops it after every message. Default `None`:
    /// the instance lives as long as the incarnation.
    pub hibernate_after: Option<std::time::Duration>,
}

impl PluginStart {
    /// The component `plugin` (a path, [`PluginSource::bytes`], or a loaded plugin),
    /// with an empty config and the default limits, grants and mailbox.
    pub fn new(plugin: impl Into<PluginSource>) -> Self {
        Self {
            plugin: plugin.into(),
            config: Vec::new(),
            limits: ChildLimits::default(),
            grants: Grants::default(),
            mailbox: MailboxConfig::default(),
            keep_state: false,
            hibernate_after: None,
        }
    }

    /// The bytes handed to `init` (a manifest gives JSON). Default empty.
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.config = config.into();
        self
    }

    /// All its resource limits at once. Default [`ChildLimits::default`] (64 MiB of
    /// memory, a 5 s call deadline, no fuel, no heartbeat watchdog, ...).
    pub fn limits(mut self, limits: ChildLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Its largest linear memory, in bytes; growing past it ends the incarnation with
    /// `trap(memory_limit)`. Default 64 MiB.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.limits.max_memory_bytes = bytes;
        self
    }

    /// How long one export call may run in the guest before `killed(deadline)`;
    /// `None` for no deadline. Default 5 s.
    pub fn call_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.limits.call_deadline = deadline;
        self
    }

    /// Fuel for one export call; running out ends the incarnation with
    /// `trap(out_of_fuel)`. Needs a host whose engine has fuel on
    /// (`EngineConfig::fuel`): a spec with it is refused by one without
    /// ([`SpecProblem::FuelOff`]). Default none.
    pub fn fuel_per_call(mut self, fuel: u64) -> Self {
        self.limits.fuel_per_call = Some(fuel);
        self
    }

    /// The heartbeat watchdog: while the child is busy in a call, heartbeats judged
    /// missing by `policy` kill it with `killed(heartbeat)`. Default none.
    pub fn heartbeat(mut self, policy: HeartbeatPolicy) -> Self {
        self.limits.heartbeat = Some(policy);
        self
    }

    /// What it may reach outside its sandbox. Default [`Grants::default`]: nothing.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Grants it the application interface `name` (`acme:shop/inventory`) or package
    /// (`acme:shop/*`), beside those already granted. Default none.
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.grants.interfaces.push(name.into());
        self
    }

    /// Its mailbox, whom it may message and its circuit breaker. Default
    /// [`MailboxConfig::default`].
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// Hibernates it after `idle` without a message (see the field). Default never.
    pub fn hibernate_after(mut self, idle: Duration) -> Self {
        self.hibernate_after = Some(idle);
        self
    }

    /// Keeps its durable state when its spec is dropped. Default false.
    pub fn keep_state(mut self, keep: bool) -> Self {
        self.keep_state = keep;
        self
    }
}

impl<T: Into<PluginSource>> From<T> for PluginStart {
    fn from(plugin: T) -> Self {
        Self::new(plugin)
    }
}

/// One child of a supervisor (OTP's child spec).
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Unique among its siblings; also the last segment of its path.
    pub id: String,
    /// What to start.
    pub start: ChildStart,
    /// When to restart it. Default permanent.
    pub restart: Restart,
    /// How to stop it. Default 5 s for a plugin, infinity for a supervisor (OTP's).
    pub shutdown: Shutdown,
    /// Whether its exit can shut the supervisor down (see [`AutoShutdown`]).
    pub significant: bool,
    /// Delay before restarts. Default none.
    pub backoff: Backoff,
    /// How long the child must run before its backoff starts over. Default 10 s.
    pub backoff_reset: Duration,
    /// Trap kinds after which the child is not restarted, whatever its restart type
    /// (e.g. `memory_limit`); it stays stopped and `restart_child` can revive it.
    pub no_restart_on: Vec<TrapKind>,
    /// Which node of a cluster runs it. Default where its supervisor runs.
    pub placement: Placement,
}

/// Which node of a cluster runs a plugin child (a supervisor always runs where its
/// parent does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// Where its supervisor runs: the only choice on one machine, and the default.
    #[default]
    Local,
    /// The first of these nodes that is up when it starts, in order (`node = "b"` is a
    /// list of one). Starting it when none is up is a start failure, with OTP's
    /// consequences.
    Nodes(Vec<String>),
}

impl ChildSpec {
    /// A permanent worker with OTP's defaults.
    /// `start` is a [`PluginStart`], or what one is made from: a path, a loaded
    /// [`Plugin`](crate::sandbox::Plugin) or [`PluginSource::bytes`].
    pub fn plugin(id: impl Into<String>, start: impl Into<PluginStart>) -> Self {
        Self::new(
            id,
            ChildStart::Plugin(Box::new(start.into())),
            Shutdown::Timeout(Duration::from_secs(5)),
        )
    }

    /// A permanent nested supervisor with OTP's defaults (shutdown infinity).
    pub fn supervisor(id: impl Into<String>, spec: SupervisorSpec) -> Self {
        Self::new(id, ChildStart::Supervisor(Box::new(spec)), Shutdown::Infinity)
    }

    fn new(id: impl Into<String>, start: ChildStart, shutdown: Shutdown) -> Self {
        Self {
            id: id.into(),
            start,
            restart: Restart::Permanent,
            shutdown,
            significant: false,
            backoff: Backoff::None,
            backoff_reset: Duration::from_secs(10),
            no_restart_on: Vec::new(),
            placement: Placement::Local,
        }
    }

    /// Whether the child is a supervisor.
    pub fn is_supervisor(&self) -> bool {
        matches!(self.start, ChildStart::Supervisor(_))
    }

    /// When it is restarted. Default [`Restart::Permanent`].
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// How it is stopped. Default a 5 s timeout for a plugin, infinity for a
    /// supervisor (OTP's).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Whether its exit may shut its supervisor down (with the supervisor's
    /// [`AutoShutdown`]). Default false.
    pub fn significant(mut self, significant: bool) -> Self {
        self.significant = significant;
        self
    }

    /// The delay before its restarts, and how long it must run before the delays
    /// start over. Default none, and 10 s.
    pub fn backoff(mut self, backoff: Backoff, reset_after: Duration) -> Self {
        self.backoff = backoff;
        self.backoff_reset = reset_after;
        self
    }

    /// Trap kinds after which it is not restarted, whatever its restart type.
    /// Default none.
    pub fn no_restart_on(mut self, kinds: impl IntoIterator<Item = TrapKind>) -> Self {
        self.no_restart_on = kinds.into_iter().collect();
        self
    }

    /// Runs it on the cluster node `node` only. Default where its supervisor runs.
    pub fn node(self, node: impl Into<String>) -> Self {
        self.nodes([node])
    }

    /// Runs it on the first of `nodes` that is up when it starts. Default where its
    /// supervisor runs.
    pub fn nodes<N: Into<String>>(mut self, nodes: impl IntoIterator<Item = N>) -> Self {
        self.placement = Placement::Nodes(nodes.into_iter().map(Into::into).collect());
        self
    }
}

/// A supervisor: its flags and its children in start order (for simple_one_for_one,
/// exactly one: the template).
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    /// The restart strategy.
    pub strategy: Strategy,
    /// Most restarts within `period` before the supervisor gives up. Default 1.
    pub intensity: u32,
    /// The sliding window for `intensity`. Default 5 s.
    pub period: Duration,
    /// Default never.
    pub auto_shutdown: AutoShutdown,
    /// The children, in start order.
    pub children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with OTP's default flags (intensity 1 in 5 s, no auto shutdown).
    pub fn new(strategy: Strategy, children: Vec<ChildSpec>) -> Self {
        Self {
            strategy,
            intensity: 1,
            period: Duration::from_secs(5),
            auto_shutdown: AutoShutdown::Never,
            children,
        }
    }

    /// Gives up (and exits, escalating to its parent) at the `(intensity + 1)`th
    /// restart within `period`. Default OTP's 1 in 5 s: a second crash within 5 s
    /// stops the supervisor, and at the root the whole tree. A tree of plugins that
    /// may crash now and then wants more, e.g. 10 in 60 s.
    pub fn intensity(mut self, intensity: u32, period: Duration) -> Self {
        self.intensity = intensity;
        self.period = period;
        self
    }

    /// When significant children's exits shut it down. Default never.
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Self {
        self.auto_shutdown = auto_shutdown;
        self
    }
}

/// One problem with a spec, and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    /// The path of what is wrong: a child's (`root/a`) or, for a problem with a
    /// supervisor's own flags, the supervisor's (`root`).
    pub path: String,
    /// What is wrong.
    pub problem: SpecProblem,
}

impl SpecError {
    /// Where, in words: `supervisor root, child "a"` or `supervisor root`.
    pub fn place(&self) -> String {
        let split = match &self.problem {
            // The id's own '/' is not where the supervisor's path ends.
            SpecProblem::SlashInId { id } => self
                .path
                .strip_suffix(id.as_str())
                .and_then(|p| p.strip_suffix('/'))
                .map(|supervisor| (supervisor, id.as_str())),
            problem if problem.is_about_a_child() => self.path.rsplit_once('/'),
            _ => None,
        };
        match split {
            Some((supervisor, child)) => format!("supervisor {supervisor}, child {child:?}"),
            None => format!("supervisor {}", self.path),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place(), self.problem)
    }
}

impl std::error::Error for SpecError {}

/// What can be wrong with a spec: OTP's `check_flags/1` and `check_childspec/2`
/// rules, and what Warden adds.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecProblem {
    /// The intensity window is zero.
    #[error("period must be greater than zero")]
    ZeroPeriod,
    /// A simple_one_for_one supervisor has other than one child spec.
    #[error("simple_one_for_one needs exactly one child spec (the template), found {found}")]
    TemplateCount {
        /// How many it has.
        found: usize,
    },
    /// A child's id is empty.
    #[error("the id is empty")]
    EmptyId,
    /// A child's id contains `/`.
    #[error("the id contains '/', which separates path segments")]
    SlashInId {
        /// The id.
        id: String,
    },
    /// Two children have the same id.
    #[error("duplicate child id")]
    DuplicateId,
    /// A significant child under a supervisor whose `auto_shutdown` is never.
    #[error("significant is true but the supervisor's auto_shutdown is never")]
    SignificantWithoutAutoShutdown,
    /// A significant child that is permanent.
    #[error("significant is true but the child is permanent")]
    SignificantPermanent,
    /// An exponential backoff's jitter outside 0–1.
    #[error("backoff jitter must be between 0 and 1, not {jitter}")]
    Jitter {
        /// The jitter given.
        jitter: f64,
    },
    /// A `grants.interfaces` entry that does not name an application interface.
    #[error("grants.interfaces: {0}")]
    InterfaceGrant(String),
    /// The child's plugin imports an application interface its `grants.interfaces`
    /// do not name.
    #[error("its plugin imports `{import}`, which its grants do not name (grants.interfaces)")]
    NotGranted {
        /// The interface, as the plugin names it (`acme:shop/inventory@0.1.0`).
        import: String,
    },
    /// `limits.fuel_per_call` is set but the host's engine has no fuel
    /// (`EngineConfig::fuel`).
    #[error("fuel_per_call is set but the engine was built without fuel (EngineConfig::fuel)")]
    FuelOff,
    /// The child's memory limit is more than the engine's instance pool gives one
    /// memory (`EngineConfig::max_memory_bytes`): the limit could not be honoured.
    #[error(
        "its memory limit, {limit} bytes, is more than the engine's pool gives a memory, \
         {pool} bytes: lower the limit or raise EngineConfig::max_memory_bytes (`warden run` \
         sizes it to the largest limit)"
    )]
    MemoryOverPool {
        /// The child's limit, in bytes.
        limit: usize,
        /// What the engine's pool gives one memory, in bytes.
        pool: usize,
    },
    /// A supervisor child with a placement: a supervisor runs where its parent does.
    #[error("`node`/`nodes` place plugin children; a supervisor runs where its parent does")]
    PlacedSupervisor,
    /// A placement that names no node, or an empty node name.
    #[error("`nodes` must name at least one node, each by a non-empty name")]
    NoNodes,
    /// A child placed on other nodes, on a host that is not in a cluster.
    #[error(
        "it is placed on node(s) {nodes:?} but this host is in no cluster (`--node` and \
         `--nats`, or HostBuilder::cluster)"
    )]
    NoCluster {
        /// The nodes it names.
        nodes: Vec<String>,
    },
}

impl SpecProblem {
    /// Whether it is about one child (rather than the supervisor's own flags).
    pub fn is_about_a_child(&self) -> bool {
        !matches!(self, Self::ZeroPeriod | Self::TemplateCount { .. })
    }
}

/// Checks `spec` at `path` and every nested supervisor; returns every problem.
pub fn validate(path: &str, spec: &SupervisorSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut problem = |path: String, problem: SpecProblem| {
        errors.push(SpecError { path, problem });
    };
    if spec.period.is_zero() {
        problem(path.to_owned(), SpecProblem::ZeroPeriod);
    }
    if spec.strategy == Strategy::SimpleOneForOne && spec.children.len() != 1 {
        problem(path.to_owned(), SpecProblem::TemplateCount { found: spec.children.len() });
    }
    let mut seen = std::collections::HashSet::new();
    let mut nested = Vec::new();
    for child in &spec.children {
        let child_path = format!("{path}/{}", child.id);
        for p in check_child(child, spec.auto_shutdown) {
            problem(child_path.clone(), p);
        }
        if !seen.insert(child.id.as_str()) {
            problem(child_path.clone(), SpecProblem::DuplicateId);
        }
        if let ChildStart::Supervisor(sub) = &child.start {
            nested.push((child_path, sub));
        }
    }
    for (sub_path, sub) in nested {
        errors.extend(validate(&sub_path, sub));
    }
    errors
}

/// OTP's `check_childspec/2` rules, plus what Warden adds (ids usable in paths,
/// backoff values).
pub(crate) fn check_child(child: &ChildSpec, auto_shutdown: AutoShutdown) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    if child.id.is_empty() {
        problems.push(SpecProblem::EmptyId);
    } else if child.id.contains('/') {
        problems.push(SpecProblem::SlashInId { id: child.id.clone() });
    }
    if child.significant && auto_shutdown == AutoShutdown::Never {
        problems.push(SpecProblem::SignificantWithoutAutoShutdown);
    }
    if child.significant && child.restart == Restart::Permanent {
        problems.push(SpecProblem::SignificantPermanent);
    }
    if let Backoff::Exponential { jitter, .. } = child.backoff
        && !(0.0..=1.0).contains(&jitter)
    {
        problems.push(SpecProblem::Jitter { jitter });
    }
    if let Placement::Nodes(nodes) = &child.placement {
        if child.is_supervisor() {
            problems.push(SpecProblem::PlacedSupervisor);
        } else if nodes.is_empty() || nodes.iter().any(String::is_empty) {
            problems.push(SpecProblem::NoNodes);
        }
    }
    if let ChildStart::Plugin(plugin) = &child.start {
        for grant in &plugin.grants.interfaces {
            if let Err(problem) = super::interfaces::check_interface_grant(grant) {
                problems.push(SpecProblem::InterfaceGrant(problem));
            }
        }
    }
    problems
}

/// How a child is stopped: OTP's `shutdown` of a child spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Killed at once; `terminate` is not called.
    BrutalKill,
    /// `terminate` is called; the child is killed if it has not returned in time.
    Timeout(Duration),
    /// `terminate` is called and waited for, however long it takes.
    Infinity,
}
