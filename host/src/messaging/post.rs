//! The post office: every mailbox by path, delivery with its checks, the account of
//! every message, and what a call waits on (to name a deadlock when one times out).

use super::breaker::{Admit, Outcome};
use super::chain::{Chains, Frame, Reply};
use super::dead_letters::{DeadLetter, DeadLetters};
use super::mailbox::{Letter, Mailbox};
use super::{CircuitState, MailboxConfig, MessageStats};
use crate::events::{DeadLetterReason, Event, EventBus};
use crate::services::{CancelReason, Envelope, MessageError};
use crate::task::Owned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// A timeout this long never comes in practice; longer ones are clamped to it, so no
/// deadline arithmetic can overflow.
const NEVER: Duration = Duration::from_secs(30 * 365 * 86_400);

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    rejected: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    dead_letters: AtomicU64,
    pending: AtomicU64,
    cancelled: AtomicU64,
    forwarded: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Post {
    mailboxes: RwLock<HashMap<Arc<str>, Arc<Mailbox>>>,
    /// Which child each blocked caller waits on: caller path → callee path.
    waits: Mutex<HashMap<Arc<str>, Arc<str>>>,
    counts: Counters,
    /// Woken when nothing is pending any more, if anyone waits for that.
    settled: Notify,
    settle_waiters: AtomicUsize,
    events: Arc<EventBus>,
    dead_letters: DeadLetters,
    chains: Chains,
    /// Where messages to children on other nodes of a cluster go, once it is joined.
    remote: OnceLock<Arc<dyn Remote>>,
}

/// Where a message to a child on another node goes: the way there, and the node.
type Route<'a> = (&'a Arc<dyn Remote>, String);

/// Delivery to children on other nodes of a cluster (the runtime's, on NATS).
pub(crate) trait Remote: Send + Sync + std::fmt::Debug {
    /// The node to ask for `to`, a path with no mailbox here, sent by `from` (a child
    /// here, or the application): `None` when no node has it.
    fn node_of(&self, from: Option<&str>, to: &str) -> Option<String>;
    /// Sends on `node`; a refusal there is dead-lettered here. Refused at once when
    /// too many sends are on their way.
    fn send(
        &self,
        node: String,
        from: Option<String>,
        to: String,
        payload: Vec<u8>,
    ) -> Result<(), MessageError>;
    /// Calls on `node`, waiting at most `timeout`.
    fn call(
        &self,
        node: String,
        from: Option<String>,
        to: String,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> crate::sandbox::BoxFuture<'static, Result<Vec<u8>, MessageError>>;
}

impl Post {
    pub(crate) fn new(events: Arc<EventBus>) -> Self {
        Self {
            mailboxes: RwLock::default(),
            waits: Mutex::default(),
            counts: Counters::default(),
            settled: Notify::new(),
            settle_waiters: AtomicUsize::new(0),
            dead_letters: DeadLetters::new(Arc::clone(&events)),
            events,
            chains: Chains::default(),
            remote: OnceLock::new(),
        }
    }

    /// Routes messages to paths with no mailbox here through `remote`.
    pub(crate) fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// The node that has `to`, when it has no mailbox here and the sender may message
    /// it; `Err` when it may not.
    fn remote_route(
        &self,
        from: Option<&Mailbox>,
        to: &str,
    ) -> Result<Option<Route<'_>>, MessageError> {
        let Some(remote) = self.remote.get() else { return Ok(None) };
        if self.lookup(to).is_some() {
            return Ok(None);
        }
        let Some(node) = remote.node_of(from.map(|f| &*f.path), to) else { return Ok(None) };
        if let Some(from) = from
            && !from.config.targets.allows(&from.path, to)
        {
            return Err(MessageError::NotAllowed(to.to_owned()));
        }
        Ok(Some((remote, node)))
    }

    /// The mailbox of the child at `path`, made with `config` if it has none yet; it
    /// stays, with what is in it, until [`Post::forget`].
    pub(crate) fn open(&self, path: &str, config: &MailboxConfig) -> Arc<Mailbox> {
        if let Some(mailbox) = self.lookup(path) {
            return mailbox;
        }
        let mut mailboxes = self.mailboxes.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            mailboxes
                .entry(Arc::from(path))
                .or_insert_with(|| Arc::new(Mailbox::new(path, config.clone()))),
        )
    }

    /// Removes the mailbox at `path` (its child's spec is gone): sent messages still in
    /// it are dead-lettered, calls answered `unknown-target`.
    pub(crate) fn forget(&self, path: &str) {
        let removed = self.mailboxes.write().unwrap_or_else(|p| p.into_inner()).remove(path);
        if let Some(mailbox) = removed {
            for letter in mailbox.close() {
                self.removed(&mailbox, letter);
            }
        }
    }

    /// Says whether `mailbox`'s child is stopped with no restart coming. While it is,
    /// calls to it are answered `noproc` (as OTP's `gen_server:call` to a process that
    /// is not there), those already waiting in it too; sent messages stay for its next
    /// start.
    pub(crate) fn set_stopped(&self, mailbox: &Mailbox, stopped: bool) {
        for mut letter in mailbox.set_stopped(stopped) {
            let noproc = MessageError::NotRunning(mailbox.path.to_string());
            self.fail_call(mailbox, &mut letter, noproc);
        }
    }

    /// Answers a call delivered to `callee`. Its caller stops waiting on `callee` now,
    /// not when its task next runs: `callee` may call it back at once, and that is no
    /// deadlock.
    pub(crate) fn answer(
        &self,
        callee: &Mailbox,
        letter: &mut Letter,
        answer: Result<Vec<u8>, MessageError>,
    ) {
        if let Some(reply) = letter.frame.as_ref().and_then(|f| f.take_reply()) {
            self.reply(callee, letter, reply, answer);
        }
    }

    /// A call that ends without being handled (its callee crashed on it, its mailbox
    /// went): answered with `error` and counted as failed; or, its chain cancelled
    /// meanwhile, counted as cancelled (its caller knows already).
    pub(crate) fn fail_call(&self, callee: &Mailbox, letter: &mut Letter, error: MessageError) {
        let cancelled = letter.frame.as_ref().is_some_and(|f| f.cancelled().is_some());
        self.answer(callee, letter, Err(error));
        if cancelled { self.cancelled() } else { self.failed() }
    }

    /// Sends `letter`'s answer to `reply` (taken from its frame).
    pub(crate) fn reply(
        &self,
        callee: &Mailbox,
        letter: &Letter,
        reply: Reply,
        answer: Result<Vec<u8>, MessageError>,
    ) {
        if let Some(caller) = &letter.envelope.sender {
            let mut waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
            if waits.get(caller.as_str()).is_some_and(|on| *on == callee.path) {
                waits.remove(caller.as_str());
            }
        }
        let _ = reply.send(answer);
    }

    /// Disposes of an accepted letter whose mailbox was closed.
    pub(crate) fn removed(&self, mailbox: &Mailbox, mut letter: Letter) {
        match letter.frame {
            Some(_) => {
                let gone = MessageError::UnknownTarget(mailbox.path.to_string());
                self.fail_call(mailbox, &mut letter, gone);
            }
            None => self.dead_letter(mailbox, letter, DeadLetterReason::TargetRemoved, None),
        }
    }

    pub(crate) fn lookup(&self, path: &str) -> Option<Arc<Mailbox>> {
        self.mailboxes.read().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    /// Every check a new message passes before it is accepted, in order: the sender
    /// may message the target, the target exists, the payload fits. A `None` sender is
    /// the embedding application, which may message anyone.
    fn admissible(
        &self,
        from: Option<&Mailbox>,
        to: &str,
        size: usize,
    ) -> Result<Arc<Mailbox>, MessageError> {
        if let Some(from) = from
            && !from.config.targets.allows(&from.path, to)
        {
            return Err(MessageError::NotAllowed(to.to_owned()));
        }
        let target = self.lookup(to).ok_or_else(|| MessageError::UnknownTarget(to.to_owned()))?;
        if size > target.config.max_message_bytes {
            return Err(MessageError::TooLarge(target.config.max_message_bytes as u64));
        }
        Ok(target)
    }

    /// Puts a letter in `target`'s mailbox: accepted (pending until handled, failed
    /// or dead-lettered), or refused because the mailbox is full or closed.
    fn enqueue(
        &self,
        from: Option<&Mailbox>,
        target: &Mailbox,
        payload: Content,
        frame: Option<Arc<Frame>>,
    ) -> Result<(), MessageError> {
        self.enqueue_as(from.map(|f| f.path.to_string()), target, payload, frame)
    }

    /// As [`Post::enqueue`], from `sender` (a path, here or on another node).
    fn enqueue_as(
        &self,
        sender: Option<String>,
        target: &Mailbox,
        payload: Content,
        frame: Option<Arc<Frame>>,
    ) -> Result<(), MessageError> {
        let (payload, export) = match payload {
            Content::Bytes(bytes) => (bytes, None),
            Content::Export(export) => (Vec::new(), Some(export)),
        };
        let envelope = Envelope { sender, payload, expects_reply: frame.is_some() };
        // Counted pending before the worker can see it (it may finish it at once).
        self.counts.pending.fetch_add(1, Ordering::Relaxed);
        let typed = export.is_some();
        let letter = Letter { envelope, crashes: 0, export, typed, frame };
        let pushed = match target.push(letter) {
            // Calls nobody waits for any more make room first.
            Err((letter, MessageError::MailboxFull)) if self.drop_abandoned(target) > 0 => {
                target.push(*letter)
            }
            pushed => pushed,
        };
        pushed.map_err(|(_, e)| {
            self.unpend();
            e
        })
    }

    /// Drops the calls in `target`'s mailbox whose callers stopped waiting (as its
    /// reader would, unhandled); how many.
    fn drop_abandoned(&self, target: &Mailbox) -> usize {
        let abandoned = target.take_abandoned();
        for letter in &abandoned {
            match letter.take() {
                Err(Some(_)) => self.cancelled(),
                _ => self.failed(),
            }
        }
        abandoned.len()
    }

    /// Counts an offered message, and a refusal if `offered` is one.
    fn count<T>(&self, offered: Result<T, MessageError>) -> Result<T, MessageError> {
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        if offered.is_err() {
            self.counts.rejected.fetch_add(1, Ordering::Relaxed);
        }
        offered
    }

    /// `send`: fire and forget, with backpressure.
    pub(crate) fn send(
        &self,
        from: Option<&Mailbox>,
        to: &str,
        payload: Vec<u8>,
    ) -> Result<(), MessageError> {
        let offered = self.offer(from, to, payload);
        self.count(offered)
    }

    /// Puts a sent message in `to`'s mailbox: here, or, for a child on another node, on
    /// its way there (pending until that node answers: taken there, or a dead letter
    /// here).
    fn offer(
        &self,
        from: Option<&Mailbox>,
        to: &str,
        payload: Vec<u8>,
    ) -> Result<(), MessageError> {
        if let Some((remote, node)) = self.remote_route(from, to)? {
            self.counts.pending.fetch_add(1, Ordering::Relaxed);
            let sender = from.map(|f| f.path.to_string());
            let sent = remote.send(node, sender, to.to_owned(), payload);
            if sent.is_err() {
                self.unpend();
            }
            return sent;
        }
        self.admissible(from, to, payload.len())
            .and_then(|target| self.enqueue(from, &target, Content::Bytes(payload), None))
    }

    /// A message from `sender` on another node, for a child here (the sender's own
    /// checks were made on its node).
    pub(crate) fn send_from_remote(
        &self,
        sender: Option<String>,
        to: &str,
        payload: Vec<u8>,
    ) -> Result<(), MessageError> {
        let offered = self
            .admissible(None, to, payload.len())
            .and_then(|target| self.enqueue_as(sender, &target, Content::Bytes(payload), None));
        self.count(offered)
    }

    /// `call`: delivers and waits at most `timeout` for the answer. The callee's crash
    /// answers at once (`callee-crashed`), and so does a call that would close a cycle
    /// of calls waiting on each other (`deadlock`).
    pub(crate) async fn call(
        &self,
        from: Option<&Mailbox>,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        match self.remote_route(from, to) {
            Ok(Some((remote, node))) => {
                let remote = Arc::clone(remote);
                self.counts.sent.fetch_add(1, Ordering::Relaxed);
                self.counts.pending.fetch_add(1, Ordering::Relaxed);
                // Counted forwarded when answered, or when the caller stops waiting.
                let _forwarded = Forwarded(self);
                let sender = from.map(|f| f.path.to_string());
                return remote.call(node, sender, to.to_owned(), payload, timeout).await;
            }
            Ok(None) => {}
            Err(refused) => return self.count(Err(refused)),
        }
        let sender = from.map(|f| f.path.to_string());
        self.call_with(from, sender, to, Content::Bytes(payload), timeout).await
    }

    /// A call from `sender` on another node to a child here (the sender's own checks
    /// were made on its node; its chain does not cross nodes).
    pub(crate) async fn call_from_remote(
        &self,
        sender: Option<String>,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        self.call_with(None, sender, to, Content::Bytes(payload), timeout).await
    }

    /// A typed call from the embedding application into `to`'s exports, queued and
    /// answered as a `call` is: an empty reply once it ran, the reasons a call fails.
    pub(crate) async fn call_export(
        &self,
        to: &str,
        export: Box<dyn std::any::Any + Send>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        self.call_with(None, None, to, Content::Export(export), timeout).await
    }

    /// A call from `from` (a child here, or none), whose envelope names `sender` (its
    /// path, or a child's on another node).
    async fn call_with(
        &self,
        from: Option<&Mailbox>,
        sender: Option<String>,
        to: &str,
        payload: Content,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or_else(|| now + NEVER);
        // Made while handling a call, it is a frame below that call's; below a cancelled
        // one, or one whose deadline has passed, it fails at once, whatever its target.
        let above = from.and_then(Mailbox::handling);
        if let Some(above) = &above {
            let late = (above.deadline <= now)
                .then(|| CancelReason::Deadline { call_to: above.deadline_of().to_string() });
            if let Some(reason) = above.cancelled().or(late) {
                return self.count(Err(MessageError::Cancelled(reason)));
            }
        }
        let (reply, mut answer) = oneshot::channel();
        // The sender's checks, its chain, the wait-for graph, then the callee's breaker,
        // then its mailbox: a refused call never counts against (or probes) the callee.
        let offered = self.admissible(from, to, payload.len()).and_then(|target| {
            let caller = from.map(|f| Arc::clone(&f.path));
            let callee = Arc::clone(&target.path);
            let frame = Frame::new(&self.chains, above.as_ref(), caller, callee, deadline, reply)
                .map_err(MessageError::Cancelled)?;
            let waiting = match from {
                Some(from) => Some(self.wait_on(&from.path, &target.path)?),
                None => None,
            };
            let admission = match target.breaker {
                Some(_) => Some(self.admit(Arc::clone(&target))?),
                None => None,
            };
            self.enqueue_as(sender, &target, payload, Some(Arc::clone(&frame)))?;
            Ok((waiting, admission, frame))
        });
        let (_waiting, breaker, frame) = self.count(offered)?;
        // Dropped before the answer (its caller's incarnation ended, the application
        // dropped the call): the frame and those below are cancelled.
        let mut watch = Watch { frame: &frame, events: &self.events, answered: false };
        // Only the frame whose own timeout set the chain's deadline watches the clock:
        // its cancellation reaches those below, top down, in order.
        let watch_until = if frame.own_deadline() { frame.deadline } else { now + NEVER };
        // Every accepted letter is answered; a dropped answer means the host is going.
        let gone = |_| Err(MessageError::UnknownTarget(to.to_owned()));
        let result = tokio::select! {
            biased;
            // The callee's answer, or `cancelled` when the chain is cancelled above.
            answer = &mut answer => answer.unwrap_or_else(gone),
            () = tokio::time::sleep_until(watch_until) => {
                let reason = CancelReason::Deadline { call_to: frame.deadline_of().to_string() };
                if frame.cancel(&reason, &self.events) {
                    Err(MessageError::Timeout)
                } else {
                    // Answered as the clock ran out: the answer is on its way.
                    answer.await.unwrap_or_else(gone)
                }
            },
        };
        watch.answered = true;
        if let Some(mut admission) = breaker {
            admission.finish(match &result {
                Ok(_) | Err(MessageError::Application(_)) => Outcome::Success,
                // Too slow for the operation it served counts as slow.
                Err(
                    MessageError::CalleeCrashed(_)
                    | MessageError::Timeout
                    | MessageError::Cancelled(CancelReason::Deadline { .. }),
                ) => Outcome::Failure,
                Err(_) => Outcome::Neutral,
            });
        }
        result
    }

    fn admit(&self, target: Arc<Mailbox>) -> Result<Admission<'_>, MessageError> {
        let breaker = target.breaker.as_ref().expect("checked by the caller");
        let (admit, change) = breaker.admit(Instant::now())?;
        self.circuit_changed(&target, change);
        Ok(Admission { post: self, target, admit, done: false })
    }

    /// Publishes a change of `target`'s circuit; when it opened, sets the timer that
    /// half-opens it (owned by the breaker, so it goes with the mailbox).
    fn circuit_changed(&self, target: &Arc<Mailbox>, change: Option<super::breaker::Change>) {
        let Some((state, failures)) = change else { return };
        self.events.emit(Event::CircuitChanged { path: target.path.to_string(), state, failures });
        if let (CircuitState::Open, Some(breaker)) = (state, &target.breaker) {
            let (events, target_ref) = (Arc::clone(&self.events), Arc::downgrade(target));
            let reset = breaker.reset();
            breaker.set_reset_timer(Owned(tokio::spawn(async move {
                tokio::time::sleep(reset).await;
                let Some(target) = target_ref.upgrade() else { return };
                let Some(breaker) = &target.breaker else { return };
                if let Some((state, failures)) = breaker.expire(Instant::now()) {
                    let path = target.path.to_string();
                    events.emit(Event::CircuitChanged { path, state, failures });
                }
            })));
        }
    }

    /// Records that `caller` waits on `callee` until the guard is dropped, unless that
    /// would close a cycle: `callee` is `caller`, or already waits on it, directly or
    /// through others. Checked and recorded under one lock, so two calls made at once
    /// cannot both close the cycle.
    ///
    /// # Errors
    /// [`MessageError::Deadlock`] with the cycle, from `callee` back to itself.
    fn wait_on(&self, caller: &Arc<str>, callee: &Arc<str>) -> Result<Waiting<'_>, MessageError> {
        let mut waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        let mut chain = vec![callee.to_string()];
        let mut at = callee;
        loop {
            if at == caller {
                chain.push(callee.to_string());
                return Err(MessageError::Deadlock(chain));
            }
            match waits.get(at) {
                // Each caller waits on one callee, so a chain is at most every waiter
                // long; a longer one is a cycle not through this caller.
                Some(next) if chain.len() <= waits.len() => {
                    chain.push(next.to_string());
                    at = next;
                }
                _ => break,
            }
        }
        waits.insert(Arc::clone(caller), Arc::clone(callee));
        Ok(Waiting { post: self, caller: Arc::clone(caller), callee: Arc::clone(callee) })
    }

    /// Checks a `send-after` as it is set: refused now is a rejected send; accepted, it
    /// is counted as sent when it fires.
    pub(crate) fn check_timer(
        &self,
        from: &Mailbox,
        to: &str,
        size: usize,
    ) -> Result<(), MessageError> {
        match self.remote_route(Some(from), to) {
            // Its node checks the rest when the timer fires.
            Ok(Some(_)) => return Ok(()),
            Err(e) => return self.count(Err(e)),
            Ok(None) => {}
        }
        match self.admissible(Some(from), to, size) {
            Ok(_) => Ok(()),
            Err(e) => self.count(Err(e)),
        }
    }

    /// Refuses a `send-after` past its sender's timer limits (a rejected send).
    pub(crate) fn refuse_timer(&self, why: String) -> Result<(), MessageError> {
        self.count(Err(MessageError::TooManyTimers(why)))
    }

    /// Delivers a `send-after` whose timer fired; if it cannot be delivered now, it is
    /// a dead letter, not a silent drop.
    pub(crate) fn fire(&self, from: &Mailbox, to: String, payload: Vec<u8>) {
        let size = payload.len() as u64;
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        let delivered = self.offer(Some(from), &to, payload);
        if let Err(e) = delivered {
            // Never pending, so counted here rather than through `finish`.
            self.counts.dead_letters.fetch_add(1, Ordering::Relaxed);
            self.dead_letters.announce(DeadLetter {
                path: to,
                reason: reason_word(&e),
                sender: Some(from.path.to_string()),
                size,
                crashes: 0,
                exit: None,
            });
        }
    }

    // --- how accepted letters end --------------------------------------------------

    fn finish(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.unpend();
    }

    /// One letter less pending: finished, or refused after it was counted pending. The
    /// last one wakes whoever waits for nothing pending, whichever way it went: a
    /// waiter may have seen a refused letter pending for the moment it was.
    fn unpend(&self) {
        // SeqCst with `settled`'s: a waiter that saw a letter pending is seen here.
        if self.counts.pending.fetch_sub(1, Ordering::SeqCst) == 1
            && self.settle_waiters.load(Ordering::SeqCst) > 0
        {
            self.settled.notify_waiters();
        }
    }

    /// A letter was handled (the guest's `handle` returned).
    pub(crate) fn handled(&self) {
        self.finish(&self.counts.handled);
    }

    /// A letter was answered with an error instead of being handled.
    pub(crate) fn failed(&self) {
        self.finish(&self.counts.failed);
    }

    /// A call whose chain was cancelled: not handled, or handled and its answer
    /// discarded (its caller was answered `cancelled` already). Counted as failed.
    pub(crate) fn cancelled(&self) {
        self.counts.cancelled.fetch_add(1, Ordering::Relaxed);
        self.failed();
    }

    /// Publishes the dead letters counted but not yet announced (see
    /// `dead_letters_suppressed`): the tree is stopping.
    pub(crate) fn summarize_dead_letters(&self) {
        self.dead_letters.summarize_all();
    }

    /// A letter is set aside, with an event (see [`DeadLetters`] for how many).
    pub(crate) fn dead_letter(
        &self,
        mailbox: &Mailbox,
        letter: Letter,
        reason: DeadLetterReason,
        exit: Option<crate::ExitReason>,
    ) {
        mailbox.tally.dead_letter();
        self.dead_letters.announce(DeadLetter {
            path: mailbox.path.to_string(),
            reason,
            sender: letter.envelope.sender,
            size: letter.envelope.payload.len() as u64,
            crashes: letter.crashes,
            exit,
        });
        self.finish(&self.counts.dead_letters);
    }

    /// A message handed to another node was taken there.
    pub(crate) fn forwarded(&self) {
        self.finish(&self.counts.forwarded);
    }

    /// A message handed to another node was refused there: a dead letter here.
    pub(crate) fn dead_letter_remote(
        &self,
        path: &str,
        sender: Option<String>,
        size: u64,
        error: &MessageError,
    ) {
        let reason = reason_word(error);
        let letter =
            DeadLetter { path: path.to_owned(), reason, sender, size, crashes: 0, exit: None };
        self.dead_letters.announce(letter);
        self.finish(&self.counts.dead_letters);
    }

    pub(crate) fn stats(&self) -> MessageStats {
        let c = &self.counts;
        // `pending` last: a message finishing meanwhile is then counted twice at most
        // (done and pending), never lost.
        let (sent, rejected) = (c.sent.load(Ordering::Acquire), c.rejected.load(Ordering::Acquire));
        let (handled, failed, dead_letters) = (
            c.handled.load(Ordering::Acquire),
            c.failed.load(Ordering::Acquire),
            c.dead_letters.load(Ordering::Acquire),
        );
        let pending = c.pending.load(Ordering::Acquire);
        let cancelled = c.cancelled.load(Ordering::Acquire);
        let forwarded = c.forwarded.load(Ordering::Acquire);
        MessageStats {
            sent,
            rejected,
            handled,
            failed,
            cancelled,
            dead_letters,
            forwarded,
            pending,
        }
    }

    /// Waits until no message is pending.
    pub(crate) async fn settled(&self) {
        let _waiting = SettleWaiter::new(&self.settle_waiters);
        loop {
            let notified = self.settled.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.counts.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Why a delivery failed, as a dead letter's reason.
fn reason_word(e: &MessageError) -> DeadLetterReason {
    match e {
        MessageError::UnknownTarget(_) => DeadLetterReason::UnknownTarget,
        MessageError::MailboxFull => DeadLetterReason::MailboxFull,
        MessageError::TooLarge(_) => DeadLetterReason::TooLarge,
        MessageError::NotAllowed(_) => DeadLetterReason::NotAllowed,
        _ => DeadLetterReason::Undeliverable,
    }
}

/// A call let through a circuit breaker; unless finished, it counts as neutral.
struct Admission<'a> {
    post: &'a Post,
    target: Arc<Mailbox>,
    admit: Admit,
    done: bool,
}

impl Admission<'_> {
    fn finish(&mut self, outcome: Outcome) {
        self.done = true;
        if let Some(breaker) = &self.target.breaker {
            let change = breaker.record(self.admit, outcome, Instant::now());
            self.post.circuit_changed(&self.target, change);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Outcome::Neutral);
        }
    }
}

/// A call's frame while its caller waits: cancelled (with those below it) if the wait
/// ends without an answer, because the caller went away.
struct Watch<'a> {
    frame: &'a Arc<Frame>,
    events: &'a EventBus,
    answered: bool,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let caller = self.frame.caller.as_deref().map(str::to_owned);
            self.frame.cancel(&CancelReason::CallerGone { caller }, self.events);
        }
    }
}

/// A blocked caller's entry in the wait graph, removed on drop unless its answer
/// removed it first.
struct Waiting<'a> {
    post: &'a Post,
    caller: Arc<str>,
    callee: Arc<str>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waits = self.post.waits.lock().unwrap_or_else(|p| p.into_inner());
        if waits.get(&self.caller).is_some_and(|on| *on == self.callee) {
            waits.remove(&self.caller);
        }
    }
}

/// Counts one caller of [`Post::settled`] while it waits.
struct SettleWaiter<'a>(&'a AtomicUsize);

impl<'a> SettleWaiter<'a> {
    fn new(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Self(waiters)
    }
}

impl Drop for SettleWaiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a letter carries: bytes for `handle`, or a typed call into the exports.
enum Content {
    Bytes(Vec<u8>),
    Export(Box<dyn std::any::Any + Send>),
}

impl Content {
    /// The size the target's message limit applies to: a typed call's arguments live
    /// in the embedder's closure, not in the mailbox's bytes.
    fn len(&self) -> usize {
        match self {
            Content::Bytes(bytes) => bytes.len(),
            Content::Export(_) => 0,
        }
    }
}

/// A call on its way to another node: counted forwarded when dropped.
struct Forwarded<'a>(&'a Post);

impl Drop for Forwarded<'_> {
    fn drop(&mut self) {
        self.0.forwarded();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::Targets;

    fn post() -> (Arc<Post>, crate::events::Events) {
        let events = Arc::new(EventBus::new(64));
        let rx = events.subscribe();
        (Arc::new(Post::new(events)), rx)
    }

    fn config(capacity: usize) -> MailboxConfig {
        MailboxConfig { capacity, targets: Targets::any(), ..MailboxConfig::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_mailbox_drops_calls_nobody_waits_for_before_it_refuses_a_letter() {
        let (post, _events) = post();
        let full = post.open("root/a", &config(1));
        let late = post.call(None, "root/a", b"slow".to_vec(), Duration::from_millis(10));
        assert_eq!(late.await, Err(MessageError::Timeout), "nobody reads root/a");
        assert_eq!(full.len(), 1, "the abandoned call still takes the place");
        post.send(None, "root/a", b"next".to_vec()).expect("room made for it");
        assert_eq!(full.len(), 1);
        let stats = post.stats();
        assert_eq!((stats.sent, stats.failed, stats.cancelled, stats.pending), (2, 1, 1, 1));
    }

    #[test]
    fn the_payload_bytes_a_mailbox_holds_are_bounded_and_given_back_as_letters_leave() {
        let (post, _events) = post();
        let config = MailboxConfig { max_queued_bytes: 10, ..config(100) };
        let a = post.open("root/a", &config);
        // Into an empty mailbox, any letter it accepts at all.
        post.send(None, "root/a", vec![0; 12]).expect("an empty mailbox takes it");
        assert_eq!(post.send(None, "root/a", vec![0; 1]), Err(MessageError::MailboxFull));
        assert!(a.try_next().is_some());
        assert_eq!(a.bytes(), 0);
        post.send(None, "root/a", vec![0; 6]).unwrap();
        post.send(None, "root/a", vec![0; 4]).unwrap();
        assert_eq!(post.send(None, "root/a", vec![0; 1]), Err(MessageError::MailboxFull));
        assert_eq!((a.len(), a.bytes()), (2, 10));
        // A letter put back (its handling interrupted) was accepted already.
        let letter = a.try_next().unwrap();
        post.send(None, "root/a", vec![0; 6]).unwrap();
        a.requeue(letter).unwrap();
        assert_eq!((a.len(), a.bytes()), (3, 16));
        assert_eq!(a.close().len(), 3);
        assert_eq!(a.bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_time_out_unhandled_neither_fill_the_mailbox_nor_flood_the_events() {
        // A hostile caller: thousands of calls with no time to be handled.
        let (post, mut events) = post();
        let target = post.open("root/a", &config(4));
        for _ in 0..10_000 {
            let answer = post.call(None, "root/a", b"x".to_vec(), Duration::ZERO).await;
            assert_eq!(answer, Err(MessageError::Timeout), "never refused as full");
        }
        assert!(target.len() <= 4);
        assert!(events.try_next().is_none(), "no call was handled: nothing to announce");
        let stats = post.stats();
        assert_eq!(stats.sent, 10_000);
        assert_eq!(stats.cancelled + stats.pending, 10_000, "{stats:?}");
    }

    #[tokio::test]
    async fn a_call_made_while_handling_a_call_joins_its_chain_and_a_send_does_not() {
        let (post, _events) = post();
        let (a, b) = (post.open("root/a", &config(4)), post.open("root/b", &config(4)));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        let (reply, _answer) = oneshot::channel();
        let handling =
            Frame::new(&post.chains, None, None, Arc::clone(&a.path), deadline, reply).unwrap();
        a.set_handling(Some(Arc::clone(&handling)));
        post.send(Some(&a), "root/b", b"sent".to_vec()).unwrap();
        assert!(b.try_next().unwrap().frame.is_none(), "a send belongs to no chain");
        let call = {
            let (post, a) = (Arc::clone(&post), Arc::clone(&a));
            tokio::spawn(async move {
                post.call(Some(&a), "root/b", b"called".to_vec(), Duration::from_secs(5)).await
            })
        };
        let letter = b.next().await;
        let frame = letter.frame.as_ref().expect("a call carries its frame");
        assert_eq!(frame.chain, handling.chain);
        assert_eq!(frame.deadline, deadline, "at most the time the chain has left");
        handling.cancel(&CancelReason::CallerGone { caller: None }, &post.events);
        let answer = call.await.unwrap();
        assert_eq!(answer, Err(MessageError::Cancelled(CancelReason::CallerGone { caller: None })));
        assert!(letter.take().is_err(), "the callee can tell");
        // And from now on, a's calls fail at once.
        let refused = post.call(Some(&a), "root/b", b"late".to_vec(), Duration::from_secs(5));
        assert!(matches!(refused.await, Err(MessageError::Cancelled(_))));
    }

    #[tokio::test]
    async fn a_forgotten_mailbox_dead_letters_sends_and_answers_calls() {
        let (post, mut events) = post();
        post.open("root/a", &config(8));
        post.send(None, "root/a", b"left".to_vec()).unwrap();
        let call = post.call(None, "root/a", b"asked".to_vec(), Duration::from_secs(5));
        let forget = async {
            tokio::task::yield_now().await; // the call is queued first
            post.forget("root/a");
        };
        let (answer, ()) = tokio::join!(call, forget);
        assert_eq!(answer, Err(MessageError::UnknownTarget("root/a".into())));
        assert!(matches!(
            events.next().await.and_then(crate::events::Received::event).unwrap().event,
            Event::DeadLetter { reason: DeadLetterReason::TargetRemoved, size: 4, .. }
        ));
        let stats = post.stats();
        assert_eq!(
            (stats.sent, stats.failed, stats.dead_letters, stats.pending),
            (2, 1, 1, 0),
            "{stats:?}"
        );
        assert_eq!(
            post.send(None, "root/a", Vec::new()),
            Err(MessageError::UnknownTarget("root/a".into()))
        );
        post.settled().await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_callee_may_call_back_its_caller_as_soon_as_it_has_answered() {
        let (post, _) = post();
        let a = post.open("root/a", &config(8));
        let b = post.open("root/b", &config(8));
        // a calls b and waits.
        let asking = {
            let (post, a) = (Arc::clone(&post), Arc::clone(&a));
            tokio::spawn(async move {
                post.call(Some(&a), "root/b", b"q".to_vec(), Duration::from_secs(5)).await
            })
        };
        tokio::task::yield_now().await;
        // b answers; a's task has not run since (one thread, no yield in between).
        let mut letter = b.try_next().expect("a's call");
        post.answer(&b, &mut letter, Ok(b"a".to_vec()));
        post.handled();
        // b calls a at once: a waits on b no more, so this is no deadlock.
        let back = post.call(Some(&b), "root/a", b"back".to_vec(), Duration::from_millis(1));
        assert_eq!(back.await, Err(MessageError::Timeout), "queued, not refused");
        // While a does wait on b, b calling a is one.
        let waiting = post.wait_on(&a.path, &b.path).unwrap();
        let cycle = post.call(Some(&b), "root/a", b"back".to_vec(), Duration::from_secs(5)).await;
        let expected = ["root/a", "root/b", "root/a"].map(String::from).to_vec();
        assert_eq!(cycle, Err(MessageError::Deadlock(expected)));
        drop(waiting);
        assert_eq!(asking.await.unwrap(), Ok(b"a".to_vec()));
    }

    #[test]
    fn a_guest_may_message_itself_and_its_granted_targets_only() {
        let t = Targets::new(["root/db", "root/pool/*"]).unwrap();
        assert!(t.allows("root/me", "root/me"));
        assert!(t.allows("root/me", "root/db"));
        assert!(t.allows("root/me", "root/pool/w-1"));
        assert!(t.allows("root/me", "root/pool/sub/w"));
        assert!(!t.allows("root/me", "root/pool"));
        assert!(!t.allows("root/me", "root/dbx"));
        assert!(!Targets::default().allows("root/me", "root/db"));
        assert!(Targets::any().allows("root/me", "anything"));
        for bad in ["", "root/*/x", "root/", "/root", "ro*t", "root//a"] {
            assert!(Targets::new([bad]).is_err(), "{bad:?}");
        }
    }
}
