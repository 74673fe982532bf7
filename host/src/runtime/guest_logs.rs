//! What children write, as `log` events on the host's bus: lines at info and above,
//! each cut at [`MAX_MESSAGE`] bytes, and at most [`PER_SECOND`] a second across the
//! whole host (a burst of one second's worth). Each child's output is already bounded
//! by its own budget; this bound is the host's, so that children together cannot
//! crowd the supervision events out of the bus (a slow subscriber loses the oldest
//! events) nor fill it with large lines. Lines over the rate are dropped and counted;
//! when lines pass again, a `log` line says how many were dropped.

use crate::events::{Event, EventBus};
use crate::sandbox::{GuestOutput, GuestStream, LogLevel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log events a second, across the host.
pub(crate) const PER_SECOND: u64 = 1_000;

/// The longest message of a `log` event (the whole line still goes to `tracing`).
pub(crate) const MAX_MESSAGE: usize = 2_048;

/// The host's gate between its children's output and its event bus.
#[derive(Debug)]
pub(crate) struct GuestLogs {
    bus: Arc<EventBus>,
    gate: Mutex<Gate>,
}

#[derive(Debug)]
struct Gate {
    available: u64,
    refilled: Instant,
    dropped: u64,
}

impl GuestLogs {
    pub(crate) fn new(bus: Arc<EventBus>) -> Self {
        let gate = Gate { available: PER_SECOND, refilled: Instant::now(), dropped: 0 };
        Self { bus, gate: Mutex::new(gate) }
    }

    /// Whether a line may pass now, and how many were dropped before it.
    fn admit(&self, now: Instant) -> Result<u64, ()> {
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        // Whole tokens earned since the last refill; the time of a part-earned one is
        // kept for the next.
        let elapsed = now.saturating_duration_since(gate.refilled).as_nanos();
        let earned =
            u64::try_from(elapsed * u128::from(PER_SECOND) / 1_000_000_000).unwrap_or(u64::MAX);
        if earned > 0 {
            gate.available = gate.available.saturating_add(earned).min(PER_SECOND);
            gate.refilled = if gate.available == PER_SECOND {
                now
            } else {
                gate.refilled + Duration::from_nanos(earned * 1_000_000_000 / PER_SECOND)
            };
        }
        if gate.available == 0 {
            gate.dropped += 1;
            return Err(());
        }
        gate.available -= 1;
        Ok(std::mem::take(&mut gate.dropped))
    }
}

impl GuestOutput for GuestLogs {
    fn line(&self, path: &str, stream: GuestStream, level: LogLevel, line: &str) {
        if level < LogLevel::Info {
            return;
        }
        let Ok(dropped) = self.admit(Instant::now()) else { return };
        if dropped > 0 {
            let message = format!(
                "[warden: {dropped} lines of children's output were not made events: over \
                 the host's {PER_SECOND} a second]"
            );
            let (stream, level) = (GuestStream::Log, LogLevel::Warn);
            self.bus.emit(Event::Log { path: path.to_owned(), stream, level, message });
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

    #[test]
    fn the_host_wide_rate_drops_and_counts_what_is_over_it() {
        let logs = GuestLogs::new(Arc::new(EventBus::new(16)));
        let now = Instant::now();
        for _ in 0..PER_SECOND {
            assert_eq!(logs.admit(now), Ok(0));
        }
        assert_eq!(logs.admit(now), Err(()));
        assert_eq!(logs.admit(now), Err(()));
        let later = now + Duration::from_millis(10);
        assert_eq!(logs.admit(later), Ok(2), "ten lines earned; the drop is told once");
        assert_eq!(logs.admit(later), Ok(0));
        // Lines every 0.7 ms, the bucket empty: the part of a token each earns is
        // kept, so the rate is the whole 1,000 a second, not one line in two.
        let mut at = later;
        for _ in 0..8 {
            let _ = logs.admit(at);
        }
        let mut passed = 0;
        for _ in 0..2000 {
            at += Duration::from_micros(700);
            passed += u32::from(logs.admit(at).is_ok());
        }
        assert!((1399..=1401).contains(&passed), "{passed} of 2000 over 1.4 s");
    }
}
