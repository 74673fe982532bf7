//! What the host tells the world: one typed event enum, serialised to exactly the
//! JSON of the CLI contract (`{"event":"child_started",...}`).

use crate::ExitReason;
use serde::Serialize;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::broadcast;

/// An event with the time it was published, as the CLI prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventRecord {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// Microseconds since the host started.
    pub ts_us: u64,
    /// The event's number in the host's stream, from 1, with no gaps: a subscriber
    /// that sees one fell behind and lost events (not printed by the CLI).
    #[serde(skip)]
    pub seq: u64,
}

/// Where a host's events are published, stamped with the host's clock and numbered.
#[derive(Debug)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<EventRecord>,
    epoch: Instant,
    /// The number of the last event published; held while it is sent, so events are
    /// sent in the order of their numbers.
    last: Mutex<u64>,
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity).0, epoch: Instant::now(), last: Mutex::new(0) }
    }

    /// The number of the last event published (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Microseconds since the host started: the clock of `ts_us`.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(?event, "event");
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last += 1;
        let _ = self.tx.send(EventRecord { event, ts_us: self.now_us(), seq: *last });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }
}

/// Something that happened in the tree. Field names are a contract: fields may be
/// added, never renamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A child's incarnation started (its `init` returned ok).
    ChildStarted {
        /// The child's path.
        path: String,
        /// Its incarnation number.
        incarnation: u64,
    },
    /// A child's incarnation ended.
    ChildExited {
        /// The child's path.
        path: String,
        /// The incarnation that ended.
        incarnation: u64,
        /// Why.
        reason: ExitReason,
    },
    /// A child will be restarted after `delay_ms`.
    ChildRestarting {
        /// The child's path.
        path: String,
        /// Consecutive restart attempt, 1 for the first.
        attempt: u32,
        /// The backoff delay.
        delay_ms: u64,
    },
    /// A child failed to start.
    ChildStartFailed {
        /// The child's path.
        path: String,
        /// Why.
        message: String,
    },
    /// A supervisor reached its restart intensity and gives up.
    SupervisorGaveUp {
        /// The supervisor's path.
        path: String,
        /// `reached_max_restart_intensity`.
        reason: String,
    },
    /// The answer to a control command (CLI); `id` echoes the command's.
    Reply {
        /// The command's id, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
        /// Whether the command succeeded.
        ok: bool,
        /// The result, when it succeeded.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        /// What went wrong, when it failed (OTP's word where OTP has one).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A busy child's heartbeats stopped; the watchdog kills it (`killed(heartbeat)`
    /// follows in its `child_exited`).
    HeartbeatMissed {
        /// The child's path.
        path: String,
        /// The incarnation judged hung.
        incarnation: u64,
        /// How long it had gone without a heartbeat.
        since_ms: u64,
    },
    /// A message could not be delivered and was set aside: its handler crashed on it
    /// (`crashed`: by default a message is not tried again, as in OTP), it crashed
    /// its handler `poison_after` times (`poison`, when retries were asked for), its
    /// target was removed with it still queued (`target_removed`), or a `send-after`
    /// found its target gone or full when it fired (`unknown_target`, `mailbox_full`,
    /// `too_large`, `not_allowed`).
    DeadLetter {
        /// The target's path.
        path: String,
        /// Why, as one word (see above).
        reason: String,
        /// The sender's path; absent when the embedding application sent it.
        #[serde(skip_serializing_if = "Option::is_none")]
        sender: Option<String>,
        /// The payload's size in bytes.
        size: u64,
        /// How many times it crashed its handler.
        crashes: u32,
        /// The exit reason of the last crash, for `crashed` and `poison`.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit: Option<ExitReason>,
    },
    /// The circuit breaker on calls to a child changed state.
    CircuitChanged {
        /// The child's path.
        path: String,
        /// `open` (calls fail fast), `half_open` (one probe let through) or `closed`.
        state: CircuitState,
        /// Consecutive failed calls that led here.
        failures: u32,
    },
    /// More dead letters of one path than its share of events came within `window_ms`;
    /// they were counted (see the message stats) but not each announced.
    DeadLettersSuppressed {
        /// The target's path.
        path: String,
        /// Dead letters not announced one by one.
        count: u64,
        /// The window they came in.
        window_ms: u64,
    },
    /// This subscriber fell behind and lost `count` events (the stream goes on with
    /// the newest). Replies to commands are never among them.
    EventsDropped {
        /// Events lost.
        count: u64,
    },
    /// A supervisor stopped, its children stopped before it.
    SupervisorStopped {
        /// The supervisor's path.
        path: String,
        /// Its exit reason (`shutdown` after giving up or an auto shutdown).
        reason: ExitReason,
    },
}

/// A circuit breaker's state, as events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast with `circuit-open`.
    Open,
    /// One probe call is let through; the others fail fast.
    HalfOpen,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_to_the_cli_contract() {
        let started = Event::ChildStarted { path: "root/a".into(), incarnation: 1 };
        assert_eq!(
            serde_json::to_string(&started).unwrap(),
            r#"{"event":"child_started","path":"root/a","incarnation":1}"#
        );
        let restarting = Event::ChildRestarting { path: "root/a".into(), attempt: 2, delay_ms: 0 };
        assert_eq!(
            serde_json::to_string(&restarting).unwrap(),
            r#"{"event":"child_restarting","path":"root/a","attempt":2,"delay_ms":0}"#
        );
        let gave_up = Event::SupervisorGaveUp {
            path: "root/sub".into(),
            reason: "reached_max_restart_intensity".into(),
        };
        assert_eq!(
            serde_json::to_string(&gave_up).unwrap(),
            r#"{"event":"supervisor_gave_up","path":"root/sub","reason":"reached_max_restart_intensity"}"#
        );
        let stopped =
            Event::SupervisorStopped { path: "root/sub".into(), reason: ExitReason::Shutdown };
        assert_eq!(
            serde_json::to_string(&stopped).unwrap(),
            r#"{"event":"supervisor_stopped","path":"root/sub","reason":{"kind":"shutdown"}}"#
        );
        let missed =
            Event::HeartbeatMissed { path: "root/a".into(), incarnation: 2, since_ms: 103 };
        assert_eq!(
            serde_json::to_string(&missed).unwrap(),
            r#"{"event":"heartbeat_missed","path":"root/a","incarnation":2,"since_ms":103}"#
        );
        let dead = Event::DeadLetter {
            path: "root/a".into(),
            reason: "target_removed".into(),
            sender: None,
            size: 5,
            crashes: 0,
            exit: None,
        };
        assert_eq!(
            serde_json::to_string(&dead).unwrap(),
            r#"{"event":"dead_letter","path":"root/a","reason":"target_removed","size":5,"crashes":0}"#
        );
        let open = Event::CircuitChanged {
            path: "root/a".into(),
            state: CircuitState::HalfOpen,
            failures: 3,
        };
        assert_eq!(
            serde_json::to_string(&open).unwrap(),
            r#"{"event":"circuit_changed","path":"root/a","state":"half_open","failures":3}"#
        );
    }
}
