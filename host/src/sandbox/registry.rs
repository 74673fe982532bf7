//! What an engine keeps of the application's interfaces (their names and state
//! factories, in registration order), which of them a plugin imports, one
//! incarnation's states of them, and the exports its typed calls loaded. Data only: registering interfaces and reaching
//! their states from host functions is the business of `interfaces.rs`.

use crate::ExitReason;
use crate::spec::{Grants, is_application_interface};
use std::any::Any;
use std::sync::Arc;

/// Who a piece of per-incarnation state is for: handed to an interface's factory
/// when an incarnation that imports the interface starts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildIdentity {
    /// The child's path, e.g. `root/shop/cart`.
    pub path: String,
    /// The incarnation that is starting (1 for the first start).
    pub incarnation: u64,
    /// The child's configuration bytes (JSON from a manifest), as `init` gets them.
    pub config: Vec<u8>,
}

impl ChildIdentity {
    /// The identity of incarnation `incarnation` of the child at `path` (e.g. to test
    /// an interface's factory).
    pub fn new(path: impl Into<String>, incarnation: u64, config: impl Into<Vec<u8>>) -> Self {
        Self { path: path.into(), incarnation, config: config.into() }
    }
}

/// Makes one incarnation's state for an interface, or says why it cannot.
pub(crate) type Factory =
    dyn Fn(&ChildIdentity) -> Result<Box<dyn Any + Send>, String> + Send + Sync;

/// The interfaces an engine was given, in registration order.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Vec<Registered>,
}

struct Registered {
    name: String,
    factory: Arc<Factory>,
}

impl Registry {
    /// Adds an interface, after the ones before it.
    pub(crate) fn push(&mut self, name: String, factory: Arc<Factory>) {
        self.entries.push(Registered { name, factory });
    }

    /// The registration that provides `import` (as a component names it): the same
    /// name, or a semver-compatible version of it, as wasmtime's linker matches them.
    pub(crate) fn find(&self, import: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.name == import)
            .or_else(|| self.entries.iter().position(|e| compat_key(&e.name) == compat_key(import)))
    }

    /// The names, for messages.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    pub(crate) fn name(&self, index: usize) -> &str {
        self.entries.get(index).map_or("(unknown interface)", |e| e.name.as_str())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Makes the state of interface `index` for `child`.
    pub(crate) fn make(
        &self,
        index: usize,
        child: &ChildIdentity,
    ) -> Result<Box<dyn Any + Send>, String> {
        match self.entries.get(index) {
            Some(e) => (e.factory)(child),
            None => Err(format!("no host interface number {index}")),
        }
    }
}

/// The name under which semver-compatible versions of an interface meet, as
/// wasmtime's linker matches them: `a:b/c@1` for `a:b/c@1.2.3`, `a:b/c@0.2` for
/// `a:b/c@0.2.1`, the name itself for `0.0.x`, pre-releases and no version.
pub(crate) fn compat_key(name: &str) -> String {
    let Some((unversioned, version)) = name.split_once('@') else {
        return name.to_owned();
    };
    let numbers: Vec<Option<u64>> = version.split('.').map(|n| n.parse().ok()).collect();
    match numbers.as_slice() {
        [Some(major), Some(_), Some(_)] if *major > 0 => format!("{unversioned}@{major}"),
        [Some(0), Some(minor), Some(_)] if *minor > 0 => format!("{unversioned}@0.{minor}"),
        _ => name.to_owned(),
    }
}

/// One incarnation's states of the interfaces its plugin imports, by registration.
#[derive(Default)]
pub(crate) struct AppStates {
    slots: Vec<Option<Box<dyn Any + Send>>>,
    imports: Vec<AppImport>,
}

impl AppStates {
    /// The state of interface `index`, if this incarnation imports it.
    pub(crate) fn get_mut<S: 'static>(&mut self, index: usize) -> Option<&mut S> {
        self.slots.get_mut(index)?.as_mut()?.downcast_mut::<S>()
    }

    /// The application interfaces the incarnation's plugin imports.
    pub(crate) fn imports(&self) -> &[AppImport] {
        &self.imports
    }

    pub(crate) fn new(len: usize) -> Self {
        Self { slots: (0..len).map(|_| None).collect(), imports: Vec::new() }
    }

    /// The states of the interfaces `imports` names, made for `child`, once each is
    /// known to be granted.
    ///
    /// # Errors
    /// `start_failed` naming the first interface the child is not granted, or whose
    /// factory failed.
    pub(crate) fn make(
        registry: &Registry,
        imports: &[AppImport],
        grants: &Grants,
        child: &ChildIdentity,
    ) -> Result<Self, ExitReason> {
        let refuse = |message: String| ExitReason::StartFailed { message };
        if let Some(import) = imports.iter().find(|i| !grants.allows_interface(&i.name)) {
            return Err(refuse(format!(
                "{}: its plugin imports `{}`, which its grants do not name (grants.interfaces)",
                child.path, import.name
            )));
        }
        let mut states = Self::new(registry.len());
        for import in imports {
            let state = registry.make(import.index, child).map_err(|e| {
                refuse(format!("{}: host interface `{}` refused it: {e}", child.path, import.name))
            })?;
            if let Some(slot) = states.slots.get_mut(import.index) {
                *slot = Some(state);
            }
        }
        states.imports = imports.to_vec();
        Ok(states)
    }
}

/// An application interface a plugin imports.
#[derive(Clone, Debug)]
pub(crate) struct AppImport {
    /// Which of the engine's interfaces provides it.
    pub(crate) index: usize,
    /// As the component names it, e.g. `acme:shop/inventory@0.1.0`.
    pub(crate) name: String,
    /// The functions it imports from it.
    pub(crate) functions: Vec<String>,
}

/// The application interfaces `component` imports, each matched to the engine's
/// interface that provides it, or the first one the engine does not provide.
pub(crate) fn app_imports(
    wasm: &wasmtime::Engine,
    registry: &Registry,
    component: &wasmtime::component::Component,
) -> Result<Vec<AppImport>, String> {
    use wasmtime::component::types::ComponentItem;
    let ty = component.component_type();
    let mut imports = Vec::new();
    for (name, item) in ty.imports(wasm) {
        if !is_application_interface(name) {
            continue;
        }
        let Some(index) = registry.find(name) else {
            let provided = registry.names();
            let provided = match provided.as_slice() {
                [] => "it provides none: an application that embeds Warden gives its own".into(),
                names => format!("it provides {}", names.join(", ")),
            };
            return Err(format!(
                "the application interface `{name}`, which this host does not provide ({provided})"
            ));
        };
        let functions = match item.ty {
            ComponentItem::ComponentInstance(instance) => instance
                .exports(wasm)
                .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                .map(|(f, _)| f.to_owned())
                .collect(),
            _ => Vec::new(),
        };
        imports.push(AppImport { index, name: name.to_owned(), functions });
    }
    Ok(imports)
}

/// The exports an incarnation's typed calls loaded, by type: each loaded once.
#[derive(Default)]
pub(crate) struct LoadedExports {
    loaded: Vec<(std::any::TypeId, Box<dyn std::any::Any + Send>)>,
}

impl LoadedExports {
    pub(crate) fn get<G: Clone + 'static>(&self) -> Option<G> {
        let id = std::any::TypeId::of::<G>();
        let (_, loaded) = self.loaded.iter().find(|(t, _)| *t == id)?;
        loaded.downcast_ref::<G>().cloned()
    }

    pub(crate) fn insert<G: Send + 'static>(&mut self, loaded: G) {
        self.loaded.push((std::any::TypeId::of::<G>(), Box::new(loaded)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatible_versions_meet_as_wasmtime_matches_them() {
        assert_eq!(compat_key("a:b/c@1.2.3"), "a:b/c@1");
        assert_eq!(compat_key("a:b/c@0.2.1"), "a:b/c@0.2");
        assert_eq!(compat_key("a:b/c@0.0.1"), "a:b/c@0.0.1");
        assert_eq!(compat_key("a:b/c@1.0.0-rc1"), "a:b/c@1.0.0-rc1");
        assert_eq!(compat_key("a:b/c"), "a:b/c");
    }
}
