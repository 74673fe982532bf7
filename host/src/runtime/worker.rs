//! A worker: one task holding one incarnation's sandbox, handling the messages of its
//! child's mailbox one at a time until it exits or is stopped.
//!
//! The worker announces its incarnation's end (`child_exited`) itself, the moment it
//! happens, and tells its supervisor before it answers the message it was handling:
//! a caller hears `callee-crashed` right after the event that explains it, whatever
//! its supervisor is busy with, and whatever it asks the supervisor next is answered
//! knowing of the exit. The supervisor's own announcement of the same exit is then
//! skipped.
//!
//! The message being handled when the incarnation crashed is not lost: a call is
//! answered `callee-crashed`; a sent message is dead-lettered (`crashed`), or, when
//! the child's `poison_after` allows more tries, goes back to the head of the mailbox
//! for the next incarnation until it has crashed that many (then `poison`). A message
//! interrupted because the supervisor stopped the child is not at fault and goes back.
//!
//! A hibernating child's worker drops the instance when it has been idle long enough
//! and starts it again, `init` and all, for the next message: one incarnation, many
//! activations. An activation that fails to start ends the incarnation like a crash,
//! but its message is not at fault (a call is answered, a send goes back).

use super::handle::{Handle, Stop};
use super::protocol::SupMsg;
use super::shared::Shared;
use crate::events::{DeadLetterReason, Event};
use crate::messaging::{Frame, Letter, Mailbox, Outbox};
use crate::sandbox::{
    ExportCall, Handled, MessageError, OutputBudget, Plugin, Sandbox, SandboxConfig, Shutdown,
};
use crate::spec::PluginStart;
use crate::task::Owned;
use crate::{ExitReason, KillCause};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// The sandbox settings of an incarnation of the plugin child at `path`.
pub(crate) fn sandbox_config(
    shared: &Arc<Shared>,
    path: String,
    start: &PluginStart,
    mailbox: &Arc<Mailbox>,
) -> SandboxConfig {
    let mut config = SandboxConfig::new(path);
    config.config.clone_from(&start.config);
    config.limits = start.limits.clone();
    config.grants = start.grants.clone();
    config.state = Arc::clone(&shared.state);
    // The incarnation's messenger, with its timers: shared by a hibernating child's
    // activations, dropped when the incarnation ends.
    config.messenger = Arc::new(Outbox::new(Arc::clone(&shared.post), Arc::clone(mailbox)));
    config.output = OutputBudget::with_sink(Arc::clone(&shared.guest_logs) as _);
    config
}

/// An incarnation of a plugin child to start.
pub(crate) struct Start {
    /// The child's id in its supervisor.
    pub(crate) id: String,
    pub(crate) incarnation: u64,
    pub(crate) plugin: Plugin,
    /// Its sandbox's settings (its path among them).
    pub(crate) config: SandboxConfig,
    pub(crate) hibernate_after: Option<Duration>,
    pub(crate) mailbox: Arc<Mailbox>,
    /// Where an exit of its own is reported.
    pub(crate) supervisor: mpsc::UnboundedSender<SupMsg>,
    /// The node it runs on, for a child another node's supervisor placed here: its
    /// events name it.
    pub(crate) node: Option<String>,
}

/// Starts an incarnation: its sandbox and its worker task, which takes no message
/// until [`Handle::go`] fires.
pub(crate) async fn start(shared: &Arc<Shared>, start: Start) -> Result<Handle, ExitReason> {
    let Start { id, incarnation, plugin, config, hibernate_after, mailbox, supervisor, node } =
        start;
    let hibernate = hibernate_after.map(|after| Hibernate {
        plugin: plugin.clone(),
        config: config.clone(),
        after,
    });
    let heartbeat = config.limits.heartbeat.map(|policy| (Arc::clone(&config.heartbeat), policy));
    let sandbox = Sandbox::start(&plugin, config, incarnation).await?;
    let kill = sandbox.kill_switch();
    // Hibernating after every message: none is waiting yet, so the instance goes now
    // (its slot with it).
    let sandbox = match &hibernate {
        Some(h) if h.after.is_zero() => {
            drop(sandbox);
            None
        }
        _ => Some(sandbox),
    };
    let (stop, stopped) = oneshot::channel();
    let (go, started) = oneshot::channel();
    let task = Owned(tokio::spawn(run(Worker {
        id,
        incarnation,
        sandbox,
        mailbox,
        shared: Arc::clone(shared),
        started,
        stop: stopped,
        supervisor,
        hibernate,
        node,
    })));
    let mut handle = Handle::new(incarnation, go, stop, kill, task);
    handle.heartbeat = heartbeat;
    Ok(handle)
}

/// What a worker task runs with.
struct Worker {
    /// The child's id in its supervisor.
    id: String,
    incarnation: u64,
    /// The started instance; `None` for a child that hibernates at once.
    sandbox: Option<Sandbox>,
    mailbox: Arc<Mailbox>,
    shared: Arc<Shared>,
    /// Fires once the incarnation's `child_started` is published: until then no
    /// message is taken, so its exit cannot be published before its start.
    started: oneshot::Receiver<()>,
    /// The supervisor's order to stop (the supervisor enforces the shutdown timeout
    /// through the kill switch).
    stop: oneshot::Receiver<Stop>,
    /// Where an exit the supervisor did not ask for is reported.
    supervisor: mpsc::UnboundedSender<SupMsg>,
    /// For a hibernating child: how to start it again.
    hibernate: Option<Hibernate>,
    /// The node named in its events, for a child placed here by another node.
    node: Option<String>,
}

/// What a hibernating child's worker needs to start the instance again.
struct Hibernate {
    plugin: Plugin,
    /// The incarnation's config; its clones share the kill switch, the heartbeat cell
    /// and the messenger (with the incarnation's timers).
    config: SandboxConfig,
    /// Idle this long, the instance is dropped.
    after: Duration,
}

/// How the incarnation ended.
enum Exit {
    /// Stopped by its supervisor.
    Stopped(ExitReason),
    /// Ended on its own: crashed, killed, or asked to exit.
    Ended(ExitReason),
}

/// Runs the incarnation and announces its end; returns how it ended. An exit the
/// supervisor did not ask for is also reported to it as [`SupMsg::ChildExited`],
/// before the message that ended it is answered: whoever hears that answer and then
/// asks the supervisor about the child is answered after the supervisor knows. A
/// panic in the host's code serving the child ends the incarnation with
/// `host_panic`, reported like any other exit.
async fn run(worker: Worker) -> ExitReason {
    let incarnation = worker.incarnation;
    let report = Report {
        supervisor: worker.supervisor.clone(),
        id: worker.id.clone(),
        incarnation,
        node: worker.node.clone(),
    };
    let shared = Arc::clone(&worker.shared);
    let mailbox = Arc::clone(&worker.mailbox);
    // Where the letter being handled goes if the host panics handling it.
    let unwound = std::sync::Mutex::new(None);
    match crate::task::catch_panic(serve(worker, &report, &unwound)).await {
        Ok(Exit::Stopped(reason) | Exit::Ended(reason)) => reason,
        Err(message) => {
            let reason = ExitReason::HostPanic { message };
            tracing::error!(child = &*mailbox.path, "{reason}");
            mailbox.set_handling(None);
            report.announce(&shared, &mailbox.path, &reason);
            report.exited(&reason);
            // The message may well be what made the host panic: settled as a crash.
            if let Some(letter) = unwound.lock().unwrap_or_else(|p| p.into_inner()).take() {
                settle(letter, &reason, true, &mailbox, &shared);
            }
            reason
        }
    }
}

/// Tells the supervisor that the incarnation ended on its own.
struct Report {
    supervisor: mpsc::UnboundedSender<SupMsg>,
    id: String,
    incarnation: u64,
    /// The node its events name, for a child another node's supervisor placed here.
    node: Option<String>,
}

impl Report {
    /// The incarnation's end, on the event stream.
    fn announce(&self, shared: &Shared, path: &str, reason: &ExitReason) {
        shared.emit(Event::ChildExited {
            path: path.to_owned(),
            incarnation: self.incarnation,
            reason: reason.clone(),
            node: self.node.clone(),
        });
    }

    fn exited(&self, reason: &ExitReason) {
        let _ = self.supervisor.send(SupMsg::ChildExited {
            id: self.id.clone(),
            incarnation: self.incarnation,
            reason: reason.clone(),
            announced: true,
        });
    }
}

async fn serve(
    worker: Worker,
    report: &Report,
    unwound: &std::sync::Mutex<Option<Letter>>,
) -> Exit {
    let Worker {
        incarnation, mut sandbox, mailbox, shared, mut started, mut stop, hibernate, ..
    } = worker;
    let post = &shared.post;
    let path = &mailbox.path;
    let mut announced_start = false;
    let ends = Ends { mailbox: &mailbox, shared: &shared, report };
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
                let reason = stopped(sandbox, shutdown).await;
                report.announce(&shared, path, &reason);
                return Exit::Stopped(reason);
            }
            // A supervisor gone without a word counts as a go: its stop follows.
            _ = &mut started, if !announced_start => {
                announced_start = true;
                continue;
            }
            letter = mailbox.next(), if announced_start => letter,
            () = idle => {
                sandbox = None;
                continue;
            }
        };
        if let Err(cancelled) = letter.take() {
            // Its caller stopped waiting before it was delivered (its chain cancelled,
            // which its caller was told): not handled.
            match cancelled {
                Some(_) => post.cancelled(),
                None => post.failed(),
            }
            mailbox.tally.failed();
            continue;
        }
        // Held so that if this task is aborted mid-message, the letter goes back.
        let mut held = Held { mailbox: &mailbox, shared: &shared, unwound, letter: Some(letter) };
        let active = match (&mut sandbox, &hibernate) {
            (Some(active), _) => active,
            (None, Some(h)) => {
                match activate(h, &mailbox, held.letter().frame.clone(), incarnation).await {
                    Ok(started) => sandbox.insert(started),
                    Err(reason) => {
                        // The activation failed, not the message.
                        ends.ended_handling(held.take(), &reason, false);
                        return Exit::Ended(reason);
                    }
                }
            }
            (None, None) => unreachable!("only a hibernating worker drops its sandbox"),
        };
        // A span per message handled (exported as a trace when the embedder asks).
        let span = tracing::info_span!(
            "warden.handle",
            path = &*mailbox.path,
            incarnation,
            call = held.letter().is_call()
        );
        let outcome = match held.letter_mut().export.take() {
            Some(export) => match export.downcast::<ExportCall>() {
                Ok(call) => active.call_export(*call).instrument(span).await,
                Err(_) => unreachable!("only Host::call_export makes typed letters"),
            },
            // A typed call that already ran in an incarnation abandoned mid-way.
            None if held.letter().typed => {
                let lost = ExitReason::Killed { cause: KillCause::BrutalKill };
                settle(held.take(), &lost, false, &mailbox, &shared);
                continue;
            }
            None => active.handle_envelope(&held.letter().envelope).instrument(span).await,
        };
        match outcome {
            Ok(handled) => {
                mailbox.tally.handled(active.call_started().elapsed());
                if let Some(reason) = answered(handled, held.take(), &ends) {
                    return Exit::Ended(reason);
                }
                if hibernate.as_ref().is_some_and(|h| h.after.is_zero()) {
                    sandbox = None;
                }
            }
            Err(reason) => {
                let silent = active.heartbeat().missed();
                return crashed(reason, silent, held.take(), &ends);
            }
        }
    }
}

/// A hibernating child's activation for `letter`: its `init` runs outside the chain of
/// the call it was woken for.
async fn activate(
    hibernate: &Hibernate,
    mailbox: &Mailbox,
    frame: Option<Arc<Frame>>,
    incarnation: u64,
) -> Result<Sandbox, ExitReason> {
    mailbox.set_handling(None);
    let started = Sandbox::start(&hibernate.plugin, hibernate.config.clone(), incarnation).await;
    mailbox.set_handling(frame);
    started
}

/// How the incarnation ends when its supervisor stops it: `terminate` is called and
/// waited for (the supervisor kills it at the shutdown timeout), unless it is a
/// brutal kill or the child hibernates (no instance, nothing to terminate).
async fn stopped(
    sandbox: Option<Sandbox>,
    stop: Result<Stop, oneshot::error::RecvError>,
) -> ExitReason {
    let shutdown = match stop {
        Ok(Stop::Kill(cause)) => return ExitReason::Killed { cause },
        Ok(Stop::Shutdown(shutdown)) => Ok(shutdown),
        Err(gone) => Err(gone),
    };
    let brutal = matches!(shutdown, Ok(Shutdown::BrutalKill));
    match sandbox {
        None if brutal => ExitReason::Killed { cause: KillCause::BrutalKill },
        None => ExitReason::Shutdown,
        // A supervisor gone without a word is a plain shutdown.
        Some(sandbox) => {
            let how = if brutal { Shutdown::BrutalKill } else { Shutdown::Infinity };
            sandbox.terminate(ExitReason::Shutdown, how).await
        }
    }
}

/// A handled letter: answered, and the exit the guest asked for with it, announced
/// and reported before the answer.
fn answered(handled: Handled, letter: Letter, ends: &Ends<'_>) -> Option<ExitReason> {
    if let Some(reason) = &handled.exit {
        ends.ended(reason);
    }
    let post = &ends.shared.post;
    match letter.frame.as_ref().map(|frame| frame.take_reply()) {
        None => post.handled(), // a sent message
        Some(Some(reply)) => {
            post.handled();
            let answer = handled.reply.map_err(MessageError::Application);
            post.reply(ends.mailbox, &letter, reply, answer);
        }
        // Handled for a chain cancelled meanwhile: the answer is discarded.
        Some(None) => post.cancelled(),
    }
    handled.exit
}

/// The incarnation crashed (or was killed) handling `letter`: its end announced (a
/// missed heartbeat first), the letter settled and, unless its supervisor stopped it,
/// the supervisor told.
fn crashed(reason: ExitReason, silent: Option<Duration>, letter: Letter, ends: &Ends<'_>) -> Exit {
    let (shared, mailbox, incarnation) = (ends.shared, ends.mailbox, ends.report.incarnation);
    if let ExitReason::Killed { cause: KillCause::Heartbeat } = reason {
        shared.emit(Event::HeartbeatMissed {
            path: mailbox.path.to_string(),
            incarnation,
            since_ms: u64::try_from(silent.unwrap_or_default().as_millis()).unwrap_or(u64::MAX),
        });
    }
    // Stopped by its supervisor mid-message: not the message's fault.
    if stopped_by_supervisor(&reason) {
        mailbox.set_handling(None);
        ends.report.announce(shared, &mailbox.path, &reason);
        settle(letter, &reason, false, mailbox, shared);
        return Exit::Stopped(reason);
    }
    ends.ended_handling(letter, &reason, true);
    Exit::Ended(reason)
}

/// Where an incarnation that ends on its own says so: the event stream, then its
/// supervisor.
struct Ends<'a> {
    mailbox: &'a Mailbox,
    shared: &'a Shared,
    report: &'a Report,
}

impl Ends<'_> {
    fn ended(&self, reason: &ExitReason) {
        // The next incarnation's `init` runs in no call's chain.
        self.mailbox.set_handling(None);
        self.report.announce(self.shared, &self.mailbox.path, reason);
        self.report.exited(reason);
    }

    /// The incarnation ended on its own while handling `letter` (`blamed` when the
    /// letter is at fault): announced, then the letter settled and the supervisor told
    /// in the order that keeps both promises. A sent message goes back to the mailbox
    /// before the supervisor can start the next incarnation; a caller hears its answer
    /// only once the supervisor knows.
    fn ended_handling(&self, letter: Letter, reason: &ExitReason, blamed: bool) {
        let (shared, mailbox) = (self.shared, self.mailbox);
        mailbox.set_handling(None);
        self.report.announce(shared, &mailbox.path, reason);
        if letter.is_call() {
            self.report.exited(reason);
            settle(letter, reason, blamed, mailbox, shared);
        } else {
            settle(letter, reason, blamed, mailbox, shared);
            self.report.exited(reason);
        }
    }
}

/// The letter whose handling ended the incarnation with `reason`: a call is answered
/// `callee-crashed`. A sent message the child is `blamed` for counts a crash, and is
/// a dead letter once it has crashed `poison_after` incarnations (`crashed` when it
/// gets one try, the default; `poison` after several); otherwise it goes back to the
/// head of the mailbox.
fn settle(
    mut letter: Letter,
    reason: &ExitReason,
    blamed: bool,
    mailbox: &Mailbox,
    shared: &Shared,
) {
    if letter.is_call() {
        mailbox.tally.failed();
        shared.post.fail_call(mailbox, &mut letter, MessageError::CalleeCrashed(reason.clone()));
        return;
    }
    if blamed {
        letter.crashes += 1;
        let tries = mailbox.config.poison_after;
        if letter.crashes >= tries {
            let word =
                if tries <= 1 { DeadLetterReason::Crashed } else { DeadLetterReason::Poison };
            shared.post.dead_letter(mailbox, letter, word, Some(reason.clone()));
            return;
        }
    }
    requeue(mailbox, shared, letter);
}

fn stopped_by_supervisor(reason: &ExitReason) -> bool {
    matches!(
        reason,
        ExitReason::Killed {
            cause: KillCause::ShutdownTimeout | KillCause::BrutalKill | KillCause::NodeDown
        }
    )
}

fn requeue(mailbox: &Mailbox, shared: &Shared, letter: Letter) {
    if let Err(letter) = mailbox.requeue(letter) {
        shared.post.removed(mailbox, letter);
    }
}

/// The letter being handled; back to the head of the mailbox if dropped unfinished
/// (the task was aborted), or to `unwound` if dropped by a panic, to be settled then.
struct Held<'a> {
    mailbox: &'a Mailbox,
    shared: &'a Shared,
    unwound: &'a std::sync::Mutex<Option<Letter>>,
    letter: Option<Letter>,
}

impl Held<'_> {
    fn letter(&self) -> &Letter {
        self.letter.as_ref().expect("held until taken")
    }

    fn letter_mut(&mut self) -> &mut Letter {
        self.letter.as_mut().expect("held until taken")
    }

    fn take(&mut self) -> Letter {
        self.letter.take().expect("taken once")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let Some(letter) = self.letter.take() else { return };
        if std::thread::panicking() {
            *self.unwound.lock().unwrap_or_else(|p| p.into_inner()) = Some(letter);
        } else {
            requeue(self.mailbox, self.shared, letter);
        }
    }
}
