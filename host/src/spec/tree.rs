//! What a supervisor is told: its flags and its children's specs, checked with
//! OTP's rules (`supervisor:check_flags/1`, `check_childspec/2`).

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

    /// The same, with `config` handed to `init`.
    pub fn with_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.config = config.into();
        self
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
}

impl ChildSpec {
    /// A permanent worker with OTP's defaults.
    pub fn plugin(id: impl Into<String>, start: PluginStart) -> Self {
        Self::new(
            id,
            ChildStart::Plugin(Box::new(start)),
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
        }
    }

    /// Whether the child is a supervisor.
    pub fn is_supervisor(&self) -> bool {
        matches!(self.start, ChildStart::Supervisor(_))
    }

    /// The same spec with restart type `restart`.
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
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
}

/// One problem with a spec, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// Where: `supervisor root, child "a"`.
    pub place: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.problem)
    }
}

impl std::error::Error for SpecError {}

/// Checks `spec` at `path` and every nested supervisor; returns every problem.
pub fn validate(path: &str, spec: &SupervisorSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let here = format!("supervisor {path}");
    let mut problem = |place: &str, problem: String| {
        errors.push(SpecError { place: place.to_owned(), problem });
    };
    if spec.period.is_zero() {
        problem(&here, "period must be greater than zero".into());
    }
    if spec.strategy == Strategy::SimpleOneForOne && spec.children.len() != 1 {
        problem(
            &here,
            format!(
                "simple_one_for_one needs exactly one child spec (the template), found {}",
                spec.children.len()
            ),
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut nested = Vec::new();
    for child in &spec.children {
        let place = format!("{here}, child {:?}", child.id);
        for p in check_child(child, spec.auto_shutdown) {
            problem(&place, p);
        }
        if !seen.insert(child.id.as_str()) {
            problem(&place, "duplicate child id".into());
        }
        if let ChildStart::Supervisor(sub) = &child.start {
            nested.push((format!("{path}/{}", child.id), sub));
        }
    }
    for (sub_path, sub) in nested {
        errors.extend(validate(&sub_path, sub));
    }
    errors
}

/// OTP's `check_childspec/2` rules, plus what Warden adds (ids usable in paths,
/// backoff values).
pub(crate) fn check_child(child: &ChildSpec, auto_shutdown: AutoShutdown) -> Vec<String> {
    let mut problems = Vec::new();
    if child.id.is_empty() {
        problems.push("the id is empty".into());
    } else if child.id.contains('/') {
        problems.push("the id contains '/', which separates path segments".into());
    }
    if child.significant && auto_shutdown == AutoShutdown::Never {
        problems.push("significant is true but the supervisor's auto_shutdown is never".into());
    }
    if child.significant && child.restart == Restart::Permanent {
        problems.push("significant is true but the child is permanent".into());
    }
    if let Backoff::Exponential { jitter, .. } = child.backoff
        && !(0.0..=1.0).contains(&jitter)
    {
        problems.push(format!("backoff jitter must be between 0 and 1, not {jitter}"));
    }
    if let ChildStart::Plugin(plugin) = &child.start {
        for grant in &plugin.grants.interfaces {
            if let Err(problem) = super::interfaces::check_interface_grant(grant) {
                problems.push(format!("grants.interfaces: {problem}"));
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
