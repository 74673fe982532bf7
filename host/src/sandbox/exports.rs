//! Typed calls into a child's own exports: an application's interface that the
//! plugin exports (bindings from the application's `bindgen!`), called through the
//! supervised child, never by holding its instance.
//!
//! ```text
//!   Host::call_export(path, timeout, load, call)
//!     → a letter in the child's mailbox, like a `call`
//!     → its worker: Sandbox::call_export runs `load` (find and type-check the export:
//!       a failure is the caller's, not the child's) and then `call`, guarded like
//!       `handle` (deadline, heartbeats, kill switch), classified like it when it fails
//! ```

use super::store::StoreData;
use crate::services::BoxFuture;
use wasmtime::Store;
use wasmtime::component::Instance;

/// A typed call, ready to run in a child's Store: built by the runtime from the
/// embedder's `load` and `call`, run by the sandbox.
pub struct ExportCall {
    run: Box<RunExport>,
}

/// Runs a typed call in a Store, with the component instance.
type RunExport = dyn for<'a> FnOnce(
        &'a mut Store<StoreData>,
        &'a Instance,
    ) -> BoxFuture<'a, Result<(), ExportFailed>>
    + Send;

/// How a typed call failed to complete.
#[derive(Debug)]
pub enum ExportFailed {
    /// `load` failed: the plugin does not export what the caller looks for (or not
    /// with that type). Not the child's fault: it carries on.
    Load(String),
    /// The call itself failed: a trap, a kill, a host function's failure.
    Call(wasmtime::Error),
}

impl ExportCall {
    /// A call that loads `G` from the instance with `load` (once per incarnation: a
    /// later call of the same `G` reuses what it returned), then runs `call` on it and
    /// hands the result to `done`.
    pub fn new<G, R>(
        load: impl FnOnce(&mut Store<StoreData>, &Instance) -> wasmtime::Result<G> + Send + 'static,
        call: impl for<'a> FnOnce(G, &'a mut Store<StoreData>) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send
        + 'static,
        done: impl FnOnce(R) + Send + 'static,
    ) -> Self
    where
        G: Clone + Send + 'static,
        R: Send + 'static,
    {
        Self {
            run: Box::new(move |store, instance| {
                Box::pin(async move {
                    let loaded = match store.data().loaded_exports.get::<G>() {
                        Some(loaded) => loaded,
                        None => {
                            let loaded = load(store, instance)
                                .map_err(|e| ExportFailed::Load(format!("{e:#}")))?;
                            store.data_mut().loaded_exports.insert(loaded.clone());
                            loaded
                        }
                    };
                    let result = call(loaded, store).await.map_err(ExportFailed::Call)?;
                    done(result);
                    Ok(())
                })
            }),
        }
    }

    pub(crate) fn run<'a>(
        self,
        store: &'a mut Store<StoreData>,
        instance: &'a Instance,
    ) -> BoxFuture<'a, Result<(), ExportFailed>> {
        (self.run)(store, instance)
    }
}

impl std::fmt::Debug for ExportCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportCall")
    }
}
