//! Heartbeats and the watchdog that judges them.
//!
//! A child is judged only while it is busy in an export call (`init`, `handle`): an
//! idle child, waiting for a message, owes no heartbeats, and time a guest spends
//! blocked in a host `call` is not held against it. Two policies:
//!
//! - [`HeartbeatPolicy::Timeout`]: dead when no beat came for a fixed time;
//! - [`HeartbeatPolicy::PhiAccrual`]: the φ-accrual detector of Hayashibara et al.,
//!   as Akka implements it: φ = −log10 of the probability that a beat is still to
//!   come, from a normal fit of the recent intervals; dead when φ reaches the
//!   threshold.

use crate::spec::{HeartbeatPolicy, PhiAccrual};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// φ-accrual's arithmetic, on the policy at the bottom layer.
trait Phi {
    fn phi(&self, elapsed: Duration, history: &History) -> f64;
    fn crossing(&self, history: &History) -> Duration;
}

impl Phi for PhiAccrual {
    /// φ for `elapsed` since the last beat, given the intervals seen (Akka's logistic
    /// approximation of the normal CDF).
    fn phi(&self, elapsed: Duration, history: &History) -> f64 {
        let (mean, std_dev) = history.fit(self);
        let mean = mean + self.acceptable_pause.as_secs_f64() * 1e3;
        let std_dev = std_dev.max(self.min_std_dev.as_secs_f64() * 1e3).max(1e-3);
        let t = elapsed.as_secs_f64() * 1e3;
        let y = (t - mean) / std_dev;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        if t > mean { -(e / (1.0 + e)).log10() } else { -(1.0 - 1.0 / (1.0 + e)).log10() }
    }

    /// The time since the last beat at which φ reaches the threshold, for the history
    /// as it is now (φ grows with time, so a bisection finds it).
    fn crossing(&self, history: &History) -> Duration {
        let (mut lo, mut hi) = (Duration::ZERO, Duration::from_secs(1));
        while self.phi(hi, history) < self.threshold {
            lo = hi;
            hi = hi.saturating_mul(2);
            if hi > Duration::from_secs(86_400 * 365) {
                return hi; // a threshold no interval reaches: effectively never
            }
        }
        while hi - lo > Duration::from_micros(100) {
            let mid = lo + (hi - lo) / 2;
            if self.phi(mid, history) < self.threshold {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Recent intervals between beats, in milliseconds, with running sums.
#[derive(Debug, Default)]
struct History {
    samples: VecDeque<f64>,
    sum: f64,
    squares: f64,
}

impl History {
    fn push(&mut self, ms: f64, max: usize) {
        while self.samples.len() >= max.max(1) {
            if let Some(old) = self.samples.pop_front() {
                self.sum -= old;
                self.squares -= old * old;
            }
        }
        self.samples.push_back(ms);
        self.sum += ms;
        self.squares += ms * ms;
    }

    /// Mean and standard deviation; before any interval, the first estimate as Akka
    /// seeds it (two samples, a quarter of the estimate either side of it).
    fn fit(&self, policy: &PhiAccrual) -> (f64, f64) {
        if self.samples.is_empty() {
            let mean = policy.first_estimate.as_secs_f64() * 1e3;
            return (mean, mean / 4.0);
        }
        let n = self.samples.len() as f64;
        let mean = self.sum / n;
        let variance = (self.squares / n - mean * mean).max(0.0);
        (mean, variance.sqrt())
    }
}

/// The verdict on a busy child at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Alive; judge again at this time (unless a beat comes first, which the next
    /// judgement sees).
    Alive(Instant),
    /// Hung: no beat for this long.
    Missed(Duration),
}

/// The heartbeats of one incarnation, shared by its sandbox (which records them) and
/// its watchdog (which judges them). Every method is a short lock, never a wait.
#[derive(Debug)]
pub struct Heartbeat {
    inner: Mutex<Beats>,
}

#[derive(Debug)]
struct Beats {
    /// The last beat, or the start of the busy period or of the last wait in the host.
    last: Instant,
    busy: bool,
    /// Blocking host calls in progress (a `call` waiting for its reply).
    waiting: u32,
    count: u64,
    max_samples: usize,
    history: History,
    missed: Option<Duration>,
}

impl Heartbeat {
    /// A cell with no beats, not busy.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Beats {
                last: Instant::now(),
                busy: false,
                waiting: 0,
                count: 0,
                max_samples: PhiAccrual::default().max_samples,
                history: History::default(),
                missed: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Beats> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a beat now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    fn beat_at(&self, now: Instant) {
        let mut b = self.lock();
        if b.busy && b.waiting == 0 {
            let ms = now.saturating_duration_since(b.last).as_secs_f64() * 1e3;
            let max = b.max_samples;
            b.history.push(ms, max);
        }
        b.last = now;
        b.count += 1;
    }

    /// When the last beat was recorded (or the last busy period began).
    pub fn last(&self) -> Instant {
        self.lock().last
    }

    /// How many beats were recorded.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    /// How long the child had gone without a beat when the watchdog judged it hung.
    pub fn missed(&self) -> Option<Duration> {
        self.lock().missed
    }

    /// The child is in an export call from now on: judged from this moment.
    pub(crate) fn busy(&self, policy: &HeartbeatPolicy) {
        let mut b = self.lock();
        b.busy = true;
        b.last = Instant::now();
        if let HeartbeatPolicy::PhiAccrual(phi) = policy {
            b.max_samples = phi.max_samples;
        }
    }

    /// The export call returned: not judged until the next one.
    pub(crate) fn idle(&self) {
        self.lock().busy = false;
    }

    /// The child waits in the host (a `call`) until the guard is dropped; the wait is
    /// not held against it, and its end counts as a fresh start, not as an interval.
    pub(crate) fn wait_in_host(self: &Arc<Self>) -> HostWait {
        self.lock().waiting += 1;
        HostWait(Arc::clone(self))
    }

    /// The verdict at `now`; a hung child's silence is remembered for
    /// [`Heartbeat::missed`].
    pub(crate) fn judge(&self, policy: &HeartbeatPolicy, now: Instant) -> Verdict {
        let mut b = self.lock();
        let since = now.saturating_duration_since(b.last);
        let patience = match policy {
            HeartbeatPolicy::Timeout(t) => *t,
            HeartbeatPolicy::PhiAccrual(phi) => phi.crossing(&b.history),
        };
        if !b.busy || b.waiting > 0 {
            return Verdict::Alive(later(now, patience));
        }
        if since >= patience {
            b.missed = Some(since);
            Verdict::Missed(since)
        } else {
            Verdict::Alive(later(b.last, patience))
        }
    }

    /// How the heartbeats stand at `now` under `policy`, for reports: a child is judged
    /// only while busy and not waiting in the host.
    pub fn status(&self, policy: &HeartbeatPolicy, now: Instant) -> HeartbeatStatus {
        let b = self.lock();
        let judged = b.busy && b.waiting == 0;
        let silent = if judged { now.saturating_duration_since(b.last) } else { Duration::ZERO };
        let (patience, phi) = match policy {
            HeartbeatPolicy::Timeout(t) => (*t, None),
            HeartbeatPolicy::PhiAccrual(p) => {
                (p.crossing(&b.history), Some(if judged { p.phi(silent, &b.history) } else { 0.0 }))
            }
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        HeartbeatStatus {
            beats: b.count,
            judged,
            silent_ms: ms(silent),
            patience_ms: ms(patience),
            phi,
        }
    }

    /// Waits until the child is judged hung; returns how long it went without a beat.
    ///
    /// While the guest runs, the epoch callback judges it every tick (a spinning guest
    /// keeps its runtime thread too busy for timers to be punctual); this timer
    /// covers a guest blocked in the host outside a `call`, e.g. in a WASI sleep.
    pub(crate) async fn watch(&self, policy: &HeartbeatPolicy) -> Duration {
        loop {
            match self.judge(policy, Instant::now()) {
                Verdict::Missed(since) => return since,
                Verdict::Alive(at) => tokio::time::sleep_until(at.into()).await,
            }
        }
    }
}

/// How a child's heartbeats stand ([`Heartbeat::status`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct HeartbeatStatus {
    /// Beats recorded by this incarnation.
    pub beats: u64,
    /// Whether it is judged now: busy in an export call, not waiting in the host.
    pub judged: bool,
    /// How long it has been silent while judged (zero otherwise), in milliseconds.
    pub silent_ms: u64,
    /// How long a silence is tolerated now, in milliseconds (for φ-accrual, where φ
    /// would cross its threshold given the intervals seen).
    pub patience_ms: u64,
    /// The φ-accrual suspicion now (0 while not judged); absent for a fixed timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phi: Option<f64>,
}

/// A wait in the host; see [`Heartbeat::wait_in_host`].
#[derive(Debug)]
pub(crate) struct HostWait(Arc<Heartbeat>);

impl Drop for HostWait {
    fn drop(&mut self) {
        let mut b = self.0.lock();
        b.waiting = b.waiting.saturating_sub(1);
        b.last = Instant::now();
    }
}

/// `at + d`, or a day later than `at` when the clock cannot represent it: a patience
/// that long is never reached, and the child is judged again then.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or_else(|| at + Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_fixed_timeout_counts_from_the_last_beat_of_a_busy_child() {
        let policy = HeartbeatPolicy::Timeout(ms(100));
        let cell = Heartbeat::new();
        let start = Instant::now();
        // Idle: never missed, however long.
        assert!(matches!(cell.judge(&policy, start + ms(10_000)), Verdict::Alive(_)));
        cell.busy(&policy);
        let t0 = cell.last();
        assert_eq!(cell.judge(&policy, t0 + ms(50)), Verdict::Alive(t0 + ms(100)));
        assert_eq!(cell.judge(&policy, t0 + ms(100)), Verdict::Missed(ms(100)));
        cell.beat_at(t0 + ms(90));
        assert_eq!(cell.judge(&policy, t0 + ms(150)), Verdict::Alive(t0 + ms(190)));
        cell.idle();
        assert!(matches!(cell.judge(&policy, t0 + ms(10_000)), Verdict::Alive(_)));
    }

    #[test]
    fn a_wait_in_the_host_is_not_held_against_the_child() {
        let policy = HeartbeatPolicy::Timeout(ms(100));
        let cell = Heartbeat::new();
        cell.busy(&policy);
        let wait = cell.wait_in_host();
        assert!(matches!(cell.judge(&policy, Instant::now() + ms(1000)), Verdict::Alive(_)));
        drop(wait);
        let after = cell.last();
        assert_eq!(cell.judge(&policy, after + ms(99)), Verdict::Alive(after + ms(100)));
    }

    #[test]
    fn phi_matches_akka_and_grows_with_silence() {
        let phi = PhiAccrual {
            acceptable_pause: Duration::ZERO,
            min_std_dev: ms(10),
            ..PhiAccrual::default()
        };
        let mut history = History::default();
        for interval in [95.0, 100.0, 105.0, 100.0, 98.0, 102.0] {
            history.push(interval, 1000);
        }
        // At the mean, φ is log10(2) ≈ 0.30: as likely as not that a beat is due.
        assert!((phi.phi(ms(100), &history) - 2f64.log10()).abs() < 0.01);
        let (p1, p2, p3) =
            (phi.phi(ms(110), &history), phi.phi(ms(130), &history), phi.phi(ms(200), &history));
        assert!(p1 < p2 && p2 < p3, "{p1} {p2} {p3}");
        assert!(p3 > 8.0, "ten deviations past the mean is suspicious: {p3}");
        let crossing = phi.crossing(&history);
        assert!(phi.phi(crossing, &history) >= 8.0);
        assert!(phi.phi(crossing - ms(1), &history) < 8.0);
        // Regular 100 ms beats with a 10 ms deviation: suspected ~5 deviations late.
        assert!(crossing > ms(140) && crossing < ms(170), "{crossing:?}");
    }

    #[test]
    fn phi_adapts_to_the_intervals_seen_and_keeps_at_most_max_samples() {
        let phi = PhiAccrual {
            acceptable_pause: Duration::ZERO,
            min_std_dev: ms(5),
            max_samples: 4,
            ..PhiAccrual::default()
        };
        let mut history = History::default();
        for _ in 0..10 {
            history.push(1000.0, phi.max_samples);
        }
        let slow = phi.crossing(&history);
        for _ in 0..4 {
            history.push(10.0, phi.max_samples);
        }
        assert_eq!(history.samples.len(), 4);
        let fast = phi.crossing(&history);
        assert!(fast < ms(60) && slow > ms(1000), "{fast:?} {slow:?}");
        // With no intervals yet, the first estimate stands in.
        let first = phi.crossing(&History::default());
        assert!(first > phi.first_estimate, "{first:?}");
    }
}
