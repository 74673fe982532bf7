//! The post office: every mailbox by path, delivery with its checks, the account of
//! every message, and what a call waits on (to name a deadlock when one times out).

use super::breaker::{Admit, Outcome};
use super::mailbox::{Letter, Mailbox};
use super::{CircuitState, MailboxConfig, MessageStats};
use crate::events::{Event, EventBus};
use crate::runtime::Owned;
use crate::sandbox::{BoxFuture, Envelope, MessageError, Messenger, TimerGuard};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    rejected: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    dead_letters: AtomicU64,
    pending: AtomicU64,
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
}

impl Post {
    pub(crate) fn new(events: Arc<EventBus>) -> Self {
        Self {
            mailboxes: RwLock::default(),
            waits: Mutex::default(),
            counts: Counters::default(),
            settled: Notify::new(),
            settle_waiters: AtomicUsize::new(0),
            events,
        }
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

    /// Disposes of an accepted letter whose mailbox was closed.
    pub(crate) fn removed(&self, mailbox: &Mailbox, letter: Letter) {
        match letter.reply {
            Some(reply) => {
                let _ = reply.send(Err(MessageError::UnknownTarget(mailbox.path.to_string())));
                self.failed();
            }
            None => self.dead_letter(&mailbox.path, letter, "target_removed", None),
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
        payload: Vec<u8>,
        reply: Option<super::mailbox::Reply>,
    ) -> Result<(), MessageError> {
        let envelope = Envelope {
            sender: from.map(|f| f.path.to_string()),
            payload,
            expects_reply: reply.is_some(),
        };
        // Counted pending before the worker can see it (it may finish it at once).
        self.counts.pending.fetch_add(1, Ordering::Relaxed);
        target.push(Letter { envelope, reply, crashes: 0 }).map_err(|(e, _)| {
            self.counts.pending.fetch_sub(1, Ordering::Relaxed);
            e
        })
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
        let offered = self
            .admissible(from, to, payload.len())
            .and_then(|target| self.enqueue(from, &target, payload, None));
        self.count(offered)
    }

    /// `call`: delivers and waits at most `timeout` for the answer. The callee's crash
    /// answers at once (`callee-crashed`); a timeout on a cycle of calls says so.
    pub(crate) async fn call(
        &self,
        from: Option<&Mailbox>,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        // The sender's checks, then the callee's breaker, then its mailbox: a refused
        // call never counts against (or probes) the callee.
        let offered = self.admissible(from, to, payload.len()).and_then(|target| {
            let admission = match target.breaker {
                Some(_) => Some(self.admit(Arc::clone(&target))?),
                None => None,
            };
            self.enqueue(from, &target, payload, Some(reply))?;
            Ok((target, admission))
        });
        let (target, breaker) = self.count(offered)?;
        let _waiting = from.map(|f| self.wait_on(&f.path, &target.path));
        let result = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            // Every accepted letter is answered; a dropped one means the host is going.
            Ok(Err(_)) => Err(MessageError::UnknownTarget(to.to_owned())),
            Err(_) => Err(match from.and_then(|f| self.cycle(&f.path, &target.path)) {
                Some(cycle) => MessageError::Deadlock(cycle),
                None => MessageError::Timeout,
            }),
        };
        if let Some(mut admission) = breaker {
            admission.finish(match &result {
                Ok(_) | Err(MessageError::Application(_)) => Outcome::Success,
                Err(
                    MessageError::CalleeCrashed(_)
                    | MessageError::Timeout
                    | MessageError::Deadlock(_),
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
    /// half-opens it.
    fn circuit_changed(&self, target: &Arc<Mailbox>, change: Option<super::breaker::Change>) {
        let Some((state, failures)) = change else { return };
        self.events.emit(Event::CircuitChanged { path: target.path.to_string(), state, failures });
        if let (CircuitState::Open, Some(breaker)) = (state, &target.breaker) {
            let (events, target) = (Arc::clone(&self.events), Arc::clone(target));
            let reset = breaker.reset();
            tokio::spawn(async move {
                tokio::time::sleep(reset).await;
                let Some(breaker) = &target.breaker else { return };
                if let Some((state, failures)) = breaker.expire(Instant::now()) {
                    let path = target.path.to_string();
                    events.emit(Event::CircuitChanged { path, state, failures });
                }
            });
        }
    }

    /// Records that `caller` waits on `callee` until the guard is dropped.
    fn wait_on(&self, caller: &Arc<str>, callee: &Arc<str>) -> Waiting<'_> {
        self.waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Arc::clone(caller), Arc::clone(callee));
        Waiting { post: self, caller: Arc::clone(caller) }
    }

    /// The cycle of waits from `caller` through `callee` back to `caller`, if there is
    /// one: `[caller, callee, ..., caller]`.
    fn cycle(&self, caller: &Arc<str>, callee: &Arc<str>) -> Option<Vec<String>> {
        let waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        let mut chain = vec![caller.to_string(), callee.to_string()];
        let mut at = callee;
        while let Some(next) = waits.get(at) {
            chain.push(next.to_string());
            if next == caller {
                return Some(chain);
            }
            if chain.len() > waits.len() + 2 {
                return None; // a cycle not through the caller
            }
            at = next;
        }
        None
    }

    /// `send-after`: checked now, delivered when the timer fires unless the guard was
    /// dropped first. A delivery that fails then is a dead letter.
    pub(crate) fn send_after(
        self: &Arc<Self>,
        from: &Arc<Mailbox>,
        to: &str,
        payload: Vec<u8>,
        delay: Duration,
    ) -> Result<TimerGuard, MessageError> {
        // Refused now is refused at send; accepted, it is counted as sent when it fires,
        // and if it cannot be delivered then, it is a dead letter, not a silent drop.
        if let Err(e) = self.admissible(Some(from), to, payload.len()) {
            return self.count(Err(e));
        }
        let (post, from, to) = (Arc::clone(self), Arc::clone(from), to.to_owned());
        let timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let size = payload.len() as u64;
            let delivered = post
                .admissible(Some(&from), &to, payload.len())
                .and_then(|target| post.enqueue(Some(&from), &target, payload, None));
            post.counts.sent.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = delivered {
                // Never pending, so counted here rather than through `finish`.
                post.counts.dead_letters.fetch_add(1, Ordering::Relaxed);
                let sender = Some(from.path.to_string());
                post.announce_dead_letter(to, reason_word(&e), sender, size, 0, None);
            }
        });
        Ok(Box::new(Owned(timer)))
    }

    // --- how accepted letters end --------------------------------------------------

    fn finish(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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

    /// A letter is set aside, with an event.
    pub(crate) fn dead_letter(
        &self,
        path: &str,
        letter: Letter,
        reason: &str,
        exit: Option<crate::ExitReason>,
    ) {
        let size = letter.envelope.payload.len() as u64;
        let sender = letter.envelope.sender;
        self.announce_dead_letter(path.to_owned(), reason, sender, size, letter.crashes, exit);
        self.finish(&self.counts.dead_letters);
    }

    fn announce_dead_letter(
        &self,
        path: String,
        reason: &str,
        sender: Option<String>,
        size: u64,
        crashes: u32,
        exit: Option<crate::ExitReason>,
    ) {
        let reason = reason.to_owned();
        self.events.emit(Event::DeadLetter { path, reason, sender, size, crashes, exit });
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
        MessageStats { sent, rejected, handled, failed, dead_letters, pending }
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

/// The event word for why a delivery failed.
fn reason_word(e: &MessageError) -> &'static str {
    match e {
        MessageError::UnknownTarget(_) => "unknown_target",
        MessageError::MailboxFull => "mailbox_full",
        MessageError::TooLarge(_) => "too_large",
        MessageError::NotAllowed(_) => "not_allowed",
        _ => "undeliverable",
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

/// A blocked caller's entry in the wait graph, removed on drop.
struct Waiting<'a> {
    post: &'a Post,
    caller: Arc<str>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.post.waits.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.caller);
    }
}

/// Messaging as one child sees it: it sends as itself, within its allow-list.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) post: Arc<Post>,
    pub(crate) me: Arc<Mailbox>,
}

impl Messenger for Outbox {
    fn send(&self, to: &str, payload: Vec<u8>) -> Result<(), MessageError> {
        self.post.send(Some(&self.me), to, payload)
    }

    fn send_after(
        &self,
        to: &str,
        payload: Vec<u8>,
        delay: Duration,
    ) -> Result<TimerGuard, MessageError> {
        self.post.send_after(&self.me, to, payload, delay)
    }

    fn call(
        &self,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>> {
        let (post, me, to) = (Arc::clone(&self.post), Arc::clone(&self.me), to.to_owned());
        Box::pin(async move { post.call(Some(&me), &to, payload, timeout).await })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::Targets;

    fn post() -> (Arc<Post>, tokio::sync::broadcast::Receiver<crate::events::EventRecord>) {
        let events = Arc::new(EventBus::new(64));
        let rx = events.subscribe();
        (Arc::new(Post::new(events)), rx)
    }

    fn config(capacity: usize) -> MailboxConfig {
        MailboxConfig { capacity, targets: Targets::any(), ..MailboxConfig::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn send_after_is_counted_when_it_fires_and_a_failed_delivery_is_a_dead_letter() {
        let (post, mut events) = post();
        let a = post.open("root/a", &config(1));
        let b = post.open("root/b", &config(1));
        let _delivered = post.send_after(&b, "root/a", b"tick".to_vec(), ms(100)).unwrap();
        let _undeliverable = post.send_after(&b, "root/a", b"tock".to_vec(), ms(200)).unwrap();
        let cancelled = post.send_after(&b, "root/a", b"never".to_vec(), ms(50)).unwrap();
        drop(cancelled);
        assert_eq!(post.stats().sent, 0, "nothing is sent before its timer fires");

        tokio::time::sleep(ms(150)).await;
        assert_eq!((post.stats().sent, post.stats().pending, a.len()), (1, 1, 1));
        // The mailbox (capacity 1) is still full when the second fires.
        tokio::time::sleep(ms(100)).await;
        let stats = post.stats();
        assert_eq!((stats.sent, stats.dead_letters, stats.pending), (2, 1, 1), "{stats:?}");
        match events.recv().await.unwrap().event {
            Event::DeadLetter { path, reason, sender, size: 4, .. } => {
                assert_eq!((path.as_str(), reason.as_str()), ("root/a", "mailbox_full"));
                assert_eq!(sender.as_deref(), Some("root/b"));
            }
            other => panic!("{other:?}"),
        }
        // Refused when set: counted as a rejected send at once.
        assert_eq!(
            post.send_after(&b, "root/zz", Vec::new(), ms(1)).err(),
            Some(MessageError::UnknownTarget("root/zz".into()))
        );
        assert_eq!(post.stats().rejected, 1);
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
            events.recv().await.unwrap().event,
            Event::DeadLetter { ref reason, size: 4, .. } if reason == "target_removed"
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
