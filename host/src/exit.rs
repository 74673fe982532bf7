//! Why an incarnation ended: one typed value shared by events, the API and the CLI.
//!
//! Traps are classified once, at the sandbox boundary ([`crate::sandbox`]); nothing
//! downstream ever parses an error string. The JSON form is part of the CLI contract:
//!
//! ```text
//! {"kind":"normal"}
//! {"kind":"shutdown_with","reason":"..."}
//! {"kind":"error","message":"..."}
//! {"kind":"trap","trap":"unreachable","message":"...","panic":true}
//! {"kind":"killed","cause":"deadline"}
//! {"kind":"start_failed","message":"..."}
//! {"kind":"host_panic","message":"..."}
//! {"kind":"host_function_failed","interface":"acme:shop/inventory","function":"get-stock","message":"...","panic":true}
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an incarnation of a child ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExitReason {
    /// The child exited normally.
    Normal,
    /// The child was shut down by its supervisor or asked to shut down.
    Shutdown,
    /// Shut down with an application-defined reason.
    ShutdownWith {
        /// The application's reason.
        reason: String,
    },
    /// The child returned or asked for an error exit.
    Error {
        /// The child's message.
        message: String,
    },
    /// The child trapped.
    Trap {
        /// What kind of trap.
        trap: TrapKind,
        /// The host's description: the panic message for a Rust panic, otherwise the
        /// trap and its wasm backtrace.
        message: String,
        /// True when the trap was a panic the guest reported before aborting.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        panic: bool,
    },
    /// The host killed the child.
    Killed {
        /// Why it was killed.
        cause: KillCause,
    },
    /// The child could not start: `init` failed or the instance could not be created.
    StartFailed {
        /// What went wrong.
        message: String,
    },
    /// The host's own code serving the child panicked (a bug in Warden or in a host
    /// function of the embedding application, not the guest's fault). The
    /// incarnation ends; the rest of the host goes on.
    HostPanic {
        /// The panic's message.
        message: String,
    },
    /// A function of an interface the embedding application gives its plugins
    /// returned an error (a trap) or panicked while the child called it. The
    /// incarnation ends; the host and the other children go on.
    HostFunctionFailed(Box<HostFunctionFailure>),
}

/// Which function of an application's interface failed, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFunctionFailure {
    /// The interface, as the plugin imports it (`acme:shop/inventory@0.1.0`).
    pub interface: String,
    /// The function, when it can be told: when the plugin imports only one function
    /// of the interface (wasmtime's bindings do not say which one is running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The function's error, or its panic's message.
    pub message: String,
    /// True when the function panicked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub panic: bool,
}

impl fmt::Display for HostFunctionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { interface, function, message, panic } = self;
        let failed = if *panic { "panicked" } else { "failed" };
        match function {
            Some(function) => write!(f, "host function {interface}#{function} {failed}: {message}"),
            None => write!(f, "a host function of {interface} {failed}: {message}"),
        }
    }
}

impl ExitReason {
    /// Whether a transient child treats this exit as normal (OTP: `normal`, `shutdown`,
    /// `{shutdown, _}`). Every other reason, `killed` included, is abnormal.
    pub fn is_normal(&self) -> bool {
        matches!(self, Self::Normal | Self::Shutdown | Self::ShutdownWith { .. })
    }

    /// Its kind, as the JSON's `kind` names it (`trap`, `killed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Shutdown => "shutdown",
            Self::ShutdownWith { .. } => "shutdown_with",
            Self::Error { .. } => "error",
            Self::Trap { .. } => "trap",
            Self::Killed { .. } => "killed",
            Self::StartFailed { .. } => "start_failed",
            Self::HostPanic { .. } => "host_panic",
            Self::HostFunctionFailed(_) => "host_function_failed",
        }
    }

    /// A short name for counting exits by reason: the kind, with the trap or the kill
    /// cause for those (`trap:unreachable`, `killed:heartbeat`). Never a guest's text.
    pub fn label(&self) -> String {
        match self {
            Self::Trap { trap, .. } => format!("trap:{trap}"),
            Self::Killed { cause } => format!("killed:{cause}"),
            other => other.kind().to_owned(),
        }
    }

    /// The trap kind, for a trap.
    pub fn trap_kind(&self) -> Option<TrapKind> {
        match self {
            Self::Trap { trap, .. } => Some(*trap),
            _ => None,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::ShutdownWith { reason } => write!(f, "shutdown: {reason}"),
            Self::Error { message } => write!(f, "error: {message}"),
            Self::Trap { trap, message, .. } => write!(f, "trap {trap}: {message}"),
            Self::Killed { cause } => write!(f, "killed: {cause}"),
            Self::StartFailed { message } => write!(f, "start failed: {message}"),
            Self::HostPanic { message } => write!(f, "host panic: {message}"),
            Self::HostFunctionFailed(failure) => failure.fmt(f),
        }
    }
}

impl std::error::Error for ExitReason {}

/// The kind of a trap, classified from wasmtime's trap codes and the host's own
/// knowledge (a limiter refusal is `memory_limit`, not the abort it causes in Rust).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrapKind {
    /// An `unreachable` instruction: Rust panics and aborts end here.
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// The wasm call stack was exhausted.
    StackOverflow,
    /// Integer division by zero.
    IntegerDivisionByZero,
    /// Integer overflow, or an invalid float-to-int conversion.
    IntegerOverflow,
    /// A bad indirect call: null, out of bounds, or the wrong signature.
    IndirectCall,
    /// The call ran out of fuel.
    OutOfFuel,
    /// Memory or a table was grown past the child's limit.
    MemoryLimit,
    /// Any other trap.
    Other,
}

impl TrapKind {
    /// The snake_case name used in events and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::MemoryOutOfBounds => "memory_out_of_bounds",
            Self::StackOverflow => "stack_overflow",
            Self::IntegerDivisionByZero => "integer_division_by_zero",
            Self::IntegerOverflow => "integer_overflow",
            Self::IndirectCall => "indirect_call",
            Self::OutOfFuel => "out_of_fuel",
            Self::MemoryLimit => "memory_limit",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the host killed a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KillCause {
    /// An export call ran past its CPU deadline.
    Deadline,
    /// The heartbeat watchdog judged the child hung.
    Heartbeat,
    /// `terminate` did not return within the shutdown timeout.
    ShutdownTimeout,
    /// The child's shutdown is `brutal_kill`.
    BrutalKill,
    /// The node the child ran on left the cluster: its membership expired, or it
    /// fenced itself off after losing the cluster for longer than the node TTL.
    NodeDown,
}

impl fmt::Display for KillCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deadline => "deadline",
            Self::Heartbeat => "heartbeat",
            Self::ShutdownTimeout => "shutdown_timeout",
            Self::BrutalKill => "brutal_kill",
            Self::NodeDown => "node_down",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_the_cli_contract() {
        let trap =
            ExitReason::Trap { trap: TrapKind::Unreachable, message: "boom".into(), panic: false };
        assert_eq!(
            serde_json::to_string(&trap).unwrap(),
            r#"{"kind":"trap","trap":"unreachable","message":"boom"}"#
        );
        let killed = ExitReason::Killed { cause: KillCause::ShutdownTimeout };
        assert_eq!(
            serde_json::to_string(&killed).unwrap(),
            r#"{"kind":"killed","cause":"shutdown_timeout"}"#
        );
        assert_eq!(serde_json::to_string(&ExitReason::Shutdown).unwrap(), r#"{"kind":"shutdown"}"#);
        let back: ExitReason =
            serde_json::from_str(r#"{"kind":"shutdown_with","reason":"bye"}"#).unwrap();
        assert_eq!(back, ExitReason::ShutdownWith { reason: "bye".into() });
        let failed = ExitReason::HostFunctionFailed(Box::new(HostFunctionFailure {
            interface: "acme:shop/inventory".into(),
            function: Some("get-stock".into()),
            message: "offline".into(),
            panic: true,
        }));
        let json = r#"{"kind":"host_function_failed","interface":"acme:shop/inventory","function":"get-stock","message":"offline","panic":true}"#;
        assert_eq!(serde_json::to_string(&failed).unwrap(), json);
        assert_eq!(serde_json::from_str::<ExitReason>(json).unwrap(), failed);
        assert!(!failed.is_normal());
    }

    #[test]
    fn transient_normality_follows_otp() {
        assert!(ExitReason::Normal.is_normal());
        assert!(ExitReason::Shutdown.is_normal());
        assert!(ExitReason::ShutdownWith { reason: "x".into() }.is_normal());
        assert!(!ExitReason::Killed { cause: KillCause::BrutalKill }.is_normal());
        assert!(!ExitReason::Error { message: "x".into() }.is_normal());
        assert!(!ExitReason::StartFailed { message: "x".into() }.is_normal());
        assert!(!ExitReason::HostPanic { message: "x".into() }.is_normal());
    }
}
