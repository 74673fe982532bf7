//! Supervision across nodes: children placed on other nodes of the cluster (the
//! supervisor's side), and children this node hosts for other nodes' supervisors
//! (the hosting side).
//!
//! A supervisor holds a placed child as a [`Placed`]: started by a request to its
//! node, stopped by another (the node it runs on enforces the shutdown). Its exits
//! come back on the JetStream exit stream and reach the supervisor as any child's
//! exit; when its node leaves the cluster, it exits `killed(node_down)`. The hosting
//! side runs each placed incarnation in an ordinary worker, announces its events on
//! this node's own stream (naming this node), and stops the children whose
//! supervisor's node died (orphans). A node that fences itself off kills every child
//! it hosts and counts every child it placed as lost.

use super::protocol::SupMsg;
use super::shared::Shared;
use super::supervisor::sandbox_config;
use super::worker;
use crate::cluster::wire::{self, WireShutdown};
use crate::cluster::{Change, Cluster, ClusterConfig, ClusterError};
use crate::events::Event;
use crate::messaging::Remote;
use crate::sandbox::{BoxFuture, MessageError, Plugin, Shutdown};
use crate::spec::{PluginSource, PluginStart};
use crate::task::Owned;
use crate::{ExitReason, KillCause};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a start may take on the remote node (fetching and compiling the
/// component included) before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// This host's part in a cluster, if it joined one.
#[derive(Default)]
pub(crate) struct Nodes {
    cluster: OnceLock<Arc<Cluster>>,
    /// Children of this node's supervisors running on other nodes, by path.
    placed: Mutex<HashMap<String, PlacedEntry>>,
    /// Children this node runs for other nodes' supervisors, by path.
    hosted: Mutex<HashMap<String, Hosted>>,
    /// Components fetched from the object store, by hash.
    plugins: Mutex<HashMap<String, Plugin>>,
    /// Woken when a placed child's exit has been announced.
    exits: tokio::sync::Notify,
    tasks: Mutex<Vec<Owned<()>>>,
}

struct PlacedEntry {
    node: String,
    id: String,
    incarnation: u64,
    supervisor: mpsc::UnboundedSender<SupMsg>,
}

struct Hosted {
    origin: String,
    incarnation: u64,
    handle: worker::Handle,
}

impl Nodes {
    /// This node's name, in a cluster.
    pub(crate) fn name(&self) -> Option<String> {
        self.cluster.get().map(|c| c.node.clone())
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Whether the child at `path` runs here for another node's supervisor.
    pub(crate) fn hosts(&self, path: &str) -> bool {
        self.cluster.get().is_some() && lock(&self.hosted).contains_key(path)
    }

    /// Records a child a supervisor here started on another node.
    pub(crate) fn placed(
        &self,
        path: &str,
        placed: &Placed,
        id: &str,
        supervisor: mpsc::UnboundedSender<SupMsg>,
    ) {
        let entry = PlacedEntry {
            node: placed.node.clone(),
            id: id.to_owned(),
            incarnation: placed.incarnation,
            supervisor,
        };
        lock(&self.placed).insert(path.to_owned(), entry);
    }

    /// A placed child's incarnation ended: announced here, naming its node (so that
    /// a caller told of the crash hears it after the event), then its supervisor
    /// told, once.
    fn placed_exited(&self, shared: &Shared, path: &str, incarnation: u64, reason: ExitReason) {
        let entry = {
            let mut placed = lock(&self.placed);
            match placed.get(path) {
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
        self.exits.notify_waiters();
    }

    /// Every placed child on `node` (every one, for `None`) exits `killed(node_down)`.
    fn node_lost(&self, shared: &Shared, node: Option<&str>) {
        let lost: Vec<(String, u64)> = lock(&self.placed)
            .iter()
            .filter(|(_, e)| node.is_none_or(|n| e.node == n))
            .map(|(path, e)| (path.clone(), e.incarnation))
            .collect();
        for (path, incarnation) in lost {
            let reason = ExitReason::Killed { cause: KillCause::NodeDown };
            self.placed_exited(shared, &path, incarnation, reason);
        }
    }

    /// The incarnation of the placed child at `path`, if it runs.
    fn placed_incarnation(&self, path: &str) -> Option<u64> {
        lock(&self.placed).get(path).map(|e| e.incarnation)
    }

    /// Waits (at most `limit`) until the exit of incarnation `incarnation` of the
    /// placed child at `path` is announced here.
    async fn exit_announced(&self, path: &str, incarnation: u64, limit: Duration) {
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

/// The post office's way to children on other nodes.
#[derive(Debug)]
struct Router {
    shared: Weak<Shared>,
}

impl Remote for Router {
    fn node_of(&self, from: Option<&str>, to: &str) -> Option<String> {
        let shared = self.shared.upgrade()?;
        let nodes = &shared.nodes;
        if let Some(entry) = lock(&nodes.placed).get(to) {
            return Some(entry.node.clone());
        }
        // A child hosted here reaches the rest of its tree through its supervisor's
        // node, which knows where each of its children runs.
        let from = from?;
        lock(&nodes.hosted).get(from).map(|h| h.origin.clone())
    }

    fn send(&self, node: String, from: Option<String>, to: String, payload: Vec<u8>) {
        let Some(shared) = self.shared.upgrade() else { return };
        let Some(cluster) = shared.nodes.cluster.get().cloned() else { return };
        let weak = self.shared.clone();
        tokio::spawn(async move {
            let size = payload.len() as u64;
            let message = message(from.as_deref(), &to, None, payload);
            let refused = match ask_raw(&cluster, &node, "send", message).await {
                Ok(reply) => answer(&reply).err(),
                Err(_) => Some(MessageError::UnknownTarget(to.clone())),
            };
            let Some(shared) = weak.upgrade() else { return };
            match refused {
                Some(error) => shared.post.dead_letter_remote(&to, from, size, &error),
                None => shared.post.forwarded(),
            }
        });
    }

    fn call(
        &self,
        node: String,
        from: Option<String>,
        to: String,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let Some(shared) = shared else { return Err(MessageError::UnknownTarget(to)) };
            let Some(cluster) = shared.nodes.cluster.get().cloned() else {
                return Err(MessageError::UnknownTarget(to));
            };
            let incarnation = shared.nodes.placed_incarnation(&to);
            let message = message(from.as_deref(), &to, Some(timeout), payload);
            let lost =
                MessageError::CalleeCrashed(ExitReason::Killed { cause: KillCause::NodeDown });
            let result = tokio::select! {
                reply = ask_raw(&cluster, &node, "call", message) => match reply {
                    Ok(reply) => answer(&reply),
                    // Nobody serves that node any more.
                    Err(_) => Err(lost),
                },
                () = cluster.down(&node) => Err(lost),
                // The callee's node answers `timeout` itself; this is its backstop.
                () = tokio::time::sleep(timeout + Duration::from_secs(1)) => Err(MessageError::Timeout),
            };
            // The crash's event comes first, as for a child here: its exit notice (or
            // its node's loss) is on its way.
            if let (Err(MessageError::CalleeCrashed(_)), Some(incarnation)) = (&result, incarnation)
            {
                let limit = cluster.ttl + Duration::from_secs(1);
                shared.nodes.exit_announced(&to, incarnation, limit).await;
            }
            result
        })
    }
}

/// A message to a child on another node: the payload as the body, the rest in headers.
fn message(
    from: Option<&str>,
    to: &str,
    timeout: Option<Duration>,
    payload: Vec<u8>,
) -> (async_nats::HeaderMap, Vec<u8>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Warden-To", to);
    if let Some(from) = from {
        headers.insert("Warden-From", from);
    }
    if let Some(timeout) = timeout {
        headers.insert("Warden-Timeout-Ms", timeout.as_millis().to_string().as_str());
    }
    (headers, payload)
}

/// The answer to a message: the reply as the body, or an error in a header.
fn answer(reply: &async_nats::Message) -> Result<Vec<u8>, MessageError> {
    match reply.headers.as_ref().and_then(|h| h.get("Warden-Error")) {
        Some(error) => Err(serde_json::from_str(error.as_str())
            .unwrap_or_else(|e| MessageError::Application(format!("a bad answer: {e}")))),
        None => Ok(reply.payload.to_vec()),
    }
}

async fn ask_raw(
    cluster: &Cluster,
    node: &str,
    verb: &str,
    (headers, body): (async_nats::HeaderMap, Vec<u8>),
) -> Result<async_nats::Message, String> {
    let request = async_nats::Request::new().headers(headers).payload(body.into()).timeout(None);
    cluster.client.send_request(wire::request(node, verb), request).await.map_err(|e| e.to_string())
}

/// Delivers a message from another node to a child here; its answer.
async fn deliver(
    shared: &Shared,
    message: &async_nats::Message,
    call: bool,
) -> (async_nats::HeaderMap, Vec<u8>) {
    let header = |name: &str| {
        message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned())
    };
    let to = header("Warden-To").unwrap_or_default();
    let from = header("Warden-From");
    let payload = message.payload.to_vec();
    let result = if call {
        let timeout = header("Warden-Timeout-Ms")
            .and_then(|ms| ms.parse().ok())
            .map_or(Duration::from_secs(5), Duration::from_millis);
        shared.post.call_from_remote(from, &to, payload, timeout).await
    } else {
        shared.post.send_from_remote(from, &to, payload).map(|()| Vec::new())
    };
    let mut headers = async_nats::HeaderMap::new();
    match result {
        Ok(reply) => (headers, reply),
        Err(error) => {
            headers.insert("Warden-Error", json_text(&error).as_str());
            (headers, Vec::new())
        }
    }
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Joins the cluster and starts serving it: requests for this node, exits of the
/// children placed elsewhere, and the membership's changes.
pub(crate) async fn join(shared: &Arc<Shared>, config: &ClusterConfig) -> Result<(), ClusterError> {
    let cluster = Cluster::join(config, Arc::clone(&shared.events)).await?;
    let node = cluster.node.clone();
    let requests = cluster
        .client
        .subscribe(format!("warden.node.{node}.*"))
        .await
        .map_err(|e| ClusterError::JetStream { what: "subscribing", message: e.to_string() })?;
    let exits = exit_consumer(&cluster)
        .await
        .map_err(|message| ClusterError::JetStream { what: "following exits", message })?;
    let changes = cluster.changes();
    if shared.nodes.cluster.set(cluster).is_err() {
        return Ok(()); // joined already
    }
    shared.post.set_remote(Arc::new(Router { shared: Arc::downgrade(shared) }));
    let weak = Arc::downgrade(shared);
    let mut tasks = lock(&shared.nodes.tasks);
    tasks.push(Owned(tokio::spawn(serve(weak.clone(), requests))));
    tasks.push(Owned(tokio::spawn(follow_exits(weak.clone(), exits))));
    tasks.push(Owned(tokio::spawn(follow_changes(weak, changes))));
    Ok(())
}

/// Leaves the cluster, if in one: the children hosted here are stopped first.
pub(crate) async fn leave(shared: &Arc<Shared>) {
    let Some(cluster) = shared.nodes.cluster.get() else { return };
    stop_hosted(shared, |_| true, None).await;
    lock(&shared.nodes.tasks).clear();
    cluster.leave().await;
}

type Exits = async_nats::jetstream::consumer::pull::Stream;

async fn exit_consumer(cluster: &Cluster) -> Result<Exits, String> {
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

/// A plugin child a supervisor here runs on another node.
pub(crate) struct Placed {
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    path: String,
    cluster: Arc<Cluster>,
    shared: Arc<Shared>,
}

/// Starts the plugin child `path` on the first of `nodes` that is up.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    id: &str,
    path: &str,
    incarnation: u64,
    start: &PluginStart,
    nodes: &[String],
) -> Result<Placed, ExitReason> {
    let failed = |message: String| ExitReason::StartFailed { message };
    let Some(cluster) = shared.nodes.cluster.get().cloned() else {
        return Err(failed(format!("{id} is placed on {nodes:?} but this host is in no cluster")));
    };
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
    };
    let answer = ask::<wire::Started>(&cluster, &node, "start", &request, Some(START_TIMEOUT))
        .await
        .map_err(|e| failed(format!("starting it on node {node}: {e}")))?;
    answer?;
    Ok(Placed { node, incarnation, path: path.to_owned(), cluster, shared: Arc::clone(shared) })
}

impl Placed {
    /// Stops it as `shutdown` says, on its node; `killed(node_down)` when the node
    /// dies or is gone meanwhile.
    pub(crate) async fn stop(self, shutdown: Shutdown) -> ExitReason {
        // Stopped by its supervisor: an exit notice crossing the stop is stale.
        lock(&self.shared.nodes.placed).remove(&self.path);
        let request = wire::Stop {
            path: self.path.clone(),
            incarnation: self.incarnation,
            shutdown: WireShutdown::from(shutdown),
        };
        let lost = ExitReason::Killed { cause: KillCause::NodeDown };
        tokio::select! {
            answer = ask::<ExitReason>(&self.cluster, &self.node, "stop", &request, None) => {
                answer.unwrap_or(lost)
            }
            () = self.cluster.down(&self.node) => lost,
        }
    }
}

/// A request to `node`, its JSON answer.
async fn ask<A: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    node: &str,
    verb: &str,
    body: &impl serde::Serialize,
    timeout: Option<Duration>,
) -> Result<A, String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let request = async_nats::Request::new().payload(body.into()).timeout(timeout);
    let reply = cluster
        .client
        .send_request(wire::request(node, verb), request)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&reply.payload).map_err(|e| format!("a bad answer: {e}"))
}

/// Serves this node's requests, each in a task of its own.
async fn serve(shared: Weak<Shared>, mut requests: async_nats::Subscriber) {
    while let Some(message) = requests.next().await {
        let Some(shared) = shared.upgrade() else { return };
        tokio::spawn(async move {
            let Some(reply) = message.reply.clone() else { return };
            let verb = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
            let (headers, answer) = match verb.as_str() {
                "start" => match serde_json::from_slice::<wire::Start>(&message.payload) {
                    Ok(start) => (Default::default(), json(&host(&shared, start).await)),
                    Err(e) => (Default::default(), json(&wire::Started::Err(bad(e)))),
                },
                "stop" => match serde_json::from_slice::<wire::Stop>(&message.payload) {
                    Ok(stop) => (Default::default(), json(&unhost(&shared, stop).await)),
                    Err(e) => (Default::default(), json(&bad(e))),
                },
                "forget" => {
                    let path = String::from_utf8_lossy(&message.payload).into_owned();
                    if !lock(&shared.nodes.hosted).contains_key(&path) {
                        shared.post.forget(&path);
                    }
                    (Default::default(), Vec::new())
                }
                "send" => deliver(&shared, &message, false).await,
                "call" => deliver(&shared, &message, true).await,
                _ => return,
            };
            if let Some(cluster) = shared.nodes.cluster.get() {
                let _ = cluster.client.publish_with_headers(reply, headers, answer.into()).await;
            }
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
/// cluster's store, run in a worker whose exits go to its supervisor's node.
async fn host(shared: &Arc<Shared>, start: wire::Start) -> wire::Started {
    let failed = |message: String| ExitReason::StartFailed { message };
    let cluster = shared.nodes.cluster.get().cloned().ok_or_else(|| failed("no cluster".into()))?;
    if !cluster.is_up(&cluster.node) {
        return Err(failed(format!("node {} is fenced off from the cluster", cluster.node)));
    }
    let plugin = hosted_plugin(shared, &cluster, &start.plugin, &start.name).await?;
    let mut spec = PluginStart::new(plugin.clone());
    spec.config = start.config;
    spec.limits = start.limits;
    spec.grants = start.grants;
    spec.mailbox = start.mailbox;
    let path = start.path;
    let id = path.rsplit('/').next().unwrap_or_default().to_owned();
    // The mailbox outlives incarnations here, as on the supervisor's node, until the
    // supervisor forgets the child or starts it on another node (`forget`).
    let mailbox = shared.post.open(&path, &spec.mailbox);
    let mut config = sandbox_config(shared, path.clone(), &spec, &mailbox);
    // Its state lives in the cluster: it may be restarted on another node.
    config.state = Arc::clone(&cluster.state) as Arc<dyn crate::StateStore>;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let incarnation = worker::Start {
        id,
        incarnation: start.incarnation,
        plugin,
        config,
        hibernate_after: start.hibernate_after,
        mailbox,
        supervisor: tx,
    };
    let mut handle = worker::start(shared, incarnation).await?;
    let go = handle.go.take();
    let entry = Hosted { origin: start.origin.clone(), incarnation: start.incarnation, handle };
    lock(&shared.nodes.hosted).insert(path.clone(), entry);
    shared.emit(Event::ChildStarted {
        path: path.clone(),
        incarnation: start.incarnation,
        node: Some(cluster.node.clone()),
    });
    if let Some(go) = go {
        let _ = go.send(());
    }
    // Its own exits travel to its supervisor's node.
    let weak = Arc::downgrade(shared);
    let (origin, incarnation) = (start.origin, start.incarnation);
    tokio::spawn(async move {
        let Some(SupMsg::ChildExited { reason, .. }) = rx.recv().await else { return };
        let Some(shared) = weak.upgrade() else { return };
        {
            let mut hosted = lock(&shared.nodes.hosted);
            if hosted.get(&path).is_some_and(|h| h.incarnation == incarnation) {
                hosted.remove(&path);
            }
        }
        let notice = wire::Exit { path, incarnation, reason, node: cluster.node.clone() };
        if let Err(e) = cluster.js.publish(wire::exits(&origin), json(&notice).into()).await {
            tracing::warn!(child = notice.path, "could not report its exit: {e}");
        }
    });
    Ok(())
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
    lock(&shared.nodes.plugins).insert(hash.to_owned(), plugin.clone());
    Ok(plugin)
}

/// Stops an incarnation hosted here; how it ended (`shutdown` when it had already
/// ended on its own: its exit notice is on its way).
async fn unhost(shared: &Arc<Shared>, stop: wire::Stop) -> ExitReason {
    let entry = {
        let mut hosted = lock(&shared.nodes.hosted);
        match hosted.get(&stop.path) {
            Some(h) if h.incarnation == stop.incarnation => hosted.remove(&stop.path),
            _ => None,
        }
    };
    let Some(entry) = entry else { return ExitReason::Shutdown };
    entry.handle.stop(stop.shutdown.into()).await.unwrap_or_else(|r| r)
}

/// Tells `node` that the child at `path` no longer lives there: its mailbox (with
/// what is still in it) goes.
pub(crate) fn forget(shared: &Shared, node: &str, path: &str) {
    let Some(cluster) = shared.nodes.cluster.get().cloned() else { return };
    let (node, path) = (node.to_owned(), path.to_owned());
    tokio::spawn(async move {
        let request = async_nats::Request::new().payload(path.into_bytes().into());
        let _ = cluster.client.send_request(wire::request(&node, "forget"), request).await;
    });
}

/// Stops the hosted children `which` picks: killed for `cause`, or gracefully.
async fn stop_hosted(
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
            shared.post.forget(&path);
        }
    }
}

/// Exit notices of the children placed elsewhere, to their supervisors.
async fn follow_exits(shared: Weak<Shared>, mut exits: Exits) {
    while let Some(message) = exits.next().await {
        let Ok(message) = message else { continue };
        let Some(shared) = shared.upgrade() else { return };
        match serde_json::from_slice::<wire::Exit>(&message.payload) {
            Ok(exit) => {
                shared.nodes.placed_exited(&shared, &exit.path, exit.incarnation, exit.reason);
            }
            Err(e) => tracing::warn!("an exit notice this node cannot read: {e}"),
        }
        let _ = message.ack().await;
    }
}

/// Acts on the membership: children on a node that died are lost; children whose
/// supervisor's node died are stopped; a fenced node stops everything it runs.
async fn follow_changes(
    shared: Weak<Shared>,
    mut changes: tokio::sync::broadcast::Receiver<Change>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let Some(shared) = shared.upgrade() else { return };
        let me = shared.nodes.name().unwrap_or_default();
        match change {
            Change::Up(_) => {}
            Change::Down { node, .. } if node == me => {
                // Fenced: nothing here may go on running, nothing placed is reachable.
                let cause = Some(KillCause::NodeDown);
                stop_hosted(&shared, |_| true, cause).await;
                shared.nodes.node_lost(&shared, None);
            }
            Change::Down { node, .. } => {
                shared.nodes.node_lost(&shared, Some(&node));
                stop_hosted(&shared, |h| h.origin == node, None).await;
            }
        }
    }
}
