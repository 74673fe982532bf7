//! A test kit for plugin authors: start a real tree (from a manifest or a spec),
//! inject faults, await events with deadlines, and assert what the supervisors
//! decided, without sleeps.
//!
//! ```no_run
//! use warden::testing::{TestTree, exited, started};
//! use warden::supervisor::ChildState;
//!
//! # async fn demo() {
//! let mut tree = TestTree::from_manifest(
//!     r#"
//!     [root]
//!     strategy = "one_for_one"
//!     [[root.children]]
//!     name = "worker"
//!     plugin = "target/plugins/my_plugin.wasm"
//!     "#,
//!     ".",
//! )
//! .await
//! .expect("the tree starts");
//! tree.call("root/worker", "trap").await.expect_err("it crashes");
//! tree.expect(exited("root/worker")).await;
//! tree.expect(started("root/worker", 2)).await;
//! tree.assert_children("root", &[("worker", ChildState::Running, 2)]).await;
//! tree.shutdown().await;
//! # }
//! ```
//!
//! Every wait has a deadline (10 s unless [`TestTree::deadline`] says otherwise); a
//! wait that runs out panics with the events seen meanwhile, so a failing test says
//! what happened instead.

use crate::events::{DeadLetterReason, Event, EventRecord, Events, Received};
use crate::manifest;
use crate::messaging::CircuitState;
use crate::runtime::{Host, HostError};
use crate::sandbox::{Engine, MessageError};
use crate::supervisor::{ChildState, SupervisorSpec};
use crate::{ExitReason, KillCause, TrapKind};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The engine every test of this process shares (default settings). Each engine
/// reserves address space for its whole instance pool, so a test suite that built one
/// per test, running in parallel, would run out of it.
///
/// # Panics
/// The engine cannot be created (the message says why).
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new().unwrap_or_else(|e| panic!("the test engine: {e}"))).clone()
}

/// An event pattern: a predicate with a description for failure messages.
pub struct Pattern {
    what: String,
    matches: Box<dyn Fn(&Event) -> bool + Send + Sync>,
}

impl Pattern {
    /// A pattern described as `what`, matching events for which `matches` holds.
    pub fn new(
        what: impl Into<String>,
        matches: impl Fn(&Event) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self { what: what.into(), matches: Box::new(matches) }
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Event) -> bool {
        (self.matches)(event)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// `child_started` of `path`, incarnation `incarnation`.
pub fn started(path: &str, incarnation: u64) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("child_started {path} #{incarnation}"),
        move |e| matches!(e, Event::ChildStarted { path, incarnation: i, .. } if *path == p && *i == incarnation),
    )
}

/// `child_exited` of `path`, any reason.
pub fn exited(path: &str) -> Pattern {
    exited_with(path, |_| true)
}

/// `child_exited` of `path` with a reason for which `reason` holds.
pub fn exited_with(
    path: &str,
    reason: impl Fn(&ExitReason) -> bool + Send + Sync + 'static,
) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("child_exited {path}"),
        move |e| matches!(e, Event::ChildExited { path, reason: r, .. } if *path == p && reason(r)),
    )
}

/// `child_exited` of `path` after a trap of kind `kind`.
pub fn trapped(path: &str, kind: TrapKind) -> Pattern {
    let mut pattern =
        exited_with(path, move |r| matches!(r, ExitReason::Trap { trap, .. } if *trap == kind));
    pattern.what = format!("child_exited {path} trap {kind}");
    pattern
}

/// `child_exited` of `path`, killed for `cause`.
pub fn killed(path: &str, cause: KillCause) -> Pattern {
    let mut pattern =
        exited_with(path, move |r| matches!(r, ExitReason::Killed { cause: c } if *c == cause));
    pattern.what = format!("child_exited {path} killed {cause}");
    pattern
}

/// `child_restarting` of `path`.
pub fn restarting(path: &str) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("child_restarting {path}"),
        move |e| matches!(e, Event::ChildRestarting { path, .. } if *path == p),
    )
}

/// `supervisor_gave_up` of the supervisor at `path`.
pub fn gave_up(path: &str) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("supervisor_gave_up {path}"),
        move |e| matches!(e, Event::SupervisorGaveUp { path, .. } if *path == p),
    )
}

/// `supervisor_stopped` of the supervisor at `path`.
pub fn supervisor_stopped(path: &str) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("supervisor_stopped {path}"),
        move |e| matches!(e, Event::SupervisorStopped { path, .. } if *path == p),
    )
}

/// `dead_letter` for `path` with reason `reason` (`Crashed`, `Poison`,
/// `TargetRemoved`, ...).
pub fn dead_letter(path: &str, reason: DeadLetterReason) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("dead_letter {path} {reason}"),
        move |e| matches!(e, Event::DeadLetter { path, reason: r, .. } if *path == p && *r == reason),
    )
}

/// `heartbeat_missed` of `path`.
pub fn heartbeat_missed(path: &str) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("heartbeat_missed {path}"),
        move |e| matches!(e, Event::HeartbeatMissed { path, .. } if *path == p),
    )
}

/// `call_cancelled` of a call to `path`.
pub fn call_cancelled(path: &str) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("call_cancelled {path}"),
        move |e| matches!(e, Event::CallCancelled { path, .. } if *path == p),
    )
}

/// `circuit_changed` of `path` to `state`.
pub fn circuit(path: &str, state: CircuitState) -> Pattern {
    let p = path.to_owned();
    Pattern::new(
        format!("circuit_changed {path} {state:?}"),
        move |e| matches!(e, Event::CircuitChanged { path, state: s, .. } if *path == p && *s == state),
    )
}

/// A fault the chaos plugin (`plugins/chaos`) injects into itself on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `unreachable`.
    Trap,
    /// A Rust panic.
    Panic,
    /// An integer division by zero.
    DivideByZero,
    /// A load outside linear memory.
    OutOfBounds,
    /// Unbounded recursion.
    StackOverflow,
    /// Allocation until the memory limit refuses.
    OutOfMemory,
    /// A spin without heartbeats, forever.
    Loop,
    /// Work without heartbeats for this long.
    Hang(Duration),
    /// Asks to exit with an error.
    ExitError,
}

impl Fault {
    /// The chaos plugin's message for this fault.
    pub fn message(self) -> String {
        match self {
            Fault::Trap => "trap".into(),
            Fault::Panic => "panic".into(),
            Fault::DivideByZero => "div0".into(),
            Fault::OutOfBounds => "oob".into(),
            Fault::StackOverflow => "stack".into(),
            Fault::OutOfMemory => "oom".into(),
            Fault::Loop => "loop".into(),
            Fault::Hang(d) => format!("hang:{}", d.as_millis()),
            Fault::ExitError => "exit:error".into(),
        }
    }
}

/// Why a [`TestTree`] did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The manifest was refused.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// The host refused the tree.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// A running tree under test, with its event stream.
pub struct TestTree {
    host: Host,
    events: Events,
    seen: Vec<EventRecord>,
    deadline: Duration,
}

impl fmt::Debug for TestTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestTree").field("seen", &self.seen.len()).finish_non_exhaustive()
    }
}

impl TestTree {
    /// Starts `spec` in a new host with the default settings, in the [`engine`] the
    /// process's tests share.
    ///
    /// # Errors
    /// The tree did not start.
    pub async fn start(spec: SupervisorSpec) -> Result<Self, TestError> {
        Self::start_in(Host::builder().shared_engine(engine()).build()?, spec).await
    }

    /// Starts `spec` in `host` (built with the settings the test needs).
    ///
    /// # Errors
    /// The tree did not start.
    pub async fn start_in(host: Host, spec: SupervisorSpec) -> Result<Self, TestError> {
        // Subscribed before the start, so the first `child_started` is seen.
        let events = host.subscribe();
        host.start(spec).await?;
        Ok(Self { host, events, seen: Vec::new(), deadline: Duration::from_secs(10) })
    }

    /// Starts the tree a manifest describes; plugin paths are relative to `base`.
    ///
    /// # Errors
    /// The manifest was refused (every problem), or the tree did not start.
    pub async fn from_manifest(text: &str, base: impl AsRef<Path>) -> Result<Self, TestError> {
        let spec = manifest::parse("(test manifest)", text, base.as_ref())?;
        Self::start(spec).await
    }

    /// Starts the tree a manifest describes in `host` (e.g. one with a durable state
    /// store); plugin paths are relative to `base`.
    ///
    /// # Errors
    /// The manifest was refused (every problem), or the tree did not start.
    pub async fn from_manifest_in(
        host: Host,
        text: &str,
        base: impl AsRef<Path>,
    ) -> Result<Self, TestError> {
        let spec = manifest::parse("(test manifest)", text, base.as_ref())?;
        Self::start_in(host, spec).await
    }

    /// Sets how long each wait may take (default 10 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The host running the tree.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Every event received so far, in order.
    pub fn seen(&self) -> &[EventRecord] {
        &self.seen
    }

    /// Awaits the next event matching `pattern`, skipping others (they stay in
    /// [`TestTree::seen`]).
    ///
    /// # Panics
    /// No such event within the deadline (the message lists the events seen), or the
    /// test fell so far behind that events were lost.
    pub async fn expect(&mut self, pattern: Pattern) -> EventRecord {
        let from = self.seen.len();
        let deadline = tokio::time::Instant::now() + self.deadline;
        loop {
            let record = match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(Received::Event(record))) => record,
                Ok(Some(Received::Missed(n))) => {
                    panic!("the test fell {n} events behind while waiting for {pattern:?}")
                }
                Ok(None) => panic!(
                    "the tree stopped while waiting for {pattern:?}; saw meanwhile:\n{}",
                    describe(&self.seen[from..])
                ),
                Err(_) => panic!(
                    "no {pattern:?} within {:?}; saw meanwhile:\n{}",
                    self.deadline,
                    describe(&self.seen[from..])
                ),
            };
            self.seen.push(record.clone());
            if pattern.matches(&record.event) {
                return record;
            }
        }
    }

    /// Awaits events matching each of `patterns`, in that order.
    ///
    /// # Panics
    /// As [`TestTree::expect`].
    pub async fn expect_in_order(
        &mut self,
        patterns: impl IntoIterator<Item = Pattern>,
    ) -> Vec<EventRecord> {
        let mut records = Vec::new();
        for pattern in patterns {
            records.push(self.expect(pattern).await);
        }
        records
    }

    /// Awaits `f`, within the deadline.
    ///
    /// # Panics
    /// `f` took longer.
    pub async fn within<T>(&self, f: impl Future<Output = T>) -> T {
        match tokio::time::timeout(self.deadline, f).await {
            Ok(value) => value,
            Err(_) => panic!("not finished within {:?}", self.deadline),
        }
    }

    /// Calls the child at `path`, waiting at most the deadline.
    ///
    /// # Errors
    /// As [`Host::call`].
    pub async fn call(
        &self,
        path: &str,
        payload: impl AsRef<[u8]>,
    ) -> Result<Vec<u8>, MessageError> {
        self.host.call(path, payload.as_ref().to_vec(), self.deadline).await
    }

    /// Sends to the child at `path`.
    ///
    /// # Errors
    /// As [`Host::send`].
    pub fn send(&self, path: &str, payload: impl AsRef<[u8]>) -> Result<(), MessageError> {
        self.host.send(path, payload.as_ref().to_vec())
    }

    /// Injects `fault` into the chaos child at `path` with a call (so it happens once,
    /// whatever the child's `poison_after`); returns the exit reason it crashed with.
    ///
    /// # Panics
    /// The child did not crash (it is not a chaos plugin, or the fault was caught).
    pub async fn inject(&self, path: &str, fault: Fault) -> ExitReason {
        match self.call(path, fault.message()).await {
            Err(MessageError::CalleeCrashed(reason)) => reason,
            // `exit:error` answers, then the incarnation ends.
            Ok(_) if fault == Fault::ExitError => {
                ExitReason::Error { message: "chaos: exit:error requested".into() }
            }
            other => panic!("injecting {fault:?} into {path}: expected a crash, got {other:?}"),
        }
    }

    /// The children of `supervisor` as `(name, state, incarnation)`, in start order.
    ///
    /// # Panics
    /// No supervisor at that path.
    pub async fn children(&self, supervisor: &str) -> Vec<(String, ChildState, u64)> {
        let children = self.within(self.host.which_children(supervisor)).await;
        children
            .unwrap_or_else(|e| panic!("which_children {supervisor}: {e}"))
            .into_iter()
            .map(|c| (c.name, c.state, c.incarnation))
            .collect()
    }

    /// Asserts `which_children(supervisor)` is `expected`, in order.
    ///
    /// # Panics
    /// It is not.
    pub async fn assert_children(&self, supervisor: &str, expected: &[(&str, ChildState, u64)]) {
        let actual = self.children(supervisor).await;
        let expected: Vec<_> = expected.iter().map(|(n, s, i)| (n.to_string(), *s, *i)).collect();
        assert_eq!(actual, expected, "which_children {supervisor}");
    }

    /// Stops the tree in order; returns the root's exit reason.
    ///
    /// # Panics
    /// The shutdown took longer than the deadline.
    pub async fn shutdown(self) -> ExitReason {
        self.within(self.host.shutdown()).await
    }
}

fn describe(records: &[EventRecord]) -> String {
    if records.is_empty() {
        return "  (nothing)".into();
    }
    records
        .iter()
        .map(|r| format!("  {}", serde_json::to_string(r).unwrap_or_else(|_| format!("{r:?}"))))
        .collect::<Vec<_>>()
        .join("\n")
}
