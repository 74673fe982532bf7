//! Host bindings generated from `wit/plugin.wit`: the single place `bindgen!` runs.

wasmtime::component::bindgen!({
    path: "wit",
    world: "plugin",
    // `call` waits for another child's reply and a state write for its commit: they
    // suspend the guest's fiber, never a host thread. Every other import answers at once.
    imports: {
        "warden:plugin/runtime.call": async,
        "warden:plugin/state.set": async,
        "warden:plugin/state.delete": async,
        "warden:plugin/state.batch": async,
    },
    exports: { default: async },
});
