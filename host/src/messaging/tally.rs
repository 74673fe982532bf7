//! What one child's mailbox has seen, across its incarnations: messages handled,
//! failed and dead-lettered, and how long handling took. Read by reports.
//!
//! What the worker counts (handled, failed, the times) has one writer at a time: the
//! worker of the child's running incarnation, which reads the mailbox. Those counters
//! are bumped with a plain load and store, not a locked read-modify-write, which
//! would cost every message more than the rest of the tally. Dead letters can be
//! counted from elsewhere (a mailbox removed with letters in it), so theirs is a
//! read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the handling-time buckets, in microseconds (Prometheus'
/// default buckets from 100 µs to 10 s, in its 1-2.5-5 steps).
pub const HANDLE_TIME_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A mailbox's counts.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    handled: AtomicU64,
    failed: AtomicU64,
    dead_letters: AtomicU64,
    /// Messages per bucket of [`HANDLE_TIME_BOUNDS_US`], and one more for longer ones.
    buckets: [AtomicU64; HANDLE_TIME_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Tally {
    /// A message was handled in `took` (by the reading worker).
    pub(crate) fn handled(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = HANDLE_TIME_BOUNDS_US.partition_point(|&bound| bound < us);
        bump(&self.buckets[bucket], 1);
        bump(&self.sum_us, us);
        bump(&self.handled, 1);
    }

    /// A message was answered with an error instead (its handler crashed on it, its
    /// caller stopped waiting), by the reading worker.
    pub(crate) fn failed(&self) {
        bump(&self.failed, 1);
    }

    /// A message for this child was set aside.
    pub(crate) fn dead_letter(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> MessageCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut cumulative = 0;
        let buckets = self.buckets.iter().map(|b| {
            cumulative += load(b);
            cumulative
        });
        MessageCounts {
            handled: load(&self.handled),
            failed: load(&self.failed),
            dead_letters: load(&self.dead_letters),
            handle_time: HandleTimes { cumulative: buckets.collect(), sum_us: load(&self.sum_us) },
        }
    }
}

/// Adds `n` to a counter only one thread writes at a time.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// One child's messages, since its mailbox was made (they survive restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MessageCounts {
    /// Delivered to `handle`, which returned.
    pub handled: u64,
    /// Answered with an error instead: it crashed its handler, or its caller stopped
    /// waiting before it was taken.
    pub failed: u64,
    /// Set aside as dead letters.
    pub dead_letters: u64,
    /// How long `handle` took for the handled ones.
    pub handle_time: HandleTimes,
}

/// A histogram of handling times, as Prometheus has them: cumulative counts per bucket
/// of [`HANDLE_TIME_BOUNDS_US`] and one last for all (`+Inf`), and the sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HandleTimes {
    /// Messages handled within each bound, then all of them.
    pub cumulative: Vec<u64>,
    /// The sum of the times, in microseconds.
    pub sum_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_fall_in_cumulative_buckets() {
        let tally = Tally::default();
        tally.handled(Duration::from_micros(100)); // on a bound: that bucket
        tally.handled(Duration::from_micros(101));
        tally.handled(Duration::from_secs(60)); // past the last bound
        tally.failed();
        let counts = tally.counts();
        assert_eq!((counts.handled, counts.failed), (3, 1));
        let c = &counts.handle_time.cumulative;
        assert_eq!((c[0], c[1], c[15], c[16]), (1, 2, 2, 3));
        assert_eq!(counts.handle_time.sum_us, 60_000_201);
    }
}
