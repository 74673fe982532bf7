//! Warden hosts WebAssembly plugins in supervised sandboxes.
//!
//! Each child is a Wasm component (the `warden:plugin` WIT world) running in its own
//! [`Sandbox`](sandbox::Sandbox): a trap, a runaway loop, a memory bomb or a stack
//! overflow ends that incarnation with a typed [`ExitReason`] and leaves the host and
//! every other child running.
//!
//! ```no_run
//! use warden::sandbox::{Engine, Sandbox, SandboxConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new()?;
//! let plugin = engine.load_file("plugins/target/wasm32-wasip2/release/echo.wasm")?;
//! let mut child = Sandbox::start(&plugin, SandboxConfig::new("root/echo"), 1).await?;
//! let handled = child.handle(None, b"hello".to_vec(), true).await?;
//! assert_eq!(handled.reply.as_deref(), Ok(&b"hello"[..]));
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

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

pub use exit::{ExitReason, KillCause, TrapKind};
/// The wasmtime Warden is built on, for an application's `bindgen!` of its own
/// interfaces (`wasmtime_crate: warden::wasmtime`), so that both use one version.
pub use wasmtime;
