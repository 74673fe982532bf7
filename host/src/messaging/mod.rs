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
mod chain;
mod dead_letters;
mod mailbox;
mod outbox;
mod post;
mod tally;
mod timers;

pub use crate::events::CircuitState;
pub use crate::spec::{CircuitConfig, MailboxConfig, Targets, TimerLimits};
pub(crate) use chain::Frame;
pub(crate) use mailbox::{Letter, Mailbox};
pub(crate) use outbox::Outbox;
pub(crate) use post::{Post, Remote};
pub use tally::{HANDLE_TIME_BOUNDS_US, HandleTimes, MessageCounts};

/// The account of every message offered to the host, since it started.
///
/// `sent = rejected + handled + failed + dead_letters + pending`: nothing vanishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MessageStats {
    /// Messages offered (by children and by the embedding application), including
    /// `send-after` messages when their timer fired.
    pub sent: u64,
    /// Refused at send: unknown or forbidden target, too large, mailbox full, circuit
    /// open, deadlock, or a call made below a cancelled (or late) call of its chain.
    pub rejected: u64,
    /// Delivered to `handle`, which returned (a reply or an application error).
    pub handled: u64,
    /// Answered with an error instead: the callee crashed handling the call, the
    /// caller gave up before it was delivered, or the target was removed; or handled
    /// for a call chain cancelled meanwhile, its reply discarded (`cancelled`).
    pub failed: u64,
    /// Of `failed`, the calls whose chain was cancelled (not handled, or handled and
    /// their reply discarded).
    pub cancelled: u64,
    /// Set aside as dead letters (each one also an event).
    pub dead_letters: u64,
    /// Handed to the node of a cluster its target runs on, which accounts for it in
    /// its own figures (a call: answered, whatever the answer).
    pub forwarded: u64,
    /// In mailboxes or being handled now (or on their way to another node).
    pub pending: u64,
}
