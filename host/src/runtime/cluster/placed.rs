//! The supervisor's side: children of this node's supervisors placed on other nodes.

use super::lock;
use super::nodes::{Entry, Nodes};
use crate::cluster::Cluster;
use crate::cluster::wire::{self, WireShutdown};
use crate::events::Event;
use crate::runtime::protocol::SupMsg;
use crate::runtime::shared::Shared;
use crate::sandbox::Shutdown;
use crate::spec::PluginStart;
use crate::{ExitReason, KillCause};
use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a start may take on the remote node (fetching and compiling the
/// component included) before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Nodes {
    /// The incarnation of the placed child at `path`, if it runs.
    pub(super) fn placed_incarnation(&self, path: &str) -> Option<u64> {
        lock(&self.placed).get(path).map(|e| e.incarnation)
    }

    /// The node the placed child at `path` runs on.
    pub(super) fn placed_node(&self, path: &str) -> Option<String> {
        lock(&self.placed).get(path).map(|e| e.node.clone())
    }

    /// The supervisor published the `child_started` of the placed child at `path`: an
    /// exit that came first is announced now.
    pub(crate) fn confirm(&self, shared: &Shared, path: &str, incarnation: u64) {
        let pending = {
            let mut placed = lock(&self.placed);
            match placed.get_mut(path) {
                Some(e) if e.incarnation == incarnation => {
                    e.confirmed = true;
                    e.pending_exit.take()
                }
                _ => None,
            }
        };
        if let Some(reason) = pending {
            exited(shared, path, incarnation, reason);
        }
    }

    /// Waits (at most `limit`) until the exit of incarnation `incarnation` of the
    /// placed child at `path` is announced here.
    pub(super) async fn exit_announced(&self, path: &str, incarnation: u64, limit: Duration) {
        let announced = async {
            loop {
                let notified = self.exits.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if self.placed_incarnation(path) != Some(incarnation) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, announced).await;
    }
}

/// A placed child's incarnation ended: announced here, naming its node (so that a
/// caller told of the crash hears it after the event), then its supervisor told,
/// once. Before its start is out, it waits for it.
fn exited(shared: &Shared, path: &str, incarnation: u64, reason: ExitReason) {
    let entry = {
        let mut placed = lock(&shared.nodes.placed);
        match placed.get_mut(path) {
            Some(e) if e.incarnation == incarnation && !e.confirmed => {
                e.pending_exit.get_or_insert(reason);
                return;
            }
            Some(e) if e.incarnation == incarnation => placed.remove(path),
            _ => None,
        }
    };
    let Some(entry) = entry else { return };
    shared.emit(Event::ChildExited {
        path: path.to_owned(),
        incarnation,
        reason: reason.clone(),
        node: Some(entry.node),
    });
    let _ = entry.supervisor.send(SupMsg::ChildExited {
        id: entry.id,
        incarnation,
        reason,
        announced: true,
    });
    shared.nodes.exits.notify_waiters();
}

/// Every placed child on a node `lost` picks exits `killed(node_down)`.
pub(super) fn node_lost(shared: &Shared, lost: impl Fn(&str) -> bool) {
    let gone: Vec<(String, u64)> = lock(&shared.nodes.placed)
        .iter()
        .filter(|(_, e)| lost(&e.node))
        .map(|(path, e)| (path.clone(), e.incarnation))
        .collect();
    for (path, incarnation) in gone {
        exited(shared, &path, incarnation, ExitReason::Killed { cause: KillCause::NodeDown });
    }
}

/// A plugin child a supervisor here runs on another node. Dropped without being
/// stopped (its supervisor was aborted), it is stopped on its node all the same.
pub(crate) struct Placed {
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    path: String,
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
    stopped: bool,
}

/// Starts the plugin child `id` at `path` on the first of `nodes` that is up; its
/// exits go to `supervisor`.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    (id, path, incarnation): (&str, &str, u64),
    (start, upgraded_from): (&PluginStart, Option<String>),
    nodes: &[String],
    supervisor: mpsc::UnboundedSender<SupMsg>,
) -> Result<Placed, ExitReason> {
    let failed = |message: String| ExitReason::StartFailed { message };
    let Some(cluster) = shared.nodes.cluster.get().cloned() else {
        return Err(failed(format!("{id} is placed on {nodes:?} but this host is in no cluster")));
    };
    if !cluster.is_up(&cluster.node) {
        return Err(failed(format!("node {} is fenced off from the cluster", cluster.node)));
    }
    let Some(node) = nodes.iter().find(|n| cluster.is_up(n)).cloned() else {
        return Err(failed(format!("none of its nodes {nodes:?} is up")));
    };
    let plugin = shared.plugin(&start.plugin).await.map_err(|e| failed(e.to_string()))?;
    let hash = plugin.hash();
    cluster.publish_plugin(&hash, plugin.bytes()).await.map_err(|e| {
        failed(format!("could not publish its component to the cluster's store: {e}"))
    })?;
    let request = wire::Start {
        origin: cluster.node.clone(),
        path: path.to_owned(),
        incarnation,
        plugin: hash,
        name: plugin.name().to_owned(),
        config: start.config.clone(),
        limits: start.limits.clone(),
        grants: start.grants.clone(),
        mailbox: start.mailbox.clone(),
        hibernate_after: start.hibernate_after,
        upgraded_from,
    };
    // Known before it can exit: an exit notice that beats the answer is kept.
    let entry = Entry {
        node: node.clone(),
        id: id.to_owned(),
        incarnation,
        supervisor,
        confirmed: false,
        pending_exit: None,
    };
    lock(&shared.nodes.placed).insert(path.to_owned(), entry);
    let placed = Placed {
        node: node.clone(),
        incarnation,
        path: path.to_owned(),
        shared: Arc::clone(shared),
        cluster: Arc::clone(&cluster),
        stopped: false,
    };
    // Inserted before these are read: a sweep of a node's loss from now on finds it,
    // one that ran before is seen here.
    if !cluster.is_up(&cluster.node) || !cluster.is_up(&node) {
        return Err(failed(format!("node {node} or this node left the cluster as it started")));
    }
    let me = cluster.node.clone();
    let asked = ask::<wire::Started>(&cluster, &node, "start", &request, Some(START_TIMEOUT));
    let answer = tokio::select! {
        answer = asked => answer,
        () = cluster.down(&node) => Err(format!("node {node} left the cluster")),
        () = cluster.down(&me) => Err(format!("node {me} was fenced off from the cluster")),
    };
    match answer {
        Ok(Ok(())) => {
            lock(&shared.nodes.last_node).insert(path.to_owned(), node);
            Ok(placed)
        }
        // Refused there: nothing runs. Unanswered: it may yet start there, so it is
        // stopped (the drop), and refused there if its start is still under way.
        Ok(Err(reason)) => {
            let mut placed = placed;
            placed.stopped = true;
            lock(&shared.nodes.placed).remove(path);
            Err(reason)
        }
        Err(e) => Err(failed(format!("starting it on node {node}: {e}"))),
    }
}

impl Placed {
    /// Stops it as `shutdown` says, on its node: how it ended, and whether that was
    /// announced already (it exited on its own meanwhile). `killed(node_down)` when its
    /// node dies, this one is fenced off, or no answer comes within the shutdown time
    /// and a node TTL.
    pub(crate) async fn stop(mut self, shutdown: Shutdown) -> (ExitReason, bool) {
        self.stopped = true;
        let entry = lock(&self.shared.nodes.placed).remove(&self.path);
        match entry {
            Some(e) if e.incarnation == self.incarnation => {}
            // Its exit was announced (and its supervisor told) already.
            other => {
                if let Some(other) = other {
                    lock(&self.shared.nodes.placed).insert(self.path.clone(), other);
                }
                return (ExitReason::Shutdown, true);
            }
        }
        let request = wire::Stop {
            path: self.path.clone(),
            incarnation: self.incarnation,
            shutdown: WireShutdown::from(shutdown),
        };
        let lost = ExitReason::Killed { cause: KillCause::NodeDown };
        let margin = self.cluster.ttl + Duration::from_secs(1);
        let bound = match shutdown {
            Shutdown::Timeout(limit) => Some(limit.saturating_add(margin)),
            Shutdown::BrutalKill => Some(margin),
            Shutdown::Infinity => None,
        };
        let waited = async {
            match bound {
                Some(bound) => tokio::time::sleep(bound).await,
                None => std::future::pending().await,
            }
        };
        let me = self.cluster.node.clone();
        let reason = tokio::select! {
            answer = ask::<ExitReason>(&self.cluster, &self.node, "stop", &request, None) => {
                answer.unwrap_or(lost)
            }
            () = self.cluster.down(&self.node) => lost,
            () = self.cluster.down(&me) => lost,
            () = waited => lost,
        };
        (reason, false)
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // Running still, as far as this node knows (no exit came): stopped there.
        let mut placed = lock(&self.shared.nodes.placed);
        let running = placed.get(&self.path).is_some_and(|e| e.incarnation == self.incarnation);
        if !running {
            return;
        }
        placed.remove(&self.path);
        drop(placed);
        let request = wire::Stop {
            path: self.path.clone(),
            incarnation: self.incarnation,
            shutdown: WireShutdown::BrutalKill,
        };
        let (cluster, node) = (Arc::clone(&self.cluster), self.node.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let timeout = Some(cluster.ttl + Duration::from_secs(1));
                let _ = ask::<ExitReason>(&cluster, &node, "stop", &request, timeout).await;
            });
        }
    }
}

/// Tells `node` that the child at `path` no longer lives there: its mailbox (with
/// what is still in it) goes.
pub(crate) fn forget(shared: &Shared, node: &str, path: &str) {
    let Some(cluster) = shared.nodes.cluster.get().cloned() else { return };
    let mut last = lock(&shared.nodes.last_node);
    if last.get(path).is_some_and(|n| n == node) {
        last.remove(path);
    }
    drop(last);
    let (node, path) = (node.to_owned(), path.to_owned());
    tokio::spawn(async move {
        let (headers, timeout) = (async_nats::HeaderMap::new(), Some(cluster.ttl));
        let _ = cluster.request(&node, "forget", headers, path.into_bytes(), timeout).await;
    });
}

/// Tells `node` that the child at `path`, whose mailbox is there, is stopped with no
/// restart coming: calls to it are answered `noproc` there until an incarnation of it
/// starts there again. Awaited, so that a call made once `terminate_child` has returned
/// is refused at once; bounded by the cluster's TTL (past it, or with `node` gone, a
/// call waits for its timeout as before).
pub(crate) async fn stopped(shared: &Shared, node: &str, path: &str) {
    let Some(cluster) = shared.nodes.cluster.get().cloned() else { return };
    let (headers, timeout) = (async_nats::HeaderMap::new(), Some(cluster.ttl));
    let _ = cluster.request(node, "stopped", headers, path.as_bytes().to_vec(), timeout).await;
}

/// A request to `node`, its JSON answer.
pub(super) async fn ask<A: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    node: &str,
    verb: &str,
    body: &impl serde::Serialize,
    timeout: Option<Duration>,
) -> Result<A, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let headers = async_nats::HeaderMap::new();
    let reply = cluster.request(node, verb, headers, body, timeout).await?;
    serde_json::from_slice(&reply.payload).map_err(|e| format!("a bad answer: {e}"))
}

pub(super) type Exits = async_nats::jetstream::consumer::pull::Stream;

/// The exits of this node's placed children, from now on.
pub(super) async fn exit_consumer(cluster: &Cluster) -> Result<Exits, String> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let stream = cluster.js.get_stream("WARDEN_EXITS").await.map_err(|e| e.to_string())?;
    let name = format!("exits-{}", cluster.node);
    // Notices left from an earlier run of this node are about incarnations gone.
    let _ = stream.delete_consumer(&name).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            filter_subject: wire::exits(&cluster.node),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// Exit notices of the children placed elsewhere, to their supervisors.
pub(super) async fn follow_exits(shared: Weak<Shared>, mut exits: Exits) {
    while let Some(message) = exits.next().await {
        let Ok(message) = message else { continue };
        let Some(shared) = shared.upgrade() else { return };
        match serde_json::from_slice::<wire::Exit>(&message.payload) {
            Ok(exit) => exited(&shared, &exit.path, exit.incarnation, exit.reason),
            Err(e) => tracing::warn!("an exit notice this node cannot read: {e}"),
        }
        let _ = message.ack().await;
    }
}
