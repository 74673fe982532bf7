//! What the host tells the world: one typed event enum, serialised to exactly the
//! JSON of the CLI contract (`{"event":"child_started",...}`).

use crate::ExitReason;
use crate::services::CancelReason;
use serde::Serialize;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::broadcast::{self, error::RecvError};

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

/// What travels on the bus: the events, each stamped with the tree it belongs to,
/// and the end of a tree.
#[derive(Clone, Debug)]
enum Item {
    Record {
        tree: u64,
        record: EventRecord,
    },
    /// The root supervisor of the tree running exited: the tree is gone.
    End,
}

/// Where a host's events are published, stamped with the host's clock and numbered.
#[derive(Debug)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Item>,
    epoch: Instant,
    /// Held while an item is sent, so items are sent in the order of their numbers.
    state: Mutex<BusState>,
}

#[derive(Debug)]
struct BusState {
    /// The number of the last event published.
    last: u64,
    /// The tree events are stamped with: the one running, or between trees the next
    /// one (what happens before a tree starts belongs to it).
    tree: u64,
}

impl EventBus {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
            epoch: Instant::now(),
            state: Mutex::new(BusState { last: 0, tree: 1 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BusState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of the last event published (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.state().last
    }

    /// Microseconds since the host started: the clock of `ts_us`.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(?event, "event");
        let mut state = self.state();
        state.last += 1;
        let record = EventRecord { event, ts_us: self.now_us(), seq: state.last };
        let _ = self.tx.send(Item::Record { tree: state.tree, record });
    }

    /// Ends the streams of the tree that just stopped, after its last event; what is
    /// published from now on belongs to the next tree.
    pub(crate) fn end(&self) {
        let mut state = self.state();
        let _ = self.tx.send(Item::End);
        state.tree += 1;
    }

    pub(crate) fn subscribe(&self) -> Events {
        let state = self.state();
        Events { rx: self.tx.subscribe(), tree: state.tree, ended: false }
    }
}

/// A host's event stream: the events of the tree running when it was subscribed
/// ([`Host::subscribe`]), or of the next tree to start if none was running, until
/// that tree stops. After the root supervisor's last event it ends (`None`), as it
/// does when the host is dropped.
///
/// A stream that falls more than 65,536 events behind loses the oldest and says so
/// with [`Received::Missed`], then goes on with the oldest event it still has; the
/// numbers ([`EventRecord::seq`]) of the events it gets show the gap too. A stream
/// that falls behind past its tree's end still ends there.
///
/// [`Host::subscribe`]: crate::Host::subscribe
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Item>,
    /// The tree it follows.
    tree: u64,
    ended: bool,
}

/// What an [`Events`] stream yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// The next event.
    Event(EventRecord),
    /// The stream fell behind and lost this many events (the oldest it had not
    /// received; a tree's end lost with them counts as one); the next event is the
    /// oldest one still kept.
    Missed(u64),
}

impl Received {
    /// The event, if it is one.
    pub fn event(self) -> Option<EventRecord> {
        match self {
            Self::Event(record) => Some(record),
            Self::Missed(_) => None,
        }
    }
}

impl Events {
    /// The next event (or the count of events missed), waiting for it; `None` once
    /// the tree has stopped and every event before that was received. Cancel safe.
    pub async fn next(&mut self) -> Option<Received> {
        if self.ended {
            return None;
        }
        let received = self.rx.recv().await;
        self.take(received)
    }

    /// The next event if one is waiting now; `None` when none is (or the stream has
    /// ended: see [`Events::is_ended`]).
    pub fn try_next(&mut self) -> Option<Received> {
        if self.ended {
            return None;
        }
        let received = match self.rx.try_recv() {
            Ok(item) => Ok(item),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(RecvError::Closed),
            Err(broadcast::error::TryRecvError::Empty) => return None,
        };
        self.take(received)
    }

    /// As [`Events::next`], blocking the thread: for synchronous code, never inside
    /// an async task.
    pub fn blocking_next(&mut self) -> Option<Received> {
        if self.ended {
            return None;
        }
        let received = self.rx.blocking_recv();
        self.take(received)
    }

    /// Whether the stream has ended (its tree stopped, or the host is gone).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// What `received` means for this stream; `None` when it ended it (its tree's
    /// end, a later tree's item, or the host gone).
    fn take(&mut self, received: Result<Item, RecvError>) -> Option<Received> {
        match received {
            Ok(Item::Record { tree, record }) if tree == self.tree => {
                return Some(Received::Event(record));
            }
            Err(RecvError::Lagged(n)) => return Some(Received::Missed(n)),
            // Its tree's end, or (fallen behind past it) a later tree's event or end.
            Ok(Item::Record { .. } | Item::End) | Err(RecvError::Closed) => {}
        }
        self.ended = true;
        None
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
        /// The cluster node it runs on, for a child placed on a node (absent on one
        /// machine and for a child where its supervisor runs).
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// A child's incarnation ended.
    ChildExited {
        /// The child's path.
        path: String,
        /// The incarnation that ended.
        incarnation: u64,
        /// Why.
        reason: ExitReason,
        /// The cluster node it ran on, as for `child_started`.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<String>,
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
        /// Why (`reached_max_restart_intensity`).
        reason: GaveUpReason,
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
        reason: DeadLetterReason,
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
    /// A frame of a call chain was cancelled: the operation it belongs to failed above
    /// it (see [`CancelReason`]). Every frame below a cancelled one is cancelled too,
    /// each with its own event, top down, with the same `chain` and `reason`.
    CallCancelled {
        /// The chain's id, shared by every frame of one operation.
        chain: u64,
        /// The callee of the cancelled call: the child whose handler is told.
        path: String,
        /// Its caller; absent for the embedding application.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller: Option<String>,
        /// Why.
        reason: CancelReason,
    },
    /// A node joined the cluster (a member prints this for itself once it has joined).
    NodeUp {
        /// The node's name.
        node: String,
    },
    /// A node left the cluster: its membership expired (`expired`: it stopped renewing
    /// it, e.g. it died or lost NATS), it left (`left`: it shut down), or, for this
    /// node itself, it lost the cluster for longer than the node TTL and fenced itself
    /// off (`fenced`: its children were stopped).
    NodeDown {
        /// The node's name.
        node: String,
        /// `expired`, `left` or `fenced`.
        reason: String,
    },
    /// A running child was upgraded: incarnation `incarnation` runs version `to`,
    /// replacing `from` (`NAME@sha256:HASH`); its mailbox and state carried over.
    ChildUpgraded {
        /// The child's path.
        path: String,
        /// The incarnation running the new version.
        incarnation: u64,
        /// The version replaced.
        from: String,
        /// The version running now.
        to: String,
    },
    /// A child's new version failed to start; the old one is started again
    /// (`child_started` follows, or the failures a restart would have).
    UpgradeFailed {
        /// The child's path.
        path: String,
        /// The version that runs again.
        from: String,
        /// The version that failed.
        to: String,
        /// Why it failed.
        reason: ExitReason,
    },
    /// A line a child wrote (stdout, stderr, or a `log` call at info or above), escaped,
    /// within its output budget; when lines were dropped over the budget, a line says
    /// how many.
    Log {
        /// The child's path.
        path: String,
        /// Where it came from: `stdout`, `stderr` or `log`.
        stream: crate::sandbox::GuestStream,
        /// Its level (`info` for stdout and stderr).
        level: crate::sandbox::LogLevel,
        /// The line.
        message: String,
    },
    /// A supervisor stopped, its children stopped before it.
    SupervisorStopped {
        /// The supervisor's path.
        path: String,
        /// Its exit reason (`shutdown` after giving up or an auto shutdown).
        reason: ExitReason,
    },
}

/// Why a supervisor gave up, as `supervisor_gave_up` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GaveUpReason {
    /// More restarts than its intensity within its period (OTP's word).
    ReachedMaxRestartIntensity,
}

impl std::fmt::Display for GaveUpReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReachedMaxRestartIntensity => f.write_str("reached_max_restart_intensity"),
        }
    }
}

/// Why a message became a dead letter, as `dead_letter` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Its handler crashed on it (by default a message is not tried again).
    Crashed,
    /// It crashed its handler `poison_after` times.
    Poison,
    /// Its target was removed with it still queued.
    TargetRemoved,
    /// A `send-after` fired for a target that no longer exists.
    UnknownTarget,
    /// A `send-after` fired for a target whose mailbox was full.
    MailboxFull,
    /// A `send-after` fired with a payload over its target's size limit.
    TooLarge,
    /// A `send-after` fired for a target its sender may no longer message.
    NotAllowed,
    /// It could not be delivered for another reason.
    Undeliverable,
}

impl DeadLetterReason {
    /// The word events and the CLI use (`crashed`, `target_removed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crashed => "crashed",
            Self::Poison => "poison",
            Self::TargetRemoved => "target_removed",
            Self::UnknownTarget => "unknown_target",
            Self::MailboxFull => "mailbox_full",
            Self::TooLarge => "too_large",
            Self::NotAllowed => "not_allowed",
            Self::Undeliverable => "undeliverable",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

    fn started(n: u64) -> Event {
        Event::ChildStarted { path: format!("root/c{n}"), incarnation: 1, node: None }
    }

    #[tokio::test]
    async fn a_stream_says_how_many_it_missed_and_ends_after_the_trees_last_event() {
        let bus = EventBus::new(2);
        let mut events = bus.subscribe();
        for n in 1..=5 {
            bus.emit(started(n));
        }
        assert_eq!(events.next().await, Some(Received::Missed(3)));
        let record = events.next().await.and_then(Received::event).unwrap();
        assert_eq!((record.event, record.seq), (started(4), 4));
        bus.end();
        assert_eq!(events.next().await.and_then(Received::event).map(|r| r.seq), Some(5));
        bus.emit(started(6)); // a next tree's: not this stream's
        assert_eq!(events.next().await, None);
        assert!(events.is_ended());
        assert_eq!(events.try_next(), None, "an ended stream stays ended");
        // A stream that fell behind past its tree's end still ends there.
        let mut late = bus.subscribe();
        for n in 8..=9 {
            bus.emit(started(n));
        }
        bus.end();
        bus.emit(started(10));
        bus.emit(started(11)); // the channel keeps two: End is lost to `late`
        // 8, 9 and the end marker (counted as one).
        assert_eq!(late.next().await, Some(Received::Missed(3)));
        assert_eq!(late.next().await, None, "the next tree's events are not its own");
        // A stream subscribed later sees the next tree's events.
        let mut next = bus.subscribe();
        bus.emit(started(7));
        assert_eq!(next.try_next().and_then(Received::event).map(|r| r.event), Some(started(7)));
        assert_eq!(next.try_next(), None, "nothing waiting");
        assert!(!next.is_ended());
    }

    #[test]
    fn events_serialise_to_the_cli_contract() {
        let started = Event::ChildStarted { path: "root/a".into(), incarnation: 1, node: None };
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
            reason: GaveUpReason::ReachedMaxRestartIntensity,
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
            reason: DeadLetterReason::TargetRemoved,
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
