//! One incarnation's `send-after` timers.
//!
//! ```text
//!   guest send-after ──▶ Timers::set ── checks: target? size? count? bytes? ──▶ refused
//!                           │ queued (deadline order)
//!                           ▼
//!   driver task (one per incarnation, started with its first timer)
//!     sleeps until the earliest deadline ──▶ Post::fire: delivered, or a dead letter
//! ```
//!
//! Timers belong to the incarnation, not to an instance: the [`Outbox`](super::Outbox)
//! that owns them is shared by a hibernating child's activations, and dropped with the
//! incarnation, which cancels whatever is still pending, at once: the drop empties the
//! queue under the lock timers fire under, so none fires once the drop has returned,
//! not even from a driver mid-poll on another thread (aborting its task stops it only
//! at its next await). A fired timer is gone at once. The pending ones are bounded by
//! count and by the bytes their payloads hold, so a guest cannot make the host hold
//! more than its limits say.

use super::mailbox::Mailbox;
use super::post::Post;
use crate::services::MessageError;
use crate::spec::TimerLimits;
use crate::task::Owned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A deadline this far off never comes in practice; longer delays are clamped to it
/// (tokio's timer wheel and `Instant` arithmetic both have limits).
const NEVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The pending timers of one incarnation; dropping it cancels them.
#[derive(Debug)]
pub(crate) struct Timers {
    queue: Arc<Queue>,
    limits: TimerLimits,
    /// Started with the first timer; aborted when the timers are dropped.
    driver: Mutex<Option<Owned<()>>>,
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<State>,
    /// Woken when a timer earlier than every other is set.
    earlier: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// By deadline, then by the order they were set.
    pending: BTreeMap<(Instant, u64), Pending>,
    next_seq: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Pending {
    to: String,
    payload: Vec<u8>,
}

impl Timers {
    pub(crate) fn new(limits: TimerLimits) -> Self {
        Self { queue: Arc::default(), limits, driver: Mutex::new(None) }
    }

    /// Sets a timer that delivers `payload` from `from` to `to` after `delay`. The
    /// target is checked now; a delivery that fails when the timer fires is a dead
    /// letter.
    ///
    /// # Errors
    /// As a send to `to`, checked now; [`MessageError::TooManyTimers`] at the limits.
    pub(crate) fn set(
        &self,
        post: &Arc<Post>,
        from: &Arc<Mailbox>,
        to: &str,
        payload: Vec<u8>,
        delay: Duration,
    ) -> Result<(), MessageError> {
        post.check_timer(from, to, payload.len())?;
        let now = Instant::now();
        let at = now.checked_add(delay.min(NEVER)).unwrap_or(now);
        let earliest = {
            let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.pending.len() >= self.limits.max_timers {
                return post.refuse_timer(format!(
                    "{} pending, the limit is {} (limits.timers)",
                    state.pending.len(),
                    self.limits.max_timers
                ));
            }
            let bytes = state.bytes.saturating_add(payload.len());
            if bytes > self.limits.max_bytes {
                return post.refuse_timer(format!(
                    "their payloads would hold {bytes} bytes, the limit is {} \
                     (limits.timer_bytes)",
                    self.limits.max_bytes
                ));
            }
            state.bytes = bytes;
            let seq = state.next_seq;
            state.next_seq += 1;
            state.pending.insert((at, seq), Pending { to: to.to_owned(), payload });
            state.pending.first_key_value().is_some_and(|(&(first, s), _)| first == at && s == seq)
        };
        let mut driver = self.driver.lock().unwrap_or_else(|p| p.into_inner());
        match &*driver {
            Some(_) if earliest => self.queue.earlier.notify_one(),
            Some(_) => {}
            None => {
                let (queue, post, from) =
                    (Arc::clone(&self.queue), Arc::clone(post), Arc::clone(from));
                *driver = Some(Owned(tokio::spawn(drive(queue, post, from))));
            }
        }
        Ok(())
    }

    /// Timers pending now.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.queue.state.lock().unwrap_or_else(|p| p.into_inner()).pending.len()
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        let mut state = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.clear();
        state.bytes = 0;
        // The driver's task is aborted as `driver` drops, after this.
    }
}

/// Fires each timer when its deadline comes, until the timers are dropped.
async fn drive(queue: Arc<Queue>, post: Arc<Post>, from: Arc<Mailbox>) {
    loop {
        let next = {
            let now = Instant::now();
            let mut state = queue.state.lock().unwrap_or_else(|p| p.into_inner());
            // Fired under the lock, so that a drop empties the queue between two fires at
            // the latest (see the module).
            while let Some(entry) = state.pending.first_entry()
                && entry.key().0 <= now
            {
                let Pending { to, payload } = entry.remove();
                state.bytes -= payload.len();
                post.fire(&from, to, payload);
            }
            state.pending.first_key_value().map(|(&(at, _), _)| at)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = queue.earlier.notified() => {}
                }
            }
            None => queue.earlier.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, EventBus};
    use crate::messaging::{MailboxConfig, Targets};

    fn setup() -> (Arc<Post>, Arc<Mailbox>, Arc<Mailbox>) {
        let post = Arc::new(Post::new(Arc::new(EventBus::new(64))));
        let config = MailboxConfig { targets: Targets::any(), ..MailboxConfig::default() };
        let a = post.open("root/a", &config);
        let b = post.open("root/b", &config);
        (post, a, b)
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_deadline_order_and_are_gone_once_fired() {
        let (post, a, b) = setup();
        let timers = Timers::new(TimerLimits::default());
        for (text, ms) in [("third", 30), ("first", 10), ("second", 20)] {
            timers.set(&post, &b, "root/a", text.into(), Duration::from_millis(ms)).unwrap();
        }
        assert_eq!((timers.pending(), post.stats().sent), (3, 0));
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_eq!((timers.pending(), post.stats().sent), (1, 2));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(timers.pending(), 0);
        let order: Vec<Vec<u8>> =
            std::iter::from_fn(|| a.try_next()).map(|l| l.envelope.payload).collect();
        assert_eq!(order, [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_earlier_than_the_rest_wakes_the_driver() {
        let (post, a, b) = setup();
        let timers = Timers::new(TimerLimits::default());
        timers.set(&post, &b, "root/a", b"late".to_vec(), Duration::from_secs(3600)).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await; // the driver sleeps an hour
        timers.set(&post, &b, "root/a", b"soon".to_vec(), Duration::from_millis(5)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(a.try_next().map(|l| l.envelope.payload), Some(b"soon".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn pending_timers_are_bounded_by_count_and_bytes_and_dropped_with_their_owner() {
        let (post, a, b) = setup();
        let limits = TimerLimits { max_timers: 3, max_bytes: 10 };
        let full = Timers::new(limits);
        let hour = Duration::from_secs(3600);
        for _ in 0..3 {
            full.set(&post, &b, "root/a", b"abc".to_vec(), hour).unwrap();
        }
        let refused = full.set(&post, &b, "root/a", Vec::new(), hour).unwrap_err();
        assert!(
            matches!(&refused, MessageError::TooManyTimers(m) if m.contains("limits.timers")),
            "{refused:?}"
        );
        drop(full);
        let timers = Timers::new(limits);
        timers.set(&post, &b, "root/a", vec![0; 8], hour).unwrap();
        let refused = timers.set(&post, &b, "root/a", vec![0; 3], hour).unwrap_err();
        assert!(
            matches!(&refused, MessageError::TooManyTimers(m) if m.contains("limits.timer_bytes")),
            "{refused:?}"
        );
        assert_eq!(post.stats().rejected, 2, "a refused timer is a rejected send");
        // Dropped with the incarnation: nothing fires.
        drop(timers);
        tokio::time::sleep(hour * 2).await;
        let stats = post.stats();
        assert_eq!((stats.sent, stats.rejected, a.len()), (2, 2, 0), "{stats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_that_fails_when_it_fires_is_a_dead_letter() {
        let events = Arc::new(EventBus::new(64));
        let mut rx = events.subscribe();
        let post = Arc::new(Post::new(events));
        let one =
            MailboxConfig { capacity: 1, targets: Targets::any(), ..MailboxConfig::default() };
        let a = post.open("root/a", &one);
        let b = post.open("root/b", &one);
        let timers = Timers::new(TimerLimits::default());
        timers.set(&post, &b, "root/a", b"tick".to_vec(), Duration::from_millis(10)).unwrap();
        timers.set(&post, &b, "root/a", b"tock".to_vec(), Duration::from_millis(20)).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let stats = post.stats();
        assert_eq!((stats.sent, stats.dead_letters, stats.pending), (2, 1, 1), "{stats:?}");
        assert_eq!(a.len(), 1);
        match rx.next().await.and_then(crate::events::Received::event).unwrap().event {
            Event::DeadLetter { path, reason, sender, size: 4, .. } => {
                assert_eq!((path.as_str(), reason.as_str()), ("root/a", "mailbox_full"));
                assert_eq!(sender.as_deref(), Some("root/b"));
            }
            other => panic!("{other:?}"),
        }
        // Refused when set: a rejected send at once.
        assert_eq!(
            timers.set(&post, &b, "root/zz", Vec::new(), Duration::from_millis(1)),
            Err(MessageError::UnknownTarget("root/zz".into()))
        );
        assert_eq!(post.stats().rejected, 1);
    }
}
