//! One child's mailbox: a bounded FIFO owned by the host, read by whichever
//! incarnation is running.

use super::MailboxConfig;
use super::breaker::Breaker;
use super::chain::Frame;
use crate::services::{CancelReason, Envelope, MessageError};
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::sync::oneshot;

/// Where a call's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, MessageError>>;

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

    /// Whether its sender still waits for it: `Err` for a call whose caller stopped
    /// waiting, with the reason if its chain was cancelled. A sent message is always
    /// waited for.
    pub(crate) fn waited_for(&self) -> Result<(), Option<CancelReason>> {
        self.frame.as_ref().map_or(Ok(()), |f| f.waited_for())
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
}

#[derive(Debug, Default)]
struct Queue {
    letters: VecDeque<Letter>,
    closed: bool,
    /// The frame of the last call the reader took: while the reader handles it, calls
    /// the child makes belong to its chain. Set with the take, under the same lock.
    handling: Option<Arc<Frame>>,
}

impl Mailbox {
    pub(crate) fn new(path: &str, config: MailboxConfig) -> Self {
        Self {
            path: Arc::from(path),
            breaker: config.circuit.map(Breaker::new),
            config,
            queue: Mutex::new(Queue::default()),
            ready: AtomicWaker::new(),
        }
    }

    /// The frame of the call being handled, if a call is: that of the last letter the
    /// reader took ([`Mailbox::next`]), until the reader is done with it.
    pub(crate) fn handling(&self) -> Option<Arc<Frame>> {
        let queue = self.queue();
        queue.handling.as_ref().filter(|frame| !frame.done()).cloned()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `letter`, or says why not (and drops it: its sender hears the error
    /// from this): the mailbox is full, or was closed (its child removed).
    pub(crate) fn push(&self, letter: Letter) -> Result<(), MessageError> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(MessageError::UnknownTarget(self.path.to_string()));
        }
        if queue.letters.len() >= self.config.capacity {
            return Err(MessageError::MailboxFull);
        }
        queue.letters.push_back(letter);
        drop(queue);
        self.ready.wake();
        Ok(())
    }

    /// Puts a letter whose handling did not finish back at the head, over capacity if
    /// need be (it was already accepted); gives it back if the mailbox is closed.
    pub(crate) fn requeue(&self, letter: Letter) -> Result<(), Letter> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(letter);
        }
        queue.letters.push_front(letter);
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
            let Some(letter) = queue.letters.pop_front() else { return Poll::Pending };
            queue.handling.clone_from(&letter.frame);
            Poll::Ready(letter)
        })
        .await
    }

    /// As if the reader had taken a call of `frame`.
    #[cfg(test)]
    pub(crate) fn handle_for_test(&self, frame: &Arc<Frame>) {
        self.queue().handling = Some(Arc::clone(frame));
    }

    /// The next letter if there is one, without waiting.
    #[cfg(test)]
    pub(crate) fn try_next(&self) -> Option<Letter> {
        self.queue().letters.pop_front()
    }

    /// Closes the mailbox (its child was removed) and returns what was still in it.
    pub(crate) fn close(&self) -> VecDeque<Letter> {
        let mut queue = self.queue();
        queue.closed = true;
        std::mem::take(&mut queue.letters)
    }

    /// Letters waiting.
    pub(crate) fn len(&self) -> usize {
        self.queue().letters.len()
    }
}
