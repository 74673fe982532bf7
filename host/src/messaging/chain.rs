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
//! A frame is made by the call, travels in the letter, and is the "current frame" of
//! the callee while it handles the letter: calls the callee makes then are frames
//! below it. A `send` is not part of the chain.

use crate::events::{Event, EventBus};
use crate::services::CancelReason;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio::time::Instant;

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
    /// Whose deadline that is: the callee of the call whose own timeout set it.
    pub(crate) deadline_of: Arc<str>,
    /// Whether its own timeout set the deadline (not a frame above's).
    pub(crate) own_deadline: bool,
    state: Mutex<State>,
    cancelled: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Why it was cancelled, once it is.
    cancelled: Option<CancelReason>,
    /// Answered: nothing to cancel any more.
    done: bool,
    /// The frames below it (calls its callee made while handling it).
    below: Vec<Weak<Frame>>,
    /// `below`'s length after the last pruning.
    pruned: usize,
}

/// Numbers chains.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    last: AtomicU64,
}

impl Frame {
    /// A call from `caller` to `callee` with its own `deadline`, below `above` (the
    /// frame `caller` is handling, if it handles a call), or the first of a new chain.
    ///
    /// # Errors
    /// `above` is cancelled: why, for the call to fail with at once.
    pub(crate) fn new(
        chains: &Chains,
        above: Option<&Arc<Frame>>,
        caller: Option<Arc<str>>,
        callee: Arc<str>,
        deadline: Instant,
    ) -> Result<Arc<Frame>, CancelReason> {
        let (chain, deadline, deadline_of, own_deadline) = match above {
            Some(above) if above.deadline < deadline => {
                (above.chain, above.deadline, Arc::clone(&above.deadline_of), false)
            }
            Some(above) => (above.chain, deadline, Arc::clone(&callee), true),
            None => {
                let chain = chains.last.fetch_add(1, Ordering::Relaxed) + 1;
                (chain, deadline, Arc::clone(&callee), true)
            }
        };
        let frame = Arc::new(Frame {
            chain,
            caller,
            callee,
            deadline,
            deadline_of,
            own_deadline,
            state: Mutex::default(),
            cancelled: Notify::new(),
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why it was cancelled, if it was.
    pub(crate) fn cancelled(&self) -> Option<CancelReason> {
        self.state().cancelled.clone()
    }

    /// Waits until it is cancelled; why. Cancel safe.
    pub(crate) async fn until_cancelled(&self) -> CancelReason {
        loop {
            let notified = self.cancelled.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.cancelled() {
                return reason;
            }
            notified.await;
        }
    }

    /// Answered: a later cancellation of the chain has nothing to do here.
    pub(crate) fn finish(&self) {
        self.state().done = true;
    }

    /// Cancels it for `reason`, and every frame below it, each once, each with a
    /// `call_cancelled` event; a frame already answered is left alone.
    pub(crate) fn cancel(self: &Arc<Self>, reason: &CancelReason, events: &EventBus) {
        let mut pending = vec![Arc::clone(self)];
        while let Some(frame) = pending.pop() {
            let below = {
                let mut state = frame.state();
                if state.done || state.cancelled.is_some() {
                    continue;
                }
                state.cancelled = Some(reason.clone());
                std::mem::take(&mut state.below)
            };
            frame.cancelled.notify_waiters();
            events.emit(Event::CallCancelled {
                chain: frame.chain,
                path: frame.callee.to_string(),
                caller: frame.caller.as_deref().map(str::to_owned),
                reason: reason.clone(),
            });
            pending.extend(below.iter().filter_map(Weak::upgrade));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn path(p: &str) -> Arc<str> {
        Arc::from(p)
    }

    #[tokio::test]
    async fn a_chain_shares_its_id_and_the_smallest_deadline_and_is_cancelled_top_down() {
        let (chains, events) = (Chains::default(), EventBus::new(16));
        let mut stream = events.subscribe();
        let now = Instant::now();
        let a = Frame::new(&chains, None, None, path("root/a"), now + Duration::from_millis(300))
            .unwrap();
        let later = now + Duration::from_secs(5);
        let b = Frame::new(&chains, Some(&a), Some(path("root/a")), path("root/b"), later).unwrap();
        let sooner = now + Duration::from_millis(100);
        let c =
            Frame::new(&chains, Some(&b), Some(path("root/b")), path("root/c"), sooner).unwrap();
        let other = Frame::new(&chains, None, None, path("root/x"), later).unwrap();
        assert_eq!((a.chain, b.chain, c.chain), (1, 1, 1));
        assert_eq!(other.chain, 2);
        assert_eq!((b.deadline, &*b.deadline_of), (a.deadline, "root/a"), "b inherits a's");
        assert_eq!((c.deadline, &*c.deadline_of), (sooner, "root/c"), "c's own is sooner");
        let waiting = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.until_cancelled().await }
        });
        let why = CancelReason::Deadline { call_to: "root/a".into() };
        a.cancel(&why, &events);
        assert_eq!(waiting.await.unwrap(), why);
        assert_eq!(b.cancelled(), Some(why.clone()));
        let cancelled: Vec<String> = std::iter::from_fn(|| stream.try_next())
            .filter_map(|r| match r.event()?.event {
                Event::CallCancelled { path, chain: 1, .. } => Some(path),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, ["root/a", "root/b", "root/c"]);
        // Below a cancelled frame, a new call fails at once.
        let refused = Frame::new(&chains, Some(&c), Some(path("root/c")), path("root/d"), later);
        assert_eq!(refused.unwrap_err(), why);
        // An answered frame is not cancelled with its chain.
        other.finish();
        other.cancel(&why, &events);
        assert_eq!(other.cancelled(), None);
    }
}
