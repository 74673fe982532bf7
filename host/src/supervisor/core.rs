//! The supervisor's decisions, as a pure state machine: OTP's `supervisor.erl`
//! without processes.
//!
//! ```text
//!   inputs (with `now`)                       agenda (FIFO)            runtime
//!   init / exited / started / stopped  ──▶   Start, Stop, StopAll,  ──▶  carries each
//!   timer / admin requests / shutdown         RestartAfter, Emit,        out, reports
//!                                             Exit                       back
//! ```
//!
//! The runtime pops one [`Directive`] at a time, carries it out and reports the
//! result (`started`, `stopped`); a failed start clears the rest of its batch, as
//! OTP's `children_map` aborts. No tokio, no wasmtime: the clock and the random
//! source are parameters, so every rule is a plain unit test.

use crate::ExitReason;
use crate::events::{Event, GaveUpReason};
use crate::spec::SpecError;
use crate::spec::{
    AutoShutdown, ChildSpec, ChildStart, PluginStart, Restart, Shutdown, Strategy, SupervisorSpec,
    check_child, validate,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What the runtime is to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Directive {
    /// Start incarnation `incarnation` of `child` and report with [`Core::started`].
    Start {
        /// The child's id.
        child: String,
        /// The incarnation number to give it.
        incarnation: u64,
        /// Why it is started; an admin start that fails is not retried.
        cause: StartCause,
    },
    /// Stop `child` as `shutdown` says, wait for it, and report with [`Core::stopped`].
    Stop {
        /// The child's id.
        child: String,
        /// How.
        shutdown: Shutdown,
    },
    /// Stop these dynamic children in parallel under one timer, and report them with
    /// [`Core::stopped_all`].
    StopAll {
        /// The children's ids.
        children: Vec<String>,
        /// How (the template's shutdown).
        shutdown: Shutdown,
    },
    /// After `delay`, call [`Core::timer`] with this child and generation.
    RestartAfter {
        /// The child's id.
        child: String,
        /// How long to wait.
        delay: Duration,
        /// Ignored by the core if the child changed in the meantime.
        generation: u64,
    },
    /// The child's spec is gone (a temporary or dynamic child ended, `delete_child`,
    /// a failed `start_child`): release what the runtime keeps for its path (its
    /// mailbox; the runtime does that for every child when the supervisor exits) and
    /// remove its durable state, unless the spec asked to keep it.
    Forget {
        /// The child's id.
        child: String,
        /// The spec asked to keep its durable state.
        keep_state: bool,
    },
    /// Publish an event.
    Emit(Event),
    /// The supervisor exits with this reason (its children are already stopped).
    Exit(ExitReason),
}

/// Why a child is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartCause {
    /// The supervisor's own start: a failure aborts it.
    Init,
    /// A restart: a failure is retried, and counts toward the intensity.
    Restart,
    /// `start_child` or `restart_child`: a failure is the request's error.
    Admin,
    /// `upgrade_child`: the child's new version; a failure starts the old one again.
    Upgrade,
}

/// What [`Core::upgrade_child`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// The child was stopped: only its spec changed.
    Stored,
    /// The child is being stopped and started with the new spec (the start's outcome
    /// is the request's).
    Started,
}

/// A child's state, as `which_children` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildState {
    /// Running.
    Running,
    /// Waiting for a restart, or for a failed restart to be retried.
    Restarting,
    /// Not running; its spec is kept.
    Stopped,
}

/// Why an admin request was refused, in OTP's words where OTP has one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No child with that id.
    #[error("not_found")]
    NotFound,
    /// The child is running.
    #[error("running")]
    Running,
    /// The child is waiting for a restart.
    #[error("restarting")]
    Restarting,
    /// A child with that id exists and is not running.
    #[error("already_present")]
    AlreadyPresent,
    /// A child with that id is running.
    #[error("already_started")]
    AlreadyStarted,
    /// Not possible on a simple_one_for_one supervisor.
    #[error("simple_one_for_one")]
    SimpleOneForOne,
    /// The request's spec is invalid: every problem, with the child's path.
    #[error("invalid child spec: {}", join(.0))]
    Invalid(Vec<SpecError>),
    /// `start_dynamic` on a supervisor that is not simple_one_for_one.
    #[error("invalid child spec: not a simple_one_for_one supervisor")]
    NotSimpleOneForOne,
    /// The supervisor is shutting down.
    #[error("shutting_down")]
    ShuttingDown,
    /// `upgrade_child` of a child that is a supervisor: it has no component.
    #[error("not a worker: a supervisor has no component to upgrade")]
    NotAWorker,
}

fn join(problems: &[SpecError]) -> String {
    let problems: Vec<String> = problems.iter().map(|p| p.problem.to_string()).collect();
    problems.join("; ")
}

/// One child, as `which_children` reports it (in start order).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChildInfo {
    /// Its id.
    pub name: String,
    /// Its path.
    pub path: String,
    /// `worker` or `supervisor`.
    #[serde(rename = "type")]
    pub kind: ChildKind,
    /// Running, restarting or stopped.
    pub state: ChildState,
    /// Its latest incarnation (0 if never started).
    pub incarnation: u64,
    /// The cluster node its latest incarnation ran on, for a child placed on a node
    /// (absent for one running where its supervisor runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How many times its supervisor restarted it (after its own exit, or as part of a
    /// group).
    pub restarts: u64,
    /// Why its last incarnation ended (absent while the first runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitReason>,
    /// How many of its incarnations ended, by [`ExitReason::label`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exits: BTreeMap<String, u64>,
}

/// Whether a child is a worker or a supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    /// A plugin.
    Worker,
    /// A nested supervisor.
    Supervisor,
}

/// `count_children`, with OTP's meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChildCounts {
    /// Child specs (1 for a simple_one_for_one supervisor: its template).
    pub specs: usize,
    /// Children running (restarting ones are not).
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

#[derive(Clone, Debug)]
struct Child {
    spec: ChildSpec,
    state: ChildState,
    incarnation: u64,
    /// Bumped whenever a pending timer must no longer act on this child.
    generation: u64,
    /// Consecutive restart attempts, for backoff; reset after a stable run.
    attempt: u32,
    started_at: Option<Instant>,
    /// Restarts so far, for reports.
    restarts: u64,
    /// Why its last incarnation ended, and how many ended by each reason, for reports.
    last_exit: Option<ExitReason>,
    exits: BTreeMap<String, u64>,
    /// The incarnation the supervisor itself is stopping, while it does: a group
    /// restart numbers the next incarnation before the stop is carried out, and the
    /// `child_exited` it reports is the stopped one's.
    stopping: Option<u64>,
    /// Whether the pending restart timer is a retry of a failed start, which counts
    /// toward the intensity when it fires (OTP's try_again); a delayed restart after a
    /// crash was counted at the crash.
    retry: bool,
}

/// An upgrade under way: the child, the spec it had, and the two versions.
#[derive(Debug)]
struct Upgrading {
    id: String,
    old: ChildSpec,
    from: String,
    to: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    ShuttingDown,
    Exited,
}

/// The decision core of one supervisor.
pub struct Core {
    path: String,
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    auto_shutdown: AutoShutdown,
    template: Option<ChildSpec>,
    next_dynamic: u64,
    /// In start order.
    children: Vec<Child>,
    /// Each child's position in `children`, by id: a dynamic supervisor may have
    /// 100,000 children, and every event names one.
    index: HashMap<String, usize>,
    /// Restart times within the current window, oldest first.
    restarts: VecDeque<Instant>,
    agenda: VecDeque<Directive>,
    /// Set by a reaction that ends the batch it interrupted (a failed start, giving
    /// up): the batch's starts not yet carried out are dropped.
    abort_batch: bool,
    /// Init starts not yet reported; the supervisor is running once none are left.
    init_pending: usize,
    /// The upgrade under way (one at a time: admin requests are served in turn).
    upgrading: Option<Upgrading>,
    phase: Phase,
    random: Box<dyn FnMut() -> f64 + Send>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("path", &self.path)
            .field("strategy", &self.strategy)
            .field("children", &self.children)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core for the supervisor at `path`; `random` returns numbers in `[0, 1)` for
    /// backoff jitter.
    ///
    /// # Errors
    /// Every problem of the spec (and of nested supervisors' specs), with its place.
    pub fn new(
        path: impl Into<String>,
        spec: &SupervisorSpec,
        random: Box<dyn FnMut() -> f64 + Send>,
    ) -> Result<Self, Vec<SpecError>> {
        let path = path.into();
        let errors = validate(&path, spec);
        if !errors.is_empty() {
            return Err(errors);
        }
        let (template, children) = if spec.strategy == Strategy::SimpleOneForOne {
            (spec.children.first().cloned(), Vec::new())
        } else {
            (None, spec.children.iter().cloned().map(Child::new).collect())
        };
        Ok(Self {
            path,
            strategy: spec.strategy,
            intensity: spec.intensity,
            period: spec.period,
            auto_shutdown: spec.auto_shutdown,
            template,
            next_dynamic: 0,
            index: children.iter().enumerate().map(|(i, c)| (c.spec.id.clone(), i)).collect(),
            children,
            restarts: VecDeque::new(),
            agenda: VecDeque::new(),
            abort_batch: false,
            init_pending: 0,
            upgrading: None,
            phase: Phase::Starting,
            random,
        })
    }

    /// The supervisor's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of child `id`.
    pub fn child_path(&self, id: &str) -> String {
        format!("{}/{id}", self.path)
    }

    /// The id of the child at `path` (its last segment).
    pub fn child_id<'p>(&self, path: &'p str) -> &'p str {
        path.rsplit('/').next().unwrap_or_default()
    }

    /// The spec of child `id`, to start it.
    pub fn spec(&self, id: &str) -> Option<&ChildSpec> {
        self.find(id).map(|i| &self.children[i].spec)
    }

    /// A simple_one_for_one supervisor's template.
    pub fn template(&self) -> Option<&ChildSpec> {
        self.template.as_ref()
    }

    /// The next directive, if any.
    pub fn pop(&mut self) -> Option<Directive> {
        self.agenda.pop_front()
    }

    /// Starts the children in order.
    pub fn init(&mut self, _now: Instant) {
        let ids: Vec<String> = self.children.iter().map(|c| c.spec.id.clone()).collect();
        self.init_pending = ids.len();
        for id in ids {
            self.push_start(&id, StartCause::Init);
        }
        if self.init_pending == 0 {
            self.phase = Phase::Running;
        }
    }

    /// Reports the outcome of a [`Directive::Start`].
    ///
    /// For an admin start, returns the request's result.
    pub fn started(
        &mut self,
        id: &str,
        result: Result<(), ExitReason>,
        cause: StartCause,
        now: Instant,
    ) -> Option<Result<(), ExitReason>> {
        self.react(|core| core.on_started(id, result, cause, now))
    }

    fn on_started(
        &mut self,
        id: &str,
        result: Result<(), ExitReason>,
        cause: StartCause,
        now: Instant,
    ) -> Option<Result<(), ExitReason>> {
        let i = self.find(id)?;
        match result {
            Ok(()) => {
                let child = &mut self.children[i];
                child.state = ChildState::Running;
                child.started_at = Some(now);
                child.generation += 1;
                let incarnation = child.incarnation;
                self.emit(Event::ChildStarted {
                    path: self.child_path(id),
                    incarnation,
                    node: None,
                });
                if cause == StartCause::Init {
                    self.init_pending -= 1;
                    if self.init_pending == 0 && self.phase == Phase::Starting {
                        self.phase = Phase::Running;
                    }
                }
                if cause == StartCause::Upgrade
                    && let Some(Upgrading { from, to, .. }) = self.upgrading.take()
                {
                    let path = self.child_path(id);
                    self.emit(Event::ChildUpgraded { path, incarnation, from, to });
                }
                matches!(cause, StartCause::Admin | StartCause::Upgrade).then_some(Ok(()))
            }
            Err(reason) => {
                let message = reason.to_string();
                self.emit(Event::ChildStartFailed { path: self.child_path(id), message });
                self.abort_batch = true;
                match cause {
                    StartCause::Init => {
                        // OTP: the supervisor's start fails; started children are stopped.
                        self.children[i].state = ChildState::Stopped;
                        self.stop_all_children();
                        let message = format!("failed_to_start_child {id}: {reason}");
                        self.exit(ExitReason::StartFailed { message });
                        None
                    }
                    StartCause::Admin => {
                        let child = &mut self.children[i];
                        child.state = ChildState::Stopped;
                        // OTP keeps no spec of a child whose start_child failed; a
                        // failed restart_child keeps it.
                        if child.started_at.is_none() {
                            self.remove_child(i);
                        }
                        Some(Err(reason))
                    }
                    StartCause::Upgrade => {
                        // The old version starts again, as a restart would start it
                        // (a failure of that is retried and counts toward the
                        // intensity).
                        if let Some(Upgrading { old, from, to, .. }) = self.upgrading.take() {
                            let path = self.child_path(id);
                            let failed = reason.clone();
                            self.emit(Event::UpgradeFailed { path, from, to, reason: failed });
                            self.children[i].spec = old;
                        }
                        self.push_start(id, StartCause::Restart);
                        // Not a restart of the child's: counted nowhere.
                        self.children[i].restarts -= 1;
                        Some(Err(reason))
                    }
                    StartCause::Restart => {
                        // OTP's try_again: retried later (so requests are served in
                        // between), and the retry counts toward the intensity.
                        let child = &mut self.children[i];
                        child.state = ChildState::Restarting;
                        child.generation += 1;
                        child.attempt += 1;
                        child.retry = true;
                        let (attempt, generation) = (child.attempt, child.generation);
                        let delay = child.spec.backoff.delay(attempt, (self.random)());
                        self.emit(Event::ChildRestarting {
                            path: self.child_path(id),
                            attempt,
                            delay_ms: millis(delay),
                        });
                        self.agenda.push_back(Directive::RestartAfter {
                            child: id.to_owned(),
                            delay,
                            generation,
                        });
                        None
                    }
                }
            }
        }
    }

    /// Reports that a [`Directive::Stop`] finished, with the reason the child ended with.
    pub fn stopped(&mut self, id: &str, reason: ExitReason) {
        self.react(|core| core.on_stopped(id, reason));
    }

    /// Reports a whole [`Directive::StopAll`], in the order the children ended.
    pub fn stopped_all(&mut self, mut results: Vec<(String, ExitReason)>) {
        // Newest first, as children stop: a dropped dynamic child is then the last of
        // the list, removed without moving the others (100,000 at a shutdown).
        results.sort_by_key(|(id, _)| std::cmp::Reverse(self.find(id)));
        self.react(|core| {
            for (id, reason) in results {
                core.on_stopped(&id, reason);
            }
        });
    }

    fn on_stopped(&mut self, id: &str, reason: ExitReason) {
        let Some(i) = self.find(id) else { return };
        let child = &mut self.children[i];
        let incarnation = child.stopping.take().unwrap_or(child.incarnation);
        child.ended(&reason);
        self.emit(Event::ChildExited {
            path: self.child_path(id),
            incarnation,
            reason,
            node: None,
        });
        let child = &mut self.children[i];
        if child.state == ChildState::Running {
            child.state = ChildState::Stopped;
        }
        // Temporary children are dropped when stopped, also as bystanders of a group
        // restart; dynamic children are dropped too (OTP's del_child).
        if (child.spec.restart == Restart::Temporary || self.template.is_some())
            && child.state != ChildState::Restarting
        {
            self.remove_child(i);
        }
    }

    /// A child exited on its own (not stopped by the supervisor).
    pub fn exited(&mut self, id: &str, incarnation: u64, reason: ExitReason, now: Instant) {
        self.react(|core| core.on_exited(id, incarnation, reason, now));
    }

    fn on_exited(&mut self, id: &str, incarnation: u64, reason: ExitReason, now: Instant) {
        let Some(i) = self.find(id) else { return };
        let child = &self.children[i];
        if child.incarnation != incarnation
            || child.state != ChildState::Running
            || child.stopping.is_some()
        {
            return; // stale, or part of a stop the supervisor asked for
        }
        self.emit(Event::ChildExited {
            path: self.child_path(id),
            incarnation,
            reason: reason.clone(),
            node: None,
        });
        // No longer running, whatever comes next (OTP's del_child before giving up).
        self.children[i].state = ChildState::Stopped;
        self.children[i].ended(&reason);
        if matches!(self.phase, Phase::ShuttingDown | Phase::Exited) {
            return;
        }
        let spec = &self.children[i].spec;
        let skip = reason.trap_kind().is_some_and(|k| spec.no_restart_on.contains(&k));
        let restart = !skip
            && match spec.restart {
                Restart::Permanent => true,
                Restart::Transient => !reason.is_normal(),
                Restart::Temporary => false,
            };
        if !restart {
            let significant = spec.significant;
            self.del_child(i);
            self.maybe_auto_shutdown(significant);
            return;
        }
        let child = &mut self.children[i];
        if child
            .started_at
            .is_some_and(|t| now.saturating_duration_since(t) >= child.spec.backoff_reset)
        {
            child.attempt = 0;
        }
        self.restart(id, now, false);
    }

    /// A [`Directive::RestartAfter`] timer fired.
    pub fn timer(&mut self, id: &str, generation: u64, now: Instant) {
        self.react(|core| core.on_timer(id, generation, now));
    }

    fn on_timer(&mut self, id: &str, generation: u64, now: Instant) {
        let Some(i) = self.find(id) else { return };
        let child = &self.children[i];
        if child.generation != generation
            || child.state != ChildState::Restarting
            || matches!(self.phase, Phase::ShuttingDown | Phase::Exited)
        {
            return; // terminated, deleted or restarted meanwhile: revive nothing
        }
        if child.retry {
            self.restart(id, now, true);
        } else {
            let group = self.group(id);
            self.start_group(&group);
        }
    }

    /// OTP's `restart/2`: count, give up or stop the group and start it again.
    fn restart(&mut self, id: &str, now: Instant, retry: bool) {
        if !self.add_restart(now) {
            self.give_up();
            return;
        }
        let i = self.find(id).expect("the restarted child exists");
        let child = &mut self.children[i];
        child.state = ChildState::Restarting;
        child.generation += 1;
        child.retry = false;
        if !retry {
            // A retry's attempt was counted when its start failed.
            child.attempt += 1;
        }
        let (attempt, generation) = (child.attempt, child.generation);
        let delay =
            if retry { Duration::ZERO } else { child.spec.backoff.delay(attempt, (self.random)()) };
        if !retry {
            let path = self.child_path(id);
            self.emit(Event::ChildRestarting { path, attempt, delay_ms: millis(delay) });
        }
        let group = self.group(id);
        // Stop the running members of the group, newest first.
        for member in group.iter().rev() {
            self.push_stop(member);
        }
        if delay.is_zero() {
            self.start_group(&group);
        } else {
            self.agenda.push_back(Directive::RestartAfter {
                child: id.to_owned(),
                delay,
                generation,
            });
        }
    }

    /// The children a restart of `id` touches, in start order.
    fn group(&self, id: &str) -> Vec<String> {
        let ids = self.children.iter().map(|c| c.spec.id.clone());
        match self.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => vec![id.to_owned()],
            Strategy::OneForAll => ids.collect(),
            Strategy::RestForOne => ids.skip_while(|c| c != id).collect(),
        }
    }

    fn start_group(&mut self, group: &[String]) {
        for member in group {
            // Temporary bystanders are not restarted: they are dropped once stopped.
            if let Some(i) = self.find(member)
                && self.children[i].spec.restart != Restart::Temporary
            {
                self.push_start(member, StartCause::Restart);
            }
        }
    }

    /// OTP's `add_restart/1`: a sliding window, inclusive at its start.
    fn add_restart(&mut self, now: Instant) -> bool {
        while self.restarts.front().is_some_and(|&t| now.saturating_duration_since(t) > self.period)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        self.restarts.len() <= self.intensity as usize
    }

    fn give_up(&mut self) {
        self.emit(Event::SupervisorGaveUp {
            path: self.path.clone(),
            reason: GaveUpReason::ReachedMaxRestartIntensity,
        });
        self.abort_batch = true;
        self.stop_all_children();
        self.exit(ExitReason::Shutdown);
    }

    /// Shuts the supervisor down: children stopped newest first, then exit `shutdown`.
    pub fn shutdown(&mut self) {
        if matches!(self.phase, Phase::ShuttingDown | Phase::Exited) {
            return;
        }
        self.react(|core| {
            core.abort_batch = true;
            core.stop_all_children();
            core.exit(ExitReason::Shutdown);
        });
    }

    fn stop_all_children(&mut self) {
        self.phase = Phase::ShuttingDown;
        if let Some(template) = &self.template {
            let shutdown = template.shutdown;
            // One pass: mark and collect the running children not already being stopped.
            let mut running = Vec::new();
            for child in &mut self.children {
                if child.state == ChildState::Running && child.stopping.is_none() {
                    child.stopping = Some(child.incarnation);
                    running.push(child.spec.id.clone());
                }
            }
            if !running.is_empty() {
                self.agenda.push_back(Directive::StopAll { children: running, shutdown });
            }
        } else {
            let ids: Vec<String> = self.children.iter().rev().map(|c| c.spec.id.clone()).collect();
            for id in ids {
                self.push_stop(&id);
            }
        }
        for child in &mut self.children {
            if child.state == ChildState::Restarting {
                child.state = ChildState::Stopped;
                child.generation += 1;
            }
        }
    }

    fn exit(&mut self, reason: ExitReason) {
        self.phase = Phase::ShuttingDown;
        self.agenda.push_back(Directive::Emit(Event::SupervisorStopped {
            path: self.path.clone(),
            reason: reason.clone(),
        }));
        self.agenda.push_back(Directive::Exit(reason));
        self.phase = Phase::Exited;
    }

    /// OTP's `do_auto_shutdown/2`, after a significant child ended for good.
    fn maybe_auto_shutdown(&mut self, significant: bool) {
        if !significant {
            return;
        }
        let shut = match self.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => {
                !self.children.iter().any(|c| c.spec.significant && c.state != ChildState::Stopped)
            }
        };
        if shut {
            self.stop_all_children();
            self.exit(ExitReason::Shutdown);
        }
    }

    /// OTP's `del_child`: temporary and dynamic children are dropped, others kept
    /// stopped.
    fn del_child(&mut self, i: usize) {
        if self.children[i].spec.restart == Restart::Temporary || self.template.is_some() {
            self.remove_child(i);
        } else {
            let child = &mut self.children[i];
            child.state = ChildState::Stopped;
            child.generation += 1;
        }
    }

    // --- admin requests ---------------------------------------------------------

    /// `start_child` with a spec (not on simple_one_for_one). On `Ok`, the agenda
    /// holds the start; its result, from [`Core::started`], is the request's.
    ///
    /// # Errors
    /// `already_started`, `already_present`, an invalid spec, `simple_one_for_one`.
    pub fn start_child(&mut self, spec: ChildSpec) -> Result<(), AdminError> {
        self.admits(&spec)?;
        let id = spec.id.clone();
        self.add_child(spec);
        self.push_start(&id, StartCause::Admin);
        Ok(())
    }

    /// Whether [`Core::start_child`] would take `spec` now (it changes nothing): the
    /// embedder asks before it loads the child's plugin.
    ///
    /// # Errors
    /// As [`Core::start_child`].
    pub fn admits(&self, spec: &ChildSpec) -> Result<(), AdminError> {
        self.accepting()?;
        if self.template.is_some() {
            return Err(AdminError::SimpleOneForOne);
        }
        self.check(spec)?;
        match self.find(&spec.id).map(|i| self.children[i].state) {
            Some(ChildState::Running | ChildState::Restarting) => Err(AdminError::AlreadyStarted),
            Some(ChildState::Stopped) => Err(AdminError::AlreadyPresent),
            None => Ok(()),
        }
    }

    /// OTP's `check_childspec/2` on a child spec given at run time.
    fn check(&self, spec: &ChildSpec) -> Result<(), AdminError> {
        let problems = check_child(spec, self.auto_shutdown);
        if problems.is_empty() {
            return Ok(());
        }
        let path = self.child_path(&spec.id);
        let errors = problems.into_iter().map(|problem| SpecError { path: path.clone(), problem });
        Err(AdminError::Invalid(errors.collect()))
    }

    /// `start_child` on a simple_one_for_one supervisor: a new child from the
    /// template, named `name` or `<template id>-<n>`, with `config` if given.
    ///
    /// # Errors
    /// Not a simple_one_for_one supervisor; a name already in use.
    pub fn start_dynamic(
        &mut self,
        name: Option<String>,
        config: Option<Vec<u8>>,
    ) -> Result<String, AdminError> {
        self.accepting()?;
        let Some(template) = &self.template else {
            return Err(AdminError::NotSimpleOneForOne);
        };
        let mut spec = template.clone();
        let id = match name {
            Some(name) => name,
            None => loop {
                self.next_dynamic += 1;
                let id = format!("{}-{}", template.id, self.next_dynamic);
                if self.find(&id).is_none() {
                    break id;
                }
            },
        };
        if self.find(&id).is_some() {
            return Err(AdminError::AlreadyStarted);
        }
        spec.id.clone_from(&id);
        if let (Some(config), ChildStart::Plugin(start)) = (config, &mut spec.start) {
            start.config = config;
        }
        self.check(&spec)?;
        self.add_child(spec);
        self.push_start(&id, StartCause::Admin);
        Ok(id)
    }

    /// `terminate_child`: stops the child (or cancels its pending restart); not a
    /// restart. A dynamic child is dropped, as a temporary one is.
    ///
    /// # Errors
    /// `not_found`.
    pub fn terminate_child(&mut self, id: &str) -> Result<(), AdminError> {
        let i = self.find(id).ok_or(AdminError::NotFound)?;
        let child = &mut self.children[i];
        child.generation += 1;
        match child.state {
            ChildState::Running => self.react(|core| core.push_stop(id)),
            ChildState::Restarting | ChildState::Stopped => {
                child.state = ChildState::Stopped;
                if child.spec.restart == Restart::Temporary || self.template.is_some() {
                    self.remove_child(i);
                }
            }
        }
        Ok(())
    }

    /// `upgrade_child`: child `id` runs what `change` makes of its plugin start from
    /// now on (its component, config, limits and grants; its mailbox and state are its
    /// own and stay). A running child is stopped as its shutdown says and started with
    /// the new spec: the start's result is the request's, and if it fails, the old spec
    /// is started again. A child not running (stopped, restarting, or stopped by a
    /// group restart not yet carried out) only takes the new spec, for its next start.
    /// `from` and `to` name the two versions in the events.
    ///
    /// # Errors
    /// `not_found`, not a worker, an invalid spec, `shutting_down`.
    pub fn upgrade_child(
        &mut self,
        id: &str,
        change: impl FnOnce(&PluginStart) -> PluginStart,
        (from, to): (String, String),
    ) -> Result<UpgradeStep, AdminError> {
        self.accepting()?;
        let i = self.find(id).ok_or(AdminError::NotFound)?;
        let child = &self.children[i];
        let ChildStart::Plugin(start) = &child.spec.start else {
            return Err(AdminError::NotAWorker);
        };
        let mut spec = child.spec.clone();
        spec.start = ChildStart::Plugin(Box::new(change(start)));
        self.check(&spec)?;
        match child.state {
            ChildState::Restarting | ChildState::Stopped => {
                self.children[i].spec = spec;
                Ok(UpgradeStep::Stored)
            }
            ChildState::Running => {
                let old = std::mem::replace(&mut self.children[i].spec, spec);
                self.upgrading = Some(Upgrading { id: id.to_owned(), old, from, to });
                self.react(|core| {
                    core.push_stop(id);
                    // Not dropped when it stops (as a temporary or dynamic child
                    // would be): it starts again at once.
                    core.children[i].state = ChildState::Restarting;
                    core.children[i].generation += 1;
                    core.push_start(id, StartCause::Upgrade);
                });
                Ok(UpgradeStep::Started)
            }
        }
    }

    /// The version child `id` replaces, while its upgrade is under way.
    pub fn upgrading_from(&self, id: &str) -> Option<&str> {
        self.upgrading.as_ref().filter(|u| u.id == id).map(|u| u.from.as_str())
    }

    /// A simple_one_for_one supervisor's template runs what `change` makes of its
    /// plugin start from now on: children started later run it (those running are
    /// upgraded one by one by the host). Returns the template's plugin start before.
    ///
    /// # Errors
    /// Not a simple_one_for_one supervisor; an invalid spec.
    pub fn upgrade_template(
        &mut self,
        change: impl FnOnce(&PluginStart) -> PluginStart,
    ) -> Result<PluginStart, AdminError> {
        let template = self.template.as_ref().ok_or(AdminError::NotSimpleOneForOne)?;
        let ChildStart::Plugin(before) = &template.start else {
            return Err(AdminError::NotAWorker);
        };
        let before = (**before).clone();
        let mut spec = template.clone();
        spec.start = ChildStart::Plugin(Box::new(change(&before)));
        self.check(&spec)?;
        self.template = Some(spec);
        Ok(before)
    }

    /// `restart_child`: starts a stopped child; the start's result is the request's.
    ///
    /// # Errors
    /// `running`, `restarting`, `not_found`, `simple_one_for_one`.
    pub fn restart_child(&mut self, id: &str) -> Result<(), AdminError> {
        self.accepting()?;
        self.stopped_child(id)?;
        self.push_start(id, StartCause::Admin);
        Ok(())
    }

    /// `delete_child`: forgets a stopped child's spec.
    ///
    /// # Errors
    /// `running`, `restarting`, `not_found`, `simple_one_for_one`.
    pub fn delete_child(&mut self, id: &str) -> Result<(), AdminError> {
        let i = self.stopped_child(id)?;
        self.remove_child(i);
        Ok(())
    }

    /// The index of `id` if it is a stopped static child: what `restart_child` and
    /// `delete_child` both require, with OTP's answer when it is not.
    fn stopped_child(&self, id: &str) -> Result<usize, AdminError> {
        if self.template.is_some() {
            return Err(AdminError::SimpleOneForOne);
        }
        let i = self.find(id).ok_or(AdminError::NotFound)?;
        match self.children[i].state {
            ChildState::Running => Err(AdminError::Running),
            ChildState::Restarting => Err(AdminError::Restarting),
            ChildState::Stopped => Ok(i),
        }
    }

    /// Child `id`'s state, if it has a spec here.
    pub fn state(&self, id: &str) -> Option<ChildState> {
        self.find(id).map(|i| self.children[i].state)
    }

    /// `which_children`, in start order.
    pub fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|c| ChildInfo {
                name: c.spec.id.clone(),
                path: self.child_path(&c.spec.id),
                kind: if c.spec.is_supervisor() {
                    ChildKind::Supervisor
                } else {
                    ChildKind::Worker
                },
                state: c.state,
                incarnation: c.incarnation,
                node: None,
                restarts: c.restarts,
                last_exit: c.last_exit.clone(),
                exits: c.exits.clone(),
            })
            .collect()
    }

    /// Its strategy, and the restart intensity allowed: at most `intensity` restarts in
    /// any `period`.
    pub fn limits(&self) -> (Strategy, u32, Duration) {
        (self.strategy, self.intensity, self.period)
    }

    /// The restarts counted in the window that ends at `now`: how much of its
    /// intensity is used.
    pub fn restarts_in_period(&self, now: Instant) -> u32 {
        let within =
            self.restarts.iter().filter(|&&t| now.saturating_duration_since(t) <= self.period);
        u32::try_from(within.count()).unwrap_or(u32::MAX)
    }

    /// `count_children`, with OTP's meanings (restarting children are not active).
    pub fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts::default();
        for c in &self.children {
            counts.specs += 1;
            if c.state == ChildState::Running {
                counts.active += 1;
            }
            if c.spec.is_supervisor() {
                counts.supervisors += 1;
            } else {
                counts.workers += 1;
            }
        }
        if self.template.is_some() {
            // OTP counts the template as the one spec of a simple_one_for_one.
            counts.specs = 1;
        }
        counts
    }

    // --- helpers ---------------------------------------------------------------

    fn accepting(&self) -> Result<(), AdminError> {
        match self.phase {
            Phase::ShuttingDown | Phase::Exited => Err(AdminError::ShuttingDown),
            _ => Ok(()),
        }
    }

    /// Drops a child's spec; the runtime is told to forget its path.
    fn remove_child(&mut self, i: usize) {
        let child = self.children.remove(i);
        self.index.remove(&child.spec.id);
        for later in &self.children[i..] {
            if let Some(position) = self.index.get_mut(&later.spec.id) {
                *position -= 1;
            }
        }
        let keep_state = match &child.spec.start {
            ChildStart::Plugin(start) => start.keep_state,
            ChildStart::Supervisor(_) => false,
        };
        self.agenda.push_back(Directive::Forget { child: child.spec.id, keep_state });
    }

    /// Appends a child (the newest).
    fn add_child(&mut self, spec: ChildSpec) {
        self.index.insert(spec.id.clone(), self.children.len());
        self.children.push(Child::new(spec));
    }

    fn find(&self, id: &str) -> Option<usize> {
        let found = self.index.get(id).copied();
        // The unit and property tests run with this on: the index follows every change.
        debug_assert_eq!(found, self.children.iter().position(|c| c.spec.id == id));
        found
    }

    fn emit(&mut self, event: Event) {
        self.agenda.push_back(Directive::Emit(event));
    }

    fn push_start(&mut self, id: &str, cause: StartCause) {
        let i = self.find(id).expect("started children exist");
        let child = &mut self.children[i];
        child.incarnation += 1;
        if cause == StartCause::Restart {
            child.restarts += 1;
        } else {
            child.attempt = 0;
        }
        let incarnation = child.incarnation;
        self.agenda.push_back(Directive::Start { child: id.to_owned(), incarnation, cause });
    }

    fn push_stop(&mut self, id: &str) {
        let Some(i) = self.find(id) else { return };
        let child = &mut self.children[i];
        if child.state != ChildState::Running || child.stopping.is_some() {
            return;
        }
        child.stopping = Some(child.incarnation);
        let shutdown = child.spec.shutdown;
        self.agenda.push_back(Directive::Stop { child: id.to_owned(), shutdown });
    }

    /// Undoes [`Self::push_start`] for a start of an aborted batch not carried out:
    /// its incarnation number (and restart) given back.
    fn unpush_start(&mut self, id: &str, cause: StartCause) {
        let Some(i) = self.find(id) else { return };
        let child = &mut self.children[i];
        child.incarnation -= 1;
        if cause == StartCause::Restart {
            child.restarts -= 1;
        }
        // Not started, and no retry of its own is due: as OTP leaves the rest of an
        // aborted `start_children`, stopped (`undefined`), so `restart_child` and
        // `delete_child` take it.
        if child.state == ChildState::Restarting {
            child.state = ChildState::Stopped;
            child.generation += 1;
        }
    }

    /// Runs the reaction to one input: what it decides comes before the rest of the
    /// batch it interrupted; if it ends that batch, the batch's starts not yet carried
    /// out are dropped (their incarnation numbers given back).
    fn react<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let waiting = self.agenda.len();
        self.abort_batch = false;
        let result = f(self);
        // What `f` pushed is at the back: turned to the front, it moves only itself
        // (a group restart's two hundred reactions each decide a directive or two,
        // behind a batch of up to two hundred).
        let decided = self.agenda.len() - waiting;
        self.agenda.rotate_right(decided);
        if std::mem::take(&mut self.abort_batch) {
            for directive in self.agenda.split_off(decided) {
                match directive {
                    Directive::Start { child, cause, .. } => self.unpush_start(&child, cause),
                    other => self.agenda.push_back(other),
                }
            }
        }
        result
    }
}

impl Child {
    /// An incarnation ended for `reason`.
    fn ended(&mut self, reason: &ExitReason) {
        *self.exits.entry(reason.label()).or_default() += 1;
        self.last_exit = Some(reason.clone());
    }

    fn new(spec: ChildSpec) -> Self {
        Self {
            spec,
            state: ChildState::Stopped,
            incarnation: 0,
            generation: 0,
            attempt: 0,
            started_at: None,
            restarts: 0,
            last_exit: None,
            exits: BTreeMap::new(),
            stopping: None,
            retry: false,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
