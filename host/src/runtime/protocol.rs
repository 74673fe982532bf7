//! What a supervisor task receives: its children's exits, its timers, and the
//! requests of the `Host`. The types the host, the supervisors and the workers
//! exchange live here, below all three.

use super::error::HostError;
use super::report::SupervisorReport;
use super::upgrade::Change;
use crate::ExitReason;
use crate::supervisor::{ChildCounts, ChildInfo, ChildSpec, PluginStart};
use tokio::sync::oneshot;

/// What a supervisor task receives.
pub(crate) enum SupMsg {
    /// A child's incarnation ended on its own; `announced` when the child published
    /// its `child_exited` itself (a worker does).
    ChildExited { id: String, incarnation: u64, reason: ExitReason, announced: bool },
    /// A restart timer fired.
    Timer { id: String, generation: u64 },
    /// An admin request.
    Admin(AdminRequest, Answer),
    /// Shut down: children newest first, then exit `shutdown`.
    Shutdown,
}

/// Where an admin request's answer goes.
pub(crate) type Answer = oneshot::Sender<Result<AdminReply, HostError>>;

pub(crate) enum AdminRequest {
    WhichChildren,
    /// A child's spec (`None`: a simple_one_for_one supervisor's template).
    Spec(Option<String>),
    /// The supervisor and its children as they are now (nested supervisors' own
    /// reports not filled in).
    Report,
    CountChildren,
    /// Whether a `StartChild` of the spec would be taken now (nothing changes).
    Admits(Box<ChildSpec>),
    StartChild(Box<ChildSpec>),
    StartDynamic {
        name: Option<String>,
        config: Option<Vec<u8>>,
    },
    TerminateChild(String),
    RestartChild(String),
    DeleteChild(String),
    /// The child's spec changes (and a running child runs the new one).
    UpgradeChild {
        id: String,
        change: Box<Change>,
    },
    /// A simple_one_for_one supervisor's template changes; the answer is what it was.
    UpgradeTemplate(Box<Change>),
}

pub(crate) enum AdminReply {
    Ok,
    Pending,
    Started(String),
    Children(Vec<ChildInfo>),
    Counts(ChildCounts),
    Report(Box<SupervisorReport>),
    Spec(Box<ChildSpec>),
    /// A template's plugin start before an upgrade.
    Before(Box<PluginStart>),
}
