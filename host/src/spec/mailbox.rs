//! How a child receives messages and whom it may send to: its mailbox, its message
//! size, its allow-list, its circuit breaker and its timers.

use std::time::Duration;

/// How a child receives messages, and whom it may send to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MailboxConfig {
    /// Messages that may wait in the mailbox, the one being handled not counted. A
    /// send to a full mailbox fails with `mailbox-full`. Default 1024.
    pub capacity: usize,
    /// The largest payload the child accepts, in bytes; a larger one fails with
    /// `too-large`. Default 1 MiB.
    pub max_message_bytes: usize,
    /// The payload bytes the waiting messages may hold together; a send that would
    /// take them past it fails with `mailbox-full` (a message to an empty mailbox is
    /// always taken, up to `max_message_bytes`). Default 16 MiB: without it, a
    /// child's mailbox could make the host hold `capacity` × `max_message_bytes`.
    /// (Defaulted when absent, so that a node of an earlier version can place a child
    /// on this one.)
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: usize,
    /// How many incarnations a sent message (not a call) may crash before it is
    /// dead-lettered instead of delivered again. Default 1: as in OTP, the message
    /// being handled when the child crashed is gone (a `crashed` dead letter), and one
    /// bad message costs one crash. A message interrupted because the supervisor
    /// stopped the child is not counted: it stays at the head of the mailbox.
    pub poison_after: u32,
    /// Whom this child may send to and call. Default nobody but itself.
    pub targets: Targets,
    /// A circuit breaker on calls to this child. Default none.
    pub circuit: Option<CircuitConfig>,
    /// How many `send-after` timers this child may have pending, and the bytes they
    /// hold. Default [`TimerLimits::default`].
    pub timers: TimerLimits,
}

fn default_max_queued_bytes() -> usize {
    16 << 20
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_message_bytes: 1 << 20,
            max_queued_bytes: default_max_queued_bytes(),
            poison_after: 1,
            targets: Targets::default(),
            circuit: None,
            timers: TimerLimits::default(),
        }
    }
}

/// An allow-list of message targets. A child may always message itself; beyond that,
/// only the paths listed: exact (`root/db`), a subtree (`root/pool/*`: every path
/// under `root/pool/`), or anyone (`*`). Empty by default: guests are denied unless
/// allowed. The embedding application is not subject to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Targets(Vec<String>);

impl Targets {
    /// Any target.
    pub fn any() -> Self {
        Self(vec!["*".into()])
    }

    /// The listed patterns.
    ///
    /// # Errors
    /// A pattern that is empty or has a `*` anywhere but as its whole last segment.
    pub fn new<I, S>(patterns: I) -> Result<Self, BadTarget>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        for p in &patterns {
            let star = p.find('*');
            let valid = !p.is_empty()
                && !p.starts_with('/')
                && !p.ends_with('/')
                && !p.contains("//")
                && star.is_none_or(|i| i == p.len() - 1 && (p == "*" || p.ends_with("/*")));
            if !valid {
                return Err(BadTarget(p.clone()));
            }
        }
        Ok(Self(patterns))
    }

    /// Whether the child at `me` may message `to`.
    pub fn allows(&self, me: &str, to: &str) -> bool {
        to == me
            || self.0.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => to.starts_with(prefix) && to.len() > prefix.len(),
                None => p == to,
            })
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

/// A pattern that is not a target: the pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a target: use a path (root/a), a subtree (root/pool/*) or *")]
pub struct BadTarget(pub String);

/// When calls to a child fail fast: after `failures` consecutive failed calls (the
/// callee crashed or did not answer in time) the circuit opens and calls fail with
/// `circuit-open` for `reset`; then one probe call is let through (half-open): if it
/// succeeds the circuit closes, if it fails it opens again. An application error is
/// an answer, not a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit (at least 1).
    pub failures: u32,
    /// How long it stays open before a probe.
    pub reset: Duration,
}

/// How many timers a child may have pending, and how many payload bytes they may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimerLimits {
    /// Timers pending at once. Default 1,024.
    pub max_timers: usize,
    /// Bytes of payload the pending timers hold together. Default 4 MiB.
    pub max_bytes: usize,
}

impl Default for TimerLimits {
    fn default() -> Self {
        Self { max_timers: 1024, max_bytes: 4 << 20 }
    }
}
