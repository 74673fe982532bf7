//! Warden hosts WebAssembly plugins in supervised sandboxes.
//!
//! Each child is a Wasm component (the `warden:plugin` WIT world) running in its own
//! sandbox: a trap, a runaway loop, a memory bomb or a stack overflow ends that
//! incarnation with a typed [`ExitReason`] and leaves the host and every other child
//! running. Children are supervised with Erlang/OTP's `supervisor` semantics: a
//! [`Host`] runs one tree of them.
//!
//! ```no_run
//! use std::time::Duration;
//! use warden::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let host = Host::builder().build()?; // inside a tokio runtime with timers
//!     let mut events = host.subscribe();
//!     let echo = ChildSpec::plugin("echo", "target/plugins/wasm32-wasip2/release/echo.wasm");
//!     host.start(SupervisorSpec::new(Strategy::OneForOne, vec![echo])).await?;
//!     let reply = host.call("root/echo", b"hi".to_vec(), Duration::from_secs(1)).await?;
//!     assert_eq!(reply, b"hi");
//!     host.shutdown().await;
//!     while let Some(Received::Event(record)) = events.next().await {
//!         println!("{:?}", record.event);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # The public API at a glance
//!
//! Everything an embedder needs is at the crate root (and the most used part in
//! [`prelude`]); the modules hold the same items by concept, and the lower layers
//! (a single [`sandbox::Sandbox`], the pure [`supervisor::Core`]) for those who
//! build their own runtime.
//!
//! | concept | items |
//! |---|---|
//! | running a tree | [`Host`], [`HostBuilder`], [`blocking::Host`] (for synchronous code), [`MailboxInfo`] |
//! | what a tree is | [`SupervisorSpec`], [`ChildSpec`], [`PluginStart`], [`Strategy`], [`Restart`], [`Shutdown`], [`Backoff`], [`AutoShutdown`] |
//! | a child's settings | [`ChildLimits`], [`Grants`], [`DirGrant`], [`Network`], [`HeartbeatPolicy`], [`PhiAccrual`], [`MailboxConfig`], [`CircuitConfig`], [`Quota`] |
//! | plugins | [`Engine`], [`EngineConfig`], [`Plugin`], [`PluginSource`], [`Host::load`] |
//! | what happened | [`Events`], [`Received`], [`EventRecord`], [`Event`], [`DeadLetterReason`], [`GaveUpReason`], [`CancelReason`], [`CircuitState`] |
//! | how a child ended | [`ExitReason`], [`TrapKind`], [`KillCause`], [`HostFunctionFailure`] |
//! | errors | [`HostError`], [`SpecError`] with [`SpecProblem`], [`LoadError`], [`MessageError`], [`AdminError`], [`ExportError`], [`SandboxError`], [`InterfaceError`], [`OpenError`] |
//! | OTP's reports | [`ChildInfo`], [`ChildState`], [`ChildKind`], [`ChildCounts`], [`MessageStats`] |
//! | state | [`StateStore`], [`MemoryStore`], [`DiskStore`] |
//! | several nodes | [`ClusterConfig`], [`HostBuilder::cluster`], [`Host::join`], [`Host::leave`], [`Placement`] ([`ChildSpec::node`], [`ChildSpec::nodes`]), [`ClusterError`] |
//! | the application's own interfaces | [`HostBuilder::interface`], [`ChildIdentity`], [`StoreData`], [`Host::call_export`], [`wasmtime`] |
//! | a tree from a manifest | [`manifest::load`], [`manifest::parse`] |
//! | tests | `testing` (feature `testing`): a tree awaited event by event |
//!
//! # What the host needs
//!
//! [`Host`] runs on tokio: [`HostBuilder::build`] must be called inside a runtime
//! with timers (`#[tokio::main]` has them), or be given one with
//! [`HostBuilder::runtime`]; it says so with [`HostError::NoRuntime`] or
//! [`HostError::NoTimers`] otherwise. Synchronous applications use
//! [`blocking::Host`], which brings its own runtime.
//!
//! # The life of a host
//!
//! A host holds at most one tree at a time:
//!
//! | state | how it gets there | what works |
//! |---|---|---|
//! | no tree | built; [`Host::shutdown`] returned; a [`Host::start`] failed (nothing of its tree is left) | [`Host::start`]; calls fail with [`MessageError::UnknownTarget`], admin requests with [`HostError::NotFound`] |
//! | starting | [`Host::start`] is under way | a second `start` is [`HostError::AlreadyRunning`]; children started so far answer |
//! | running | [`Host::start`] returned `Ok` | everything; `start` is [`HostError::AlreadyRunning`] |
//! | stopping | [`Host::shutdown`] is under way | calls to children not yet stopped; `start` is [`HostError::AlreadyRunning`]; another `shutdown` waits for the same end |
//! | ended by itself | the root gave up (see [`Host::root_gave_up`]) or shut down automatically; [`Host::wait`] returns | [`Host::start`] starts a new tree; [`Host::shutdown`] returns at once |
//!
//! Dropping the last clone of a host stops its tree at once, without `terminate`.
#![deny(unsafe_code)]

pub mod blocking;
pub mod cluster;
pub mod escape;
pub mod events;
pub mod exit;
pub mod manifest;
pub mod messaging;
pub mod runtime;
pub mod sandbox;
pub mod services;
pub mod spec;
pub mod state;
pub mod supervisor;
mod task;
#[cfg(feature = "testing")]
pub mod testing;

pub use cluster::{ClusterConfig, ClusterError};
pub use events::{
    CircuitState, DeadLetterReason, Event, EventRecord, Events, GaveUpReason, Received,
};
pub use exit::{ExitReason, HostFunctionFailure, KillCause, TrapKind};
pub use messaging::{CircuitConfig, MailboxConfig, MessageStats};
pub use runtime::{ExportError, Host, HostBuilder, HostError, HostReport, MailboxInfo, Upgrade};
pub use sandbox::{
    ChildIdentity, Engine, EngineConfig, InterfaceError, LoadError, MessageError, Plugin,
    SandboxError, StoreData,
};
pub use services::CancelReason;
pub use spec::{
    AutoShutdown, Backoff, ChildLimits, ChildSpec, DirGrant, Grants, HeartbeatPolicy, Network,
    PhiAccrual, Placement, PluginSource, PluginStart, Quota, Restart, Shutdown, SpecError,
    SpecProblem, Strategy, SupervisorSpec,
};
pub use state::{DiskStore, MemoryStore, OpenError, StateStore};
pub use supervisor::{AdminError, ChildCounts, ChildInfo, ChildKind, ChildState};

/// The items most embedders use: `use warden::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AdminError, Backoff, ChildLimits, ChildSpec, EngineConfig, Event, EventRecord, Events,
        ExitReason, Grants, Host, HostError, KillCause, LoadError, MessageError, PluginStart,
        Received, Restart, Shutdown, SpecError, SpecProblem, Strategy, SupervisorSpec, TrapKind,
    };
}
/// The wasmtime Warden is built on, for an application's `bindgen!` of its own
/// interfaces (`wasmtime_crate: warden::wasmtime`), so that both use one version.
pub use wasmtime;
