//! The circuit breaker on calls to one child.

use super::CircuitConfig;
use crate::events::CircuitState;
use crate::services::MessageError;
use crate::task::Owned;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A reset this long never comes in practice; longer ones are clamped to it, so no
/// `Instant` arithmetic can overflow.
const NEVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// How an admitted call went, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered (a reply or an application error).
    Success,
    /// The callee crashed or did not answer in time.
    Failure,
    /// Neither: the call never reached the callee (e.g. its mailbox was full), or the
    /// caller went away first.
    Neutral,
}

/// Whether a call was admitted as the half-open probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    Normal,
    Probe,
}

/// A state change to publish.
pub(crate) type Change = (CircuitState, u32);

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen { probing: bool, failures: u32 },
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: CircuitConfig,
    state: Mutex<State>,
    /// The timer that half-opens the open circuit; cancelled with the breaker.
    reset_timer: Mutex<Option<Owned<()>>>,
}

impl Breaker {
    pub(crate) fn new(config: CircuitConfig) -> Self {
        let config = CircuitConfig { reset: config.reset.min(NEVER), ..config };
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            reset_timer: Mutex::new(None),
        }
    }

    /// Owns the task that half-opens the circuit (replacing an older one).
    pub(crate) fn set_reset_timer(&self, timer: Owned<()>) {
        *self.reset_timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
    }

    /// Lets a call through, or fails it fast; a change when the call half-opens it.
    pub(crate) fn admit(&self, now: Instant) -> Result<(Admit, Option<Change>), MessageError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Ok((Admit::Normal, None)),
            State::Open { until, failures } if now >= until => {
                *state = State::HalfOpen { probing: true, failures };
                Ok((Admit::Probe, Some((CircuitState::HalfOpen, failures))))
            }
            State::HalfOpen { probing: false, failures } => {
                *state = State::HalfOpen { probing: true, failures };
                Ok((Admit::Probe, None))
            }
            State::Open { .. } | State::HalfOpen { probing: true, .. } => {
                Err(MessageError::CircuitOpen)
            }
        }
    }

    /// Records how an admitted call went; a change when it opens or closes the circuit.
    pub(crate) fn record(&self, admit: Admit, outcome: Outcome, now: Instant) -> Option<Change> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let open_until = now.checked_add(self.config.reset).unwrap_or(now);
        match (&mut *state, admit, outcome) {
            (State::HalfOpen { failures, .. }, Admit::Probe, Outcome::Failure) => {
                let failures = *failures + 1;
                *state = State::Open { until: open_until, failures };
                Some((CircuitState::Open, failures))
            }
            (State::HalfOpen { .. }, Admit::Probe, Outcome::Success) => {
                *state = State::Closed { failures: 0 };
                Some((CircuitState::Closed, 0))
            }
            (State::HalfOpen { probing, .. }, Admit::Probe, Outcome::Neutral) => {
                *probing = false; // the next call probes instead
                None
            }
            (State::Closed { failures }, Admit::Normal, Outcome::Failure) => {
                *failures += 1;
                if *failures >= self.config.failures.max(1) {
                    let failures = *failures;
                    *state = State::Open { until: open_until, failures };
                    Some((CircuitState::Open, failures))
                } else {
                    None
                }
            }
            (State::Closed { failures }, Admit::Normal, Outcome::Success) => {
                *failures = 0;
                None
            }
            // Calls admitted before the circuit opened, finishing late, change nothing.
            _ => None,
        }
    }

    /// Half-opens an open circuit whose reset timeout has passed (a timer calls this,
    /// so the change is published when it happens, not at the next call).
    pub(crate) fn expire(&self, now: Instant) -> Option<Change> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Open { until, failures } if now >= until => {
                *state = State::HalfOpen { probing: false, failures };
                Some((CircuitState::HalfOpen, failures))
            }
            _ => None,
        }
    }

    /// How long the circuit stays open.
    pub(crate) fn reset(&self) -> Duration {
        self.config.reset
    }

    pub(crate) fn state(&self) -> CircuitState {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_fails_fast_then_probes_once() {
        let breaker = Breaker::new(CircuitConfig { failures: 3, reset: Duration::from_secs(1) });
        let t0 = Instant::now();
        let call = |at| breaker.admit(at).map(|(admit, _)| admit);
        // A success in between starts the count over.
        for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
            assert_eq!(breaker.record(call(t0).unwrap(), outcome, t0), None);
        }
        assert_eq!(breaker.record(call(t0).unwrap(), Outcome::Failure, t0), None);
        assert_eq!(breaker.record(call(t0).unwrap(), Outcome::Failure, t0), None);
        assert_eq!(
            breaker.record(call(t0).unwrap(), Outcome::Failure, t0),
            Some((CircuitState::Open, 3))
        );
        assert_eq!(call(t0 + Duration::from_millis(999)), Err(MessageError::CircuitOpen));
        // After the reset timeout: one probe, the rest still fail fast.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(breaker.admit(t1), Ok((Admit::Probe, Some((CircuitState::HalfOpen, 3)))));
        assert_eq!(call(t1), Err(MessageError::CircuitOpen));
        // The probe fails: open again for another reset timeout.
        assert_eq!(
            breaker.record(Admit::Probe, Outcome::Failure, t1),
            Some((CircuitState::Open, 4))
        );
        assert_eq!(call(t1 + Duration::from_millis(500)), Err(MessageError::CircuitOpen));
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(call(t2), Ok(Admit::Probe));
        // A probe that never reached the callee lets the next call probe.
        assert_eq!(breaker.record(Admit::Probe, Outcome::Neutral, t2), None);
        assert_eq!(call(t2), Ok(Admit::Probe));
        assert_eq!(
            breaker.record(Admit::Probe, Outcome::Success, t2),
            Some((CircuitState::Closed, 0))
        );
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(call(t2), Ok(Admit::Normal));
    }

    #[test]
    fn the_reset_timer_half_opens_only_a_circuit_still_due() {
        let breaker = Breaker::new(CircuitConfig { failures: 1, reset: Duration::from_secs(1) });
        let t0 = Instant::now();
        assert_eq!(breaker.expire(t0), None, "closed: nothing to do");
        breaker.record(Admit::Normal, Outcome::Failure, t0);
        assert_eq!(breaker.expire(t0 + Duration::from_millis(10)), None, "not yet");
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(breaker.expire(t1), Some((CircuitState::HalfOpen, 1)));
        assert_eq!(breaker.admit(t1), Ok((Admit::Probe, None)), "the first call is the probe");
        assert_eq!(breaker.admit(t1), Err(MessageError::CircuitOpen));
        // The probe fails: the circuit reopens, and an older timer does not touch it.
        breaker.record(Admit::Probe, Outcome::Failure, t1);
        assert_eq!(breaker.expire(t1 + Duration::from_millis(500)), None);
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[test]
    fn a_reset_too_long_for_the_clock_is_clamped_not_a_panic() {
        let breaker = Breaker::new(CircuitConfig { failures: 1, reset: Duration::MAX });
        let t0 = Instant::now();
        assert_eq!(
            breaker.record(Admit::Normal, Outcome::Failure, t0),
            Some((CircuitState::Open, 1))
        );
        assert_eq!(breaker.admit(t0 + Duration::from_secs(86_400)), Err(MessageError::CircuitOpen));
    }
}
