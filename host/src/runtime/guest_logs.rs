//! What children write, as `log` events on the host's bus: lines at info and above,
//! each cut at [`MAX_MESSAGE`] bytes, at most [`PER_CHILD`] a second from one child and
//! [`PER_SECOND`] a second across the whole host (each a burst of one second's worth).
//! Each child's output is already bounded by its own budget; these bounds are the
//! bus's, so that one child cannot crowd out the others' lines, and children together
//! cannot crowd the supervision events out of the bus (a slow subscriber loses the
//! oldest events) nor fill it with large lines.
//!
//! Nothing is dropped silently: lines over a rate are counted, and the count is told in
//! the stream itself, as a `log` event (level warn) of the child: when one of its lines
//! passes again, or by the host's sweep ([`GuestLogs::sweep`], once a second) when it
//! has gone quiet, stopped or gone since; and while it floods, once a second.

use crate::events::{Event, EventBus};
use crate::sandbox::{GuestOutput, GuestStream, LogLevel};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log events a second, across the host.
pub(crate) const PER_SECOND: u64 = 1_000;

/// Log events a second from one child.
pub(crate) const PER_CHILD: u64 = 100;

/// The longest message of a `log` event (the whole line still goes to `tracing`).
pub(crate) const MAX_MESSAGE: usize = 2_048;

/// How many children's rates are remembered before those with nothing to tell are
/// forgotten (a forgotten child starts again with a full second's worth).
const TRACKED: usize = 4_096;

/// The host's gate between its children's output and its event bus.
#[derive(Debug)]
pub(crate) struct GuestLogs {
    bus: Arc<EventBus>,
    gate: Mutex<Gate>,
}

#[derive(Debug)]
struct Gate {
    host: Bucket,
    children: HashMap<String, Bucket>,
}

/// A token bucket of `rate` lines a second, holding at most a second's worth.
#[derive(Debug)]
struct Bucket {
    available: u64,
    refilled: Instant,
    /// Lines dropped since the count was last told.
    dropped: u64,
    /// When the count was last told.
    told: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Self {
        Self { available: rate, refilled: now, dropped: 0, told: now }
    }

    fn refill(&mut self, rate: u64, now: Instant) {
        // Whole tokens earned since the last refill; the time of a part-earned one is
        // kept for the next.
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let earned = u64::try_from(elapsed * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX);
        if earned > 0 {
            self.available = self.available.saturating_add(earned).min(rate);
            self.refilled = if self.available == rate {
                now
            } else {
                self.refilled + Duration::from_nanos(earned * 1_000_000_000 / rate)
            };
        }
    }

    /// The count of dropped lines, to tell now; reset.
    fn tell(&mut self, now: Instant) -> u64 {
        self.told = now;
        std::mem::take(&mut self.dropped)
    }
}

/// What the gate decided about one line.
#[derive(Debug, PartialEq, Eq)]
struct Admission {
    /// Whether the line goes on the bus.
    pass: bool,
    /// Lines of this child dropped over its own rate, to tell now.
    child_dropped: u64,
    /// Lines of any child dropped over the host's rate, to tell now.
    host_dropped: u64,
}

impl Gate {
    /// A line from `path` at `now`. A line passes when both its child's bucket and the
    /// host's have a token. A dropped line of a child over its own rate tells the
    /// child's count when a second has passed since it was last told (and the host's
    /// rate allows one more line).
    fn admit(&mut self, path: &str, now: Instant) -> Admission {
        if !self.children.contains_key(path) && self.children.len() >= TRACKED {
            self.forget_quiet(now);
        }
        let child =
            self.children.entry(path.to_owned()).or_insert_with(|| Bucket::new(PER_CHILD, now));
        child.refill(PER_CHILD, now);
        self.host.refill(PER_SECOND, now);
        if child.available == 0 {
            child.dropped += 1;
            let due = now.saturating_duration_since(child.told) >= Duration::from_secs(1);
            if due && self.host.available > 0 {
                self.host.available -= 1;
                let child_dropped = child.tell(now);
                return Admission { pass: false, child_dropped, host_dropped: 0 };
            }
            return Admission { pass: false, child_dropped: 0, host_dropped: 0 };
        }
        if self.host.available == 0 {
            self.host.dropped += 1;
            return Admission { pass: false, child_dropped: 0, host_dropped: 0 };
        }
        child.available -= 1;
        self.host.available -= 1;
        let child_dropped = child.tell(now);
        let host_dropped = self.host.tell(now);
        Admission { pass: true, child_dropped, host_dropped }
    }

    /// Forgets the children with nothing to tell and a full bucket.
    fn forget_quiet(&mut self, now: Instant) {
        self.children.retain(|_, bucket| {
            bucket.refill(PER_CHILD, now);
            bucket.dropped > 0 || bucket.available < PER_CHILD
        });
    }

    /// The counts not told for a second (the child went quiet, or is gone), each
    /// child's with its path, to tell now; then forgets the children with nothing more
    /// to tell, so the map holds only those that logged in the last second.
    fn sweep(&mut self, now: Instant) -> Vec<(String, u64)> {
        let second = Duration::from_secs(1);
        let mut due = Vec::new();
        for (path, bucket) in &mut self.children {
            if bucket.dropped > 0 && now.saturating_duration_since(bucket.told) >= second {
                due.push((path.clone(), bucket.tell(now)));
            }
        }
        self.forget_quiet(now);
        if self.host.dropped > 0 && now.saturating_duration_since(self.host.told) >= second {
            let dropped = self.host.tell(now);
            due.push((String::new(), dropped));
        }
        due
    }
}

impl GuestLogs {
    pub(crate) fn new(bus: Arc<EventBus>) -> Self {
        let now = Instant::now();
        let gate = Gate { host: Bucket::new(PER_SECOND, now), children: HashMap::new() };
        Self { bus, gate: Mutex::new(gate) }
    }

    fn admit(&self, path: &str, now: Instant) -> Admission {
        self.gate.lock().unwrap_or_else(|p| p.into_inner()).admit(path, now)
    }

    fn tell(&self, path: &str, message: String) {
        let (stream, level) = (GuestStream::Log, LogLevel::Warn);
        self.bus.emit(Event::Log { path: path.to_owned(), stream, level, message });
    }

    /// Tells the counts of dropped lines that no later line told (see [`Gate::sweep`]).
    /// The host calls it once a second.
    pub(crate) fn sweep(&self, now: Instant) {
        let due = self.gate.lock().unwrap_or_else(|p| p.into_inner()).sweep(now);
        for (path, dropped) in due {
            if path.is_empty() {
                self.tell("root", host_dropped(dropped));
            } else {
                self.tell(&path, child_dropped(dropped));
            }
        }
    }
}

fn child_dropped(count: u64) -> String {
    format!(
        "[warden: {count} lines of this child's output were not made events: over its \
         {PER_CHILD} a second]"
    )
}

fn host_dropped(count: u64) -> String {
    format!(
        "[warden: {count} lines of children's output were not made events: over the host's \
         {PER_SECOND} a second]"
    )
}

impl GuestOutput for GuestLogs {
    fn line(&self, path: &str, stream: GuestStream, level: LogLevel, line: &str) {
        if level < LogLevel::Info {
            return;
        }
        let Admission { pass, child_dropped, host_dropped } = self.admit(path, Instant::now());
        if child_dropped > 0 {
            self.tell(path, self::child_dropped(child_dropped));
        }
        if host_dropped > 0 {
            self.tell(path, self::host_dropped(host_dropped));
        }
        if !pass {
            return;
        }
        let mut end = line.len().min(MAX_MESSAGE);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let message = line[..end].to_owned();
        self.bus.emit(Event::Log { path: path.to_owned(), stream, level, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(now: Instant) -> Gate {
        Gate { host: Bucket::new(PER_SECOND, now), children: HashMap::new() }
    }

    const PASS: Admission = Admission { pass: true, child_dropped: 0, host_dropped: 0 };
    const DROP: Admission = Admission { pass: false, child_dropped: 0, host_dropped: 0 };

    #[test]
    fn one_child_over_its_rate_is_dropped_and_counted_and_the_others_still_pass() {
        let now = Instant::now();
        let mut gate = gate(now);
        for _ in 0..PER_CHILD {
            assert_eq!(gate.admit("root/noisy", now), PASS);
        }
        for _ in 0..500 {
            assert_eq!(gate.admit("root/noisy", now), DROP);
        }
        assert_eq!(gate.admit("root/quiet", now), PASS, "the noisy one used its own share");
        // Ten lines earned: the next passes and tells the count.
        let later = now + Duration::from_millis(100);
        let told = gate.admit("root/noisy", later);
        assert_eq!(told, Admission { pass: true, child_dropped: 500, host_dropped: 0 });
        assert_eq!(gate.admit("root/noisy", later), PASS);
    }

    #[test]
    fn a_child_that_goes_on_flooding_has_its_count_told_once_a_second() {
        let now = Instant::now();
        let mut gate = gate(now);
        for _ in 0..PER_CHILD {
            gate.admit("root/noisy", now);
        }
        // Every 0.1 ms, forever over its rate (100 a second, 10,000 offered).
        let mut at = now;
        let mut passed = 0;
        let mut told = Vec::new();
        for _ in 0..20_000 {
            at += Duration::from_micros(100);
            let admission = gate.admit("root/noisy", at);
            passed += u64::from(admission.pass);
            if admission.child_dropped > 0 {
                told.push(admission.child_dropped);
            }
        }
        assert!((199..=201).contains(&passed), "{passed} lines in 2 s");
        assert!(told.len() >= 2, "told {told:?}");
        let dropped: u64 = told.iter().sum::<u64>() + gate.children["root/noisy"].dropped;
        assert_eq!(dropped + passed, 20_000, "every line passed or is counted");
    }

    #[test]
    fn the_host_wide_rate_drops_and_counts_what_is_over_it() {
        let now = Instant::now();
        let mut gate = gate(now);
        // Twenty children of 50 lines each use the host's second; the next is dropped.
        for child in 0..20 {
            for _ in 0..50 {
                assert_eq!(gate.admit(&format!("root/c{child}"), now), PASS);
            }
        }
        assert_eq!(gate.admit("root/other", now), DROP);
        assert_eq!(gate.admit("root/other", now), DROP);
        let later = now + Duration::from_millis(10);
        let told = gate.admit("root/other", later);
        assert_eq!(told, Admission { pass: true, child_dropped: 0, host_dropped: 2 });
        // Lines every 0.7 ms from many children, the host's bucket empty: the part of a
        // token each earns is kept, so the rate is the whole 1,000 a second.
        let mut at = later;
        for _ in 0..2_000 {
            let _ = gate.admit("root/other", at);
        }
        let mut passed = 0;
        for i in 0..2000 {
            at += Duration::from_micros(700);
            passed += u32::from(gate.admit(&format!("root/p{}", i % 100), at).pass);
        }
        assert!((1399..=1401).contains(&passed), "{passed} of 2000 over 1.4 s");
    }

    #[test]
    fn a_count_no_later_line_told_is_told_by_the_sweep_and_the_child_forgotten() {
        let now = Instant::now();
        let mut gate = gate(now);
        for _ in 0..PER_CHILD + 900 {
            gate.admit("root/burst", now);
        }
        // Quiet from then on (or gone): within a second, nothing is due yet.
        assert_eq!(gate.sweep(now + Duration::from_millis(500)), []);
        let later = now + Duration::from_secs(1);
        assert_eq!(gate.sweep(later), [("root/burst".to_owned(), 900)]);
        assert!(gate.children.is_empty(), "told and refilled: forgotten");
        assert_eq!(gate.sweep(later + Duration::from_secs(1)), [], "told once");
    }

    #[test]
    fn children_with_nothing_to_tell_are_forgotten_past_the_bound() {
        let now = Instant::now();
        let mut gate = gate(now);
        let later = now + Duration::from_secs(5);
        for i in 0..TRACKED {
            gate.admit(&format!("root/c{i}"), now);
        }
        gate.admit("root/new", later);
        assert_eq!(gate.children.len(), 1, "the quiet ones went");
    }
}
