//! The second pass: the entries into a [`SupervisorSpec`], each value in human units
//! checked and turned into the spec's, every problem reported at its place (`supervisor
//! root, child "a"`) with the field it concerns.

use super::entries::{
    BackoffEntry, ChildEntry, CircuitEntry, GrantsEntry, HeartbeatEntry, LimitsEntry, NetworkEntry,
    StateEntry, SupervisorEntry,
};
use super::problem::{Problem, ProblemKind};
use super::units::{MAX_MEMORY, bytes, duration};
use crate::spec::{
    Backoff, ChildLimits, ChildSpec, CircuitConfig, DirGrant, Grants, HeartbeatPolicy,
    MailboxConfig, Network, PhiAccrual, PluginStart, Quota, Shutdown, SupervisorSpec, Targets,
};
use std::path::Path;
use std::time::Duration;

/// Builds specs from entries, collecting every problem.
pub(super) struct Builder<'a> {
    /// Plugin files and granted directories are relative to it.
    base: &'a Path,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(base: &'a Path) -> Self {
        Self { base, problems: Vec::new() }
    }

    fn problem(&mut self, kind: ProblemKind, place: &str, message: String) {
        self.problems.push(Problem::new(kind, place, message));
    }

    fn bad(&mut self, place: &str, message: String) {
        self.problem(ProblemKind::BadValue, place, message);
    }

    /// A duration field, or `None` (reported) if it is not one.
    fn duration(&mut self, place: &str, field: &str, text: &str) -> Option<Duration> {
        duration(text).map_err(|e| self.bad(place, format!("{field}: {e}"))).ok()
    }

    /// A size field, or `None` (reported) if it is not one.
    fn bytes(&mut self, place: &str, field: &str, text: &str) -> Option<usize> {
        bytes(text).map_err(|e| self.bad(place, format!("{field}: {e}"))).ok()
    }

    /// The supervisor at `path`.
    pub(super) fn supervisor(&mut self, path: &str, entry: &SupervisorEntry) -> SupervisorSpec {
        let here = format!("supervisor {path}");
        let mut spec = SupervisorSpec::new(entry.strategy, Vec::new());
        match u32::try_from(entry.intensity) {
            Ok(n) => spec.intensity = n,
            Err(_) => self.bad(
                &here,
                format!("intensity must be a whole number from 0, not {}", entry.intensity),
            ),
        }
        if let Some(period) =
            entry.period.as_deref().and_then(|p| self.duration(&here, "period", p))
        {
            spec.period = period;
        }
        spec.auto_shutdown = entry.auto_shutdown;
        let inherited = entry.backoff.as_ref().map(|b| self.backoff(&here, b));
        for child in &entry.children {
            if let Some(mut spec_child) = self.child(path, child) {
                if let (None, Some((backoff, reset))) = (&child.backoff, inherited) {
                    spec_child.backoff = backoff;
                    if let Some(reset) = reset {
                        spec_child.backoff_reset = reset;
                    }
                }
                spec.children.push(spec_child);
            }
        }
        spec
    }

    /// The child `entry` under the supervisor at `parent`; `None` when it is neither a
    /// plugin nor a supervisor.
    pub(super) fn child(&mut self, parent: &str, entry: &ChildEntry) -> Option<ChildSpec> {
        let here = format!("supervisor {parent}, child {:?}", entry.name);
        let mut spec = match (&entry.plugin, &entry.supervisor) {
            (Some(plugin), None) => {
                ChildSpec::plugin(&entry.name, self.plugin(&here, plugin, entry))
            }
            (None, Some(sub)) => {
                for (set, key) in [
                    (entry.state.is_some(), "state"),
                    (entry.hibernate_after.is_some(), "hibernate_after"),
                ] {
                    if set {
                        let message = format!("`{key}` is a plugin's setting, not a supervisor's");
                        self.problem(ProblemKind::Rule, &here, message);
                    }
                }
                let sub = self.supervisor(&format!("{parent}/{}", entry.name), sub);
                ChildSpec::supervisor(&entry.name, sub)
            }
            (Some(_), Some(_)) => {
                let message = "has both `plugin` and `supervisor`; a child is one or the other";
                self.problem(ProblemKind::Rule, &here, message.into());
                return None;
            }
            (None, None) => {
                let message = "needs `plugin` (a component file) or `supervisor` (a nested tree)";
                self.problem(ProblemKind::MissingKey, &here, message.into());
                return None;
            }
        };
        if let Some(restart) = entry.restart {
            spec.restart = restart;
        }
        if let Some(shutdown) = &entry.shutdown {
            spec.shutdown = self.shutdown(&here, shutdown).unwrap_or(spec.shutdown);
        }
        spec.significant = entry.significant;
        spec.no_restart_on.clone_from(&entry.no_restart_on);
        match (&entry.node, &entry.nodes) {
            (Some(_), Some(_)) => {
                let message = "has both `node` and `nodes`; name one node or a list";
                self.problem(ProblemKind::Rule, &here, message.into());
            }
            (Some(node), None) => spec = spec.node(node),
            (None, Some(nodes)) => spec = spec.nodes(nodes),
            (None, None) => {}
        }
        if let Some(b) = &entry.backoff {
            let (backoff, reset) = self.backoff(&here, b);
            spec.backoff = backoff;
            if let Some(reset) = reset {
                spec.backoff_reset = reset;
            }
        }
        Some(spec)
    }

    /// How a plugin child starts: its file, config, limits, grants and mailbox.
    fn plugin(&mut self, here: &str, plugin: &str, entry: &ChildEntry) -> PluginStart {
        let file = self.base.join(plugin);
        if !file.is_file() {
            let message = format!("plugin file {} not found", file.display());
            self.problem(ProblemKind::MissingFile, here, message);
        }
        let mut limits = match &entry.limits {
            Some(l) => self.limits(here, l),
            None => ChildLimits::default(),
        };
        if let Some(h) = &entry.heartbeat {
            limits.heartbeat = self.heartbeat(here, h);
        }
        if let Some(st) = &entry.state {
            limits.state = self.quota(here, st);
        }
        let hibernate_after = entry
            .hibernate_after
            .as_deref()
            .and_then(|h| self.duration(here, "hibernate_after", h));
        PluginStart {
            plugin: file.into(),
            config: entry
                .config
                .as_ref()
                .map(|c| serde_json::to_vec(c).unwrap_or_default())
                .unwrap_or_default(),
            limits,
            grants: entry.grants.as_ref().map(|g| self.grants(here, g)).unwrap_or_default(),
            mailbox: self.mailbox(here, entry),
            keep_state: entry.state.as_ref().is_some_and(|st| st.keep),
            hibernate_after,
        }
    }

    /// The child's resource limits (its mailbox's are [`Builder::mailbox`]'s).
    fn limits(&mut self, here: &str, l: &LimitsEntry) -> ChildLimits {
        let mut limits = ChildLimits::default();
        if let Some(memory) = &l.memory
            && let Some(n) = self.bytes(here, "limits.memory", memory)
        {
            if n > MAX_MEMORY {
                let message = format!(
                    "limits.memory: {memory:?} is more than a 32-bit wasm memory can hold, 4GiB"
                );
                self.bad(here, message);
            } else {
                limits.max_memory_bytes = n;
            }
        }
        match l.deadline.as_deref() {
            Some("none") => limits.call_deadline = None,
            Some(deadline) => {
                if let Some(d) = self.duration(here, "limits.deadline", deadline) {
                    limits.call_deadline = Some(d);
                }
            }
            None => {}
        }
        limits.fuel_per_call = l.fuel;
        if let Some(n) = l.output.as_deref().and_then(|o| self.bytes(here, "limits.output", o)) {
            limits.output_per_second = n;
        }
        limits
    }

    /// The mailbox: its limits, poison tries, allow-list and circuit breaker.
    fn mailbox(&mut self, here: &str, entry: &ChildEntry) -> MailboxConfig {
        let mut mailbox = MailboxConfig::default();
        if let Some(l) = &entry.limits {
            if let Some(n) =
                l.message_size.as_deref().and_then(|s| self.bytes(here, "limits.message_size", s))
            {
                mailbox.max_message_bytes = n;
            }
            match l.mailbox {
                Some(0) => self.bad(here, "limits.mailbox must be at least 1".into()),
                Some(n) => mailbox.capacity = n,
                None => {}
            }
            if let Some(n) =
                l.mailbox_bytes.as_deref().and_then(|s| self.bytes(here, "limits.mailbox_bytes", s))
            {
                mailbox.max_queued_bytes = n;
            }
            if let Some(n) = l.timers {
                mailbox.timers.max_timers = n;
            }
            if let Some(n) =
                l.timer_bytes.as_deref().and_then(|s| self.bytes(here, "limits.timer_bytes", s))
            {
                mailbox.timers.max_bytes = n;
            }
        }
        if let Some(n) = entry.poison_after {
            if n == 0 {
                self.bad(here, "poison_after must be at least 1".into());
            }
            mailbox.poison_after = n.max(1);
        }
        if let Some(targets) = entry.grants.as_ref().map(|g| &g.targets) {
            match Targets::new(targets.iter().cloned()) {
                Ok(t) => mailbox.targets = t,
                Err(e) => self.bad(here, format!("grants.targets: {e}")),
            }
        }
        if let Some(c) = &entry.circuit {
            mailbox.circuit = self.circuit(here, c);
        }
        mailbox
    }

    fn circuit(&mut self, here: &str, c: &CircuitEntry) -> Option<CircuitConfig> {
        if c.failures == 0 {
            self.bad(here, "circuit.failures must be at least 1".into());
        }
        let reset = self.duration(here, "circuit.reset", &c.reset)?;
        Some(CircuitConfig { failures: c.failures.max(1), reset })
    }

    fn quota(&mut self, here: &str, st: &StateEntry) -> Quota {
        let mut quota = Quota::default();
        if let Some(n) =
            st.max_bytes.as_deref().and_then(|m| self.bytes(here, "state.max_bytes", m))
        {
            quota.max_bytes = n as u64;
        }
        if let Some(n) = st.max_keys {
            quota.max_keys = n;
        }
        if let Some(n) =
            st.max_value.as_deref().and_then(|m| self.bytes(here, "state.max_value", m))
        {
            quota.max_value_bytes = n as u64;
        }
        quota
    }

    /// Granted directories (relative to the manifest), environment and network.
    fn grants(&mut self, here: &str, g: &GrantsEntry) -> Grants {
        Grants {
            network: self.network(here, &g.network),
            interfaces: g.interfaces.clone(),
            env: g.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            dirs: g
                .dirs
                .iter()
                .map(|d| DirGrant {
                    host: self.base.join(&d.host),
                    guest: d.guest.clone(),
                    writable: d.writable,
                })
                .collect(),
        }
    }

    /// The network grant; every rule that is not one is reported.
    fn network(&mut self, here: &str, entry: &NetworkEntry) -> Network {
        match entry {
            NetworkEntry::All(any) => Network::from(*any),
            NetworkEntry::Only(rules) => Network::Only(
                rules
                    .iter()
                    .enumerate()
                    .filter_map(|(i, rule)| {
                        rule.parse()
                            .map_err(|e| self.bad(here, format!("grants.network[{i}]: {e}")))
                            .ok()
                    })
                    .collect(),
            ),
        }
    }

    fn shutdown(&mut self, here: &str, shutdown: &str) -> Option<Shutdown> {
        match shutdown {
            "brutal_kill" => Some(Shutdown::BrutalKill),
            "infinity" => Some(Shutdown::Infinity),
            other => match duration(other) {
                Ok(d) => Some(Shutdown::Timeout(d)),
                Err(e) => {
                    self.bad(here, format!("shutdown: {e} (or \"brutal_kill\", \"infinity\")"));
                    None
                }
            },
        }
    }

    /// A backoff entry as a [`Backoff`] and its reset period, if it sets one.
    fn backoff(&mut self, here: &str, b: &BackoffEntry) -> (Backoff, Option<Duration>) {
        let mut d = |field: &str, value: &Option<String>| {
            value.as_deref().and_then(|v| self.duration(here, &format!("backoff.{field}"), v))
        };
        let initial = d("initial", &Some(b.initial.clone())).unwrap_or_default();
        let max = d("max", &b.max).unwrap_or(Duration::from_secs(60));
        let step = d("step", &b.step).unwrap_or(initial);
        let reset = d("reset_after", &b.reset_after);
        let backoff = match b.kind.as_str() {
            "fixed" => Backoff::Fixed(initial),
            "linear" => Backoff::Linear { initial, step, max },
            "exponential" => {
                if !(0.0..=1.0).contains(&b.jitter) {
                    self.bad(here, format!("backoff.jitter must be from 0 to 1, not {}", b.jitter));
                }
                Backoff::Exponential { initial, max, jitter: b.jitter }
            }
            other => {
                let message =
                    format!("backoff.kind: {other:?} is not fixed, linear or exponential");
                self.bad(here, message);
                Backoff::None
            }
        };
        (backoff, reset)
    }

    fn heartbeat(&mut self, here: &str, h: &HeartbeatEntry) -> Option<HeartbeatPolicy> {
        heartbeat(h).map_err(|(kind, e)| self.problem(kind, here, format!("heartbeat: {e}"))).ok()
    }
}

/// A heartbeat entry as a policy, or why not.
fn heartbeat(entry: &HeartbeatEntry) -> Result<HeartbeatPolicy, (ProblemKind, String)> {
    let bad = |message: String| (ProblemKind::BadValue, message);
    let d = |name: &str, value: &Option<String>| {
        value.as_deref().map(duration).transpose().map_err(|e| bad(format!("{name}: {e}")))
    };
    match entry.detector.as_deref().unwrap_or("fixed") {
        "fixed" => {
            let phi_keys = [
                entry.threshold.is_some(),
                entry.min_std_dev.is_some(),
                entry.acceptable_pause.is_some(),
                entry.max_samples.is_some(),
                entry.first_estimate.is_some(),
            ];
            if phi_keys.iter().any(|&set| set) {
                return Err(bad("threshold, min_std_dev, acceptable_pause, max_samples and \
                     first_estimate are for detector = \"phi\""
                    .into()));
            }
            let missing = "a fixed heartbeat needs `timeout`, e.g. timeout = \"200ms\"";
            let timeout =
                d("timeout", &entry.timeout)?.ok_or((ProblemKind::MissingKey, missing.into()))?;
            if timeout.is_zero() {
                return Err(bad("timeout must be more than 0".into()));
            }
            Ok(HeartbeatPolicy::Timeout(timeout))
        }
        "phi" => {
            if entry.timeout.is_some() {
                return Err(bad(
                    "`timeout` is for the fixed detector; phi adapts to the beats".into()
                ));
            }
            let mut phi = PhiAccrual::default();
            if let Some(t) = entry.threshold {
                if !(t.is_finite() && t > 0.0) {
                    return Err(bad(format!("threshold must be a positive number, not {t}")));
                }
                phi.threshold = t;
            }
            if let Some(v) = d("min_std_dev", &entry.min_std_dev)? {
                phi.min_std_dev = v;
            }
            if let Some(v) = d("acceptable_pause", &entry.acceptable_pause)? {
                phi.acceptable_pause = v;
            }
            if let Some(v) = d("first_estimate", &entry.first_estimate)? {
                phi.first_estimate = v;
            }
            if let Some(n) = entry.max_samples {
                if n == 0 {
                    return Err(bad("max_samples must be at least 1".into()));
                }
                phi.max_samples = n;
            }
            Ok(HeartbeatPolicy::PhiAccrual(phi))
        }
        other => Err(bad(format!("detector {other:?} is not \"fixed\" or \"phi\""))),
    }
}
