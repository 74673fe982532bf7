//! A worker: one task holding one incarnation's sandbox, handling the messages of its
//! child's mailbox one at a time until it exits or is stopped.
//!
//! When the incarnation crashes handling a message, that message is not lost: a call
//! is answered `callee-crashed` at once; a sent message goes back to the head of the
//! mailbox for the next incarnation, until it has crashed `poison_after` of them and
//! is dead-lettered instead.
//!
//! A hibernating child's worker drops the instance when it has been idle long enough
//! and starts it again, `init` and all, for the next message: one incarnation, many
//! activations. An activation that fails to start ends the incarnation like a crash,
//! but its message is not at fault (a call is answered, a send goes back).

use super::host::Shared;
use super::supervisor::SupMsg;
use crate::events::Event;
use crate::messaging::{Letter, Mailbox};
use crate::sandbox::{MessageError, Plugin, Sandbox, SandboxConfig, Shutdown};
use crate::{ExitReason, KillCause};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a worker task runs with.
pub(crate) struct Worker {
    /// The child's id in its supervisor.
    pub(crate) id: String,
    pub(crate) incarnation: u64,
    /// The started instance; `None` for a child that hibernates at once.
    pub(crate) sandbox: Option<Sandbox>,
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) shared: Arc<Shared>,
    /// The supervisor's order to stop (the supervisor enforces the shutdown timeout
    /// through the kill switch).
    pub(crate) stop: oneshot::Receiver<Shutdown>,
    /// Where an exit the supervisor did not ask for is reported.
    pub(crate) supervisor: mpsc::UnboundedSender<SupMsg>,
    /// For a hibernating child: how to start it again.
    pub(crate) hibernate: Option<Hibernate>,
}

/// What a hibernating child's worker needs to start the instance again.
pub(crate) struct Hibernate {
    pub(crate) plugin: Plugin,
    /// The incarnation's config; its clones share the kill switch and heartbeat cell.
    pub(crate) config: SandboxConfig,
    /// Idle this long, the instance is dropped.
    pub(crate) after: Duration,
}

/// Runs the incarnation; returns how it ended. An exit the supervisor did not ask
/// for is also reported to it as [`SupMsg::ChildExited`].
pub(crate) async fn run(worker: Worker) -> ExitReason {
    let Worker { id, incarnation, mut sandbox, mailbox, shared, mut stop, supervisor, hibernate } =
        worker;
    let post = &shared.post;
    loop {
        let idle_after = match (&hibernate, &sandbox) {
            (Some(h), Some(_)) => Some(h.after),
            _ => None,
        };
        let idle = async {
            match idle_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let letter = tokio::select! {
            biased;
            shutdown = &mut stop => {
                let Some(sandbox) = sandbox else {
                    // Hibernating: no instance, nothing to terminate.
                    return match shutdown {
                        Ok(Shutdown::BrutalKill) => ExitReason::Killed { cause: KillCause::BrutalKill },
                        _ => ExitReason::Shutdown,
                    };
                };
                let shutdown = match shutdown {
                    Ok(Shutdown::BrutalKill) => Shutdown::BrutalKill,
                    // The supervisor kills at the timeout; here terminate is waited
                    // for. A supervisor gone without a word is a plain shutdown.
                    Ok(Shutdown::Timeout(_) | Shutdown::Infinity) | Err(_) => Shutdown::Infinity,
                };
                return sandbox.terminate(ExitReason::Shutdown, shutdown).await;
            }
            letter = mailbox.next() => letter,
            () = idle => {
                sandbox = None;
                continue;
            }
        };
        if letter.abandoned() {
            post.failed(); // its caller timed out or went away before it was delivered
            continue;
        }
        // Held so that if this task is aborted mid-message, the letter goes back.
        let mut held = Held { mailbox: &mailbox, shared: &shared, letter: Some(letter) };
        let active = match (&mut sandbox, &hibernate) {
            (Some(active), _) => active,
            (None, Some(h)) => match Sandbox::start(&h.plugin, h.config.clone(), incarnation).await
            {
                Ok(started) => sandbox.insert(started),
                Err(reason) => {
                    // The activation failed, not the message.
                    settle(held.take(), &reason, false, &mailbox, &shared);
                    report(&supervisor, &id, incarnation, &reason);
                    return reason;
                }
            },
            (None, None) => unreachable!("only a hibernating worker drops its sandbox"),
        };
        let outcome = active.handle_envelope(&held.letter().envelope).await;
        let letter = held.take();
        match outcome {
            Ok(handled) => {
                post.handled();
                if let Some(reply) = letter.reply {
                    let _ = reply.send(handled.reply.map_err(MessageError::Application));
                }
                if let Some(reason) = handled.exit {
                    report(&supervisor, &id, incarnation, &reason);
                    return reason;
                }
                if hibernate.as_ref().is_some_and(|h| h.after.is_zero()) {
                    sandbox = None;
                }
            }
            Err(reason) => {
                if let ExitReason::Killed { cause: KillCause::Heartbeat } = reason {
                    let since = active.heartbeat().missed().unwrap_or_default();
                    shared.emit(Event::HeartbeatMissed {
                        path: mailbox.path.to_string(),
                        incarnation,
                        since_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                // Stopped by its supervisor mid-message: not the message's fault.
                let blamed = !stopped_by_supervisor(&reason);
                settle(letter, &reason, blamed, &mailbox, &shared);
                report(&supervisor, &id, incarnation, &reason);
                return reason;
            }
        }
    }
}

/// The letter whose handling ended the incarnation with `reason`: a call is answered
/// `callee-crashed`; a sent message goes back to the head of the mailbox, and if it is
/// `blamed`, counts a crash and becomes a dead letter at `poison_after` of them.
fn settle(
    mut letter: Letter,
    reason: &ExitReason,
    blamed: bool,
    mailbox: &Mailbox,
    shared: &Shared,
) {
    if let Some(reply) = letter.reply.take() {
        let _ = reply.send(Err(MessageError::CalleeCrashed(reason.clone())));
        shared.post.failed();
        return;
    }
    if blamed {
        letter.crashes += 1;
        if letter.crashes >= mailbox.config.poison_after {
            shared.post.dead_letter(&mailbox.path, letter, "poison", Some(reason.clone()));
            return;
        }
    }
    requeue(mailbox, shared, letter);
}

fn stopped_by_supervisor(reason: &ExitReason) -> bool {
    matches!(
        reason,
        ExitReason::Killed { cause: KillCause::ShutdownTimeout | KillCause::BrutalKill }
    )
}

fn requeue(mailbox: &Mailbox, shared: &Shared, letter: Letter) {
    if let Err(letter) = mailbox.requeue(letter) {
        shared.post.removed(mailbox, letter);
    }
}

/// The letter being handled; back to the head of the mailbox if dropped unfinished.
struct Held<'a> {
    mailbox: &'a Mailbox,
    shared: &'a Shared,
    letter: Option<Letter>,
}

impl Held<'_> {
    fn letter(&self) -> &Letter {
        self.letter.as_ref().expect("held until taken")
    }

    fn take(&mut self) -> Letter {
        self.letter.take().expect("taken once")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(letter) = self.letter.take() {
            requeue(self.mailbox, self.shared, letter);
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
