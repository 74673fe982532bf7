//! A reference model of Erlang/OTP's `supervisor` for static children (one_for_one,
//! one_for_all, rest_for_one), written from `supervisor.erl` (`do_restart/3`,
//! `restart/2,3`, `restart_multiple_children/3`, `add_restart/1`,
//! `terminate_children/2`, `start_children/2`, `do_auto_shutdown/2`, the
//! `terminate_child`, `restart_child` and `delete_child` calls, and the
//! `try_again_restart` cast) and separately from Warden's core, which the `supervisor`
//! target checks against it.
//!
//! A restart whose start failed is retried by a message the supervisor sends itself
//! (OTP's `try_again_restart` cast): the model keeps those in a queue, handled when the
//! runtime would deliver them ([`Supervisor::retry`]).
//!
//! One deliberate difference from `supervisor.erl`'s code: a retry belongs to the
//! failed restart that asked for it. OTP's cast names only the child, so when that
//! restart is overtaken (the child started by a group restart or `restart_child`) and
//! the child fails a later restart too, the old cast still arrives and restarts it a
//! second time, counting toward the intensity. Warden drops an overtaken retry (its
//! timer's generation), and so does this model.
//!
//! The children are kept in start order (OTP keeps them newest first and walks the
//! list; the effect is the same): a group restart stops newest first and starts oldest
//! first. Times are milliseconds.

use std::collections::{HashMap, VecDeque};

/// How the supervisor restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    Permanent,
    Transient,
    Temporary,
}

/// When a significant child's end ends the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoShutdown {
    Never,
    AnySignificant,
    AllSignificant,
}

/// A child's exit reason, as OTP's restart rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Normal,
    Shutdown,
    /// `{shutdown, Term}`.
    ShutdownWith,
    /// Anything else.
    Error,
}

/// A child's spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub id: String,
    pub restart: Restart,
    pub significant: bool,
}

/// What the supervisor does that shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Start(String),
    /// A start that failed.
    StartFailed(String),
    Stop(String),
    /// The supervisor ends (its children stopped), with reason `shutdown`.
    Exit,
}

/// An admin call's refusal, in OTP's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Running,
    Restarting,
    /// `restart_child`'s start failed.
    StartFailed,
}

/// A child's state, as `which_children` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A pid.
    Running,
    /// `undefined`.
    Stopped,
    /// `{restarting, _}`: its restart's start failed, a retry is due.
    Restarting,
}

#[derive(Clone, Debug)]
struct Child {
    spec: Spec,
    state: State,
    /// How many times a start was tried (Warden's incarnation number).
    starts: u64,
    /// The number of its last failed restart: the retry that may act.
    retry: u64,
}

/// One supervisor, as OTP runs it.
#[derive(Debug)]
pub struct Supervisor {
    strategy: Strategy,
    intensity: u32,
    period_ms: u64,
    auto_shutdown: AutoShutdown,
    children: Vec<Child>,
    /// The times of the restarts in the window, oldest first.
    restarts: Vec<u64>,
    exited: bool,
    actions: Vec<Action>,
    /// How many of each child's next starts fail.
    failing: HashMap<String, u32>,
    /// The `try_again_restart` casts not yet handled, oldest first, each with the
    /// failed restart it belongs to.
    try_again: VecDeque<(String, u64)>,
}

impl Supervisor {
    /// `init/1`: every child started, in order.
    pub fn start(
        strategy: Strategy,
        intensity: u32,
        period_ms: u64,
        auto_shutdown: AutoShutdown,
        specs: Vec<Spec>,
    ) -> Self {
        let children = specs
            .into_iter()
            .map(|spec| Child { spec, state: State::Stopped, starts: 0, retry: 0 })
            .collect();
        let mut sup = Supervisor {
            strategy,
            intensity,
            period_ms,
            auto_shutdown,
            children,
            restarts: Vec::new(),
            exited: false,
            actions: Vec::new(),
            failing: HashMap::new(),
            try_again: VecDeque::new(),
        };
        for i in 0..sup.children.len() {
            assert!(sup.try_start(i), "nothing fails at init");
        }
        sup
    }

    /// The next `n` starts of `id` fail.
    pub fn fail_starts(&mut self, id: &str, n: u32) {
        self.failing.insert(id.to_owned(), n);
    }

    /// Whether the supervisor has ended.
    pub fn exited(&self) -> bool {
        self.exited
    }

    /// What it did since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// `which_children`, in start order: each child's id, its state, and how many
    /// times a start was tried.
    pub fn children(&self) -> Vec<(String, State, u64)> {
        self.children.iter().map(|c| (c.spec.id.clone(), c.state, c.starts)).collect()
    }

    /// Whether `id` is a running child.
    pub fn is_running(&self, id: &str) -> bool {
        self.find(id).is_some_and(|i| self.children[i].state == State::Running)
    }

    /// A child ended on its own (`'EXIT'`): `do_restart/3`.
    pub fn exit(&mut self, id: &str, reason: Reason, now: u64) {
        let Some(i) = self.find(id) else { return };
        if self.children[i].state != State::Running || self.exited {
            return;
        }
        self.children[i].state = State::Stopped;
        let child = self.children[i].spec.clone();
        let normal = matches!(reason, Reason::Normal | Reason::Shutdown | Reason::ShutdownWith);
        match child.restart {
            Restart::Permanent => self.restart(i, now),
            Restart::Transient if !normal => self.restart(i, now),
            Restart::Transient | Restart::Temporary => {
                self.del_child(i);
                self.auto_shutdown(&child);
            }
        }
    }

    /// Handles the `try_again_restart` casts due, and those they cause, in order.
    pub fn retry(&mut self, now: u64) {
        while let Some((id, retry)) = self.try_again.pop_front() {
            if self.exited {
                return;
            }
            // `handle_cast({try_again_restart, Id})`: only for a child still restarting
            // (and, see above, from the same failed restart).
            if let Some(i) = self.find(&id)
                && self.children[i].state == State::Restarting
                && self.children[i].retry == retry
            {
                self.restart(i, now);
            }
        }
    }

    /// `terminate_child/2`.
    pub fn terminate_child(&mut self, id: &str) -> Result<(), Refusal> {
        let i = self.find(id).ok_or(Refusal::NotFound)?;
        if self.children[i].state == State::Running {
            self.actions.push(Action::Stop(id.to_owned()));
        }
        self.children[i].state = State::Stopped;
        self.del_child(i);
        Ok(())
    }

    /// `restart_child/2`.
    pub fn restart_child(&mut self, id: &str) -> Result<(), Refusal> {
        let i = self.find(id).ok_or(Refusal::NotFound)?;
        match self.children[i].state {
            State::Running => Err(Refusal::Running),
            State::Restarting => Err(Refusal::Restarting),
            State::Stopped => self.try_start(i).then_some(()).ok_or(Refusal::StartFailed),
        }
    }

    /// `delete_child/2`.
    pub fn delete_child(&mut self, id: &str) -> Result<(), Refusal> {
        let i = self.find(id).ok_or(Refusal::NotFound)?;
        match self.children[i].state {
            State::Running => Err(Refusal::Running),
            State::Restarting => Err(Refusal::Restarting),
            State::Stopped => {
                self.children.remove(i);
                Ok(())
            }
        }
    }

    /// The supervisor is told to stop: `terminate/2`.
    pub fn shutdown(&mut self) {
        if !self.exited {
            self.terminate();
        }
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    /// `do_start_child/2`: whether the start succeeded.
    fn try_start(&mut self, i: usize) -> bool {
        let child = &mut self.children[i];
        child.starts += 1;
        if let Some(n) = self.failing.get_mut(&child.spec.id).filter(|n| **n > 0) {
            *n -= 1;
            self.actions.push(Action::StartFailed(child.spec.id.clone()));
            return false;
        }
        child.state = State::Running;
        self.actions.push(Action::Start(child.spec.id.clone()));
        true
    }

    /// A restart's start failed: `{try_again, Id}`, a cast to itself.
    fn failed_restart(&mut self, i: usize) {
        let child = &mut self.children[i];
        child.state = State::Restarting;
        child.retry += 1;
        self.try_again.push_back((child.spec.id.clone(), child.retry));
    }

    /// `del_child/2`: a temporary child's spec goes; any other stays, not running.
    fn del_child(&mut self, i: usize) {
        if self.children[i].spec.restart == Restart::Temporary {
            self.children.remove(i);
        } else {
            self.children[i].state = State::Stopped;
        }
    }

    /// `restart/2`: count the restart, then restart by the strategy or give up.
    fn restart(&mut self, i: usize, now: u64) {
        if !self.add_restart(now) {
            // `{shutdown, del_child(Child, NState)}`, then `terminate/2`.
            self.del_child(i);
            self.terminate();
            return;
        }
        match self.strategy {
            Strategy::OneForOne => {
                if !self.try_start(i) {
                    self.failed_restart(i);
                }
            }
            Strategy::OneForAll => self.restart_multiple(0),
            Strategy::RestForOne => self.restart_multiple(i),
        }
    }

    /// `restart_multiple_children/3` over the children from `from` on (in start
    /// order): `terminate_children/2` (newest first; temporary ones go), then
    /// `start_children/2` (oldest first), including those that were not running; a
    /// start that fails aborts the rest (they stay stopped) and is tried again.
    fn restart_multiple(&mut self, from: usize) {
        for i in (from..self.children.len()).rev() {
            if self.children[i].state == State::Running {
                self.actions.push(Action::Stop(self.children[i].spec.id.clone()));
            }
            self.children[i].state = State::Stopped;
            if self.children[i].spec.restart == Restart::Temporary {
                self.children.remove(i);
            }
        }
        for i in from..self.children.len() {
            if !self.try_start(i) {
                self.failed_restart(i);
                return;
            }
        }
    }

    /// `add_restart/1`: the window keeps the restarts no older than the period (OTP:
    /// `R >= Now - Period`), this one included; more than `intensity` is too many.
    fn add_restart(&mut self, now: u64) -> bool {
        let period = self.period_ms;
        self.restarts.retain(|&t| now - t <= period);
        self.restarts.push(now);
        self.restarts.len() <= self.intensity as usize
    }

    /// `do_auto_shutdown/2`, after `child` ended for good on its own.
    fn auto_shutdown(&mut self, child: &Spec) {
        let ends = match self.auto_shutdown {
            AutoShutdown::Never => false,
            _ if !child.significant => false,
            AutoShutdown::AnySignificant => true,
            // `pid = undefined` is not alive; a restarting one is.
            AutoShutdown::AllSignificant => {
                !self.children.iter().any(|c| c.state != State::Stopped && c.spec.significant)
            }
        };
        if ends {
            self.terminate();
        }
    }

    /// `terminate/2`: every running child stopped, newest first; the supervisor ends.
    fn terminate(&mut self) {
        for child in self.children.iter_mut().rev() {
            if child.state == State::Running {
                self.actions.push(Action::Stop(child.spec.id.clone()));
            }
            child.state = State::Stopped;
        }
        self.actions.push(Action::Exit);
        self.exited = true;
    }
}
