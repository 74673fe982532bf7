//! The embedding API: a [`Host`] runs one supervision tree.

use super::error::{ExportError, HostError};
use super::protocol::{AdminReply, AdminRequest, SupMsg};
use super::shared::Shared;
use super::supervisor;
use crate::ExitReason;
use crate::events::{Event, EventBus, EventRecord};
use crate::messaging::{CircuitState, MessageStats};
use crate::sandbox::{
    BoxFuture, ChildIdentity, Engine, EngineConfig, ExportCall, HostInterfaces, InterfaceError,
    LoadError, MessageError, Plugin, StoreData,
};
use crate::state::{DiskStore, MemoryStore, StateStore};
use crate::supervisor::{ChildCounts, ChildInfo, ChildSpec, SupervisorSpec};
use crate::task::Owned;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// How many events a subscriber may fall behind before it loses the oldest.
const EVENT_BACKLOG: usize = 1 << 16;

/// A child's mailbox, as [`Host::mailbox`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MailboxInfo {
    /// Messages waiting (the one being handled not counted).
    pub queued: usize,
    /// The most that may wait.
    pub capacity: usize,
    /// The circuit breaker's state, if it has one.
    pub circuit: Option<CircuitState>,
}

/// Runs one supervision tree of plugins. Cheap to clone, `Send + Sync`; the tree is
/// stopped when the last clone is dropped (call [`Host::shutdown`] to stop it in
/// order and learn how it ended).
///
/// ```no_run
/// use warden::runtime::Host;
/// use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let host = Host::builder().build()?;
/// let mut events = host.subscribe();
/// let echo = ChildSpec::plugin("echo", PluginStart::new("echo.wasm"));
/// host.start(SupervisorSpec::new(Strategy::OneForOne, vec![echo])).await?;
/// let reply = host.call("root/echo", b"hi".to_vec(), std::time::Duration::from_secs(1)).await?;
/// assert_eq!(reply, b"hi");
/// println!("{:?}", events.recv().await?);
/// host.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
    root: Arc<Mutex<Root>>,
}

/// A start under way: dropped before it completes, the host has no tree again.
struct Starting<'a>(&'a Host);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        *self.0.root() = Root::None;
    }
}

/// The root supervisor's task, through its life.
#[derive(Default)]
enum Root {
    #[default]
    None,
    /// A `start` is under way: a second one is refused.
    Starting,
    /// Running; dropping the task (with the last clone of the host) aborts the tree.
    Running { _task: Owned<ExitReason> },
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("engine", &self.shared.engine).finish_non_exhaustive()
    }
}

/// Builds a [`Host`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    engine: Option<EngineConfig>,
    shared_engine: Option<Engine>,
    state: Option<Arc<dyn StateStore>>,
    data_dir: Option<std::path::PathBuf>,
    interfaces: HostInterfaces,
    /// The first interface that could not be registered, reported by `build`.
    bad_interface: Option<InterfaceError>,
}

impl HostBuilder {
    /// Gives plugins the application's interface `name` (as [`HostInterfaces::add`]
    /// describes): `add_to_linker` adds the functions `bindgen!` generated, with the
    /// getter it is given; `factory` makes their state for each incarnation of a
    /// child that imports it. Only children whose `grants.interfaces` name it may.
    ///
    /// ```ignore
    /// let host = Host::builder()
    ///     .interface(
    ///         "acme:shop/inventory",
    ///         |linker, get| inventory::add_to_linker::<_, HasSelf<Inventory>>(linker, get),
    ///         move |child| Ok(Inventory::new(db.clone(), &child.path)),
    ///     )
    ///     .build()?;
    /// ```
    pub fn interface<S, A, F>(mut self, name: &str, add_to_linker: A, factory: F) -> Self
    where
        S: Send + 'static,
        A: FnOnce(
                &mut wasmtime::component::Linker<StoreData>,
                fn(&mut StoreData) -> &mut S,
            ) -> wasmtime::Result<()>
            + Send
            + 'static,
        F: Fn(&ChildIdentity) -> Result<S, String> + Send + Sync + 'static,
    {
        if let Err(e) = self.interfaces.add(name, add_to_linker, factory) {
            self.bad_interface.get_or_insert(e);
        }
        self
    }

    /// The engine configuration. Default [`EngineConfig::default`].
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = Some(config);
        self
    }

    /// Runs the tree in an existing engine, shared with other hosts (e.g. the tests of
    /// one process: every engine reserves its own instance pool of address space).
    /// Overrides [`HostBuilder::engine`].
    pub fn shared_engine(mut self, engine: Engine) -> Self {
        self.shared_engine = Some(engine);
        self
    }

    /// Where children keep their state. Default an in-memory store (see
    /// [`HostBuilder::data_dir`] for a durable one).
    pub fn state(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = Some(state);
        self
    }

    /// Keeps children's state durably in `dir` (a [`DiskStore`], opened by
    /// [`HostBuilder::build`]). Overrides [`HostBuilder::state`].
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Builds the host.
    ///
    /// # Errors
    /// The engine could not be created, or the data directory opened (it is in use by
    /// another process, or its database is corrupted).
    pub fn build(self) -> Result<Host, HostError> {
        if let Some(e) = self.bad_interface {
            return Err(HostError::Interface(e));
        }
        if self.shared_engine.is_some() && !self.interfaces.is_empty() {
            return Err(HostError::InterfacesOnSharedEngine);
        }
        let state = match self.data_dir {
            Some(dir) => Arc::new(DiskStore::open(dir)?),
            None => self.state.unwrap_or_else(|| Arc::new(MemoryStore::new())),
        };
        let engine = match self.shared_engine {
            Some(engine) => engine,
            None => Engine::with_interfaces(self.engine.unwrap_or_default(), self.interfaces)?,
        };
        let events = Arc::new(EventBus::new(EVENT_BACKLOG));
        Ok(Host {
            shared: Arc::new(Shared::new(engine, state, events)),
            root: Arc::new(Mutex::new(Root::None)),
        })
    }
}

impl Host {
    /// A builder with the defaults.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The engine the tree's plugins run in.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Loads the component at `path` in this host's engine: read, compiled (or found
    /// in the compile cache) and checked once; start as many children from it as
    /// wanted (`PluginStart::new(plugin.clone())`). Blocks while it compiles.
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load(&self, path: impl AsRef<std::path::Path>) -> Result<Plugin, LoadError> {
        self.shared.engine.load_file(path)
    }

    /// As [`Host::load`], from the component's bytes; `name` names it in errors.
    ///
    /// # Errors
    /// [`LoadError`] naming `name` and what is wrong.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        self.shared.engine.load(name, bytes)
    }

    /// Events from now on. A receiver that falls more than 65,536 events behind
    /// loses the oldest: its next `recv` says how many (`Lagged`), and the numbers
    /// ([`EventRecord::seq`]) of the events it then gets show the gap.
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.shared.events.subscribe()
    }

    /// The number ([`EventRecord::seq`]) of the last event published, 0 before the
    /// first: everything an operation caused has a number up to this once the
    /// operation returned (the CLI prints a command's reply after that event).
    pub fn last_event_seq(&self) -> u64 {
        self.shared.events.last_seq()
    }

    /// Microseconds since the host was built: the clock of [`EventRecord::ts_us`].
    pub fn clock_us(&self) -> u64 {
        self.shared.events.now_us()
    }

    /// Publishes `event` on the event stream, after every event published before it
    /// (an embedder's own events, say). Like every event, it is lost to a subscriber
    /// that has fallen too far behind: the CLI sends its replies beside the stream,
    /// not on it.
    pub fn publish(&self, event: Event) {
        self.shared.emit(event);
    }

    /// Starts the tree under the root supervisor `root`; returns once every child
    /// started.
    ///
    /// # Errors
    /// An invalid spec or a child that failed to start ([`HostError::TreeStart`]
    /// names it); a tree already running.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes stops what was started of the tree;
    /// the host may start a tree again.
    pub async fn start(&self, spec: SupervisorSpec) -> Result<(), HostError> {
        {
            let mut root = self.root();
            if !matches!(*root, Root::None) {
                return Err(HostError::AlreadyRunning);
            }
            *root = Root::Starting;
        }
        // Back to `None` unless the start completes, also when this future is dropped.
        let starting = Starting(self);
        self.shared.root_starting();
        let started = supervisor::start(Arc::clone(&self.shared), "root".into(), spec, None).await;
        let (_, task) = started.map_err(HostError::TreeStart)?;
        std::mem::forget(starting);
        *self.root() = Root::Running { _task: task };
        Ok(())
    }

    fn root(&self) -> std::sync::MutexGuard<'_, Root> {
        self.root.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls the child at `path` and waits at most `timeout` for its reply. The
    /// message waits in the child's mailbox behind those sent before it, also across
    /// restarts.
    ///
    /// # Errors
    /// Unknown target, too large, mailbox full, circuit open, timeout, the callee
    /// crashed handling it (at once, with its exit reason), or the callee's
    /// application error.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the call: a message not yet delivered is not
    /// (it is accounted as failed); one being handled is, and its reply is dropped.
    pub async fn call(
        &self,
        path: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        self.shared.post.call(None, path, payload, timeout).await
    }

    /// Calls an interface the child's plugin exports (an application's own, with
    /// bindings from its `bindgen!`), typed both ways, through the supervised child:
    /// queued in its mailbox like a [`Host::call`], with its timeout, circuit breaker
    /// and `callee-crashed` answer, never by holding its instance. `load` finds the
    /// export in the incarnation that handles the call (e.g. `GuestIndices::new` then
    /// `load` of the exported interface), once per incarnation and type `G`: later
    /// calls reuse it; `call` calls it.
    ///
    /// ```ignore
    /// use exports::acme::shop::report::GuestIndices;
    /// let summary: String = host
    ///     .call_export(
    ///         "root/reporter",
    ///         Duration::from_secs(1),
    ///         |store, instance| GuestIndices::new(&instance.instance_pre(&*store))?.load(store, instance),
    ///         |report, store| Box::pin(async move { report.call_summary(store).await }),
    ///     )
    ///     .await?;
    /// ```
    ///
    /// # Errors
    /// [`ExportError::Message`] for every reason a `call` fails (the incarnation
    /// crashed, killed by its deadline, ...); [`ExportError::Missing`] when `load`
    /// failed (the plugin does not export that interface with those types), which
    /// leaves the child running.
    ///
    /// # Cancel safety
    /// As [`Host::call`]: dropped before the child runs it, it is not run.
    pub async fn call_export<G, R>(
        &self,
        path: &str,
        timeout: Duration,
        load: impl FnOnce(
            &mut wasmtime::Store<StoreData>,
            &wasmtime::component::Instance,
        ) -> wasmtime::Result<G>
        + Send
        + 'static,
        call: impl for<'a> FnOnce(
            G,
            &'a mut wasmtime::Store<StoreData>,
        ) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send
        + 'static,
    ) -> Result<R, ExportError>
    where
        G: Clone + Send + 'static,
        R: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let export = ExportCall::new(load, call, move |r| {
            let _ = done.send(r);
        });
        match self.shared.post.call_export(path, Box::new(export), timeout).await {
            Ok(_) => result
                .await
                .map_err(|_| ExportError::Message(MessageError::UnknownTarget(path.to_owned()))),
            Err(MessageError::Application(message)) => Err(ExportError::Missing(message)),
            Err(e) => Err(ExportError::Message(e)),
        }
    }

    /// Sends to the child at `path` without waiting: the message is in its mailbox
    /// when this returns, and will be handled by the running incarnation or the next.
    ///
    /// # Errors
    /// Unknown target, too large, mailbox full (nothing is dropped silently).
    pub fn send(&self, path: &str, payload: Vec<u8>) -> Result<(), MessageError> {
        self.shared.post.send(None, path, payload)
    }

    /// The children's state store, to read or seed state from outside the tree.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.shared.state
    }

    /// The account of every message since the host started.
    pub fn message_stats(&self) -> MessageStats {
        self.shared.post.stats()
    }

    /// Waits until no message is pending (every one handled, failed or
    /// dead-lettered); pair it with a timeout. Cancel safe.
    pub async fn messages_settled(&self) {
        self.shared.post.settled().await;
    }

    /// The mailbox of the child at `path`: messages waiting and the circuit's state.
    pub fn mailbox(&self, path: &str) -> Option<MailboxInfo> {
        self.shared.post.lookup(path).map(|m| MailboxInfo {
            queued: m.len(),
            capacity: m.config.capacity,
            circuit: m.breaker.as_ref().map(|b| b.state()),
        })
    }

    async fn admin(
        &self,
        supervisor: &str,
        request: AdminRequest,
    ) -> Result<AdminReply, HostError> {
        let tx = self.shared.supervisor(supervisor).ok_or(HostError::NotFound)?;
        let (reply, answer) = oneshot::channel();
        tx.send(SupMsg::Admin(request, reply)).map_err(|_| HostError::Gone)?;
        answer.await.map_err(|_| HostError::Gone)?
    }

    /// OTP's `start_child`: adds `spec` to `supervisor` and starts it; returns once it
    /// started (its `child_started` published) or failed.
    ///
    /// # Errors
    /// `already_started`, `already_present`, an invalid spec, the start's failure.
    ///
    /// # Cancel safety
    /// This and the other admin requests (`terminate_child`, `restart_child`, ...)
    /// are carried out by the supervisor once sent: dropping the future only drops
    /// the answer.
    pub async fn start_child(&self, supervisor: &str, spec: ChildSpec) -> Result<(), HostError> {
        self.admin(supervisor, AdminRequest::StartChild(Box::new(spec))).await.map(|_| ())
    }

    /// `start_child` on a simple_one_for_one supervisor: a child from its template,
    /// named `name` (or `<template>-<n>`), with `config` (or the template's); returns
    /// its name.
    ///
    /// # Errors
    /// The name is taken; the start failed.
    pub async fn start_dynamic(
        &self,
        supervisor: &str,
        name: Option<String>,
        config: Option<Vec<u8>>,
    ) -> Result<String, HostError> {
        match self.admin(supervisor, AdminRequest::StartDynamic { name, config }).await? {
            AdminReply::Started(name) => Ok(name),
            _ => Err(HostError::Gone),
        }
    }

    /// OTP's `terminate_child`: returns once the child has exited (its `child_exited`
    /// published), as OTP's does.
    ///
    /// # Errors
    /// `not_found`.
    pub async fn terminate_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.admin(supervisor, AdminRequest::TerminateChild(child.into())).await.map(|_| ())
    }

    /// OTP's `restart_child`: returns once the child started (its `child_started`
    /// published) or failed.
    ///
    /// # Errors
    /// `running`, `restarting`, `not_found`, `simple_one_for_one`, the start's failure.
    pub async fn restart_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.admin(supervisor, AdminRequest::RestartChild(child.into())).await.map(|_| ())
    }

    /// OTP's `delete_child`.
    ///
    /// # Errors
    /// `running`, `restarting`, `not_found`, `simple_one_for_one`.
    pub async fn delete_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.admin(supervisor, AdminRequest::DeleteChild(child.into())).await.map(|_| ())
    }

    /// OTP's `which_children`, in start order.
    ///
    /// # Errors
    /// No supervisor at that path.
    pub async fn which_children(&self, supervisor: &str) -> Result<Vec<ChildInfo>, HostError> {
        match self.admin(supervisor, AdminRequest::WhichChildren).await? {
            AdminReply::Children(children) => Ok(children),
            _ => Err(HostError::Gone),
        }
    }

    /// OTP's `count_children`.
    ///
    /// # Errors
    /// No supervisor at that path.
    pub async fn count_children(&self, supervisor: &str) -> Result<ChildCounts, HostError> {
        match self.admin(supervisor, AdminRequest::CountChildren).await? {
            AdminReply::Counts(counts) => Ok(counts),
            _ => Err(HostError::Gone),
        }
    }

    /// Waits until the root supervisor exits; returns its reason (`shutdown` after a
    /// clean shutdown or after giving up: see the `supervisor_gave_up` event). Cancel
    /// safe.
    pub async fn wait(&self) -> ExitReason {
        self.shared.root_exit().await
    }

    /// Whether the root supervisor gave up (reached its restart intensity). Its exit
    /// reason is `shutdown` either way, as in OTP; this tells a clean stop from a
    /// failure (`warden run` exits non-zero on it).
    pub fn root_gave_up(&self) -> bool {
        self.shared.root_gave_up()
    }

    /// Stops the tree in order (children newest first, each waited for) and returns
    /// the root's exit reason.
    ///
    /// # Cancel safety
    /// The shutdown goes on once asked for; dropping the future only stops waiting.
    pub async fn shutdown(&self) -> ExitReason {
        if !matches!(*self.root(), Root::Running { .. }) {
            return ExitReason::Shutdown; // no tree was started
        }
        if let Some(root) = self.shared.supervisor("root") {
            let _ = root.send(SupMsg::Shutdown);
        }
        let reason = self.wait().await;
        *self.root() = Root::None;
        reason
    }
}
