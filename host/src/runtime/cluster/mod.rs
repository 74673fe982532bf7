//! Supervision across the nodes of a cluster ([`crate::cluster`] speaks to NATS; this
//! room decides what it means for the tree).
//!
//! - [`placed`]: the supervisor's side. A supervisor holds a child placed on another
//!   node as a [`Placed`]: started by a request to that node, stopped by another (the
//!   node it runs on enforces the shutdown). Its exits come back on the JetStream exit
//!   stream and reach the supervisor as any child's exit; when its node leaves the
//!   cluster it exits `killed(node_down)`.
//! - [`hosted`]: the hosting side. Each incarnation placed here runs in an ordinary
//!   worker; its events are on this node's own stream, naming this node. Children
//!   whose supervisor's node died are stopped here (orphans), and a node that fences
//!   itself off kills every child it hosts.
//! - [`router`]: messages and calls to a child on another node, for the post office.

mod hosted;
pub(crate) mod nodes;
mod placed;
mod router;

use nodes::lock;

pub(crate) use placed::{Placed, forget, start, stopped};

use super::shared::Shared;
use crate::cluster::{Change, Cluster, ClusterConfig, ClusterError};
use crate::task::Owned;
use std::sync::{Arc, Weak};

/// Joins the cluster, once: serves this node's requests first, then becomes a member
/// (so that no node sees it up before it answers), then follows the exits of the
/// children placed elsewhere and the membership's changes. A join that fails leaves
/// nothing behind: no request is served under a name not joined.
pub(crate) async fn join(shared: &Arc<Shared>, config: &ClusterConfig) -> Result<(), ClusterError> {
    let _one_at_a_time = shared.nodes.joining.lock().await;
    if shared.nodes.cluster.get().is_some() {
        return Ok(());
    }
    let cluster = Cluster::connect(config, Arc::clone(&shared.events)).await?;
    let requests = cluster
        .client
        .subscribe(format!("warden.node.{}.*", cluster.node))
        .await
        .map_err(|e| ClusterError::JetStream { what: "subscribing", message: e.to_string() })?;
    let weak = Arc::downgrade(shared);
    // Owned here until the join succeeds: dropped with a failed one.
    let serving = Owned(tokio::spawn(hosted::serve(weak.clone(), Arc::clone(&cluster), requests)));
    let changes = cluster.changes();
    cluster.enter().await?;
    let exits = placed::exit_consumer(&cluster)
        .await
        .map_err(|message| ClusterError::JetStream { what: "following exits", message })?;
    let _ = shared.nodes.cluster.set(cluster);
    let runtime = tokio::runtime::Handle::current();
    shared.post.set_remote(Arc::new(router::Router::new(weak.clone(), runtime)));
    let mut tasks = lock(&shared.nodes.tasks);
    tasks.push(serving);
    tasks.push(Owned(tokio::spawn(placed::follow_exits(weak.clone(), exits))));
    tasks.push(Owned(tokio::spawn(follow_changes(weak, changes))));
    Ok(())
}

/// Leaves the cluster, if in one: no request is served any more, the children hosted
/// here are stopped, and the others see `node_down` with reason `left`.
pub(crate) async fn leave(shared: &Arc<Shared>) {
    let Some(cluster) = shared.nodes.cluster.get() else { return };
    lock(&shared.nodes.tasks).clear();
    hosted::stop(shared, |_| true, None).await;
    cluster.leave().await;
}

/// Acts on the membership: children on a node that died are lost; children whose
/// supervisor's node died are stopped; a fenced node stops everything it runs. A
/// follower that fell behind compares what it holds with who is up now.
async fn follow_changes(
    shared: Weak<Shared>,
    mut changes: tokio::sync::broadcast::Receiver<Change>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = changes.recv().await;
        let Some(shared) = shared.upgrade() else { return };
        let Some(cluster) = shared.nodes.cluster.get().cloned() else { return };
        match change {
            Ok(Change::Up(_)) => {}
            Ok(Change::Down { node, .. }) if node == cluster.node => fenced(&shared),
            Ok(Change::Down { node, .. }) => {
                placed::node_lost(&shared, |n| n == node);
                orphaned(&shared, move |origin| origin == node);
            }
            Err(RecvError::Lagged(_)) => {
                if !cluster.is_up(&cluster.node) {
                    fenced(&shared);
                } else {
                    let up = Arc::clone(&cluster);
                    placed::node_lost(&shared, |n| !up.is_up(n));
                    orphaned(&shared, move |origin| !cluster.is_up(origin));
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Fenced: nothing here may go on running, nothing placed elsewhere is reachable.
fn fenced(shared: &Arc<Shared>) {
    placed::node_lost(shared, |_| true);
    let shared = Arc::clone(shared);
    // Killed at once, not waited for here: the next change is acted on meanwhile.
    tokio::spawn(async move {
        hosted::stop(&shared, |_| true, Some(crate::KillCause::NodeDown)).await;
    });
}

/// The children whose supervisor's node `gone` says is gone are killed
/// (`killed(node_down)`) at once, in a task of their own: their supervisor's node may
/// come back and start them elsewhere soon after.
fn orphaned(shared: &Arc<Shared>, gone: impl Fn(&str) -> bool + Send + Sync + 'static) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        hosted::stop(&shared, |h| gone(&h.origin), Some(crate::KillCause::NodeDown)).await;
    });
}
