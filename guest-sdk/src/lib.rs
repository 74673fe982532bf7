//! Write [Warden](https://example.invalid/warden) plugins in Rust.
//!
//! A plugin is a struct and three methods: [`Plugin::init`] builds it when an
//! incarnation starts, [`Plugin::handle`] answers one message at a time, and
//! [`Plugin::terminate`] runs on graceful shutdown. [`export_plugin!`] turns the struct
//! into the exports of the `warden:plugin` world.
//!
//! Around that, the host's imports: [`heartbeat`], [`send`], [`send_after`], [`call`],
//! [`exit`], [`self_path`], the logging macros ([`info!`] and friends) and the
//! [`state`] module, a key-value store scoped to the child and kept across restarts.
//!
//! A panic inside the plugin is reported to the host with its message (the export
//! macro installs a panic hook), so the supervisor sees *why* the child crashed.
//!
//! # Examples
//!
//! A counter that keeps its count across restarts:
//!
//! ```no_run
//! use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin, state};
//!
//! struct Counter {
//!     count: u64,
//! }
//!
//! impl Plugin for Counter {
//!     fn init(ctx: Context) -> Result<Self, String> {
//!         let count = match state::get("count").map_err(|e| e.to_string())? {
//!             Some(bytes) => String::from_utf8_lossy(&bytes).parse().unwrap_or(0),
//!             None => 0,
//!         };
//!         warden_guest::info!("{} starts at {count} (incarnation {})", ctx.path, ctx.incarnation);
//!         Ok(Counter { count })
//!     }
//!
//!     fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
//!         match msg.payload.as_slice() {
//!             b"incr" => {
//!                 self.count += 1;
//!                 state::set("count", self.count.to_string().as_bytes())
//!                     .map_err(|e| e.to_string())?;
//!                 Ok(self.count.to_string().into_bytes())
//!             }
//!             b"get" => Ok(self.count.to_string().into_bytes()),
//!             other => Err(format!("unknown command {:?}", String::from_utf8_lossy(other))),
//!         }
//!     }
//!
//!     fn terminate(&mut self, _reason: ExitReason) {}
//! }
//!
//! export_plugin!(Counter);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` from a crate whose
//! `[lib]` has `crate-type = ["cdylib"]`; the `.wasm` file is the component Warden loads.

// The bindings name this crate by its public path, so that `export_plugin!` works
// from plugin crates; this makes the same path resolve inside the crate too.
extern crate self as warden_guest;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "::warden_guest::bindings",
        runtime_path: "::warden_guest::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::warden::plugin::{runtime, types};

pub use errors::{CancelReason, ExitReason, KillCause, MessageError, StateError, TrapKind};
pub use types::{Context, Envelope, ExitRequest, HostFunctionFailure, LogLevel};

mod errors;
pub mod state;

/// A Warden plugin: one value per incarnation, handling one message at a time.
///
/// `init` makes the value from the child's [`Context`] when an incarnation starts,
/// `handle` answers each message, and [`export_plugin!`] exports the type:
///
/// ```no_run
/// use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin};
///
/// struct Greeter {
///     greeting: String,
/// }
///
/// impl Plugin for Greeter {
///     fn init(ctx: Context) -> Result<Self, String> {
///         // Who it is (`ctx.path`, `ctx.incarnation`, and its `config` as JSON bytes).
///         Ok(Greeter { greeting: format!("{} says hello to", ctx.name) })
///     }
///
///     fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
///         let name = std::str::from_utf8(&msg.payload).map_err(|_| "not UTF-8")?;
///         Ok(format!("{} {name}", self.greeting).into_bytes())
///     }
///
///     fn terminate(&mut self, reason: ExitReason) {
///         warden_guest::info!("stopping: {reason}");
///     }
/// }
///
/// export_plugin!(Greeter);
/// ```
pub trait Plugin: Sized + 'static {
    /// Starts an incarnation. An `Err` is a start failure, which the supervisor sees as
    /// `start_failed` with this message.
    ///
    /// # Errors
    /// Whatever message explains why the child cannot start.
    fn init(ctx: Context) -> Result<Self, String>;

    /// Handles one message and returns the reply sent back to a caller (ignored for a
    /// plain `send`).
    ///
    /// # Errors
    /// An application error goes back to the caller; it is not a crash.
    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String>;

    /// Runs on graceful shutdown, within the child's shutdown timeout. The default does
    /// nothing.
    fn terminate(&mut self, reason: ExitReason) {
        let _ = reason;
    }
}

/// Tells the host's watchdog this child is alive. Call it more often than the child's
/// heartbeat timeout while busy in one long `handle`; an idle child need not.
///
/// ```no_run
/// # fn crunch(_: &[u8]) {}
/// # let chunks: Vec<Vec<u8>> = Vec::new();
/// for chunk in &chunks {
///     crunch(chunk);
///     warden_guest::heartbeat(); // alive: the watchdog starts counting again
/// }
/// ```
pub fn heartbeat() {
    runtime::heartbeat();
}

/// Sends `payload` to the child at path `to` (e.g. `root/logger`) without waiting.
///
/// ```no_run
/// use warden_guest::MessageError;
/// match warden_guest::send("root/logger", b"order 42 paid") {
///     Ok(()) => {}
///     // The logger is restarting, or its mailbox is full: try later, or let it go.
///     Err(MessageError::MailboxFull | MessageError::UnknownTarget(_)) => {}
///     Err(e) => warden_guest::warn!("cannot log: {e}"),
/// }
/// ```
///
/// # Errors
/// [`MessageError`] when the target is unknown or not allowed, its mailbox is full, or
/// the payload is too large.
pub fn send(to: &str, payload: impl AsRef<[u8]>) -> Result<(), MessageError> {
    runtime::send(to, payload.as_ref()).map_err(MessageError::from)
}

/// Sends `payload` to `to` after `delay`. The timer belongs to this incarnation: if the
/// child exits first, nothing is sent.
///
/// A child can wake itself up, for periodic work:
///
/// ```no_run
/// use std::time::Duration;
/// let me = warden_guest::self_path();
/// warden_guest::send_after(&me, b"tick", Duration::from_secs(1))?;
/// # Ok::<(), warden_guest::MessageError>(())
/// ```
///
/// # Errors
/// As [`send`], checked when the timer is set, and [`MessageError::TooManyTimers`] when
/// this child already has as many timers pending as its limits allow.
pub fn send_after(
    to: &str,
    payload: impl AsRef<[u8]>,
    delay: std::time::Duration,
) -> Result<(), MessageError> {
    runtime::send_after(to, payload.as_ref(), duration_ms(delay)).map_err(MessageError::from)
}

/// Sends `payload` to `to` and waits at most `timeout` for the reply.
///
/// A call made while handling a call belongs to that call's chain (a [`send`] belongs to
/// none): it waits at most what is left of the chain's deadline, and when the chain is
/// cancelled above it (a caller gone, a deadline passed) it is abandoned at once with
/// [`MessageError::Cancelled`], and its callee is told in turn.
///
/// ```no_run
/// use std::time::Duration;
/// use warden_guest::MessageError;
/// # fn handle() -> Result<Vec<u8>, String> {
/// match warden_guest::call("root/stock", b"reserve:apple:3", Duration::from_millis(500)) {
///     Ok(reply) => Ok(reply),
///     // The callee crashed on it: its supervisor restarts it; the reason says why.
///     Err(MessageError::CalleeCrashed(reason)) => Err(format!("stock crashed: {reason:?}")),
///     // Its own answer, an application error: not a crash.
///     Err(MessageError::Application(message)) => Err(message),
///     Err(e) => Err(e.to_string()),
/// }
/// # }
/// ```
///
/// # Errors
/// As [`send`], plus [`MessageError::Timeout`] (its own timeout),
/// [`MessageError::Cancelled`] (the chain's), [`MessageError::CalleeCrashed`] with the
/// callee's exit reason, [`MessageError::Application`] when the callee answered with an
/// error, and [`MessageError::CircuitOpen`].
pub fn call(
    to: &str,
    payload: impl AsRef<[u8]>,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, MessageError> {
    runtime::call(to, payload.as_ref(), duration_ms(timeout)).map_err(MessageError::from)
}

/// Asks the host to end this incarnation with `reason` once the current export returns.
///
/// `Normal` ends a transient child for good (no restart); `Error` is a crash its
/// supervisor restarts:
///
/// ```no_run
/// use warden_guest::ExitRequest;
/// # fn handle(job_done: bool) -> Result<Vec<u8>, String> {
/// if job_done {
///     warden_guest::exit(ExitRequest::Normal);
/// }
/// # Ok(Vec::new()) }
/// ```
pub fn exit(reason: ExitRequest) {
    runtime::exit(&reason);
}

/// This child's path in the tree, e.g. `root/pool/worker`.
///
/// ```no_run
/// // Ask a sibling to call back later: tell it where to.
/// let me = warden_guest::self_path();
/// warden_guest::send("root/scheduler", format!("wake:{me}"))?;
/// # Ok::<(), warden_guest::MessageError>(())
/// ```
pub fn self_path() -> String {
    runtime::self_path()
}

/// The version this incarnation replaces, when an upgrade started it
/// (`NAME@sha256:HASH` of the old component); `None` for any other start. Its mailbox
/// and durable state are the old version's: ask from `init`, and migrate what needs it.
///
/// ```no_run
/// # use warden_guest::{Context, Envelope, Plugin, state};
/// # struct Counter;
/// # impl Plugin for Counter {
/// fn init(_ctx: Context) -> Result<Self, String> {
///     if let Some(old) = warden_guest::upgraded_from() {
///         warden_guest::info!("upgraded from {old}");
///         // e.g. rename a key the old version wrote
///         if let Some(n) = state::get("count").map_err(|e| e.to_string())? {
///             state::set("counter", &n).map_err(|e| e.to_string())?;
///         }
///     }
///     Ok(Counter)
/// }
/// # fn handle(&mut self, _: Envelope) -> Result<Vec<u8>, String> { Ok(vec![]) }
/// # }
/// ```
pub fn upgraded_from() -> Option<String> {
    runtime::upgraded_from()
}

/// Whether the call being handled was cancelled: its caller is gone (crashed,
/// stopped, gave up) or its chain's deadline passed. Its reply will be discarded and
/// calls made from now on fail with [`MessageError::Cancelled`], so a long handler may
/// stop early and clean up; it is not killed, and its state stays as it leaves it.
/// Always false while handling a sent message.
///
/// ```no_run
/// # fn work_on(_: u32) {}
/// # fn handle() -> Result<Vec<u8>, String> {
/// for step in 0..1_000 {
///     if warden_guest::cancelled() {
///         return Err("cancelled: stopped early".into()); // discarded, nobody waits
///     }
///     work_on(step);
///     warden_guest::heartbeat();
/// }
/// # Ok(Vec::new()) }
/// ```
pub fn cancelled() -> bool {
    runtime::cancelled()
}

/// Writes a log line at `level`, attributed to this child: at info and above it is a
/// `log` event in the host's stream (`warden run` shows it), within the child's output
/// budget. The macros ([`info!`] …) are usually nicer.
///
/// ```no_run
/// use warden_guest::LogLevel;
/// warden_guest::log(LogLevel::Info, "ready");
/// let n = 3;
/// warden_guest::info!("{n} orders waiting");
/// warden_guest::error!("order {} failed: {}", 42, "out of stock");
/// ```
pub fn log(level: LogLevel, message: &str) {
    runtime::log(level, message);
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Logs at error level: `error!("failed: {e}")`.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log($crate::LogLevel::Error, &format!($($t)*)) } }
/// Logs at warn level: `warn!("slow: {ms} ms")`.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log($crate::LogLevel::Warn, &format!($($t)*)) } }
/// Logs at info level: `info!("started")`.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log($crate::LogLevel::Info, &format!($($t)*)) } }
/// Logs at debug level.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log($crate::LogLevel::Debug, &format!($($t)*)) } }
/// Logs at trace level.
#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::log($crate::LogLevel::Trace, &format!($($t)*)) } }

/// Typed messages as JSON (feature `json`): serde types both ways, with errors that
/// say what was wrong.
///
/// A child that answers typed requests, and one that calls it:
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
/// use warden_guest::{Context, Envelope, Plugin, json};
///
/// #[derive(Serialize, Deserialize)]
/// struct Reserve { item: String, count: u32 }
/// #[derive(Serialize, Deserialize)]
/// struct Reserved { left: u32 }
///
/// struct Stock { apples: u32 }
///
/// impl Plugin for Stock {
///     fn init(_: Context) -> Result<Self, String> {
///         Ok(Stock { apples: 10 })
///     }
///     fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
///         let ask: Reserve = json::from_json(&msg.payload)?; // "bad JSON message: ..."
///         self.apples = self.apples.checked_sub(ask.count).ok_or("not enough")?;
///         serde_json::to_vec(&Reserved { left: self.apples }).map_err(|e| e.to_string())
///     }
/// }
///
/// // In another child:
/// # fn caller() -> Result<(), warden_guest::MessageError> {
/// let ask = Reserve { item: "apple".into(), count: 3 };
/// let done: Reserved = json::call("root/stock", &ask, Duration::from_secs(1))?;
/// warden_guest::info!("{} left", done.left);
/// # Ok(()) }
/// ```
#[cfg(feature = "json")]
pub mod json {
    use super::MessageError;
    use serde::{Serialize, de::DeserializeOwned};

    /// Sends `value` as JSON to `to`.
    ///
    /// # Errors
    /// As [`super::send`]; a value that cannot be serialised is reported as
    /// [`MessageError::Application`].
    pub fn send<T: Serialize>(to: &str, value: &T) -> Result<(), MessageError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| MessageError::Application(e.to_string()))?;
        super::send(to, bytes)
    }

    /// Calls `to` with `value` as JSON and parses the JSON reply.
    ///
    /// # Errors
    /// As [`super::call`]; a reply that is not the expected JSON is reported as
    /// [`MessageError::Application`].
    pub fn call<T: Serialize, R: DeserializeOwned>(
        to: &str,
        value: &T,
        timeout: std::time::Duration,
    ) -> Result<R, MessageError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| MessageError::Application(e.to_string()))?;
        let reply = super::call(to, bytes, timeout)?;
        serde_json::from_slice(&reply).map_err(|e| MessageError::Application(e.to_string()))
    }

    /// Parses a message payload as JSON, with an error message fit for a reply.
    ///
    /// # Errors
    /// The parser's message when the payload is not the expected JSON.
    pub fn from_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
        serde_json::from_slice(payload).map_err(|e| format!("bad JSON message: {e}"))
    }
}

/// Makes a [`Plugin`] type the component's exports. Use it once, in the plugin crate's
/// root: `export_plugin!(MyPlugin);`.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        const _: () = {
            struct __WardenExports;
            impl $crate::bindings::exports::warden::plugin::guest::Guest for __WardenExports {
                fn init(ctx: $crate::Context) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$ty>(ctx)
                }
                fn handle(
                    msg: $crate::Envelope,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::__private::handle::<$ty>(msg)
                }
                fn terminate(reason: $crate::ExitReason) {
                    $crate::__private::terminate::<$ty>(reason)
                }
            }
            $crate::bindings::__export_plugin_world!(__WardenExports with_types_in $crate::bindings);
        };
    };
}

/// Generates bindings for an application's own WIT interfaces beside Warden's: the
/// ones the plugin imports (functions the application gives it) and the ones it
/// exports (for the application to call, typed). Takes the options of
/// `wit_bindgen::generate!`; `path` is relative to the plugin crate's `Cargo.toml`.
///
/// ```ignore
/// // The application's WIT: package acme:shop@0.1.0;
/// //   world plugin { import inventory; export report; }
/// warden_guest::generate!(path: "../shop/wit", world: "acme:shop/plugin");
///
/// let left = acme::shop::inventory::stock("apples");          // an import
///
/// struct Report;
/// impl exports::acme::shop::report::Guest for Report { /* ... */ }
/// export!(Report);                                             // an export
/// ```
///
/// The host must provide each imported interface and the child's `grants.interfaces`
/// name it, or the child does not start.
#[macro_export]
macro_rules! generate {
    ($($options:tt)*) => {
        $crate::__private::wit_bindgen::generate!({
            runtime_path: "::warden_guest::__private::wit_bindgen::rt",
            $($options)*
        });
    };
}

#[doc(hidden)]
pub mod __private {
    //! Support for [`export_plugin!`](crate::export_plugin); not a public API.
    use super::{Context, Envelope, ExitReason, Plugin, runtime};
    use std::any::Any;
    use std::cell::RefCell;

    pub use wit_bindgen;

    thread_local! {
        // One incarnation per instance: the host makes a new instance for each restart.
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn install_panic_hook() {
        std::panic::set_hook(Box::new(|info| {
            // Tell the host why we are about to abort, then let the default path trap.
            runtime::abort_reason(&info.to_string());
        }));
    }

    pub fn init<P: Plugin>(ctx: Context) -> Result<(), String> {
        install_panic_hook();
        let plugin = P::init(ctx)?;
        INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> R) -> R {
        // Take the plugin out while it runs so a re-entrant export cannot alias it.
        let mut boxed = INSTANCE
            .with(|slot| slot.borrow_mut().take())
            .expect("warden: export called before a successful init");
        let result = f(boxed.downcast_mut::<P>().expect("warden: one plugin type per component"));
        INSTANCE.with(|slot| *slot.borrow_mut() = Some(boxed));
        result
    }

    pub fn handle<P: Plugin>(msg: Envelope) -> Result<Vec<u8>, String> {
        with_plugin::<P, _>(|p| p.handle(msg))
    }

    pub fn terminate<P: Plugin>(reason: ExitReason) {
        // A child whose init failed has no value to terminate.
        if INSTANCE.with(|slot| slot.borrow().is_some()) {
            with_plugin::<P, _>(|p| p.terminate(reason));
        }
    }
}
