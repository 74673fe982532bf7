//! Why a request to the host failed.

use crate::ExitReason;
use crate::sandbox::{InterfaceError, MessageError, SandboxError};
use crate::state::OpenError;
use crate::supervisor::AdminError;

/// Why a host request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No supervisor or child at that path.
    #[error("not_found")]
    NotFound,
    /// The supervisor refused the request (OTP's answer).
    #[error("{0}")]
    Admin(AdminError),
    /// The child the request started failed to start.
    #[error("{0}")]
    StartFailed(ExitReason),
    /// The tree could not start.
    #[error("the tree did not start: {0}")]
    TreeStart(ExitReason),
    /// A tree is already running in this host.
    #[error("a tree is already running")]
    AlreadyRunning,
    /// The engine could not be created.
    #[error(transparent)]
    Engine(#[from] SandboxError),
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
