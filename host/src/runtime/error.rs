//! Why a request to the host failed.

use crate::ExitReason;
use crate::sandbox::{InterfaceError, LoadError, MessageError, SandboxError};
use crate::state::OpenError;
use crate::supervisor::{AdminError, SpecError};

/// Why a host request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No supervisor or child at that path (a supervisor's for requests to a
    /// supervisor, a child's for requests about one of its children).
    #[error("not_found: nothing at {path}")]
    NotFound {
        /// The path looked for.
        path: String,
    },
    /// The supervisor refused the request (OTP's answer: `running`,
    /// `already_present`, ...).
    #[error("{0}")]
    Admin(AdminError),
    /// The spec breaks OTP's rules or asks for what this host's engine lacks: every
    /// problem, each with the path of the child (or supervisor) it is about. Nothing
    /// was started.
    #[error("invalid spec: {}", join(.0))]
    InvalidSpec(Vec<SpecError>),
    /// The plugin of the child at `path` could not be loaded: the file is missing,
    /// not WebAssembly, a core module, or imports what the host does not give.
    /// Nothing was started.
    #[error("{path}: {error}")]
    Load {
        /// The child's path.
        path: String,
        /// What is wrong with its plugin.
        error: LoadError,
    },
    /// The child the request started failed to start (its `init` failed or
    /// trapped). Displayed as its reason alone (`start failed: ...`).
    #[error("{reason}")]
    StartFailed {
        /// The child's path.
        path: String,
        /// Why, as its exit reason.
        reason: ExitReason,
    },
    /// An upgrade's new version failed to start (its `init` failed or trapped); the
    /// old version was started again.
    #[error("upgrade_failed: {reason}")]
    UpgradeFailed {
        /// The child's path.
        path: String,
        /// Why the new version failed, as its exit reason.
        reason: ExitReason,
    },
    /// The tree could not start: a child's `init` failed or trapped, and what had
    /// started was stopped (OTP's rule). Nothing of the tree is left.
    #[error("the tree did not start: {reason}")]
    TreeStart {
        /// The child whose start failed (the deepest, in a nested supervisor).
        path: String,
        /// The root supervisor's exit reason, naming the child as OTP does
        /// (`failed_to_start_child sub: start failed: failed_to_start_child x: ...`).
        reason: ExitReason,
    },
    /// A tree is already running in this host: [`Host::shutdown`] it first. (A tree
    /// that ended by itself, its root having given up, is not running: a new one may
    /// start.)
    ///
    /// [`Host::shutdown`]: super::Host::shutdown
    #[error("a tree is already running in this host: shut it down first")]
    AlreadyRunning,
    /// The host was built outside a tokio runtime and was given none.
    #[error(
        "the host needs a tokio runtime: build it inside one (e.g. under #[tokio::main]), \
         give it one with HostBuilder::runtime, or use warden::blocking::Host"
    )]
    NoRuntime,
    /// [`crate::blocking::Host`] could not start its tokio runtime.
    #[error("could not start a tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// The tokio runtime has no timers (built without `enable_time`).
    #[error(
        "the host's tokio runtime has no timers: build it with enable_all() or \
         enable_time() (#[tokio::main] does)"
    )]
    NoTimers,
    /// The engine could not be created.
    #[error(transparent)]
    Engine(#[from] SandboxError),
    /// The host could not join its cluster.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// An application interface could not be registered.
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    /// Interfaces were registered on a host that runs in a shared engine, whose
    /// linker is fixed.
    #[error(
        "host interfaces belong to the engine: build the shared engine with \
         Engine::with_interfaces instead of registering them on the HostBuilder"
    )]
    InterfacesOnSharedEngine,
    /// The state's data directory could not be opened.
    #[error(transparent)]
    State(#[from] OpenError),
    /// The supervisor ended before answering.
    #[error("the supervisor is gone")]
    Gone,
}

fn join(errors: &[SpecError]) -> String {
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    errors.join("; ")
}

/// Why a typed call into a child's exports ([`super::Host::call_export`]) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The call failed as a `call` fails: unknown target, mailbox full, timed out,
    /// circuit open, or the callee crashed (with its exit reason).
    #[error(transparent)]
    Message(MessageError),
    /// The child's plugin does not export what `load` looks for, or not with those
    /// types; the child carries on.
    #[error("the child does not export it: {0}")]
    Missing(String),
}
