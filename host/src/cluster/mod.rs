//! Several hosts as one cluster, on NATS with JetStream: who is a member, where
//! components are kept, and how exits travel. The supervision that spans nodes is the
//! runtime's ([`crate::runtime`]); this room only speaks to NATS.
//!
//! - **Membership** is a JetStream key-value bucket (`warden_nodes`) with per-key TTLs
//!   (server ≥ 2.11). A node joins by creating its key (a taken name is refused),
//!   renews it every third of the TTL, and watches the bucket: a key that expires is
//!   a dead node (`node_down`, reason `expired`), a key deleted is a node that left.
//!   A node that cannot renew its key for longer than the TTL, or finds it gone, fences
//!   itself off (`node_down` for itself, reason `fenced`): the runtime stops its
//!   children, so no child runs on two nodes at once. It then tries to join again.
//! - **Components** are kept in a JetStream object store (`warden_plugins`) by their
//!   SHA-256: a member needs no copy of the plugin files.
//! - **Exits** of children placed on a node travel to their supervisor's node on a
//!   JetStream stream (`WARDEN_EXITS`), acknowledged once delivered, so a crash notice
//!   is not lost across a reconnect.
//! - **Requests** (start, stop, messages) are NATS requests to a node's subjects; a
//!   request to a node nobody serves is answered "no responders" at once.

mod state;
pub(crate) mod wire;

pub(crate) use state::ClusterStore;

use crate::events::{Event, EventBus};
use crate::task::Owned;
use async_nats::jetstream::{self, kv, object_store, stream};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// The membership bucket.
const MEMBERS: &str = "warden_nodes";
/// The components' object store.
const PLUGINS: &str = "warden_plugins";
/// The stream of exit notices.
const EXITS: &str = "WARDEN_EXITS";

/// How a host joins a cluster: its node name, the NATS server, and how long its
/// membership lives without renewal.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's name: unique in the cluster; letters, digits, `-` and `_`.
    pub node: String,
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats: String,
    /// How long the node's membership lives unless renewed (it is renewed every third
    /// of it): how fast its death is noticed. Whole seconds, at least 1. Default 3 s.
    pub ttl: Duration,
}

impl ClusterConfig {
    /// Node `node` of the cluster on the NATS server at `nats`, with the default TTL.
    pub fn new(node: impl Into<String>, nats: impl Into<String>) -> Self {
        Self { node: node.into(), nats: nats.into(), ttl: Duration::from_secs(3) }
    }

    /// How long the membership lives unless renewed. Default 3 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn check(&self) -> Result<(), ClusterError> {
        let name_ok = !self.node.is_empty()
            && self.node.len() <= 64
            && self.node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(ClusterError::BadName { node: self.node.clone() });
        }
        if self.ttl < Duration::from_secs(1) || self.ttl.subsec_nanos() != 0 {
            return Err(ClusterError::BadTtl { ttl: self.ttl });
        }
        Ok(())
    }
}

/// Why a host could not join its cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node name cannot be used.
    #[error("bad node name {node:?}: use 1 to 64 letters, digits, '-' or '_' (it is a NATS key)")]
    BadName {
        /// The name given.
        node: String,
    },
    /// The TTL is not whole seconds, or less than one.
    #[error("bad node TTL {ttl:?}: NATS keeps per-key TTLs in whole seconds, at least 1 s")]
    BadTtl {
        /// The TTL given.
        ttl: Duration,
    },
    /// Another live node has the name.
    #[error("node name {node:?} is taken: another node of the cluster runs under it")]
    NameTaken {
        /// The name.
        node: String,
    },
    /// NATS could not be reached.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The server's address.
        url: String,
        /// What the client said.
        message: String,
    },
    /// JetStream refused or failed something joining needs.
    #[error("NATS JetStream: {what}: {message} (the server must be 2.11 or later, with -js)")]
    JetStream {
        /// What was being done.
        what: &'static str,
        /// What the server or client said.
        message: String,
    },
}

/// A change in the cluster's membership, as the runtime acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Up(String),
    /// A node is gone: `reason` as `node_down` says it. For this node itself,
    /// `fenced`: it must stop its children.
    Down {
        node: String,
        reason: &'static str,
    },
}

/// This host's membership of a cluster.
pub(crate) struct Cluster {
    pub(crate) node: String,
    /// This process's mark on its membership key: a renewal whose answer was lost
    /// finds its own write by it.
    nonce: String,
    pub(crate) ttl: Duration,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    members: kv::Store,
    plugins: object_store::ObjectStore,
    /// The state of the children placed on nodes: they may move.
    pub(crate) state: Arc<ClusterStore>,
    /// The nodes up now, this one included while it is joined.
    live: watch::Sender<BTreeSet<String>>,
    changes: broadcast::Sender<Change>,
    events: Arc<EventBus>,
    /// Components known to be in the object store, by hash.
    published: Mutex<BTreeSet<String>>,
    tasks: Mutex<Vec<Owned<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to NATS and makes sure the cluster's buckets, store and stream exist;
    /// not a member yet ([`Cluster::enter`]).
    pub(crate) async fn connect(
        config: &ClusterConfig,
        events: Arc<EventBus>,
    ) -> Result<Arc<Self>, ClusterError> {
        config.check()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("warden {}", config.node))
            .connection_timeout(Duration::from_secs(5))
            .connect(config.nats.as_str())
            .await
            .map_err(|e| ClusterError::Connect {
                url: config.nats.clone(),
                message: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let members = match js.get_key_value(MEMBERS).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: MEMBERS.into(),
                    history: 1,
                    limit_markers: Some(Duration::from_secs(60)),
                    ..Default::default()
                })
                .await
                .map_err(|e| js_error("creating the membership bucket", e))?,
        };
        let plugins = match js.get_object_store(PLUGINS).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: PLUGINS.into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| js_error("creating the component store", e))?,
        };
        js.get_or_create_stream(stream::Config {
            name: EXITS.into(),
            subjects: vec!["warden.exit.>".into()],
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .map_err(|e| js_error("creating the exit stream", e))?;

        let state =
            ClusterStore::open(&js).await.map_err(|e| js_error("opening the state bucket", e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Arc::new(Self {
            node: config.node.clone(),
            nonce: format!("{}-{nanos:x}", std::process::id()),
            ttl: config.ttl,
            client,
            js,
            members,
            plugins,
            state: Arc::new(state),
            live: watch::channel(BTreeSet::new()).0,
            changes: broadcast::channel(1024).0,
            events,
            published: Mutex::new(BTreeSet::new()),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Joins as this node: refused when a live node has the name. Returns once the
    /// members up now are known; from then on the membership is renewed and watched.
    pub(crate) async fn enter(self: &Arc<Self>) -> Result<(), ClusterError> {
        let cluster = self;
        let sent = Instant::now();
        let revision = self.create_key().await?;
        // Renewed from now on, timed from when the key was written: whatever the rest
        // of the join takes, the key does not expire under it.
        let weak = Arc::downgrade(cluster);
        let renewing = Owned(tokio::spawn(renew(weak.clone(), revision, sent)));
        self.went_up(&self.node);
        let mut entries = cluster
            .members
            .watch_with_history(">")
            .await
            .map_err(|e| js_error("watching members", e))?;
        // Joined once the members up now are known (the last entry of each key first,
        // this node's own among them): a child placed on one of them may start at once.
        let caught_up = async {
            use futures_util::StreamExt;
            while let Some(entry) = entries.next().await {
                let entry = entry.map_err(|e| js_error("reading members", e))?;
                let last = entry.delta == 0;
                cluster.apply(entry);
                if last {
                    return Ok(());
                }
            }
            Err(js_error("reading members", "the watch ended"))
        };
        tokio::time::timeout(Duration::from_secs(10), caught_up)
            .await
            .map_err(|_| js_error("reading members", "timed out"))??;

        // The tasks hold the cluster weakly: they end with it.
        let mut tasks = cluster.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(Owned(tokio::spawn(watch_members(weak, entries))));
        tasks.push(renewing);
        drop(tasks);
        Ok(())
    }

    /// A request to `node` (its `verb` subject), waiting at most `timeout` (`None`:
    /// as long as it takes); the answer.
    pub(crate) async fn request(
        &self,
        node: &str,
        verb: &str,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<async_nats::Message, String> {
        let request =
            async_nats::Request::new().headers(headers).payload(body.into()).timeout(timeout);
        let subject = wire::request(node, verb);
        self.client.send_request(subject, request).await.map_err(|e| e.to_string())
    }

    /// Changes of the membership from now on.
    pub(crate) fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Whether `node` is up now.
    pub(crate) fn is_up(&self, node: &str) -> bool {
        self.live.borrow().contains(node)
    }

    /// Waits until `node` is down (at once when it is not up).
    pub(crate) async fn down(&self, node: &str) {
        let mut live = self.live.subscribe();
        let _ = live.wait_for(|live| !live.contains(node)).await;
    }

    /// Leaves the cluster: others see `node_down` with reason `left`.
    pub(crate) async fn leave(&self) {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if let Err(e) = self.members.delete(&self.node).await {
            tracing::warn!(node = self.node, "could not leave the cluster: {e}");
        }
        let _ = self.client.flush().await;
    }

    /// Puts the component in the object store under its hash, once.
    pub(crate) async fn publish_plugin(&self, hash: &str, bytes: &[u8]) -> Result<(), String> {
        if self.published.lock().unwrap_or_else(|p| p.into_inner()).contains(hash) {
            return Ok(());
        }
        if self.plugins.info(hash).await.is_err() {
            let mut reader = bytes;
            self.plugins.put(hash, &mut reader).await.map_err(|e| e.to_string())?;
        }
        self.published.lock().unwrap_or_else(|p| p.into_inner()).insert(hash.to_owned());
        Ok(())
    }

    /// The component stored under `hash`.
    pub(crate) async fn fetch_plugin(&self, hash: &str) -> Result<Vec<u8>, String> {
        use tokio::io::AsyncReadExt;
        let mut object = self.plugins.get(hash).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    async fn renew_once(&self, revision: u64) -> Result<u64, Renewal> {
        match self.put_key(revision).await {
            Ok(revision) => Ok(revision),
            Err(e) if e.contains("wrong last sequence") => {
                // An earlier renewal may have landed with its answer lost: still ours.
                match self.members.entry(&self.node).await {
                    Ok(Some(entry)) if self.is_ours(&entry) => Ok(entry.revision),
                    _ => Err(Renewal::Lost),
                }
            }
            Err(e) => Err(Renewal::Failed(e)),
        }
    }

    /// Creates this node's key with its TTL; refused when the name is taken.
    /// (async-nats's `create_with_ttl` drops the TTL when the key was deleted or expired
    /// before: a node that joins again under its old name would never expire.)
    async fn create_key(&self) -> Result<u64, ClusterError> {
        let first = match self.put_key(0).await {
            Ok(revision) => return Ok(revision),
            Err(e) => e,
        };
        match self.members.entry(&self.node).await.map_err(|e| js_error("joining", e))? {
            // Left or expired before: taken again, from its last revision.
            Some(entry) if entry.operation != kv::Operation::Put => {
                self.put_key(entry.revision).await.map_err(|e| js_error("joining", e))
            }
            // Ours already (a write whose answer was lost).
            Some(entry) if self.is_ours(&entry) => Ok(entry.revision),
            Some(_) => Err(ClusterError::NameTaken { node: self.node.clone() }),
            None => Err(js_error("joining", first)),
        }
    }

    /// Writes this node's key with its TTL, if its last revision is `expected` (0: it
    /// has none); the new revision once JetStream has it.
    async fn put_key(&self, expected: u64) -> Result<u64, String> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-TTL", self.ttl.as_secs().to_string().as_str());
        headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
        let subject = format!("$KV.{MEMBERS}.{}", self.node);
        let ack = self
            .js
            .publish_with_headers(subject, headers, self.nonce.clone().into())
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(|ack| ack.sequence).map_err(|e| e.to_string())
    }

    /// Whether `entry` is this node's key as this process wrote it.
    fn is_ours(&self, entry: &kv::Entry) -> bool {
        entry.operation == kv::Operation::Put && entry.value == self.nonce.as_bytes()
    }

    /// `node` is up: in the live set, announced, and acted on, unless it was already.
    fn went_up(&self, node: &str) {
        if self.live.send_if_modified(|live| live.insert(node.to_owned())) {
            self.events.emit(Event::NodeUp { node: node.to_owned() });
            let _ = self.changes.send(Change::Up(node.to_owned()));
        }
    }

    /// `node` is down for `reason`, as [`Cluster::went_up`]; whether it was up.
    fn went_down(&self, node: &str, reason: &'static str) -> bool {
        let was_up = self.live.send_if_modified(|live| live.remove(node));
        if was_up {
            self.events.emit(Event::NodeDown { node: node.to_owned(), reason: reason.into() });
            let _ = self.changes.send(Change::Down { node: node.to_owned(), reason });
        }
        was_up
    }

    /// One change of the membership bucket.
    fn apply(&self, entry: kv::Entry) {
        let node = entry.key;
        match entry.operation {
            // Only joining and rejoining mark this node up, never a renewal seen late,
            // after a fence.
            kv::Operation::Put if node == self.node => {}
            kv::Operation::Put => self.went_up(&node),
            // Our own key is gone: someone else may take the name now.
            _ if node == self.node => self.fence(),
            kv::Operation::Delete => {
                self.went_down(&node, "left");
            }
            kv::Operation::Purge => {
                self.went_down(&node, "expired");
            }
        }
    }

    /// This node is no longer a member: it says so, and the runtime stops its
    /// children. Once per loss.
    fn fence(&self) {
        if self.went_down(&self.node, "fenced") {
            tracing::warn!(
                node = self.node,
                "lost the cluster for longer than the node TTL: fenced off"
            );
        }
    }

    /// Joins again after fencing, as soon as the name can be taken: its revision, and
    /// when it was written. The nodes that died meanwhile (their expiry unseen, or
    /// seen too long ago) are found missing from the bucket and counted down.
    async fn rejoin(&self) -> (u64, Instant) {
        loop {
            let sent = Instant::now();
            match self.create_key().await {
                Ok(revision) => {
                    self.resync().await;
                    self.went_up(&self.node);
                    return (revision, sent);
                }
                Err(e) => {
                    tracing::debug!(node = self.node, "rejoining: {e}");
                    tokio::time::sleep(self.ttl / 3).await;
                }
            }
        }
    }

    /// Counts down the nodes thought up whose keys are gone from the bucket.
    async fn resync(&self) {
        use futures_util::StreamExt;
        let Ok(keys) = self.members.keys().await else { return };
        let present: BTreeSet<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
        let gone: Vec<String> = self
            .live
            .borrow()
            .iter()
            .filter(|n| **n != self.node && !present.contains(*n))
            .cloned()
            .collect();
        for node in gone {
            self.went_down(&node, "expired");
        }
    }
}

/// Follows the membership bucket: up and down events, the live set, the changes.
async fn watch_members(cluster: Weak<Cluster>, mut entries: kv::Watch) {
    use futures_util::StreamExt;
    while let Some(entry) = entries.next().await {
        let Some(cluster) = cluster.upgrade() else { return };
        match entry {
            Ok(entry) => cluster.apply(entry),
            Err(e) => tracing::warn!("membership watch: {e}"),
        }
    }
}

/// Renews this node's key every third of the TTL. The key expires a TTL after the
/// server stored the last renewal, which came after it was sent: when none has
/// succeeded for three quarters of the TTL since the last one was sent, or the key is
/// no longer this node's, the node fences itself off before the others can count it
/// dead and start its children elsewhere; then it joins again.
async fn renew(cluster: Weak<Cluster>, mut revision: u64, mut renewed: Instant) {
    let Some(ttl) = cluster.upgrade().map(|c| c.ttl) else { return };
    loop {
        let fence_at = tokio::time::Instant::from_std(renewed + ttl - ttl / 4);
        let attempt = async {
            tokio::time::sleep(ttl / 3).await;
            let sent = Instant::now();
            let cluster = cluster.upgrade()?;
            Some((sent, cluster.renew_once(revision).await))
        };
        let lost = tokio::select! {
            () = tokio::time::sleep_until(fence_at) => true,
            attempt = attempt => match attempt {
                None => return,
                Some((sent, Ok(next))) => {
                    revision = next;
                    renewed = sent;
                    false
                }
                Some((_, Err(Renewal::Lost))) => true,
                Some((_, Err(Renewal::Failed(e)))) => {
                    tracing::warn!("could not renew the cluster membership: {e}");
                    false
                }
            },
        };
        if lost {
            let Some(cluster) = cluster.upgrade() else { return };
            cluster.fence();
            (revision, renewed) = cluster.rejoin().await;
        }
    }
}

enum Renewal {
    /// The key is no longer this node's.
    Lost,
    Failed(String),
}

fn js_error(what: &'static str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::JetStream { what, message: e.to_string() }
}
