//! What a host holds of its cluster: the children its supervisors placed on other
//! nodes, those it runs for other nodes, and the cluster itself. Data only, below the
//! shared state that holds it; [`super::placed`] and [`super::hosted`] act on it.

use crate::ExitReason;
use crate::cluster::Cluster;
use crate::runtime::handle::Handle;
use crate::runtime::protocol::SupMsg;
use crate::sandbox::Plugin;
use crate::task::Owned;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::mpsc;

/// This host's part in a cluster, if it joined one.
#[derive(Default)]
pub(crate) struct Nodes {
    pub(super) cluster: OnceLock<Arc<Cluster>>,
    /// Children of this node's supervisors running on other nodes, by path.
    pub(super) placed: Mutex<HashMap<String, Entry>>,
    /// Woken when a placed child's exit has been announced.
    pub(super) exits: tokio::sync::Notify,
    /// Children this node runs for other nodes' supervisors, by path.
    pub(super) hosted: Mutex<HashMap<String, Hosted>>,
    /// The mailboxes here that other nodes' supervisors opened (only those may they
    /// forget).
    pub(super) remote_mailboxes: Mutex<HashSet<String>>,
    /// Incarnations stopped here before their start finished (the start is then
    /// refused), the newest last; a few hundred at most.
    pub(super) cancelled: Mutex<VecDeque<(String, u64, std::time::Instant)>>,
    /// Components fetched from the object store, by hash.
    pub(super) plugins: Mutex<HashMap<String, Plugin>>,
    pub(super) tasks: Mutex<Vec<Owned<()>>>,
    /// One join at a time.
    pub(super) joining: tokio::sync::Mutex<()>,
    /// The node each placed child last ran on, until its supervisor forgets it: a
    /// message sent while it restarts waits in its mailbox there.
    pub(super) last_node: Mutex<HashMap<String, String>>,
}

impl Nodes {
    /// The cluster, once joined.
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }
}

/// A placed incarnation, as this node's supervisors know it.
pub(crate) struct Entry {
    pub(super) node: String,
    pub(super) id: String,
    pub(super) incarnation: u64,
    pub(super) supervisor: mpsc::UnboundedSender<SupMsg>,
    /// Whether its `child_started` is out: an exit that comes before waits for it.
    pub(super) confirmed: bool,
    pub(super) pending_exit: Option<ExitReason>,
}

/// An incarnation running here for another node's supervisor.
pub(crate) struct Hosted {
    /// The supervisor's node.
    pub(super) origin: String,
    pub(super) incarnation: u64,
    pub(super) handle: Handle,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
