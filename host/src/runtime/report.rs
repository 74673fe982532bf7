//! A running tree as it is now, for operators ([`Host::inspect`]): each supervisor
//! with its strategy and the restart intensity it has used; each child with its
//! state, incarnation, restarts and last exit, and for a plugin child its mailbox,
//! its messages and its heartbeats. Each supervisor answers for its own children from
//! its own task, so a report is a consistent view of each supervisor, not of the
//! whole tree at one instant.
//!
//! [`Host::inspect`]: super::Host::inspect

use crate::messaging::{CircuitState, MessageCounts, MessageStats};
use crate::sandbox::HeartbeatStatus;
use crate::spec::{Restart, Strategy};
use crate::supervisor::ChildInfo;

/// The host and its tree, now.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct HostReport {
    /// Instances live now (hibernating children hold none).
    pub instances: usize,
    /// The most instances allowed at once (the pool's size).
    pub max_instances: usize,
    /// Bytes of durable state kept for children, keys and values together.
    pub state_bytes: u64,
    /// The account of every message since the host started.
    pub messages: MessageStats,
    /// The tree, from its root; absent when none runs.
    pub tree: Option<SupervisorReport>,
}

/// One supervisor, now.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct SupervisorReport {
    /// Its path.
    pub path: String,
    /// Its restart strategy.
    pub strategy: Strategy,
    /// The most restarts allowed in any `period_ms`.
    pub intensity: u32,
    /// The window of the intensity, in milliseconds.
    pub period_ms: u64,
    /// Restarts counted in the window that ends now: when it would exceed
    /// `intensity`, the supervisor gives up.
    pub restarts_in_period: u32,
    /// Its children, in start order.
    pub children: Vec<ChildReport>,
}

/// One child, now.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ChildReport {
    /// What `which_children` says of it.
    #[serde(flatten)]
    pub info: ChildInfo,
    /// When it is restarted (a temporary child, and a dynamic one, is dropped when it
    /// stops).
    pub restart: Restart,
    /// A plugin child's mailbox (it outlives incarnations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxInfo>,
    /// A plugin child's messages, across its incarnations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<MessageCounts>,
    /// A running plugin child's heartbeats, when it has a heartbeat policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatStatus>,
    /// A supervisor child's own report, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Box<SupervisorReport>>,
}

/// A child's mailbox, as [`Host::mailbox`](super::Host::mailbox) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MailboxInfo {
    /// Messages waiting (the one being handled not counted).
    pub queued: usize,
    /// The most that may wait.
    pub capacity: usize,
    /// The payload bytes of the messages waiting: the host memory this child's
    /// mailbox holds for it.
    pub queued_bytes: usize,
    /// The most payload bytes that may wait (one message over it is still taken into
    /// an empty mailbox).
    pub max_queued_bytes: usize,
    /// The circuit breaker's state, if it has one.
    pub circuit: Option<CircuitState>,
}

impl MailboxInfo {
    pub(crate) fn of(mailbox: &crate::messaging::Mailbox) -> Self {
        Self {
            queued: mailbox.len(),
            capacity: mailbox.config.capacity,
            queued_bytes: mailbox.bytes(),
            max_queued_bytes: mailbox.config.max_queued_bytes,
            circuit: mailbox.breaker.as_ref().map(|b| b.state()),
        }
    }
}
