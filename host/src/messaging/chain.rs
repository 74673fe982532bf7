//! Call chains as operations: each call is a frame of the chain it belongs to, with
//! the chain's deadline; when a frame's caller is gone, the frame and every frame
//! below it are cancelled, and each learns it without polling.
//!
//! ```text
//!   application ──call──▶ a ──call──▶ b ──call──▶ c        one chain, one id
//!                 frame A      frame B      frame C        deadline: min(own, above)
//!   A's caller gives up (timeout) or goes (crash, stop): A, B, C cancelled, top down
//! ```
//!
//! A frame is made by the call, travels in the letter, holds where the answer goes,
//! and is the "current frame" of the callee while it handles the letter: calls the
//! callee makes then are frames below it. A `send` is not part of the chain.
//! Cancelling a frame answers its waiting caller `cancelled` at once, through the
//! same channel as the callee's answer: whichever comes first is the answer.

use crate::events::{Event, EventBus};
use crate::services::{CancelReason, MessageError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::time::Instant;

/// Where a call's answer goes.
pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<Vec<u8>, MessageError>>;

/// A frame keeps this many frames below it before it drops those that are gone.
const PRUNE_ABOVE: usize = 64;

/// One call of a chain.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The chain's id, shared by every frame of it.
    pub(crate) chain: u64,
    /// The caller's path; `None` for the embedding application.
    pub(crate) caller: Option<Arc<str>>,
    /// The callee's path.
    pub(crate) callee: Arc<str>,
    /// When the call gives up: the smaller of its own timeout and the frame above's.
    pub(crate) deadline: Instant,
    /// Whose deadline that is when a frame above set it: the callee of the call whose
    /// own timeout did. `None` when its own timeout set it.
    inherited_from: Option<Arc<str>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Where the answer goes, until it is answered (or cancelled).
    reply: Option<Reply>,
    /// Why it was cancelled, once it is.
    cancelled: Option<CancelReason>,
    /// Its callee took it to handle: its cancellation is then announced.
    taken: bool,
    /// Its callee is done with it: answered it, or finished handling it after it was
    /// cancelled.
    done: bool,
    /// The frames below it (calls its callee made while handling it).
    below: Vec<Weak<Frame>>,
    /// `below`'s length after the last pruning.
    pruned: usize,
}

impl State {
    /// The caller stopped waiting: cancelled, answered, or gone away.
    fn abandoned(&self) -> bool {
        self.reply.as_ref().is_none_or(tokio::sync::oneshot::Sender::is_closed)
    }
}

/// Numbers chains.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    last: AtomicU64,
}

impl Frame {
    /// A call from `caller` to `callee` with its own `deadline`, answered to `reply`,
    /// below `above` (the frame `caller` is handling, if it handles a call), or the
    /// first of a new chain.
    ///
    /// # Errors
    /// `above` is cancelled: why, for the call to fail with at once.
    pub(crate) fn new(
        chains: &Chains,
        above: Option<&Arc<Frame>>,
        caller: Option<Arc<str>>,
        callee: Arc<str>,
        deadline: Instant,
        reply: Reply,
    ) -> Result<Arc<Frame>, CancelReason> {
        let (chain, deadline, inherited_from) = match above {
            Some(above) if above.deadline < deadline => {
                (above.chain, above.deadline, Some(Arc::clone(above.deadline_of())))
            }
            Some(above) => (above.chain, deadline, None),
            None => (chains.last.fetch_add(1, Ordering::Relaxed) + 1, deadline, None),
        };
        let frame = Arc::new(Frame {
            chain,
            caller,
            callee,
            deadline,
            inherited_from,
            state: Mutex::new(State { reply: Some(reply), ..State::default() }),
        });
        if let Some(above) = above {
            let mut state = above.state();
            if let Some(reason) = &state.cancelled {
                return Err(reason.clone());
            }
            if state.below.len() >= PRUNE_ABOVE.max(state.pruned * 2) {
                state.below.retain(|f| f.strong_count() > 0);
                state.pruned = state.below.len();
            }
            state.below.push(Arc::downgrade(&frame));
        }
        Ok(frame)
    }

    /// Whose deadline it has: the callee of the call whose own timeout set it.
    pub(crate) fn deadline_of(&self) -> &Arc<str> {
        self.inherited_from.as_ref().unwrap_or(&self.callee)
    }

    /// Whether its own timeout set its deadline (not a frame above's).
    pub(crate) fn own_deadline(&self) -> bool {
        self.inherited_from.is_none()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why it was cancelled, if it was.
    pub(crate) fn cancelled(&self) -> Option<CancelReason> {
        self.state().cancelled.clone()
    }

    /// Whether its caller stopped waiting (changes nothing).
    pub(crate) fn abandoned(&self) -> bool {
        self.state().abandoned()
    }

    /// Its callee takes it to handle, if its caller still waits: `Err` when it stopped
    /// (it was cancelled, or went away), with the reason if it was cancelled; the
    /// callee is then done with it.
    pub(crate) fn take(&self) -> Result<(), Option<CancelReason>> {
        let mut state = self.state();
        if state.abandoned() {
            state.done = true;
            return Err(state.cancelled.clone());
        }
        state.taken = true;
        Ok(())
    }

    /// Whether its callee is done with it (see [`Frame::take_reply`]).
    pub(crate) fn done(&self) -> bool {
        self.state().done
    }

    /// The callee is done with it: where the answer goes, taken, or `None` when it
    /// was cancelled (the answer is to be discarded) or answered already.
    pub(crate) fn take_reply(&self) -> Option<Reply> {
        let mut state = self.state();
        state.done = true;
        state.reply.take()
    }

    /// Cancels it for `reason`, and every frame below it, each once; its waiting
    /// caller is answered `cancelled` at once. Each frame whose callee had taken it
    /// gets a `call_cancelled` event (one not yet taken is never handled: its caller
    /// knows, and no one else has anything to clean up). A frame already answered is
    /// left alone. Whether this frame was cancelled now.
    pub(crate) fn cancel(self: &Arc<Self>, reason: &CancelReason, events: &EventBus) -> bool {
        let mut pending = vec![Arc::clone(self)];
        let mut cancelled = false;
        while let Some(frame) = pending.pop() {
            let (reply, below, taken) = {
                let mut state = frame.state();
                let Some(reply) = state.reply.take() else { continue };
                state.cancelled = Some(reason.clone());
                (reply, std::mem::take(&mut state.below), state.taken)
            };
            cancelled |= Arc::ptr_eq(&frame, self);
            let _ = reply.send(Err(MessageError::Cancelled(reason.clone())));
            if taken {
                events.emit(Event::CallCancelled {
                    chain: frame.chain,
                    path: frame.callee.to_string(),
                    caller: frame.caller.as_deref().map(str::to_owned),
                    reason: reason.clone(),
                });
            }
            // In reverse, so the first below is cancelled (and announced) first.
            pending.extend(below.iter().rev().filter_map(Weak::upgrade));
        }
        cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type Answer = tokio::sync::oneshot::Receiver<Result<Vec<u8>, MessageError>>;

    /// A frame, and where its answer arrives.
    fn frame(
        chains: &Chains,
        above: Option<&Arc<Frame>>,
        caller: Option<&str>,
        callee: &str,
        deadline: Instant,
    ) -> Result<(Arc<Frame>, Answer), CancelReason> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let frame =
            Frame::new(chains, above, caller.map(Arc::from), Arc::from(callee), deadline, reply)?;
        Ok((frame, answer))
    }

    #[tokio::test]
    async fn a_chain_shares_its_id_and_the_smallest_deadline_and_is_cancelled_top_down() {
        let (chains, events) = (Chains::default(), EventBus::new(16));
        let mut stream = events.subscribe();
        let now = Instant::now();
        let (a, _a) =
            frame(&chains, None, None, "root/a", now + Duration::from_millis(300)).unwrap();
        let later = now + Duration::from_secs(5);
        let (b, _b) = frame(&chains, Some(&a), Some("root/a"), "root/b", later).unwrap();
        let sooner = now + Duration::from_millis(100);
        let (c, c_answer) = frame(&chains, Some(&b), Some("root/b"), "root/c", sooner).unwrap();
        let (other, other_answer) = frame(&chains, None, None, "root/x", later).unwrap();
        assert_eq!((a.chain, b.chain, c.chain), (1, 1, 1));
        assert_eq!(other.chain, 2);
        assert_eq!((b.deadline, &**b.deadline_of()), (a.deadline, "root/a"), "b inherits a's");
        assert_eq!((c.deadline, &**c.deadline_of()), (sooner, "root/c"), "c's own is sooner");
        assert!(!b.own_deadline() && c.own_deadline());
        for taken in [&a, &b, &c] {
            taken.take().unwrap();
        }
        let why = CancelReason::Deadline { call_to: "root/a".into() };
        assert!(a.cancel(&why, &events));
        assert_eq!(c_answer.await.unwrap(), Err(MessageError::Cancelled(why.clone())));
        assert_eq!(b.cancelled(), Some(why.clone()));
        let cancelled: Vec<String> = std::iter::from_fn(|| stream.try_next())
            .filter_map(|r| match r.event()?.event {
                Event::CallCancelled { path, chain: 1, .. } => Some(path),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, ["root/a", "root/b", "root/c"]);
        // Below a cancelled frame, a new call fails at once.
        let refused = frame(&chains, Some(&c), Some("root/c"), "root/d", later);
        assert_eq!(refused.unwrap_err(), why);
        // An answered frame is not cancelled with its chain.
        other.take_reply().unwrap().send(Ok(b"done".to_vec())).unwrap();
        assert!(!other.cancel(&why, &events), "nothing to cancel");
        assert_eq!(other.cancelled(), None);
        assert_eq!(other_answer.await.unwrap(), Ok(b"done".to_vec()));
        assert!(other.take_reply().is_none(), "answered once");
        assert!(c.take_reply().is_none(), "a cancelled frame's answer is discarded");
    }
}
