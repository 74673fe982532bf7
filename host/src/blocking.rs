//! The host for synchronous applications: the same tree and calls as
//! [`Host`](crate::Host), each method blocking until it is done, on a tokio runtime
//! the host owns.
//!
//! ```no_run
//! use std::time::Duration;
//! use warden::prelude::*;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let host = warden::blocking::Host::new()?;
//!     let echo = ChildSpec::plugin("echo", "target/plugins/wasm32-wasip2/release/echo.wasm");
//!     host.start(SupervisorSpec::new(Strategy::OneForOne, vec![echo]))?;
//!     let reply = host.call("root/echo", b"hi".to_vec(), Duration::from_secs(1))?;
//!     assert_eq!(reply, b"hi");
//!     host.shutdown();
//!     Ok(())
//! }
//! ```
//!
//! Its methods must not be called from inside an async task (blocking there would
//! stall the task's thread, and tokio refuses it with a panic): async code uses
//! [`crate::Host`], which this wraps ([`Host::inner`]).

use crate::ExitReason;
use crate::events::Events;
use crate::messaging::MessageStats;
use crate::runtime::{ExportError, HostBuilder, HostError};
use crate::sandbox::{BoxFuture, LoadError, MessageError, Plugin, StoreData};
use crate::supervisor::{ChildCounts, ChildInfo, ChildSpec, SupervisorSpec};
use std::time::Duration;

/// A [`crate::Host`] with its own multi-threaded tokio runtime, for code that is not
/// async. Dropping it stops the tree at once (children are not asked to
/// `terminate`): call [`Host::shutdown`] first to stop it in order.
#[derive(Debug)]
pub struct Host {
    // Declared first: dropped before the runtime its tasks run on.
    host: crate::Host,
    runtime: tokio::runtime::Runtime,
}

impl Host {
    /// A host with the default settings.
    ///
    /// # Errors
    /// As [`Host::build`].
    pub fn new() -> Result<Self, HostError> {
        Self::build(crate::Host::builder())
    }

    /// A host from `builder` (engine, state, interfaces...), on a new runtime with
    /// one worker thread per core. A runtime given to the builder
    /// ([`HostBuilder::runtime`]) is replaced by this one.
    ///
    /// # Errors
    /// The runtime could not be started ([`HostError::Runtime`]); what
    /// [`HostBuilder::build`] refuses.
    pub fn build(builder: HostBuilder) -> Result<Self, HostError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("warden")
            .build()
            .map_err(HostError::Runtime)?;
        let host = builder.runtime(runtime.handle().clone()).build()?;
        Ok(Self { host, runtime })
    }

    /// The async host inside, to share with async code.
    pub fn inner(&self) -> &crate::Host {
        &self.host
    }

    /// [`crate::Host::load`].
    ///
    /// # Errors
    /// [`LoadError`] naming the file and what is wrong with it.
    pub fn load(&self, path: impl AsRef<std::path::Path>) -> Result<Plugin, LoadError> {
        self.host.load(path)
    }

    /// [`crate::Host::subscribe`]; read it with [`Events::blocking_next`].
    pub fn subscribe(&self) -> Events {
        self.host.subscribe()
    }

    /// [`crate::Host::start`].
    ///
    /// # Errors
    /// As [`crate::Host::start`].
    pub fn start(&self, spec: SupervisorSpec) -> Result<(), HostError> {
        self.runtime.block_on(self.host.start(spec))
    }

    /// [`crate::Host::call`].
    ///
    /// # Errors
    /// As [`crate::Host::call`].
    pub fn call(
        &self,
        path: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, MessageError> {
        self.runtime.block_on(self.host.call(path, payload, timeout))
    }

    /// [`crate::Host::call_export`]: a typed call into the child's exports.
    ///
    /// # Errors
    /// As [`crate::Host::call_export`].
    pub fn call_export<G, R>(
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
        self.runtime.block_on(self.host.call_export(path, timeout, load, call))
    }

    /// [`crate::Host::send`] (which does not wait).
    ///
    /// # Errors
    /// As [`crate::Host::send`].
    pub fn send(&self, path: &str, payload: Vec<u8>) -> Result<(), MessageError> {
        self.host.send(path, payload)
    }

    /// [`crate::Host::start_child`].
    ///
    /// # Errors
    /// As [`crate::Host::start_child`].
    pub fn start_child(&self, supervisor: &str, spec: ChildSpec) -> Result<(), HostError> {
        self.runtime.block_on(self.host.start_child(supervisor, spec))
    }

    /// [`crate::Host::start_dynamic`].
    ///
    /// # Errors
    /// As [`crate::Host::start_dynamic`].
    pub fn start_dynamic(
        &self,
        supervisor: &str,
        name: Option<String>,
        config: Option<Vec<u8>>,
    ) -> Result<String, HostError> {
        self.runtime.block_on(self.host.start_dynamic(supervisor, name, config))
    }

    /// [`crate::Host::terminate_child`].
    ///
    /// # Errors
    /// As [`crate::Host::terminate_child`].
    pub fn terminate_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.runtime.block_on(self.host.terminate_child(supervisor, child))
    }

    /// [`crate::Host::restart_child`].
    ///
    /// # Errors
    /// As [`crate::Host::restart_child`].
    pub fn restart_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.runtime.block_on(self.host.restart_child(supervisor, child))
    }

    /// [`crate::Host::delete_child`].
    ///
    /// # Errors
    /// As [`crate::Host::delete_child`].
    pub fn delete_child(&self, supervisor: &str, child: &str) -> Result<(), HostError> {
        self.runtime.block_on(self.host.delete_child(supervisor, child))
    }

    /// [`crate::Host::which_children`].
    ///
    /// # Errors
    /// As [`crate::Host::which_children`].
    pub fn which_children(&self, supervisor: &str) -> Result<Vec<ChildInfo>, HostError> {
        self.runtime.block_on(self.host.which_children(supervisor))
    }

    /// [`crate::Host::count_children`].
    ///
    /// # Errors
    /// As [`crate::Host::count_children`].
    pub fn count_children(&self, supervisor: &str) -> Result<ChildCounts, HostError> {
        self.runtime.block_on(self.host.count_children(supervisor))
    }

    /// [`crate::Host::message_stats`].
    pub fn message_stats(&self) -> MessageStats {
        self.host.message_stats()
    }

    /// [`crate::Host::wait`]: blocks until the root supervisor exits.
    pub fn wait(&self) -> ExitReason {
        self.runtime.block_on(self.host.wait())
    }

    /// [`crate::Host::root_gave_up`].
    pub fn root_gave_up(&self) -> bool {
        self.host.root_gave_up()
    }

    /// [`crate::Host::shutdown`]: stops the tree in order.
    pub fn shutdown(&self) -> ExitReason {
        self.runtime.block_on(self.host.shutdown())
    }
}
