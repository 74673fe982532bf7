//! What nodes say to each other, as JSON on NATS subjects. A node serves its
//! requests on `warden.node.NAME.*`; exits of the children it hosts go to their
//! supervisor's node on the JetStream subject `warden.exit.ORIGIN`.

use crate::ExitReason;
use crate::spec::{ChildLimits, Grants, MailboxConfig, Shutdown};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The subject of a node's request `verb` (`start`, `stop`, `send`, `call`).
pub(crate) fn request(node: &str, verb: &str) -> String {
    format!("warden.node.{node}.{verb}")
}

/// The subject a node's supervisors hear their remote children's exits on.
pub(crate) fn exits(origin: &str) -> String {
    format!("warden.exit.{origin}")
}

/// Start an incarnation of a plugin child on the node asked.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Start {
    /// The node of its supervisor: where its exits go, and whose death orphans it.
    pub(crate) origin: String,
    pub(crate) path: String,
    pub(crate) incarnation: u64,
    /// The component's SHA-256, its key in the object store.
    pub(crate) plugin: String,
    /// The component's name, for errors.
    pub(crate) name: String,
    pub(crate) config: Vec<u8>,
    pub(crate) limits: ChildLimits,
    pub(crate) grants: Grants,
    pub(crate) mailbox: MailboxConfig,
    pub(crate) hibernate_after: Option<Duration>,
    /// The version it replaces, when an upgrade starts it.
    #[serde(default)]
    pub(crate) upgraded_from: Option<String>,
}

/// The answer to a [`Start`]: started, or why not.
pub(crate) type Started = Result<(), ExitReason>;

/// Stop an incarnation (the node it runs on enforces the shutdown).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stop {
    pub(crate) path: String,
    pub(crate) incarnation: u64,
    pub(crate) shutdown: WireShutdown,
}

/// [`Shutdown`] on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireShutdown {
    BrutalKill,
    Timeout(Duration),
    Infinity,
}

impl From<Shutdown> for WireShutdown {
    fn from(shutdown: Shutdown) -> Self {
        match shutdown {
            Shutdown::BrutalKill => Self::BrutalKill,
            Shutdown::Timeout(limit) => Self::Timeout(limit),
            Shutdown::Infinity => Self::Infinity,
        }
    }
}

impl From<WireShutdown> for Shutdown {
    fn from(shutdown: WireShutdown) -> Self {
        match shutdown {
            WireShutdown::BrutalKill => Self::BrutalKill,
            WireShutdown::Timeout(limit) => Self::Timeout(limit),
            WireShutdown::Infinity => Self::Infinity,
        }
    }
}

/// An incarnation hosted on `node` ended on its own.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Exit {
    pub(crate) path: String,
    pub(crate) incarnation: u64,
    pub(crate) reason: ExitReason,
    pub(crate) node: String,
}
