//! What every task of one tree shares: the engine, the state store, the event bus,
//! the post office, and every supervisor's channel by path.

use super::protocol::SupMsg;
use crate::ExitReason;
use crate::events::{Event, EventBus};
use crate::messaging::Post;
use crate::sandbox::{Engine, LoadError, Plugin};
use crate::spec::PluginSource;
use crate::state::StateStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// What every task of the tree shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) events: Arc<EventBus>,
    /// Every child's mailbox, by path.
    pub(crate) post: Arc<Post>,
    /// Children's output on its way to the bus, within the host's rate.
    pub(crate) guest_logs: Arc<super::guest_logs::GuestLogs>,
    /// This host's part in a cluster, if it joined one.
    pub(crate) nodes: super::cluster::nodes::Nodes,
    /// Every supervisor's channel, by path.
    supervisors: Mutex<HashMap<String, mpsc::UnboundedSender<SupMsg>>>,
    /// Plugins by file path: a restart must not re-read and re-hash the file.
    plugins: Mutex<HashMap<std::path::PathBuf, Plugin>>,
    root_exit: watch::Sender<Option<ExitReason>>,
    /// The first child whose start failed since the tree started: the one a failed
    /// tree start names.
    first_start_failure: Mutex<Option<String>>,
    /// Set when the root supervisor gave up (its exit reason is `shutdown` either way,
    /// as in OTP).
    root_gave_up: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(engine: Engine, state: Arc<dyn StateStore>, events: Arc<EventBus>) -> Self {
        Self {
            engine,
            state,
            post: Arc::new(Post::new(Arc::clone(&events))),
            guest_logs: Arc::new(super::guest_logs::GuestLogs::new(Arc::clone(&events))),
            events,
            nodes: super::cluster::nodes::Nodes::default(),
            supervisors: Mutex::new(HashMap::new()),
            plugins: Mutex::new(HashMap::new()),
            root_exit: watch::channel(None).0,
            first_start_failure: Mutex::new(None),
            root_gave_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A new tree starts: no exit, no giving up yet.
    pub(crate) fn root_starting(&self) {
        self.root_exit.send_replace(None);
        *self.first_start_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.root_gave_up.store(false, std::sync::atomic::Ordering::Release);
    }

    /// The first child whose start failed since the tree started.
    pub(crate) fn first_start_failure(&self) -> Option<String> {
        self.first_start_failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the root supervisor of the tree last started has exited.
    pub(crate) fn root_has_exited(&self) -> bool {
        self.root_exit.borrow().is_some()
    }

    /// Waits until the root supervisor exits; its reason.
    pub(crate) async fn root_exit(&self) -> ExitReason {
        let mut exit = self.root_exit.subscribe();
        let reason = exit.wait_for(Option::is_some).await.map(|r| r.clone());
        reason.ok().flatten().unwrap_or(ExitReason::Shutdown)
    }

    /// Whether the root supervisor gave up.
    pub(crate) fn root_gave_up(&self) -> bool {
        self.root_gave_up.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn emit(&self, event: Event) {
        match &event {
            Event::SupervisorGaveUp { path, .. } if path == "root" => {
                self.root_gave_up.store(true, std::sync::atomic::Ordering::Release);
            }
            Event::ChildStartFailed { path, .. } => {
                let mut first = self.first_start_failure.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| path.clone());
            }
            _ => {}
        }
        self.events.emit(event);
    }

    /// The plugin `source` names. A file is loaded (read, hashed, compiled) the first
    /// time only, and bytes are compiled the first time the engine sees them, on a
    /// blocking thread: compiling takes tens of milliseconds a plugin. A file changed
    /// on disk is picked up by a new host, not by restarts. A loaded plugin is used as
    /// it is.
    pub(crate) async fn plugin(&self, source: &PluginSource) -> Result<Plugin, LoadError> {
        if let PluginSource::File(file) = source
            && let Some(plugin) = self.plugins.lock().unwrap_or_else(|p| p.into_inner()).get(file)
        {
            return Ok(plugin.clone());
        }
        let plugin = self.load(source).await?;
        if let PluginSource::File(file) = source {
            self.plugins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(file.clone(), plugin.clone());
        }
        Ok(plugin)
    }

    /// The plugin `source` names, loaded anew whatever the host holds for its file (a
    /// file replaced by a new build is read again), and not kept for it: an upgrade's.
    pub(crate) async fn load(&self, source: &PluginSource) -> Result<Plugin, LoadError> {
        type Load = Box<dyn FnOnce() -> Result<Plugin, LoadError> + Send>;
        let engine = self.engine.clone();
        let load: Load = match source {
            PluginSource::Loaded(loaded) => return Plugin::from_loaded(loaded, &self.engine),
            PluginSource::File(file) => {
                let file = file.clone();
                Box::new(move || engine.load_file(file))
            }
            PluginSource::Bytes { name, bytes } => {
                let (name, bytes) = (name.clone(), Arc::clone(bytes));
                Box::new(move || engine.load(&name, &bytes))
            }
        };
        match tokio::task::spawn_blocking(load).await {
            Ok(loaded) => loaded,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(LoadError::ShuttingDown { file: source.name() }),
            },
        }
    }

    /// A plugin's version as events name it: its file's name and its hash,
    /// `echo.wasm@sha256:0123456789ab`. A file's is that of the compiled plugin the
    /// host holds for it (what its children run); a source the host holds no compiled
    /// plugin for (a file no child started from yet) is named without a hash. Never
    /// reads a file: supervisors ask it.
    pub(crate) fn version(&self, source: &PluginSource) -> String {
        let plugin = match source {
            PluginSource::File(file) => {
                self.plugins.lock().unwrap_or_else(|p| p.into_inner()).get(file).cloned()
            }
            PluginSource::Loaded(loaded) => Plugin::from_loaded(loaded, &self.engine).ok(),
            PluginSource::Bytes { .. } => None,
        };
        let name = source.name();
        let name = name.rsplit('/').next().unwrap_or(&name).to_owned();
        match plugin {
            Some(plugin) => format!("{name}@sha256:{}", &plugin.hash()[..12]),
            None => name,
        }
    }

    pub(crate) fn register(&self, path: &str, tx: mpsc::UnboundedSender<SupMsg>) {
        self.supervisors.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), tx);
    }

    pub(crate) fn unregister(&self, path: &str) {
        self.supervisors.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
    }

    pub(crate) fn supervisor(&self, path: &str) -> Option<mpsc::UnboundedSender<SupMsg>> {
        self.supervisors.lock().unwrap_or_else(|p| p.into_inner()).get(path).cloned()
    }

    pub(crate) fn root_exited(&self, reason: ExitReason) {
        // send_replace: `send` drops the value when nobody is subscribed yet.
        self.root_exit.send_replace(Some(reason));
    }

    pub(crate) fn seed(&self) -> u64 {
        // Distinct per supervisor start; never zero (xorshift's fixed point).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos | 1
    }
}
