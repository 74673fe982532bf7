//! Host bindings generated from `wit/plugin.wit`: the single place `bindgen!` runs.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    // `call` waits for another child's reply: it suspends the guest's fiber, never a
    // host thread. Every other import answers at once.
    imports: { "warden:plugin/runtime.call": async },
    exports: { default: async },
});
