//! Warden's `echo` plugin's logic for Extism: `init` does nothing, `handle` replies
//! with its input, `trap` traps (`unreachable`), as Warden's `chaos` does on `trap`.
use extism_pdk::{FnResult, plugin_fn};

/// Nothing to set up; called first on a fresh plugin, like Warden's `init`.
#[plugin_fn]
pub fn init(_: ()) -> FnResult<()> {
    Ok(())
}

/// Replies with the input.
#[plugin_fn]
pub fn handle(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(input)
}

/// Traps.
#[plugin_fn]
pub fn trap(_: ()) -> FnResult<()> {
    core::arch::wasm32::unreachable()
}
