//! One incarnation of a child: a fresh Store, instance and budget, entered only while
//! alive. A trapped or killed sandbox is never re-entered; a restart is a new
//! [`Sandbox`] from the same [`Plugin`].

use super::bindings;
use super::bindings::warden::plugin::types::Envelope as WitEnvelope;
use super::capacity::Slot;
use super::engine::{Engine, SandboxError};
use super::exports::{ExportCall, ExportFailed};
use super::glue::to_wit_exit;
use super::heartbeat::{Heartbeat, Verdict};
use super::interfaces::host_function_failed;
use super::limits::LimitExceeded;
use super::output::{Budget, GuestStream, OutputBudget, TracingStream};
use super::plugin::Plugin;
use super::registry::{AppStates, ChildIdentity};
use super::store::{HostWaits, Links, StoreData};
use crate::services::{Envelope, Messenger, NoMessaging, NoState, StateStore};
use crate::spec::HeartbeatPolicy;
use crate::spec::{ChildLimits, Grants, Network, Protocol, Shutdown, SocketUse};
use crate::task::catch_panic;
use crate::{ExitReason, KillCause, TrapKind};
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Who a sandbox runs for, and with what.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The child's name in its supervisor.
    pub name: String,
    /// The child's path in the tree, e.g. `root/pool/worker`.
    pub path: String,
    /// Bytes handed to `init` (JSON from a manifest, usually). Default empty.
    pub config: Vec<u8>,
    /// Resource limits.
    pub limits: ChildLimits,
    /// Capabilities; none by default.
    pub grants: Grants,
    /// Messaging; [`NoMessaging`] by default.
    pub messenger: Arc<dyn Messenger>,
    /// Key-value state, scoped to `path`; none by default ([`NoState`]: every state
    /// call fails with a storage error), as messaging is none by default.
    pub state: Arc<dyn StateStore>,
    /// Where heartbeats are recorded (judged by `limits.heartbeat`); a fresh cell by
    /// default.
    pub heartbeat: Arc<Heartbeat>,
    /// The sandbox's kill switch; a fresh one by default. Sandboxes started from clones
    /// of one config share it (a hibernating child's activations are one incarnation).
    pub kill: KillSwitch,
    /// The budget its stdout, stderr and log lines share; a fresh one by default.
    /// Sandboxes started from clones of one config share it.
    pub output: OutputBudget,
    /// The version this incarnation replaces, when an upgrade starts it (what its
    /// `upgraded-from` answers); none by default.
    pub upgraded_from: Option<String>,
}

impl SandboxConfig {
    /// A configuration for the child at `path` (its name is the last segment), with
    /// default limits and no grants.
    pub fn new(path: impl Into<String>) -> Self {
        let path = path.into();
        let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
        Self {
            name,
            path,
            config: Vec::new(),
            limits: ChildLimits::default(),
            grants: Grants::default(),
            messenger: Arc::new(NoMessaging),
            state: Arc::new(NoState),
            heartbeat: Heartbeat::new(),
            kill: KillSwitch::default(),
            output: OutputBudget::default(),
            upgraded_from: None,
        }
    }
}

/// What a handled message produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// The reply, or the application error the guest answered with.
    pub reply: Result<Vec<u8>, String>,
    /// Set when the guest asked to exit during the call; the sandbox is then dead.
    pub exit: Option<ExitReason>,
}

/// Kills a running sandbox from outside (the watchdog, a shutdown timer).
#[derive(Clone, Debug, Default)]
pub struct KillSwitch {
    inner: Arc<KillInner>,
}

#[derive(Debug, Default)]
struct KillInner {
    /// Set once: the first cause wins.
    cause: OnceLock<KillCause>,
    /// The waker of the call being guarded. One call runs at a time per switch (a
    /// sandbox's calls take it mutably; a hibernating child's activations follow each
    /// other).
    waiting: AtomicWaker,
}

impl KillSwitch {
    /// Kills the sandbox: a running export call ends within one epoch tick with
    /// `killed(cause)`, and later calls are refused. The first cause wins.
    pub fn kill(&self, cause: KillCause) {
        if self.inner.cause.set(cause).is_ok() {
            self.inner.waiting.wake();
        }
    }

    fn cause(&self) -> Option<KillCause> {
        self.inner.cause.get().copied()
    }

    async fn killed(&self) -> KillCause {
        std::future::poll_fn(|cx| {
            // Registered before looking, so a kill after the look wakes us.
            self.inner.waiting.register(cx.waker());
            self.cause().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }
}

/// Raised by the epoch callback when a call has used up its CPU deadline.
#[derive(Debug, thiserror::Error)]
#[error("killed: {0}")]
struct Killed(KillCause);

/// One live incarnation of a plugin.
pub struct Sandbox {
    store: Store<StoreData>,
    guest: bindings::Plugin,
    /// The component instance, for typed calls into the application's exports.
    instance: wasmtime::component::Instance,
    plugin: Plugin,
    incarnation: u64,
    limits: ChildLimits,
    kill: KillSwitch,
    heartbeat: Arc<Heartbeat>,
    host_waits: Arc<HostWaits>,
    dead: Option<ExitReason>,
    _slot: Slot,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("path", &self.store.data().path)
            .field("incarnation", &self.incarnation)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

/// How a guarded export call ended, when it did not return.
enum Ended {
    Wasm(wasmtime::Error),
    Killed(KillCause),
    /// Host code run by the call panicked: an application's function, or Warden's.
    Panic(String),
}

impl Sandbox {
    /// Starts incarnation `incarnation` of `plugin`: a new Store and instance, then the
    /// guest's `init`.
    ///
    /// # Errors
    /// The exit reason of a failed start: `start_failed` when `init` returned an error
    /// or the instance could not be created (capacity, a bad grant), a trap or kill
    /// when `init` crashed.
    pub async fn start(
        plugin: &Plugin,
        config: SandboxConfig,
        incarnation: u64,
    ) -> Result<Self, ExitReason> {
        let engine = plugin.engine();
        check_limits(engine, &config)?;
        let slot = engine.acquire_slot().map_err(start_failed)?;
        let SandboxConfig {
            name,
            path,
            config: init_config,
            limits,
            grants,
            messenger,
            state,
            heartbeat,
            kill,
            output,
            upgraded_from,
        } = config;
        let output = output.get(limits.output_per_second);
        let host_waits = Arc::new(HostWaits::default());
        let links = Links {
            messenger,
            state,
            heartbeat: Arc::clone(&heartbeat),
            host_waits: Arc::clone(&host_waits),
            output: Arc::clone(&output),
            interfaces: Arc::clone(&engine.inner.interfaces),
        };
        let identity =
            ChildIdentity { path: path.clone(), incarnation, config: init_config.clone() };
        let app = AppStates::make(
            &engine.inner.interfaces,
            &plugin.inner.app_imports,
            &grants,
            &identity,
        )?;
        let mut data = StoreData::new(build_wasi(&path, &grants, &output)?, &limits, &path, links);
        data.upgraded_from = upgraded_from;
        data.app = app;
        let mut store = new_store(engine, data);
        prepare_call(&mut store, engine, &limits, limits.call_deadline)?;
        let (instance, guest) = instantiate(plugin, &mut store, &kill, &host_waits).await?;
        let mut sandbox = Self {
            store,
            guest,
            instance,
            plugin: plugin.clone(),
            incarnation,
            limits,
            kill,
            heartbeat,
            host_waits,
            dead: None,
            _slot: slot,
        };
        let ctx = bindings::warden::plugin::types::Context {
            name,
            path,
            incarnation,
            config: init_config,
        };
        sandbox.init(&ctx).await?;
        Ok(sandbox)
    }

    /// Runs the guest's `init`; an error, a crash or an exit it asks for is the
    /// start's failure.
    async fn init(
        &mut self,
        ctx: &bindings::warden::plugin::types::Context,
    ) -> Result<(), ExitReason> {
        self.prepare(self.limits.call_deadline)?;
        let Self { store, guest, kill, heartbeat, host_waits, limits, .. } = self;
        let watch = limits.heartbeat.as_ref().map(|policy| (&*heartbeat, policy));
        let init = guest.warden_plugin_guest().call_init(&mut *store, ctx);
        match guarded(kill, host_waits, watch, init).await {
            Ok(Ok(())) => match self.store.data_mut().exit_request.take() {
                Some(reason) => Err(reason),
                None => Ok(()),
            },
            Ok(Err(message)) => Err(ExitReason::StartFailed { message }),
            Err(ended) => Err(classify(ended, self.store.data_mut())),
        }
    }

    /// The plugin this sandbox runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// This incarnation's number (1 for the first start).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// A handle that kills this sandbox from another task.
    pub fn kill_switch(&self) -> KillSwitch {
        self.kill.clone()
    }

    /// When its last export call began (its `init` until the first call).
    pub fn call_started(&self) -> Instant {
        self.store.data().call_started
    }

    /// Where this incarnation's heartbeats are recorded.
    pub fn heartbeat(&self) -> &Arc<Heartbeat> {
        &self.heartbeat
    }

    /// Why the sandbox ended, once it has.
    pub fn exit_reason(&self) -> Option<&ExitReason> {
        self.dead.as_ref()
    }

    /// Handles one message.
    ///
    /// # Errors
    /// The exit reason if the guest trapped or was killed, or if the sandbox had
    /// already ended; the Store is not entered again after that.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes abandons the guest mid-call, and a
    /// Store left mid-call cannot be entered again: the sandbox ends, and later calls
    /// return `killed(brutal_kill)`.
    pub async fn handle(
        &mut self,
        sender: Option<String>,
        payload: Vec<u8>,
        expects_reply: bool,
    ) -> Result<Handled, ExitReason> {
        self.handle_wit(&WitEnvelope { sender, payload, expects_reply }).await
    }

    /// Handles one message, leaving it with the caller (who decides what becomes of
    /// it when the guest crashes on it).
    ///
    /// # Errors
    /// As [`Sandbox::handle`].
    ///
    /// # Cancel safety
    /// As [`Sandbox::handle`]: dropped mid-call, the sandbox ends; the message stays
    /// the caller's.
    pub async fn handle_envelope(&mut self, msg: &Envelope) -> Result<Handled, ExitReason> {
        let Envelope { sender, payload, expects_reply } = msg;
        // The message stays the caller's (it may be delivered again): the guest gets
        // a copy, as it would of any message it reads into its own memory.
        let wit = WitEnvelope {
            sender: sender.clone(),
            payload: payload.clone(),
            expects_reply: *expects_reply,
        };
        self.handle_wit(&wit).await
    }

    async fn handle_wit(&mut self, msg: &WitEnvelope) -> Result<Handled, ExitReason> {
        self.prepare(self.limits.call_deadline)?;
        let Self { store, guest, kill, heartbeat, host_waits, limits, dead, .. } = self;
        let abandoned = Abandoned(Some(dead));
        let watch = limits.heartbeat.as_ref().map(|policy| (&*heartbeat, policy));
        let call = guest.warden_plugin_guest().call_handle(&mut *store, msg);
        let result = guarded(kill, host_waits, watch, call).await;
        abandoned.disarm();
        self.handled(result)
    }

    /// Runs a typed call into the guest's own exports, guarded like
    /// [`Sandbox::handle`]. A `load` that fails is answered as an application error
    /// (`reply` is `Err` with its message) and the sandbox carries on; a call that fails
    /// ends the sandbox with its exit reason.
    ///
    /// # Errors
    /// As [`Sandbox::handle`].
    ///
    /// # Cancel safety
    /// As [`Sandbox::handle`].
    pub async fn call_export(&mut self, call: ExportCall) -> Result<Handled, ExitReason> {
        self.prepare(self.limits.call_deadline)?;
        let Self { store, instance, kill, heartbeat, host_waits, limits, dead, .. } = self;
        let abandoned = Abandoned(Some(dead));
        let watch = limits.heartbeat.as_ref().map(|policy| (&*heartbeat, policy));
        let call = async {
            match call.run(store, instance).await {
                Ok(()) => Ok(Ok(Vec::new())),
                Err(ExportFailed::Load(message)) => Ok(Err(message)),
                Err(ExportFailed::Call(e)) => Err(e),
            }
        };
        let result = guarded(kill, host_waits, watch, call).await;
        abandoned.disarm();
        self.handled(result)
    }

    /// Stops the sandbox as `shutdown` says, telling the guest `reason`; returns the
    /// exit reason the incarnation ended with: `reason` itself when `terminate`
    /// returned in time, `killed(...)` when it was cut short, a trap when it crashed.
    pub async fn terminate(mut self, reason: ExitReason, shutdown: Shutdown) -> ExitReason {
        if let Some(dead) = self.dead.take() {
            return dead;
        }
        let timeout = match shutdown {
            Shutdown::BrutalKill => return ExitReason::Killed { cause: KillCause::BrutalKill },
            Shutdown::Timeout(t) => Some(t),
            Shutdown::Infinity => None,
        };
        // The shutdown timeout, not the CPU deadline, bounds `terminate`.
        if let Err(dead) = self.prepare(None) {
            return dead;
        }
        let wit_reason = to_wit_exit(&reason);
        let Self { store, guest, kill, host_waits, .. } = &mut self;
        let call = guarded(
            kill,
            host_waits,
            None,
            guest.warden_plugin_guest().call_terminate(&mut *store, &wit_reason),
        );
        let result = match timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(result) => result,
                Err(_) => Err(Ended::Killed(KillCause::ShutdownTimeout)),
            },
            None => call.await,
        };
        match result {
            Ok(()) => reason,
            Err(ended) => self.end(ended),
        }
    }

    fn prepare(&mut self, deadline: Option<Duration>) -> Result<(), ExitReason> {
        if let Some(dead) = &self.dead {
            return Err(dead.clone());
        }
        prepare_call(&mut self.store, self.plugin.engine(), &self.limits, deadline)
    }

    /// How a guarded `handle` or typed call ended: its reply with the exit the guest
    /// asked for, or the sandbox's end.
    fn handled(
        &mut self,
        result: Result<Result<Vec<u8>, String>, Ended>,
    ) -> Result<Handled, ExitReason> {
        match result {
            Ok(reply) => {
                let exit = self.store.data_mut().exit_request.take();
                self.dead.clone_from(&exit);
                Ok(Handled { reply, exit })
            }
            Err(ended) => Err(self.end(ended)),
        }
    }

    fn end(&mut self, ended: Ended) -> ExitReason {
        let reason = classify(ended, self.store.data_mut());
        self.dead = Some(reason.clone());
        reason
    }
}

/// Ends the sandbox if dropped armed: an export call whose future was dropped left the
/// Store mid-call.
struct Abandoned<'a>(Option<&'a mut Option<ExitReason>>);

impl Abandoned<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(dead) = self.0.take() {
            *dead = Some(ExitReason::Killed { cause: KillCause::BrutalKill });
        }
    }
}

/// Refuses limits the engine cannot honour, before anything is created.
fn check_limits(engine: &Engine, config: &SandboxConfig) -> Result<(), ExitReason> {
    match engine.cannot_honour(&config.limits) {
        Some(problem) => {
            Err(ExitReason::StartFailed { message: format!("{}: {problem}", config.path) })
        }
        None => Ok(()),
    }
}

/// A Store for one incarnation, with its limiter and its epoch callback.
fn new_store(engine: &Engine, data: StoreData) -> Store<StoreData> {
    let mut store = Store::new(&engine.inner.engine, data);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|mut ctx| on_epoch(ctx.data_mut()));
    store
}

/// Checked at every epoch tick while the guest runs: the guest's own time is the
/// call's wall time less its waits on the host, so the kill comes within one tick of
/// the deadline however often the guest thread was descheduled. The heartbeat
/// watchdog is judged here too (timers are late on a runtime thread kept busy by a
/// spinning guest). Every tick yields: a spinning guest never starves the thread.
fn on_epoch(data: &mut StoreData) -> wasmtime::Result<UpdateDeadline> {
    let now = Instant::now();
    if let Some(deadline) = data.deadline
        && now.duration_since(data.call_started).saturating_sub(data.host_waits.total()) >= deadline
    {
        return Err(wasmtime::Error::new(Killed(KillCause::Deadline)));
    }
    if let Some(policy) = &data.watch
        && data.next_judgement.is_none_or(|at| now >= at)
    {
        match data.heartbeat.judge(policy, now) {
            Verdict::Missed(_) => return Err(wasmtime::Error::new(Killed(KillCause::Heartbeat))),
            Verdict::Alive(at) => data.next_judgement = Some(at),
        }
    }
    data.host_waits.yielding.store(true, Ordering::Relaxed);
    Ok(UpdateDeadline::Yield(1))
}

/// Instantiates `plugin` in `store`, guarded like a call: an error that is not the
/// guest's (a missing resource, say) is a start failure, a trap or a kill classified.
async fn instantiate(
    plugin: &Plugin,
    store: &mut Store<StoreData>,
    kill: &KillSwitch,
    host_waits: &HostWaits,
) -> Result<(wasmtime::component::Instance, bindings::Plugin), ExitReason> {
    let instantiate = async {
        let instance = plugin.inner.pre.instance_pre().instantiate_async(&mut *store).await?;
        let guest = plugin.inner.indices.load(&mut *store, &instance)?;
        Ok((instance, guest))
    };
    let instantiated = guarded(kill, host_waits, None, instantiate).await;
    match instantiated {
        Ok(instantiated) => Ok(instantiated),
        Err(Ended::Wasm(e))
            if e.downcast_ref::<wasmtime::Trap>().is_none()
                && e.downcast_ref::<LimitExceeded>().is_none()
                && e.downcast_ref::<Killed>().is_none() =>
        {
            Err(start_failed(SandboxError::Instantiate {
                plugin: plugin.name().to_owned(),
                message: format!("{e:#}"),
            }))
        }
        Err(ended) => Err(classify(ended, store.data_mut())),
    }
}

/// Resets the per-call budget: CPU ticks, fuel, and the first epoch deadline.
fn prepare_call(
    store: &mut Store<StoreData>,
    engine: &Engine,
    limits: &ChildLimits,
    deadline: Option<Duration>,
) -> Result<(), ExitReason> {
    let data = store.data_mut();
    data.deadline = deadline;
    data.call_started = Instant::now();
    data.host_waits.reset();
    data.next_judgement = None;
    store.set_epoch_deadline(1);
    if engine.config().fuel {
        store
            .set_fuel(limits.fuel_per_call.unwrap_or(u64::MAX))
            .map_err(|e| ExitReason::StartFailed { message: format!("cannot set fuel: {e:#}") })?;
    }
    Ok(())
}

/// Runs an export call until it returns, the kill switch fires, or the heartbeat
/// watchdog (when there is a policy) judges the guest hung; counts its waits on the
/// host for the deadline.
async fn guarded<R>(
    kill: &KillSwitch,
    host_waits: &HostWaits,
    watch: Option<(&Arc<Heartbeat>, &HeartbeatPolicy)>,
    call: impl Future<Output = wasmtime::Result<R>>,
) -> Result<R, Ended> {
    if let Some((heartbeat, policy)) = watch {
        heartbeat.busy(policy);
    }
    let hung = async {
        match watch {
            Some((heartbeat, policy)) => heartbeat.watch(policy).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        biased;
        cause = kill.killed() => Err(Ended::Killed(cause)),
        _ = hung => {
            kill.kill(KillCause::Heartbeat);
            Err(Ended::Killed(KillCause::Heartbeat))
        }
        result = catch_panic(host_waits.count(watch.map(|(h, _)| h), call)) => match result {
            Ok(result) => result.map_err(Ended::Wasm),
            Err(message) => Err(Ended::Panic(message)),
        },
    };
    if let Some((heartbeat, _)) = watch {
        heartbeat.idle();
    }
    result
}

fn start_failed(e: SandboxError) -> ExitReason {
    ExitReason::StartFailed { message: e.to_string() }
}

/// Turns how a call ended into a typed exit reason: the one place traps are classified.
fn classify(ended: Ended, data: &mut StoreData) -> ExitReason {
    let err = match ended {
        Ended::Killed(cause) => return ExitReason::Killed { cause },
        Ended::Panic(message) => {
            return host_function_failed(data, message.clone(), true)
                .unwrap_or(ExitReason::HostPanic { message });
        }
        Ended::Wasm(err) => err,
    };
    if let Some(Killed(cause)) = err.downcast_ref::<Killed>() {
        return ExitReason::Killed { cause: *cause };
    }
    if let Some(limit) = err.downcast_ref::<LimitExceeded>() {
        return ExitReason::Trap {
            trap: TrapKind::MemoryLimit,
            message: limit.to_string(),
            panic: false,
        };
    }
    // Not a trap of the guest's own: an error an application's function returned.
    if err.downcast_ref::<wasmtime::Trap>().is_none()
        && let Some(reason) = host_function_failed(data, host_error_message(&err), false)
    {
        return reason;
    }
    let trap = match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => TrapKind::Unreachable,
        Some(wasmtime::Trap::MemoryOutOfBounds | wasmtime::Trap::HeapMisaligned) => {
            TrapKind::MemoryOutOfBounds
        }
        Some(wasmtime::Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(wasmtime::Trap::IntegerDivisionByZero) => TrapKind::IntegerDivisionByZero,
        Some(wasmtime::Trap::IntegerOverflow | wasmtime::Trap::BadConversionToInteger) => {
            TrapKind::IntegerOverflow
        }
        Some(
            wasmtime::Trap::IndirectCallToNull
            | wasmtime::Trap::BadSignature
            | wasmtime::Trap::TableOutOfBounds,
        ) => TrapKind::IndirectCall,
        Some(wasmtime::Trap::OutOfFuel) => TrapKind::OutOfFuel,
        Some(wasmtime::Trap::Interrupt) => {
            return ExitReason::Killed { cause: KillCause::Deadline };
        }
        _ => TrapKind::Other,
    };
    match data.abort_reason.take() {
        // The guest said why it was about to abort: a panic, reported as such.
        Some(message) if trap == TrapKind::Unreachable => {
            ExitReason::Trap { trap, message, panic: true }
        }
        _ => ExitReason::Trap { trap, message: trap_message(&err), panic: false },
    }
}

/// A host function's error as its author wrote it, with its contexts, without the
/// wasm backtrace wasmtime adds outermost.
fn host_error_message(err: &wasmtime::Error) -> String {
    let skip = usize::from(err.downcast_ref::<wasmtime::WasmBacktrace>().is_some());
    let chain: Vec<String> = err.chain().skip(skip).map(ToString::to_string).collect();
    chain.join(": ")
}

/// One line for an event: the trap and the guest function it happened in; the full
/// backtrace goes to the debug log.
fn trap_message(err: &wasmtime::Error) -> String {
    tracing::debug!("guest trap: {err:?}");
    let what = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string(),
    };
    let frame = err.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| {
        bt.frames()
            .iter()
            .find_map(|f| f.func_name().map(|n| format!("{:#}", rustc_demangle::demangle(n))))
    });
    match frame {
        Some(func) => format!("{what} in {func}"),
        None => what,
    }
}

fn build_wasi(path: &str, grants: &Grants, output: &Arc<Budget>) -> Result<WasiCtx, ExitReason> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(TracingStream::new(path, GuestStream::Stdout, Arc::clone(output)))
        .stderr(TracingStream::new(path, GuestStream::Stderr, Arc::clone(output)));
    for (name, value) in &grants.env {
        wasi.env(name, value);
    }
    for dir in &grants.dirs {
        let perms = if dir.writable {
            wasmtime_wasi::FsPerms::ReadWrite
        } else {
            wasmtime_wasi::FsPerms::ReadOnly
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms).map_err(|e| ExitReason::StartFailed {
            message: format!("cannot grant directory {}: {e:#}", dir.host.display()),
        })?;
    }
    grant_network(&mut wasi, &grants.network);
    Ok(wasi.build())
}

/// Lets the guest use the sockets `network` allows: wasmtime-wasi asks for every
/// bind, listen, accept, connect, send and receive, with the address.
fn grant_network(wasi: &mut WasiCtxBuilder, network: &Network) {
    use wasmtime_wasi::sockets::SocketAddrUse as Use;
    if !network.is_granted() {
        return;
    }
    let network = Arc::new(network.clone());
    wasi.allow_ip_name_lookup(network.allows_name_lookup()).allow_tcp(true).allow_udp(true);
    wasi.socket_addr_check(move |addr, used| {
        let (protocol, purpose) = match used {
            Use::TcpBind | Use::TcpListen => (Protocol::Tcp, SocketUse::Bind),
            Use::TcpConnect => (Protocol::Tcp, SocketUse::Connect),
            Use::TcpAccept => (Protocol::Tcp, SocketUse::Peer),
            Use::UdpBind => (Protocol::Udp, SocketUse::Bind),
            Use::UdpSend => (Protocol::Udp, SocketUse::Connect),
            Use::UdpReceive => (Protocol::Udp, SocketUse::Peer),
        };
        let allowed = network.allows(protocol, addr, purpose);
        Box::pin(std::future::ready(allowed))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_on_the_host_count_and_yields_to_the_runtime_do_not() {
        let waits = HostWaits::default();
        // A call whose epoch callback yields three times before it returns.
        let mut yields = 0;
        let spinning = std::future::poll_fn(|cx| {
            if yields == 3 {
                return Poll::Ready(());
            }
            yields += 1;
            waits.yielding.store(true, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        waits.count(None, spinning).await;
        assert_eq!(waits.total(), Duration::ZERO, "yielded time is the guest's");
        // A call suspended 20 ms in a host function.
        waits.count(None, tokio::time::sleep(Duration::from_millis(20))).await;
        assert!(waits.total() >= Duration::from_millis(20), "{:?}", waits.total());
        waits.reset();
        assert_eq!(waits.total(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_kill_wakes_the_guarded_call_and_the_first_cause_wins() {
        let kill = KillSwitch::default();
        let waiting = kill.clone();
        let guarded = tokio::spawn(async move { waiting.killed().await });
        tokio::task::yield_now().await; // the call is now waiting on the switch
        kill.kill(KillCause::Deadline);
        kill.kill(KillCause::BrutalKill);
        assert_eq!(guarded.await.unwrap(), KillCause::Deadline);
        assert_eq!(kill.killed().await, KillCause::Deadline, "a later wait ends at once");
    }
}
