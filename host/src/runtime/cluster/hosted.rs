//! The hosting side: incarnations other nodes' supervisors placed on this node.

use super::nodes::{Hosted, Nodes};
use super::{lock, router};
use crate::cluster::Cluster;
use crate::cluster::wire;
use crate::events::Event;
use crate::runtime::protocol::SupMsg;
use crate::runtime::shared::Shared;
use crate::runtime::worker;
use crate::sandbox::{Plugin, Shutdown};
use crate::spec::{PluginSource, PluginStart};
use crate::{ExitReason, KillCause};
use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages and calls served at once; past it a message is refused `mailbox_full`
/// (starts and stops are always served).
const CONCURRENT_MESSAGES: usize = 4096;
/// How long an incarnation stopped before its start finished is remembered: longer
/// than any start may take.
const CANCELLED_FOR: Duration = Duration::from_secs(120);

/// Serves this node's requests, each in a task of its own: starts and stops always,
/// messages and calls a bounded number at once.
pub(super) async fn serve(
    shared: Weak<Shared>,
    cluster: Arc<Cluster>,
    mut requests: async_nats::Subscriber,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_MESSAGES));
    while let Some(message) = requests.next().await {
        let Some(shared) = shared.upgrade() else { return };
        let Some(reply) = message.reply.clone() else { continue };
        let verb = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
        let permit = match verb.as_str() {
            "send" | "call" => match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let full = router::refusal(&crate::sandbox::MessageError::MailboxFull);
                    let _ =
                        cluster.client.publish_with_headers(reply, full, Vec::new().into()).await;
                    continue;
                }
            },
            _ => None,
        };
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            let _permit = permit;
            let plain = |body: Vec<u8>| (async_nats::HeaderMap::new(), body);
            let (headers, answer) = match verb.as_str() {
                "start" => plain(json(&match serde_json::from_slice(&message.payload) {
                    Ok(start) => host(&shared, &cluster, start).await,
                    Err(e) => Err(bad(e)),
                })),
                "stop" => plain(json(&match serde_json::from_slice(&message.payload) {
                    Ok(stop) => unhost(&shared, stop).await,
                    Err(e) => bad(e),
                })),
                "forget" => {
                    forget(&shared, &String::from_utf8_lossy(&message.payload));
                    plain(Vec::new())
                }
                "stopped" => {
                    stopped(&shared, &String::from_utf8_lossy(&message.payload));
                    plain(Vec::new())
                }
                "send" => router::deliver(&shared, &message, false).await,
                "call" => router::deliver(&shared, &message, true).await,
                _ => return,
            };
            let _ = cluster.client.publish_with_headers(reply, headers, answer.into()).await;
        });
    }
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn bad(e: serde_json::Error) -> ExitReason {
    ExitReason::StartFailed { message: format!("a request this node cannot read: {e}") }
}

/// Starts an incarnation placed here: its component fetched (once) from the
/// cluster's store, its state from the cluster's bucket, run in a worker whose exits
/// go to its supervisor's node.
async fn host(shared: &Arc<Shared>, cluster: &Arc<Cluster>, start: wire::Start) -> wire::Started {
    let failed = |message: String| ExitReason::StartFailed { message };
    let cluster = Arc::clone(cluster);
    let path = start.path.clone();
    // A child this node runs for itself is not another node's to start.
    if shared.post.lookup(&path).is_some() && !lock(&shared.nodes.remote_mailboxes).contains(&path)
    {
        return Err(failed(format!("{path} is a child of node {}'s own tree", cluster.node)));
    }
    let plugin = hosted_plugin(shared, &cluster, &start.plugin, &start.name).await?;
    cluster.state.refresh(&path).await.map_err(|e| failed(format!("reading its state: {e}")))?;
    let mut spec = PluginStart::new(plugin.clone());
    spec.config = start.config;
    spec.limits = start.limits;
    spec.grants = start.grants;
    spec.mailbox = start.mailbox;
    let id = path.rsplit('/').next().unwrap_or_default().to_owned();
    // The mailbox outlives incarnations here, as on the supervisor's node, until the
    // supervisor forgets the child or starts it on another node (`forget`).
    let mailbox = shared.post.open(&path, &spec.mailbox);
    let opened = lock(&shared.nodes.remote_mailboxes).insert(path.clone());
    let mut config = worker::sandbox_config(shared, path.clone(), &spec, &mailbox);
    config.upgraded_from = start.upgraded_from;
    // Its state lives in the cluster: it may be restarted on another node.
    config.state = Arc::clone(&cluster.state) as Arc<dyn crate::StateStore>;
    let (tx, rx) = mpsc::unbounded_channel();
    let incarnation = worker::Start {
        id,
        incarnation: start.incarnation,
        plugin,
        config,
        hibernate_after: start.hibernate_after,
        mailbox: Arc::clone(&mailbox),
        supervisor: tx,
        node: Some(cluster.node.clone()),
    };
    let mut handle = match worker::start(shared, incarnation).await {
        Ok(handle) => handle,
        Err(reason) => {
            if opened {
                forget(shared, &path);
            }
            return Err(reason);
        }
    };
    let go = handle.go.take();
    let refused = {
        let mut hosted = lock(&shared.nodes.hosted);
        // Checked with the entry about to be in place: a fence or an orphan sweep
        // from now on finds it; one that ran meanwhile is seen here.
        let cancelled = take_cancelled(&shared.nodes, &path, start.incarnation);
        if cancelled || !cluster.is_up(&cluster.node) || !cluster.is_up(&start.origin) {
            Some(handle)
        } else {
            let origin = start.origin.clone();
            // Calls wait for this incarnation again, if its supervisor had said the
            // child stopped: under the lock `stopped` holds, so a late notice is not
            // taken for this incarnation.
            shared.post.set_stopped(&mailbox, false);
            hosted.insert(path.clone(), Hosted { origin, incarnation: start.incarnation, handle });
            None
        }
    };
    if let Some(handle) = refused {
        // Dropped: its task is aborted before it took a message, unannounced.
        drop(handle);
        if opened {
            forget(shared, &path);
        }
        return Err(failed(format!(
            "stopped, or its supervisor's node or this one left the cluster, while it started \
             on {}",
            cluster.node
        )));
    }
    shared.emit(Event::ChildStarted {
        path: path.clone(),
        incarnation: start.incarnation,
        node: Some(cluster.node.clone()),
    });
    if let Some(go) = go {
        let _ = go.send(());
    }
    tokio::spawn(report_exit(
        Arc::downgrade(shared),
        cluster,
        start.origin,
        path,
        start.incarnation,
        rx,
    ));
    Ok(())
}

/// Whether incarnation `incarnation` of `path` was stopped before its start finished
/// (forgotten then).
fn take_cancelled(nodes: &Nodes, path: &str, incarnation: u64) -> bool {
    let mut cancelled = lock(&nodes.cancelled);
    match cancelled.iter().position(|(p, i, _)| p == path && *i == incarnation) {
        Some(at) => {
            cancelled.remove(at);
            true
        }
        None => false,
    }
}

/// Sends the exit of an incarnation that ended on its own to its supervisor's node,
/// on JetStream, until the server has it (or that node is gone).
async fn report_exit(
    shared: Weak<Shared>,
    cluster: Arc<Cluster>,
    origin: String,
    path: String,
    incarnation: u64,
    mut exits: mpsc::UnboundedReceiver<SupMsg>,
) {
    let Some(SupMsg::ChildExited { reason, .. }) = exits.recv().await else { return };
    if let Some(shared) = shared.upgrade() {
        let mut hosted = lock(&shared.nodes.hosted);
        if hosted.get(&path).is_some_and(|h| h.incarnation == incarnation) {
            hosted.remove(&path);
        }
    }
    let notice = json(&wire::Exit { path, incarnation, reason, node: cluster.node.clone() });
    while cluster.is_up(&origin) {
        let published = match cluster.js.publish(wire::exits(&origin), notice.clone().into()).await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(origin, "could not report an exit, trying again: {e}");
                tokio::time::sleep(cluster.ttl / 4).await;
            }
        }
    }
}

/// The component `hash`, fetched from the cluster's store the first time.
async fn hosted_plugin(
    shared: &Arc<Shared>,
    cluster: &Cluster,
    hash: &str,
    name: &str,
) -> Result<Plugin, ExitReason> {
    if let Some(plugin) = lock(&shared.nodes.plugins).get(hash) {
        return Ok(plugin.clone());
    }
    let bytes = cluster.fetch_plugin(hash).await.map_err(|e| ExitReason::StartFailed {
        message: format!("could not fetch its component {hash} from the cluster's store: {e}"),
    })?;
    let source = PluginSource::bytes(name, bytes);
    let plugin = shared
        .plugin(&source)
        .await
        .map_err(|e| ExitReason::StartFailed { message: e.to_string() })?;
    if plugin.hash() != hash {
        return Err(ExitReason::StartFailed {
            message: format!("the cluster's store holds other bytes under {hash}"),
        });
    }
    lock(&shared.nodes.plugins).insert(hash.to_owned(), plugin.clone());
    Ok(plugin)
}

/// Stops an incarnation hosted here; how it ended (`shutdown` when it was not
/// running: it ended on its own, its exit notice on its way, or its start is still
/// under way, and then refused).
async fn unhost(shared: &Arc<Shared>, stop: wire::Stop) -> ExitReason {
    let entry = {
        let mut hosted = lock(&shared.nodes.hosted);
        match hosted.get(&stop.path) {
            Some(h) if h.incarnation == stop.incarnation => hosted.remove(&stop.path),
            _ => None,
        }
    };
    let Some(entry) = entry else {
        let mut cancelled = lock(&shared.nodes.cancelled);
        let now = std::time::Instant::now();
        while cancelled.front().is_some_and(|(_, _, at)| now.duration_since(*at) > CANCELLED_FOR) {
            cancelled.pop_front();
        }
        cancelled.push_back((stop.path, stop.incarnation, now));
        return ExitReason::Shutdown;
    };
    entry.handle.stop(stop.shutdown.into()).await.unwrap_or_else(|r| r)
}

/// The mailbox of `path`, if another node's supervisor opened it here and no
/// incarnation of it runs here, goes.
fn forget(shared: &Shared, path: &str) {
    let hosted = lock(&shared.nodes.hosted);
    if !hosted.contains_key(path) && lock(&shared.nodes.remote_mailboxes).remove(path) {
        shared.post.forget(path);
    }
}

/// The child at `path`, whose mailbox another node's supervisor opened here, is
/// stopped with no restart coming (that supervisor says so): calls to it are answered
/// `noproc` (OTP's answer for a process that is not there) until an incarnation of it
/// starts here again, those waiting in it too.
fn stopped(shared: &Shared, path: &str) {
    // Under the lock an incarnation's start takes to be hosted: a notice that comes
    // late, once a later start runs here, finds it and leaves its mailbox alone.
    let hosted = lock(&shared.nodes.hosted);
    if hosted.contains_key(path) || !lock(&shared.nodes.remote_mailboxes).contains(path) {
        return;
    }
    if let Some(mailbox) = shared.post.lookup(path) {
        shared.post.set_stopped(&mailbox, true);
    }
}

/// Stops the hosted children `which` picks, in parallel: killed for `cause`, or as a
/// supervisor would (5 s to terminate). Their mailboxes go.
pub(super) async fn stop(
    shared: &Arc<Shared>,
    which: impl Fn(&Hosted) -> bool,
    cause: Option<KillCause>,
) {
    let stopping: Vec<(String, Hosted)> = {
        let mut hosted = lock(&shared.nodes.hosted);
        let paths: Vec<String> =
            hosted.iter().filter(|(_, h)| which(h)).map(|(p, _)| p.clone()).collect();
        paths.into_iter().filter_map(|p| hosted.remove(&p).map(|h| (p, h))).collect()
    };
    let mut stops = tokio::task::JoinSet::new();
    for (path, hosted) in stopping {
        stops.spawn(async move {
            match cause {
                Some(cause) => {
                    hosted.handle.kill(cause).await;
                }
                None => {
                    let shutdown = Shutdown::Timeout(Duration::from_secs(5));
                    let _ = hosted.handle.stop(shutdown).await;
                }
            }
            path
        });
    }
    while let Some(done) = stops.join_next().await {
        if let Ok(path) = done {
            forget(shared, &path);
        }
    }
}
