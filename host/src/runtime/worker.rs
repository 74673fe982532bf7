//! A worker: one task holding one incarnation's sandbox, handling one message at a
//! time until it exits or is stopped.

use super::supervisor::SupMsg;
use crate::ExitReason;
use crate::sandbox::{MessageError, Sandbox, Shutdown};
use tokio::sync::{mpsc, oneshot};

/// What a worker task is asked to do.
pub(crate) enum WorkerMsg {
    /// Handle a message; the reply goes back on `reply` when there is one.
    Handle {
        sender: Option<String>,
        payload: Vec<u8>,
        reply: Option<oneshot::Sender<Result<Vec<u8>, MessageError>>>,
    },
    /// Stop: run `terminate` (the supervisor enforces the shutdown timeout through
    /// the kill switch).
    Stop(Shutdown),
}

/// Runs the incarnation; returns how it ended. An exit the supervisor did not ask
/// for is also reported to it as [`SupMsg::ChildExited`].
pub(crate) async fn run(
    id: String,
    mut sandbox: Sandbox,
    mut inbox: mpsc::UnboundedReceiver<WorkerMsg>,
    supervisor: mpsc::UnboundedSender<SupMsg>,
) -> ExitReason {
    let incarnation = sandbox.incarnation();
    loop {
        let Some(msg) = inbox.recv().await else {
            // The supervisor is gone: stop as if shut down.
            break sandbox.terminate(ExitReason::Shutdown, Shutdown::Infinity).await;
        };
        match msg {
            WorkerMsg::Handle { sender, payload, reply } => {
                let expects_reply = reply.is_some();
                match sandbox.handle(sender, payload, expects_reply).await {
                    Ok(handled) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(handled.reply.map_err(MessageError::Application));
                        }
                        if let Some(reason) = handled.exit {
                            report(&supervisor, &id, incarnation, &reason);
                            return reason;
                        }
                    }
                    Err(reason) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(MessageError::CalleeCrashed(reason.clone())));
                        }
                        report(&supervisor, &id, incarnation, &reason);
                        return reason;
                    }
                }
            }
            WorkerMsg::Stop(shutdown) => {
                let shutdown = match shutdown {
                    // The supervisor kills at the timeout; here terminate is waited for.
                    Shutdown::Timeout(_) => Shutdown::Infinity,
                    other => other,
                };
                break sandbox.terminate(ExitReason::Shutdown, shutdown).await;
            }
        }
    }
}

fn report(
    supervisor: &mpsc::UnboundedSender<SupMsg>,
    id: &str,
    incarnation: u64,
    reason: &ExitReason,
) {
    let _ = supervisor.send(SupMsg::ChildExited {
        id: id.to_owned(),
        incarnation,
        reason: reason.clone(),
    });
}
