//! Messaging: mailboxes owned by the host, so they survive restarts; `send`,
//! `send-after` and `call` for guests and for the embedding application; limits,
//! allow-lists, dead letters, a circuit breaker, and an account of every message.
//!
//! ```text
//!   sender ──▶ Post::deliver ── checks: allowed? target? size? breaker? room? ──▶ rejected
//!                 │ accepted (pending)
//!                 ▼
//!   Mailbox (per child path, bounded FIFO) ──▶ worker of the current incarnation
//!                 ▲        │ one message at a time
//!                 │        ▼
//!   dead-lettered ◀── crash ── handled / failed
//!   (or requeued, with poison_after > 1)
//! ```
//!
//! Every message offered ends as exactly one of: rejected at send, handled (the guest's
//! `handle` returned), failed (answered with an error instead: the callee crashed
//! handling the call, the caller gave up before it was delivered, the target was
//! removed), or dead-lettered. [`MessageStats`] counts them.

mod breaker;
mod dead_letters;
mod mailbox;
mod outbox;
mod post;
mod timers;

pub use breaker::CircuitState;
pub(crate) use mailbox::{Letter, Mailbox};
pub(crate) use outbox::Outbox;
pub(crate) use post::Post;
pub use timers::TimerLimits;

use std::time::Duration;

/// How a child receives messages, and whom it may send to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxConfig {
    /// Messages that may wait in the mailbox, the one being handled not counted. A
    /// send to a full mailbox fails with `mailbox-full`. Default 1024.
    pub capacity: usize,
    /// The largest payload the child accepts, in bytes; a larger one fails with
    /// `too-large`. Default 1 MiB.
    pub max_message_bytes: usize,
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

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            max_message_bytes: 1 << 20,
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    pub fn new<I, S>(patterns: I) -> Result<Self, String>
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
                return Err(format!(
                    "{p:?} is not a target: use a path (root/a), a subtree (root/pool/*) or *"
                ));
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

/// When calls to a child fail fast: after `failures` consecutive failed calls (the
/// callee crashed or did not answer in time) the circuit opens and calls fail with
/// `circuit-open` for `reset`; then one probe call is let through (half-open): if it
/// succeeds the circuit closes, if it fails it opens again. An application error is
/// an answer, not a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit (at least 1).
    pub failures: u32,
    /// How long it stays open before a probe.
    pub reset: Duration,
}

/// The account of every message offered to the host, since it started.
///
/// `sent = rejected + handled + failed + dead_letters + pending`: nothing vanishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageStats {
    /// Messages offered (by children and by the embedding application), including
    /// `send-after` messages when their timer fired.
    pub sent: u64,
    /// Refused at send: unknown or forbidden target, too large, mailbox full, circuit
    /// open.
    pub rejected: u64,
    /// Delivered to `handle`, which returned (a reply or an application error).
    pub handled: u64,
    /// Answered with an error instead: the callee crashed handling the call, the
    /// caller gave up before it was delivered, or the target was removed.
    pub failed: u64,
    /// Set aside as dead letters (each one also an event).
    pub dead_letters: u64,
    /// In mailboxes or being handled now.
    pub pending: u64,
}
