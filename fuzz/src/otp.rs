//! A reference model of Erlang/OTP's `supervisor` for static children (one_for_one,
//! one_for_all, rest_for_one), written from `supervisor.erl` (`do_restart/3`,
//! `restart/2,3`, `add_restart/1`, `terminate_children/2`, `start_children/2`,
//! `do_auto_shutdown/2` and the `terminate_child`, `restart_child` and `delete_child`
//! calls) and separately from Warden's core, which the `supervisor` target checks
//! against it. Children always start; a start failure (OTP's `try_again`) is not
//! modelled.
//!
//! The children are kept in start order (OTP keeps them newest first and walks the
//! list; the effect is the same): a group restart stops newest first and starts oldest
//! first. Times are milliseconds.

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
    Stop(String),
    /// The supervisor ends (its children stopped), with reason `shutdown`.
    Exit,
}

/// An admin call's answer, in OTP's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Running,
}

#[derive(Clone, Debug)]
struct Child {
    spec: Spec,
    /// OTP's `pid =/= undefined`.
    running: bool,
    /// How many times it was started.
    starts: u64,
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
        let mut sup = Supervisor {
            strategy,
            intensity,
            period_ms,
            auto_shutdown,
            children: specs
                .into_iter()
                .map(|spec| Child { spec, running: false, starts: 0 })
                .collect(),
            restarts: Vec::new(),
            exited: false,
            actions: Vec::new(),
        };
        for i in 0..sup.children.len() {
            sup.start_child(i);
        }
        sup
    }

    /// Whether the supervisor has ended.
    pub fn exited(&self) -> bool {
        self.exited
    }

    /// What it did since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// `which_children`, in start order: each child's id, whether it runs, and how many
    /// times it was started.
    pub fn children(&self) -> Vec<(String, bool, u64)> {
        self.children.iter().map(|c| (c.spec.id.clone(), c.running, c.starts)).collect()
    }

    /// Whether `id` is a running child.
    pub fn is_running(&self, id: &str) -> bool {
        self.find(id).is_some_and(|i| self.children[i].running)
    }

    /// A child ended on its own (`'EXIT'`): `do_restart/3`.
    pub fn exit(&mut self, id: &str, reason: Reason, now: u64) {
        let Some(i) = self.find(id) else { return };
        if !self.children[i].running || self.exited {
            return;
        }
        self.children[i].running = false;
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

    /// `terminate_child/2`.
    pub fn terminate_child(&mut self, id: &str) -> Result<(), Refusal> {
        let i = self.find(id).ok_or(Refusal::NotFound)?;
        if self.children[i].running {
            self.actions.push(Action::Stop(id.to_owned()));
            self.children[i].running = false;
        }
        self.del_child(i);
        Ok(())
    }

    /// `restart_child/2`.
    pub fn restart_child(&mut self, id: &str) -> Result<(), Refusal> {
        let i = self.find(id).ok_or(Refusal::NotFound)?;
        if self.children[i].running {
            return Err(Refusal::Running);
        }
        self.start_child(i);
        Ok(())
    }

    /// `delete_child/2`.
    pub fn delete_child(&mut self, id: &str) -> Result<(), Refusal> {
        let i = self.find(id).ok_or(Refusal::NotFound)?;
        if self.children[i].running {
            return Err(Refusal::Running);
        }
        self.children.remove(i);
        Ok(())
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

    fn start_child(&mut self, i: usize) {
        let child = &mut self.children[i];
        child.running = true;
        child.starts += 1;
        self.actions.push(Action::Start(child.spec.id.clone()));
    }

    /// `del_child/2`: a temporary child's spec goes; any other stays, not running.
    fn del_child(&mut self, i: usize) {
        if self.children[i].spec.restart == Restart::Temporary {
            self.children.remove(i);
        } else {
            self.children[i].running = false;
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
            Strategy::OneForOne => self.start_child(i),
            Strategy::OneForAll => self.restart_multiple(0),
            Strategy::RestForOne => self.restart_multiple(i),
        }
    }

    /// `restart_multiple_children/3` over the children from `from` on (in start
    /// order): `terminate_children/2` (newest first; temporary ones go), then
    /// `start_children/2` (oldest first), including those that were not running.
    fn restart_multiple(&mut self, from: usize) {
        for i in (from..self.children.len()).rev() {
            if self.children[i].running {
                self.actions.push(Action::Stop(self.children[i].spec.id.clone()));
                self.children[i].running = false;
            }
            if self.children[i].spec.restart == Restart::Temporary {
                self.children.remove(i);
            }
        }
        for i in from..self.children.len() {
            self.start_child(i);
        }
    }

    /// `add_restart/1`: the window keeps the restarts no older than the period (OTP:
    /// `R >= Now - Period`), this one included; more than `intensity` is too many.
    fn add_restart(&mut self, now: u64) -> bool {
        let threshold = now.saturating_sub(self.period_ms);
        self.restarts.retain(|&t| t >= threshold || now < self.period_ms);
        self.restarts.push(now);
        self.restarts.len() <= self.intensity as usize
    }

    /// `do_auto_shutdown/2`, after `child` ended for good on its own.
    fn auto_shutdown(&mut self, child: &Spec) {
        let ends = match self.auto_shutdown {
            AutoShutdown::Never => false,
            _ if !child.significant => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => {
                !self.children.iter().any(|c| c.running && c.spec.significant)
            }
        };
        if ends {
            self.terminate();
        }
    }

    /// `terminate/2`: every running child stopped, newest first; the supervisor ends.
    fn terminate(&mut self) {
        for child in self.children.iter_mut().rev() {
            if child.running {
                self.actions.push(Action::Stop(child.spec.id.clone()));
                child.running = false;
            }
        }
        self.actions.push(Action::Exit);
        self.exited = true;
    }
}
