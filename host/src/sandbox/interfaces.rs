//! The embedding application's own WIT interfaces, given to its plugins: registered
//! once with the engine (bindings from wasmtime's `bindgen!`, an implementation, and
//! a factory of per-incarnation state), granted per child, and attributed when they
//! fail.
//!
//! ```text
//!   HostInterfaces::add("acme:shop/inventory", add_to_linker, factory)
//!     → Engine: the linker gets the interface, its functions reach the state through
//!       a getter that also marks the interface as the one the guest is in
//!     → Sandbox::start: a plugin importing it needs the grant; the factory makes the
//!       incarnation's state from its identity
//!     → a host function's error or panic ends the incarnation with
//!       `host_function_failed`, naming the interface
//! ```

use super::registry::{ChildIdentity, Factory, Registry, compat_key};
use super::store::StoreData;
use crate::exit::{ExitReason, HostFunctionFailure};
use crate::spec::check_interface_name;
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::Linker;

/// The most interfaces one engine may be given.
pub const MAX_INTERFACES: usize = 32;

/// Adds an interface's functions to the engine's linker.
type AddToLinker = dyn FnOnce(&mut Linker<StoreData>) -> wasmtime::Result<()> + Send;

/// Why an interface could not be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterfaceError {
    /// The name is not `namespace:package/interface[@version]`, or is WASI's or
    /// Warden's.
    #[error("{0}")]
    BadName(String),
    /// The interface is registered already (in this or a compatible version).
    #[error("host interface {0:?} is registered twice (or in two compatible versions)")]
    Duplicate(String),
    /// More than [`MAX_INTERFACES`].
    #[error("more than {MAX_INTERFACES} host interfaces")]
    TooMany,
}

/// The application's interfaces, to be given to an [`super::Engine`].
///
/// ```no_run
/// use warden::ChildIdentity;
/// use warden::sandbox::{Engine, EngineConfig, HostInterfaces};
/// use warden::wasmtime::component::HasSelf;
///
/// // Bindings from the application's WIT: here `acme:shop` with an `inventory`.
/// warden::wasmtime::component::bindgen!({
///     inline: "package acme:shop@0.1.0;
///              interface inventory { stock: func(item: string) -> u32; }
///              world host { import inventory; }",
///     wasmtime_crate: warden::wasmtime,
/// });
/// use acme::shop::inventory;
///
/// struct Inventory { child: String }
///
/// impl inventory::Host for Inventory {
///     fn stock(&mut self, _item: String) -> u32 { 7 }
/// }
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut interfaces = HostInterfaces::new();
/// interfaces.add(
///     "acme:shop/inventory",
///     |linker, get| inventory::add_to_linker::<_, HasSelf<Inventory>>(linker, get),
///     |child: &ChildIdentity| Ok(Inventory { child: child.path.clone() }),
/// )?;
/// let engine = Engine::with_interfaces(EngineConfig::default(), interfaces)?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct HostInterfaces {
    entries: Vec<Pending>,
}

struct Pending {
    name: String,
    factory: Arc<Factory>,
    add: Box<AddToLinker>,
}

impl std::fmt::Debug for HostInterfaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| &e.name)).finish()
    }
}

impl HostInterfaces {
    /// No interfaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers the interface `name` (`acme:shop/inventory`, with `@version` when its
    /// package has one: the name the plugin's component imports). `add_to_linker` adds
    /// its functions with the getter it is given (pass it to the `add_to_linker` that
    /// `bindgen!` generated); `factory` makes the state the functions run on, once per
    /// incarnation of each child that imports the interface. An error from the factory
    /// fails that start (`start_failed`, with the message).
    ///
    /// # Errors
    /// A bad or duplicate name, or too many interfaces.
    pub fn add<S, A, F>(
        &mut self,
        name: &str,
        add_to_linker: A,
        factory: F,
    ) -> Result<&mut Self, InterfaceError>
    where
        S: Send + 'static,
        A: FnOnce(&mut Linker<StoreData>, fn(&mut StoreData) -> &mut S) -> wasmtime::Result<()>
            + Send
            + 'static,
        F: Fn(&ChildIdentity) -> Result<S, String> + Send + Sync + 'static,
    {
        check_interface_name(name).map_err(InterfaceError::BadName)?;
        if self.entries.iter().any(|e| compat_key(&e.name) == compat_key(name)) {
            return Err(InterfaceError::Duplicate(name.to_owned()));
        }
        let index = self.entries.len();
        let getter = getter::<S>(index).ok_or(InterfaceError::TooMany)?;
        self.entries.push(Pending {
            name: name.to_owned(),
            factory: Arc::new(move |child| {
                factory(child).map(|state| Box::new(state) as Box<dyn Any + Send>)
            }),
            add: Box::new(move |linker| add_to_linker(linker, getter)),
        });
        Ok(self)
    }

    /// Adds every interface to `linker`; what the engine keeps of them.
    pub(crate) fn link(self, linker: &mut Linker<StoreData>) -> Result<Registry, String> {
        let mut registry = Registry::default();
        for Pending { name, factory, add } in self.entries {
            add(linker).map_err(|e| format!("host interface {name}: {e:#}"))?;
            registry.push(name, factory);
        }
        Ok(registry)
    }
}

/// The exit reason of a failure inside an application's function, if the guest was
/// in one: its error (`panic` false) or its panic's message.
///
/// The function is named when the plugin imports only one from the interface:
/// wasmtime's generated bindings do not tell the host which function is running, and
/// an optimised guest's backtrace does not either (its import wrappers are inlined).
pub(crate) fn host_function_failed(
    data: &StoreData,
    message: String,
    panic: bool,
) -> Option<ExitReason> {
    let index = data.host_waits.interface()?;
    let import = data.app.imports().iter().find(|i| i.index == index);
    let interface = match import {
        Some(import) => import.name.clone(),
        None => data.interfaces.name(index).to_owned(),
    };
    let function = match import.map(|i| i.functions.as_slice()) {
        Some([only]) => Some(only.clone()),
        _ => None,
    };
    let failure = HostFunctionFailure { interface, function, message, panic };
    Some(ExitReason::HostFunctionFailed(Box::new(failure)))
}

/// The getter handed to registration `K`: it marks `K` as the interface the guest
/// is in (for attributing a failure) and returns its state. A `fn` pointer cannot
/// capture the index, so each index has its own function.
fn state_of<S: 'static, const K: usize>(data: &mut StoreData) -> &mut S {
    data.host_waits.enter_interface(K);
    data.app
        .get_mut::<S>(K)
        .expect("an incarnation importing an interface has its state, made by its own factory")
}

/// The getter for registration `index`, if there is one.
fn getter<S: 'static>(index: usize) -> Option<fn(&mut StoreData) -> &mut S> {
    macro_rules! getters {
        ($($k:literal)*) => { [$(state_of::<S, $k> as fn(&mut StoreData) -> &mut S),*] };
    }
    let all = getters!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    const _: () = assert!(MAX_INTERFACES == 32);
    all.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_registered_once() {
        let mut interfaces = HostInterfaces::new();
        let add = |_: &mut Linker<StoreData>, _: fn(&mut StoreData) -> &mut u32| Ok(());
        interfaces.add("acme:shop/inventory@0.1.0", add, |_| Ok(0u32)).unwrap();
        assert_eq!(
            interfaces.add("acme:shop/inventory@0.1.4", add, |_| Ok(0u32)).unwrap_err(),
            InterfaceError::Duplicate("acme:shop/inventory@0.1.4".into())
        );
        let bad = interfaces.add("inventory", add, |_| Ok(0u32)).unwrap_err();
        assert!(bad.to_string().contains("\"inventory\" is not a WIT interface name"), "{bad}");
        for i in 1..MAX_INTERFACES {
            interfaces.add(&format!("acme:shop/i{i}"), add, |_| Ok(0u32)).unwrap();
        }
        assert_eq!(
            interfaces.add("acme:shop/one-more", add, |_| Ok(0u32)).unwrap_err(),
            InterfaceError::TooMany
        );
    }
}
