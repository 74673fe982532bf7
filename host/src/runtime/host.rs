//! The embedding API: a [`Host`] runs one supervision tree.

use super::error::{ExportError, HostError};
use super::protocol::{AdminReply, AdminRequest, SupMsg};
use super::report::{HostReport, MailboxInfo, SupervisorReport};
use super::shared::Shared;
use super::supervisor;
use super::upgrade::{Change, Upgrade};
use crate::ExitReason;
use crate::cluster::ClusterConfig;
use crate::events::{Event, EventBus, Events};
use crate::messaging::MessageStats;
use crate::sandbox::{
    BoxFuture, ChildIdentity, Engine, EngineConfig, ExportCall, HostInterfaces, InterfaceError,
    LoadError, MessageError, Plugin, StoreData,
};
use crate::state::{DiskStore, MemoryStore, StateStore};
use crate::supervisor::{
    AdminError, ChildCounts, ChildInfo, ChildKind, ChildSpec, ChildStart, ChildState, Placement,
    PluginSource, PluginStart, SpecError, SpecProblem, SupervisorSpec, UpgradeStep, validate,
};
use crate::task::Owned;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tracing::Instrument;

/// How many events a subscriber may fall behind before it loses the oldest.
const EVENT_BACKLOG: usize = 1 << 16;

/// Runs one supervision tree of plugins. Cheap to clone, `Send + Sync`; the tree is
/// stopped when the last clone is dropped (call [`Host::shutdown`] to stop it in
/// order and learn how it ended).
///
/// ```no_run
/// use std::time::Duration;
/// use warden::prelude::*;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let host = Host::builder().build()?;
/// let mut events = host.subscribe();
/// let echo = ChildSpec::plugin("echo", "target/plugins/wasm32-wasip2/release/echo.wasm");
/// host.start(SupervisorSpec::new(Strategy::OneForOne, vec![echo])).await?;
/// let reply = host.call("root/echo", b"hi".to_vec(), Duration::from_secs(1)).await?;
/// assert_eq!(reply, b"hi");
/// println!("{:?}", events.next().await); // child_started root/echo
/// host.shutdown().await;
/// # Ok(()) }
/// ```
///
/// The life of a host (which calls work when) is in the crate's documentation.
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
    root: Arc<Mutex<Root>>,
    /// Where the tree's tasks run.
    runtime: Handle,
    /// The cluster it is a node of, if any.
    cluster: Option<Arc<ClusterConfig>>,
}

/// A start under way: dropped before it completes, the host has no tree again.
struct Starting<'a>(&'a Host);

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        *self.0.root() = Root::None;
    }
}

/// A shutdown under way: dropped before it completes, the tree is left running (or
/// ended) as `Running`, for a later `start` or `shutdown`.
struct Stopping<'a>(&'a Host);

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        let mut root = self.0.root();
        if let Root::Stopping { task } = std::mem::take(&mut *root) {
            *root = Root::Running { task };
        }
    }
}

/// The root supervisor's task, through its life.
#[derive(Default)]
enum Root {
    #[default]
    None,
    /// A `start` is under way: a second one is refused.
    Starting,
    /// Running (or ended by itself: its root gave up); dropping the task (with the
    /// last clone of the host) aborts the tree.
    Running { task: Owned<ExitReason> },
    /// A `shutdown` is under way: a `start` is refused until it is done.
    Stopping { task: Owned<ExitReason> },
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
    runtime: Option<Handle>,
    cluster: Option<ClusterConfig>,
}

impl HostBuilder {
    /// Gives plugins the application's interface `name` (as [`HostInterfaces::add`]
    /// describes): `add_to_linker` adds the functions `bindgen!` generated, with the
    /// getter it is given; `factory` makes their state for each incarnation of a
    /// child that imports it. Only children whose `grants.interfaces` name it may.
    ///
    /// ```no_run
    /// use warden::{ChildIdentity, Host};
    /// use warden::wasmtime::component::HasSelf;
    ///
    /// warden::wasmtime::component::bindgen!({
    ///     inline: "package acme:shop@0.1.0;
    ///              interface inventory { stock: func(item: string) -> u32; }
    ///              world host { import inventory; }",
    ///     wasmtime_crate: warden::wasmtime,
    /// });
    /// use acme::shop::inventory;
    ///
    /// /// `inventory` as one incarnation of one child sees it.
    /// struct Inventory { child: String }
    ///
    /// impl inventory::Host for Inventory {
    ///     fn stock(&mut self, item: String) -> u32 {
    ///         println!("{} asks for {item}", self.child);
    ///         7
    ///     }
    /// }
    ///
    /// # async fn demo() -> Result<(), warden::HostError> {
    /// let host = Host::builder()
    ///     .interface(
    ///         "acme:shop/inventory@0.1.0",
    ///         |linker, get| inventory::add_to_linker::<_, HasSelf<Inventory>>(linker, get),
    ///         |child: &ChildIdentity| Ok(Inventory { child: child.path.clone() }),
    ///     )
    ///     .build()?;
    /// # Ok(()) }
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

    /// The tokio runtime the tree's tasks run on. Default the runtime `build` is
    /// called in. It needs timers (`enable_time`, or `enable_all`), should be
    /// multi-threaded for children to run in parallel, and must be driven: a
    /// current-thread runtime runs the tree only while something `block_on`s it.
    /// Calls awaited outside it run their timers on it.
    pub fn runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Makes the host a node of a cluster on NATS (see [`crate::cluster`]): it joins
    /// at [`Host::join`], or at its first [`Host::start`]. Its children may then be
    /// placed on other nodes ([`ChildSpec::node`]), and other nodes may place theirs
    /// on it. Default none: one machine.
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Builds the host.
    ///
    /// # Errors
    /// No tokio runtime ([`HostError::NoRuntime`]: called outside one and none given)
    /// or one without timers ([`HostError::NoTimers`]); the engine could not be
    /// created, or the data directory opened (it is in use by another process, or its
    /// database is corrupted).
    pub fn build(self) -> Result<Host, HostError> {
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Handle::try_current().map_err(|_| HostError::NoRuntime)?,
        };
        if !has_timers(&runtime) {
            return Err(HostError::NoTimers);
        }
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
        let shared = Arc::new(Shared::new(engine, state, events));
        // Counts of dropped guest log lines that no later line told, told once a
        // second, for as long as the host (its guest log gate) lives.
        let logs = Arc::downgrade(&shared.guest_logs);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(logs) = logs.upgrade() else { return };
                logs.sweep(std::time::Instant::now());
            }
        });
        Ok(Host {
            shared,
            root: Arc::new(Mutex::new(Root::None)),
            runtime,
            cluster: self.cluster.map(Arc::new),
        })
    }
}

/// Whether `runtime` has a time driver. tokio offers no question for it: making a
/// timer panics without one, so the check makes one (and the panic's message is
/// printed, once, by the panic hook, before `build` says what to do). Built with
/// `panic = "abort"` there is nothing to catch: the check is skipped, and a runtime
/// without timers fails at the first timer.
fn has_timers(runtime: &Handle) -> bool {
    #[cfg(panic = "unwind")]
    {
        let _in = runtime.enter();
        std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
    }
    #[cfg(not(panic = "unwind"))]
    {
        let _ = runtime;
        true
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

    /// The events from now until the tree stops (see [`Events`]). Subscribe before
    /// [`Host::start`] to see the tree's first `child_started`.
    pub fn subscribe(&self) -> Events {
        self.shared.events.subscribe()
    }

    /// The number ([`EventRecord::seq`](crate::EventRecord::seq)) of the last event published, 0 before the
    /// first: everything an operation caused has a number up to this once the
    /// operation returned (the CLI prints a command's reply after that event).
    pub fn last_event_seq(&self) -> u64 {
        self.shared.events.last_seq()
    }

    /// Microseconds since the host was built: the clock of [`EventRecord::ts_us`](crate::EventRecord::ts_us).
    pub fn clock_us(&self) -> u64 {
        self.shared.events.now_us()
    }

    /// Starts the tree under the root supervisor `root`; returns once every child
    /// started. Before anything starts, the spec is checked (OTP's rules, and what
    /// this host's engine can do) and every plugin it names is loaded (compiled, or
    /// found in the compile cache), so a bad spec or plugin starts nothing.
    ///
    /// # Errors
    /// [`HostError::InvalidSpec`] with every problem and its path;
    /// [`HostError::Load`] for a plugin that cannot be loaded, with the child's path;
    /// [`HostError::TreeStart`] for a child whose `init` failed;
    /// [`HostError::AlreadyRunning`] while a tree runs.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes stops what was started of the tree;
    /// the host may start a tree again.
    pub async fn start(&self, spec: SupervisorSpec) -> Result<(), HostError> {
        self.join().await?;
        {
            let mut root = self.root();
            match *root {
                Root::None => {}
                // A tree that ended by itself (its root gave up or shut down
                // automatically) is gone: a new one may start.
                Root::Running { .. } if self.shared.root_has_exited() => {}
                _ => return Err(HostError::AlreadyRunning),
            }
            *root = Root::Starting;
        }
        // Back to `None` unless the start completes, also when this future is dropped.
        let starting = Starting(self);
        let host = self.clone();
        let task = self
            .on_runtime(async move {
                let mut spec = spec;
                host.preflight_tree("root", &mut spec).await?;
                host.shared.root_starting();
                let started =
                    supervisor::start(Arc::clone(&host.shared), "root".into(), spec, None).await;
                started.map(|(_, task)| task).map_err(|reason| {
                    let path = host.shared.first_start_failure().unwrap_or_else(|| "root".into());
                    HostError::TreeStart { path, reason }
                })
            })
            .await
            .unwrap_or(Err(HostError::Gone))?;
        std::mem::forget(starting);
        *self.root() = Root::Running { task };
        Ok(())
    }

    /// Runs `work` on the host's runtime (whatever runtime, or none, the caller is
    /// in); dropped, it is aborted. `None` if the runtime shut down first.
    async fn on_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        Owned(self.runtime.spawn(work)).join().await
    }

    /// Checks `spec` (at `path`), loads its plugins and checks what they import
    /// against the children's grants, before anything starts.
    async fn preflight_tree(&self, path: &str, spec: &mut SupervisorSpec) -> Result<(), HostError> {
        let mut problems = validate(path, spec);
        problems.extend(self.unplaceable(path, spec));
        let mut plugins = Vec::new();
        collect(path, spec, &mut plugins);
        self.preflight_plugins(problems, plugins).await
    }

    /// As [`Host::preflight_tree`], for one child added to the supervisor at `parent`
    /// (whose own checks came first).
    async fn preflight_child(
        &self,
        parent: &str,
        mut spec: ChildSpec,
    ) -> Result<ChildSpec, HostError> {
        let path = format!("{parent}/{}", spec.id);
        let problems = self.placement_problem(&path, &spec).into_iter().collect();
        match &mut spec.start {
            ChildStart::Supervisor(sub) => self.preflight_tree(&path, sub).await?,
            ChildStart::Plugin(start) => {
                self.preflight_plugins(problems, vec![(path, start)]).await?
            }
        }
        Ok(spec)
    }

    /// The children of `spec` (at `path`) and of its nested supervisors placed on
    /// other nodes by a host in no cluster.
    fn unplaceable(&self, path: &str, spec: &SupervisorSpec) -> Vec<SpecError> {
        let mut problems = Vec::new();
        for child in &spec.children {
            let child_path = format!("{path}/{}", child.id);
            problems.extend(self.placement_problem(&child_path, child));
            if let ChildStart::Supervisor(sub) = &child.start {
                problems.extend(self.unplaceable(&child_path, sub));
            }
        }
        problems
    }

    fn placement_problem(&self, path: &str, child: &ChildSpec) -> Option<SpecError> {
        match &child.placement {
            Placement::Nodes(nodes) if self.cluster.is_none() => Some(SpecError {
                path: path.to_owned(),
                problem: SpecProblem::NoCluster { nodes: nodes.clone() },
            }),
            _ => None,
        }
    }

    /// With the spec's `problems` found so far: what the engine cannot honour, then
    /// (if nothing yet) every plugin loaded and its imports checked against its
    /// child's grants. A plugin given as bytes is replaced by the plugin compiled from
    /// them, compiled once.
    async fn preflight_plugins(
        &self,
        mut problems: Vec<SpecError>,
        plugins: Vec<(String, &mut PluginStart)>,
    ) -> Result<(), HostError> {
        problems.extend(plugins.iter().filter_map(|(path, start)| self.engine_lacks(path, start)));
        if problems.is_empty() {
            for (path, start) in plugins {
                problems.extend(self.load_granted(path, start).await?);
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(HostError::InvalidSpec(problems)) }
    }

    /// Loads the plugin of the child at `path`; the application interfaces it
    /// imports that the child is not granted.
    async fn load_granted(
        &self,
        path: String,
        start: &mut PluginStart,
    ) -> Result<Vec<SpecError>, HostError> {
        let plugin = match self.shared.plugin(&start.plugin).await {
            Ok(plugin) => plugin,
            Err(error) => return Err(HostError::Load { path, error }),
        };
        let refused = plugin.application_imports().filter(|i| !start.grants.allows_interface(i));
        let problem = |import: &str| SpecProblem::NotGranted { import: import.to_owned() };
        let refused = refused.map(|i| SpecError { path: path.clone(), problem: problem(i) });
        let refused = refused.collect();
        // Files are kept loaded by the host; bytes would be compiled again at the start.
        if matches!(start.plugin, PluginSource::Bytes { .. }) {
            start.plugin = plugin.into();
        }
        Ok(refused)
    }

    /// What the child at `path` asks of the engine that it cannot do.
    fn engine_lacks(&self, path: &str, start: &PluginStart) -> Option<SpecError> {
        let problem = self.shared.engine.cannot_honour(&start.limits)?;
        Some(SpecError { path: path.to_owned(), problem })
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
    /// The call is the first frame of a call chain: calls the child makes while
    /// handling it belong to it, wait at most what is left of `timeout`, and are
    /// cancelled with it (see the README's messaging section).
    ///
    /// # Cancel safety
    /// Dropping the future abandons the call and cancels its chain (`call_cancelled`,
    /// `caller_gone` without a caller): a message not yet delivered is not handled; one
    /// being handled is, its handler told (`runtime.cancelled()`), its nested calls
    /// failing `cancelled`, and its reply discarded; both count as failed (cancelled).
    pub async fn call(
        &self,
        path: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        let span = tracing::info_span!("warden.call", to = path);
        if self.in_own_runtime() {
            return self.shared.post.call(None, path, payload, timeout).instrument(span).await;
        }
        // Awaited outside the host's runtime (another executor, a plain thread,
        // another runtime, maybe without timers): the call's timer runs on the host's.
        let (post, to) = (Arc::clone(&self.shared.post), path.to_owned());
        let call = self.on_runtime(
            async move { post.call(None, &to, payload, timeout).await }.instrument(span),
        );
        // Cancelled only when the runtime shuts down, with the tree.
        call.await.unwrap_or_else(|| Err(MessageError::UnknownTarget(path.to_owned())))
    }

    /// Calls an interface the child's plugin exports (an application's own, with
    /// bindings from its `bindgen!`), typed both ways, through the supervised child:
    /// queued in its mailbox like a [`Host::call`], with its timeout, circuit breaker
    /// and `callee-crashed` answer, never by holding its instance. `load` finds the
    /// export in the incarnation that handles the call (e.g. `GuestIndices::new` then
    /// `load` of the exported interface), once per incarnation and type `G`: later
    /// calls reuse it; `call` calls it.
    ///
    /// ```no_run
    /// warden::wasmtime::component::bindgen!({
    ///     inline: "package acme:shop@0.1.0;
    ///              interface report { summary: func() -> string; }
    ///              world host { export report; }",
    ///     wasmtime_crate: warden::wasmtime,
    ///     exports: { default: async }, // Warden's engine is async
    /// });
    /// use exports::acme::shop::report::GuestIndices;
    ///
    /// # async fn demo(host: warden::Host) -> Result<(), warden::ExportError> {
    /// let summary: String = host
    ///     .call_export(
    ///         "root/reporter",
    ///         std::time::Duration::from_secs(1),
    ///         |store, instance| GuestIndices::new(&instance.instance_pre(&*store))?.load(store, instance),
    ///         |report, store| Box::pin(async move { report.call_summary(store).await }),
    ///     )
    ///     .await?;
    /// # Ok(()) }
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
        let export = Box::new(ExportCall::new(load, call, move |r| {
            let _ = done.send(r);
        }));
        let gone = || ExportError::Message(MessageError::UnknownTarget(path.to_owned()));
        let called = if self.in_own_runtime() {
            self.shared.post.call_export(path, export, timeout).await
        } else {
            // As for `call`: the timer runs on the host's runtime.
            let (post, to) = (Arc::clone(&self.shared.post), path.to_owned());
            let call = self.on_runtime(async move { post.call_export(&to, export, timeout).await });
            call.await.ok_or_else(gone)?
        };
        match called {
            Ok(_) => result.await.map_err(|_| gone()),
            Err(MessageError::Application(message)) => Err(ExportError::Missing(message)),
            Err(e) => Err(ExportError::Message(e)),
        }
    }

    /// Whether the caller runs on the host's runtime (whose timers its calls use).
    fn in_own_runtime(&self) -> bool {
        Handle::try_current().is_ok_and(|current| current.id() == self.runtime.id())
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
        self.shared.post.lookup(path).map(|m| MailboxInfo::of(&m))
    }

    /// Sends `request` to the supervisor at `supervisor`; a child it does not know
    /// is [`HostError::NotFound`] with the child's path (`child`).
    async fn admin(
        &self,
        supervisor: &str,
        child: Option<&str>,
        request: AdminRequest,
    ) -> Result<AdminReply, HostError> {
        let not_found = |path: String| HostError::NotFound { path };
        let tx = self.shared.supervisor(supervisor).ok_or_else(|| not_found(supervisor.into()))?;
        let (reply, answer) = oneshot::channel();
        tx.send(SupMsg::Admin(request, reply)).map_err(|_| HostError::Gone)?;
        match answer.await.map_err(|_| HostError::Gone)? {
            Err(HostError::Admin(AdminError::NotFound)) => {
                Err(not_found(format!("{supervisor}/{}", child.unwrap_or_default())))
            }
            // One shape for every spec problem, wherever it is found.
            Err(HostError::Admin(AdminError::Invalid(problems))) => {
                Err(HostError::InvalidSpec(problems))
            }
            answer => answer,
        }
    }

    /// The tree as it is now, from its root, with the host's own figures: what an
    /// operator's view and metrics show. Each supervisor answers for its children
    /// (see [`SupervisorReport`]); a supervisor that stops meanwhile is left out.
    pub async fn inspect(&self) -> HostReport {
        let (instances, max_instances) = self.shared.engine.instances();
        // A disk store reads every child's usage: on a blocking thread, not a runtime's.
        let state = Arc::clone(&self.shared.state);
        let usage = self
            .on_runtime(async move { tokio::task::spawn_blocking(move || state.scopes()).await });
        let state_bytes = match usage.await {
            Some(Ok(Ok(scopes))) => scopes.iter().map(|(_, usage)| usage.bytes).sum(),
            _ => 0,
        };
        let tree = self.inspect_supervisor("root".to_owned()).await;
        HostReport { instances, max_instances, state_bytes, messages: self.message_stats(), tree }
    }

    /// The report of the supervisor at `path` and of the supervisors below it.
    fn inspect_supervisor(&self, path: String) -> BoxFuture<'_, Option<SupervisorReport>> {
        Box::pin(async move {
            let Ok(AdminReply::Report(report)) =
                self.admin(&path, None, AdminRequest::Report).await
            else {
                return None;
            };
            let mut report = *report;
            for child in &mut report.children {
                if child.info.kind == ChildKind::Supervisor
                    && child.info.state == ChildState::Running
                {
                    child.supervisor =
                        self.inspect_supervisor(child.info.path.clone()).await.map(Box::new);
                }
            }
            Some(report)
        })
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
        // The supervisor's answer first (not there, the id taken, ...), then the
        // plugin: loaded, its imports checked against the grants.
        let id = spec.id.clone();
        self.admin(supervisor, Some(&id), AdminRequest::Admits(Box::new(spec.clone()))).await?;
        let (host, parent) = (self.clone(), supervisor.to_owned());
        let checked = self.on_runtime(async move { host.preflight_child(&parent, spec).await });
        let spec = match checked.await.unwrap_or(Err(HostError::Gone)) {
            Err(HostError::Load { path, error }) => {
                // As a start that failed: announced, as OTP's supervisor reports it.
                let message = ExitReason::StartFailed { message: error.to_string() }.to_string();
                self.shared.emit(Event::ChildStartFailed { path: path.clone(), message });
                return Err(HostError::Load { path, error });
            }
            checked => checked?,
        };
        let request = AdminRequest::StartChild(Box::new(spec));
        self.admin(supervisor, Some(&id), request).await.map(|_| ())
    }

    /// Replaces child `child`'s component with `upgrade`'s, keeping its mailbox (the
    /// messages queued wait for the new version), its durable state and the rest of
    /// its spec unless `upgrade` changes them. A running child is stopped as its
    /// shutdown says and started with the new version, whose `init` can ask which
    /// version it replaces (`upgraded-from`); `child_upgraded` announces it. If the new
    /// version fails to start, `upgrade_failed` says so, the old one is started again,
    /// and the answer is [`HostError::UpgradeFailed`]. A child that is not running
    /// (stopped, or waiting for a restart) only takes the new spec, for its next start.
    ///
    /// The component is loaded (compiled) and checked against the child's grants and
    /// the engine's limits before the child is touched; the change is applied to the
    /// spec the supervisor holds when it carries the upgrade out.
    ///
    /// Returns [`UpgradeStep::Started`] when the new version runs, and
    /// [`UpgradeStep::Stored`] when the child was not running and only took the new
    /// spec (a child waiting for a restart then restarts on the new version, with no
    /// return to the old one if it fails).
    ///
    /// # Errors
    /// `not_found`, a supervisor child, the plugin cannot load, the new spec is
    /// invalid, the new version failed to start.
    pub async fn upgrade_child(
        &self,
        supervisor: &str,
        child: &str,
        upgrade: Upgrade,
    ) -> Result<UpgradeStep, HostError> {
        let path = format!("{supervisor}/{child}");
        let old = self.plugin_start(supervisor, Some(child)).await?;
        let plugin = self.load_fresh(&path, &upgrade.plugin).await?;
        let upgrade = upgrade.with_plugin(plugin);
        self.check_upgrade(&path, &old, &upgrade).await?;
        let change = Box::new(Change::Upgrade(upgrade));
        let request = AdminRequest::UpgradeChild { id: child.to_owned(), change };
        match self.admin(supervisor, Some(child), request).await? {
            AdminReply::Started(_) => Ok(UpgradeStep::Started),
            _ => Ok(UpgradeStep::Stored),
        }
    }

    /// Upgrades a simple_one_for_one supervisor's children: its template first (the
    /// children it starts from now on run the new version), then each child, one at
    /// a time in start order, as [`Host::upgrade_child`] does (one waiting for a
    /// restart takes the new spec for it; one gone meanwhile is passed over). At the
    /// first that fails, the rollout stops: the children before it keep the new
    /// version, and the template is put back as it was. Returns the paths of the
    /// children upgraded, each with what was done.
    ///
    /// # Errors
    /// As [`Host::upgrade_child`], for the template or the first child that failed;
    /// not a simple_one_for_one supervisor.
    pub async fn upgrade_children(
        &self,
        supervisor: &str,
        upgrade: Upgrade,
    ) -> Result<Vec<(String, UpgradeStep)>, HostError> {
        let old = self.plugin_start(supervisor, None).await?;
        let path = format!("{supervisor}/*");
        let plugin = self.load_fresh(&path, &upgrade.plugin).await?;
        let upgrade = upgrade.with_plugin(plugin);
        self.check_upgrade(&path, &old, &upgrade).await?;
        let request = AdminRequest::UpgradeTemplate(Box::new(Change::Upgrade(upgrade.clone())));
        let before = match self.admin(supervisor, None, request).await? {
            AdminReply::Before(before) => before,
            _ => return Err(HostError::Gone),
        };
        let mut upgraded = Vec::new();
        let rollout = async {
            for child in self.which_children(supervisor).await? {
                let change = Box::new(Change::Upgrade(upgrade.clone()));
                let request = AdminRequest::UpgradeChild { id: child.name.clone(), change };
                match self.admin(supervisor, Some(&child.name), request).await {
                    Ok(AdminReply::Started(_)) => upgraded.push((child.path, UpgradeStep::Started)),
                    Ok(_) => upgraded.push((child.path, UpgradeStep::Stored)),
                    Err(HostError::NotFound { .. }) => {} // gone meanwhile
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        if let Err(e) = rollout.await {
            let request = AdminRequest::UpgradeTemplate(Box::new(Change::Restore(*before)));
            let _ = self.admin(supervisor, None, request).await;
            return Err(e);
        }
        Ok(upgraded)
    }

    /// The plugin start of child `child` of `supervisor` (its template: `None`).
    async fn plugin_start(
        &self,
        supervisor: &str,
        child: Option<&str>,
    ) -> Result<PluginStart, HostError> {
        let request = AdminRequest::Spec(child.map(str::to_owned));
        let spec = match self.admin(supervisor, child, request).await? {
            AdminReply::Spec(spec) => spec,
            _ => return Err(HostError::Gone),
        };
        match spec.start {
            ChildStart::Plugin(start) => Ok(*start),
            ChildStart::Supervisor(_) => Err(HostError::Admin(AdminError::NotAWorker)),
        }
    }

    /// `source` loaded anew, for the child at `path`.
    async fn load_fresh(&self, path: &str, source: &PluginSource) -> Result<Plugin, HostError> {
        let load_error = |error| HostError::Load { path: path.to_owned(), error };
        self.shared.load(source).await.map_err(load_error)
    }

    /// Whether `old` as `upgrade` changes it passes a new child's checks (grants,
    /// engine limits).
    async fn check_upgrade(
        &self,
        path: &str,
        old: &PluginStart,
        upgrade: &Upgrade,
    ) -> Result<(), HostError> {
        let mut start = upgrade.apply(old);
        self.preflight_plugins(Vec::new(), vec![(path.to_owned(), &mut start)]).await
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
        let request = AdminRequest::StartDynamic { name, config };
        match self.admin(supervisor, None, request).await? {
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
        self.admin(supervisor, Some(child), AdminRequest::TerminateChild(child.into()))
            .await
            .map(|_| ())
    }

    /// OTP's `restart_child`: returns once the child started (its `child_started`
    /// published) or failed.
    ///
    /// # Errors
    /// `running`, `restarting`, `not_found`, `simple_one_for_one`, the start's failure.
    pub async fn restart_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.admin(supervisor, Some(child), AdminRequest::RestartChild(child.into()))
            .await
            .map(|_| ())
    }

    /// OTP's `delete_child`.
    ///
    /// # Errors
    /// `running`, `restarting`, `not_found`, `simple_one_for_one`.
    pub async fn delete_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.admin(supervisor, Some(child), AdminRequest::DeleteChild(child.into()))
            .await
            .map(|_| ())
    }

    /// OTP's `which_children`, in start order.
    ///
    /// # Errors
    /// No supervisor at that path.
    pub async fn which_children(&self, supervisor: &str) -> Result<Vec<ChildInfo>, HostError> {
        match self.admin(supervisor, None, AdminRequest::WhichChildren).await? {
            AdminReply::Children(children) => Ok(children),
            _ => Err(HostError::Gone),
        }
    }

    /// OTP's `count_children`.
    ///
    /// # Errors
    /// No supervisor at that path.
    pub async fn count_children(&self, supervisor: &str) -> Result<ChildCounts, HostError> {
        match self.admin(supervisor, None, AdminRequest::CountChildren).await? {
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

    /// Joins the cluster the builder named ([`HostBuilder::cluster`]), once: from
    /// then on this node hosts the children other nodes place on it, and its
    /// supervisors may place theirs on other nodes. A host in no cluster has nothing
    /// to join.
    ///
    /// # Errors
    /// [`HostError::Cluster`]: NATS cannot be reached, JetStream refused, or the node
    /// name is taken by a live node.
    pub async fn join(&self) -> Result<(), HostError> {
        let Some(config) = self.cluster.clone() else { return Ok(()) };
        if self.shared.nodes.cluster().is_some() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        self.on_runtime(async move { super::cluster::join(&shared, &config).await })
            .await
            .ok_or(HostError::Gone)?
            .map_err(HostError::Cluster)
    }

    /// Leaves the cluster, if in one: the children this node hosts for other nodes
    /// are stopped (their supervisors restart them elsewhere, as placement allows),
    /// and the others see `node_down` with reason `left`. Call it after
    /// [`Host::shutdown`]; a host dropped without it is seen to die within the node
    /// TTL.
    pub async fn leave(&self) {
        let shared = Arc::clone(&self.shared);
        self.on_runtime(async move { super::cluster::leave(&shared).await }).await;
    }

    /// Stops the tree in order (children newest first, each waited for) and returns
    /// the root's exit reason.
    ///
    /// # Cancel safety
    /// The shutdown goes on once asked for; dropping the future only stops waiting.
    pub async fn shutdown(&self) -> ExitReason {
        let mine = {
            let mut root = self.root();
            match std::mem::take(&mut *root) {
                Root::Running { task } => {
                    *root = Root::Stopping { task };
                    Some(true)
                }
                // Another shutdown is under way: wait for the same end.
                Root::Stopping { task } => {
                    *root = Root::Stopping { task };
                    Some(false)
                }
                other => {
                    *root = other;
                    None
                }
            }
        };
        let stopping = match mine {
            Some(true) => Stopping(self),
            Some(false) => return self.wait().await,
            None => return ExitReason::Shutdown, // no tree was started
        };
        if let Some(root) = self.shared.supervisor("root") {
            let _ = root.send(SupMsg::Shutdown);
        }
        let reason = self.wait().await;
        std::mem::forget(stopping);
        *self.root() = Root::None;
        reason
    }
}

/// Every plugin child of `spec` (at `path`) and of its nested supervisors, with its
/// path.
fn collect<'a>(
    path: &str,
    spec: &'a mut SupervisorSpec,
    into: &mut Vec<(String, &'a mut PluginStart)>,
) {
    for child in &mut spec.children {
        let child_path = format!("{path}/{}", child.id);
        match &mut child.start {
            ChildStart::Plugin(start) => into.push((child_path, start)),
            ChildStart::Supervisor(sub) => collect(&child_path, sub, into),
        }
    }
}
