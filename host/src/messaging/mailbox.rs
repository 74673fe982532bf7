//! One child's mailbox: a bounded FIFO owned by the host, read by whichever
//! incarnation is running.

use super::MailboxConfig;
use super::breaker::Breaker;
use super::chain::Frame;
use super::tally::Tally;
use crate::services::{CancelReason, Envelope, MessageError};
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Poll;

/// A message in a mailbox.
#[derive(Debug)]
pub(crate) struct Letter {
    pub(crate) envelope: Envelope,
    /// How many incarnations crashed handling it.
    pub(crate) crashes: u32,
    /// For a typed call into the child's exports: the call (a `sandbox::ExportCall`,
    /// opaque here), taken out when it runs. Always a call, so always answered.
    pub(crate) export: Option<Box<dyn std::any::Any + Send>>,
    /// Whether it is a typed call (whose `export` may have been taken already).
    pub(crate) typed: bool,
    /// For a call: its frame of the call chain, which holds where the answer goes.
    pub(crate) frame: Option<Arc<Frame>>,
}

impl Letter {
    /// Whether it is a call (its sender waits for an answer).
    pub(crate) fn is_call(&self) -> bool {
        self.frame.is_some()
    }

    /// The reader takes it to handle, if its sender still waits for it: `Err` for a
    /// call whose caller stopped waiting, with the reason if its chain was cancelled.
    /// A sent message is always waited for.
    pub(crate) fn take(&self) -> Result<(), Option<CancelReason>> {
        self.frame.as_ref().map_or(Ok(()), |f| f.take())
    }
}

#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) path: Arc<str>,
    pub(crate) config: MailboxConfig,
    pub(crate) breaker: Option<Breaker>,
    queue: Mutex<Queue>,
    /// The waiting reader's waker. A mailbox has one reader at a time: the worker of
    /// its child's running incarnation.
    ready: AtomicWaker,
    /// What it has seen, across incarnations.
    pub(crate) tally: Tally,
}

#[derive(Debug, Default)]
struct Queue {
    letters: VecDeque<Letter>,
    /// The payload bytes of `letters`.
    bytes: usize,
    closed: bool,
    /// Its child is stopped and no restart is coming (`terminate_child`, or a
    /// transient child that ended normally): calls are refused (OTP's `noproc`), sent
    /// messages wait for a `restart_child`.
    stopped: bool,
    /// The frame of the last call the reader took: while the reader handles it, calls
    /// the child makes belong to its chain. Set with the take, under the same lock.
    handling: Option<Arc<Frame>>,
}

impl Queue {
    fn push_back(&mut self, letter: Letter) {
        self.bytes += letter.envelope.payload.len();
        self.letters.push_back(letter);
    }

    fn push_front(&mut self, letter: Letter) {
        self.bytes += letter.envelope.payload.len();
        self.letters.push_front(letter);
    }

    fn pop_front(&mut self) -> Option<Letter> {
        let letter = self.letters.pop_front()?;
        self.bytes -= letter.envelope.payload.len();
        Some(letter)
    }

    fn take(&mut self) -> VecDeque<Letter> {
        self.bytes = 0;
        std::mem::take(&mut self.letters)
    }

    /// Takes out the letters `pick` chooses; the others keep their order.
    fn take_where(&mut self, pick: impl Fn(&Letter) -> bool) -> Vec<Letter> {
        let (picked, kept): (Vec<Letter>, Vec<Letter>) = self.take().into_iter().partition(pick);
        kept.into_iter().for_each(|letter| self.push_back(letter));
        picked
    }
}

impl Mailbox {
    pub(crate) fn new(path: &str, config: MailboxConfig) -> Self {
        Self {
            path: Arc::from(path),
            breaker: config.circuit.map(Breaker::new),
            config,
            queue: Mutex::new(Queue::default()),
            ready: AtomicWaker::new(),
            tally: Tally::default(),
        }
    }

    /// The frame of the call being handled, if a call is: that of the last letter the
    /// reader took ([`Mailbox::next`]), until the reader is done with it.
    pub(crate) fn handling(&self) -> Option<Arc<Frame>> {
        let queue = self.queue();
        queue.handling.as_ref().filter(|frame| !frame.done()).cloned()
    }

    /// Sets (or, `None`, clears) the frame of the call being handled: cleared while a
    /// hibernating child's `init` runs and when an incarnation ends, so no `init` or
    /// `terminate` runs in a call's chain.
    pub(crate) fn set_handling(&self, frame: Option<Arc<Frame>>) {
        self.queue().handling = frame;
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `letter`, or gives it back and says why not: the mailbox is full, was
    /// closed (its child removed), or its child is stopped and `letter` is a call.
    pub(crate) fn push(&self, letter: Letter) -> Result<(), (Box<Letter>, MessageError)> {
        let mut queue = self.queue();
        if queue.closed {
            return Err((Box::new(letter), MessageError::UnknownTarget(self.path.to_string())));
        }
        if queue.stopped && letter.is_call() {
            return Err((Box::new(letter), MessageError::NotRunning(self.path.to_string())));
        }
        let bytes = queue.bytes.saturating_add(letter.envelope.payload.len());
        if queue.letters.len() >= self.config.capacity
            || (!queue.letters.is_empty() && bytes > self.config.max_queued_bytes)
        {
            return Err((Box::new(letter), MessageError::MailboxFull));
        }
        queue.push_back(letter);
        drop(queue);
        self.ready.wake();
        Ok(())
    }

    /// Takes out the calls whose callers stopped waiting (their chains cancelled, or
    /// gone): a full mailbox makes room this way before it refuses a letter.
    pub(crate) fn take_abandoned(&self) -> Vec<Letter> {
        self.queue().take_where(|l| l.frame.as_ref().is_some_and(|f| f.abandoned()))
    }

    /// Says whether its child is stopped with no restart coming; when it becomes so,
    /// takes out the calls waiting (to be answered `noproc`: nothing will handle them).
    /// Under the queue's lock, so no call slips in after the flag and waits out its
    /// timeout.
    pub(crate) fn set_stopped(&self, stopped: bool) -> Vec<Letter> {
        let mut queue = self.queue();
        let was = std::mem::replace(&mut queue.stopped, stopped);
        if !stopped || was {
            return Vec::new();
        }
        queue.take_where(Letter::is_call)
    }

    /// Puts a letter whose handling did not finish back at the head, over capacity if
    /// need be (it was already accepted); gives it back if the mailbox is closed.
    pub(crate) fn requeue(&self, letter: Letter) -> Result<(), Letter> {
        let mut queue = self.queue();
        // Not being handled any more.
        if let (Some(handling), Some(frame)) = (&queue.handling, &letter.frame)
            && Arc::ptr_eq(handling, frame)
        {
            queue.handling = None;
        }
        if queue.closed {
            return Err(letter);
        }
        queue.push_front(letter);
        drop(queue);
        self.ready.wake();
        Ok(())
    }

    /// The next letter, waiting for one; the reader handles it from now on (see
    /// [`Mailbox::handling`]). Cancel-safe: a letter is taken only by the poll that
    /// returns it.
    pub(crate) async fn next(&self) -> Letter {
        std::future::poll_fn(|cx| {
            // Registered before looking, so a letter pushed after the look wakes us.
            self.ready.register(cx.waker());
            let mut queue = self.queue();
            let Some(letter) = queue.pop_front() else { return Poll::Pending };
            queue.handling.clone_from(&letter.frame);
            Poll::Ready(letter)
        })
        .await
    }

    /// The next letter if there is one, without waiting.
    #[cfg(test)]
    pub(crate) fn try_next(&self) -> Option<Letter> {
        self.queue().pop_front()
    }

    /// Closes the mailbox (its child was removed) and returns what was still in it.
    pub(crate) fn close(&self) -> VecDeque<Letter> {
        let mut queue = self.queue();
        queue.closed = true;
        queue.take()
    }

    /// Letters waiting.
    pub(crate) fn len(&self) -> usize {
        self.queue().letters.len()
    }

    /// The payload bytes of the letters waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.queue().bytes
    }
}
