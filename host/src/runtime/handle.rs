//! A started worker as its supervisor holds it: how to let it take messages, stop it
//! or kill it, and how its task ended. Below the shared state, so that what holds
//! workers (supervisors, the nodes of a cluster) can be held by it.

use crate::sandbox::{Heartbeat, HeartbeatPolicy, KillSwitch, Shutdown};
use crate::task::Owned;
use crate::{ExitReason, KillCause};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A started worker, as its supervisor holds it.
pub(crate) struct Handle {
    pub(crate) incarnation: u64,
    /// Lets the worker take its first message once its `child_started` is out,
    /// so that no exit of this incarnation is published before its start.
    pub(crate) go: Option<oneshot::Sender<()>>,
    stop: oneshot::Sender<Stop>,
    kill: KillSwitch,
    task: Owned<ExitReason>,
    /// Its heartbeats and how they are judged, for a child with a heartbeat policy.
    pub(crate) heartbeat: Option<(Arc<Heartbeat>, HeartbeatPolicy)>,
}

impl Handle {
    pub(crate) fn new(
        incarnation: u64,
        go: oneshot::Sender<()>,
        stop: oneshot::Sender<Stop>,
        kill: KillSwitch,
        task: Owned<ExitReason>,
    ) -> Self {
        Self { incarnation, go: Some(go), stop, kill, task, heartbeat: None }
    }

    /// Stops the incarnation as `shutdown` says: graceful within the timeout, then
    /// killed. Its exit reason; `Err` when its task did not end on its own (it was
    /// aborted), so it announced nothing.
    pub(crate) async fn stop(self, shutdown: Shutdown) -> Result<ExitReason, ExitReason> {
        let Handle { stop, kill, mut task, .. } = self;
        if shutdown == Shutdown::BrutalKill {
            kill.kill(KillCause::BrutalKill);
        }
        let _ = stop.send(Stop::Shutdown(shutdown));
        match shutdown {
            Shutdown::Timeout(limit) => match tokio::time::timeout(limit, &mut task.0).await {
                Ok(result) => joined(result),
                Err(_) => {
                    kill.kill(KillCause::ShutdownTimeout);
                    joined((&mut task.0).await)
                }
            },
            Shutdown::BrutalKill | Shutdown::Infinity => joined((&mut task.0).await),
        }
    }

    /// Kills the incarnation at once for `cause`; its exit reason.
    pub(crate) async fn kill(self, cause: KillCause) -> ExitReason {
        let Handle { stop, kill, mut task, .. } = self;
        kill.kill(cause);
        let _ = stop.send(Stop::Kill(cause));
        joined((&mut task.0).await).unwrap_or_else(|reason| reason)
    }
}

/// A task's result: panics are caught inside every task, so an error means it was
/// aborted (its owner was dropped).
pub(crate) fn joined(
    result: Result<ExitReason, tokio::task::JoinError>,
) -> Result<ExitReason, ExitReason> {
    result.map_err(|e| match e.try_into_panic() {
        Ok(payload) => {
            ExitReason::HostPanic { message: crate::task::panic_message(payload.as_ref()) }
        }
        Err(_) => ExitReason::Killed { cause: KillCause::BrutalKill },
    })
}

/// How the worker is told to stop.
pub(crate) enum Stop {
    /// As its supervisor stops it.
    Shutdown(Shutdown),
    /// Killed by the host for `cause` (its node left the cluster): `terminate` is not
    /// called.
    Kill(KillCause),
}
