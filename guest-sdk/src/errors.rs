//! The errors a plugin sees, each displayed as a short sentence a person can read
//! (`callee crashed: killed (deadline)`), never as Rust debug text. An application
//! error displays as the callee's own text.
//!
//! The WIT bindings' error types display as debug text, so the SDK has its own, with
//! the same cases.

use crate::bindings::warden::plugin::types as wit;
use std::fmt;

pub use wit::{ExitReason, KillCause, TrapKind};

/// Why a message was not sent or a call got no reply.
///
/// Each case is something a plugin can act on; the ones worth telling apart are a
/// full mailbox (try later), a crashed callee (its supervisor restarts it) and the
/// callee's own answer:
///
/// ```no_run
/// use std::time::Duration;
/// use warden_guest::{ExitReason, MessageError};
/// # fn handle() -> Result<Vec<u8>, String> {
/// match warden_guest::call("root/stock", b"reserve:apple", Duration::from_secs(1)) {
///     Ok(reply) => Ok(reply),
///     Err(MessageError::MailboxFull | MessageError::CircuitOpen) => {
///         // Busy or failing: remind ourselves to try again in a second.
///         let me = warden_guest::self_path();
///         warden_guest::send_after(&me, b"retry", Duration::from_secs(1))
///             .map_err(|e| e.to_string())?;
///         Ok(b"queued".to_vec())
///     }
///     Err(MessageError::CalleeCrashed(ExitReason::Trap((kind, message)))) => {
///         Err(format!("stock trapped ({kind}): {message}"))
///     }
///     Err(MessageError::Application(answer)) => Err(answer), // its own "no such item"
///     // Displayed as a sentence: "timed out", "not allowed to send to root/stock", ...
///     Err(other) => Err(other.to_string()),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// No child has that path.
    UnknownTarget(String),
    /// The target's mailbox is full; try again later.
    MailboxFull,
    /// The payload is larger than the target accepts; the limit in bytes.
    TooLarge(u64),
    /// This child may not send to that target.
    NotAllowed(String),
    /// No reply came within the timeout.
    Timeout,
    /// Refused at once: the call would close a cycle of calls waiting on each other,
    /// from the callee back to itself.
    Deadlock(Vec<String>),
    /// The callee exited while handling the call, for this reason.
    CalleeCrashed(ExitReason),
    /// The callee is failing repeatedly; calls fail fast until it recovers.
    CircuitOpen,
    /// The callee handled the call and answered with this error.
    Application(String),
    /// Messaging is not available in this host.
    Unsupported,
    /// This child has as many `send-after` timers pending as its limits allow.
    TooManyTimers(String),
    /// The operation this call belongs to failed above it: the call was abandoned, or
    /// refused at once because the call being handled was cancelled (see
    /// [`crate::cancelled`]).
    Cancelled(CancelReason),
    /// The callee is not running and no restart will start it (Erlang's `noproc`):
    /// stopped by `terminate_child` (until `restart_child`), or a transient child that
    /// ended normally. Messages sent to it wait for its next start.
    NotRunning(String),
}

/// Why the operation a call belongs to was cancelled. A call made while handling a call
/// is a frame of the same chain: when a frame's caller is gone, it and every frame
/// below it are cancelled, with the same reason.
///
/// ```no_run
/// use std::time::Duration;
/// use warden_guest::{CancelReason, MessageError};
/// # fn handle() -> Result<Vec<u8>, String> {
/// match warden_guest::call("root/pricing", b"quote", Duration::from_secs(2)) {
///     Err(MessageError::Cancelled(CancelReason::Deadline(call_to))) => {
///         // The chain's deadline, set by the call to `call_to` above us, passed.
///         Err(format!("gave up: the call to {call_to} ran out of time"))
///     }
///     Err(MessageError::Cancelled(CancelReason::CallerGone(_))) => {
///         Err("nobody waits for this any more".into()) // the reply is discarded
///     }
///     other => other.map_err(|e| e.to_string()),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// A caller above stopped waiting: its incarnation crashed or was stopped, or
    /// (`None`) the embedding application dropped its call.
    CallerGone(Option<String>),
    /// A deadline passed: that of the call to this path (the call being handled, or one
    /// above it, whose own timeout set the chain's deadline).
    Deadline(String),
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CallerGone(Some(caller)) => write!(f, "the caller {caller} is gone"),
            Self::CallerGone(None) => f.write_str("the application's call is gone"),
            Self::Deadline(call_to) => write!(f, "the deadline of the call to {call_to} passed"),
        }
    }
}

impl From<wit::MessageError> for MessageError {
    fn from(e: wit::MessageError) -> Self {
        match e {
            wit::MessageError::UnknownTarget(t) => Self::UnknownTarget(t),
            wit::MessageError::MailboxFull => Self::MailboxFull,
            wit::MessageError::TooLarge(n) => Self::TooLarge(n),
            wit::MessageError::NotAllowed(t) => Self::NotAllowed(t),
            wit::MessageError::Timeout => Self::Timeout,
            wit::MessageError::Deadlock(cycle) => Self::Deadlock(cycle),
            wit::MessageError::CalleeCrashed(reason) => Self::CalleeCrashed(reason),
            wit::MessageError::CircuitOpen => Self::CircuitOpen,
            wit::MessageError::Application(text) => Self::Application(text),
            wit::MessageError::Unsupported => Self::Unsupported,
            wit::MessageError::TooManyTimers(why) => Self::TooManyTimers(why),
            wit::MessageError::Cancelled(reason) => Self::Cancelled(match reason {
                wit::CancelReason::CallerGone(caller) => CancelReason::CallerGone(caller),
                wit::CancelReason::Deadline(call_to) => CancelReason::Deadline(call_to),
            }),
            wit::MessageError::NotRunning(path) => Self::NotRunning(path),
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownTarget(t) => write!(f, "unknown target {t}"),
            Self::MailboxFull => f.write_str("mailbox full"),
            Self::TooLarge(n) => write!(f, "message too large: the limit is {n} bytes"),
            Self::NotAllowed(t) => write!(f, "not allowed to send to {t}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Deadlock(cycle) => write!(f, "deadlock: {}", cycle.join(" -> ")),
            Self::CalleeCrashed(reason) => write!(f, "callee crashed: {reason}"),
            Self::CircuitOpen => f.write_str("circuit open"),
            Self::Application(text) => f.write_str(text),
            Self::Unsupported => f.write_str("messaging is not supported by this host"),
            Self::TooManyTimers(why) => write!(f, "too many timers: {why}"),
            Self::Cancelled(reason) => write!(f, "cancelled: {reason}"),
            Self::NotRunning(path) => write!(f, "noproc: {path} is not running"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Why a state operation failed. The plugin keeps running, and a write that failed
/// changed nothing.
///
/// ```no_run
/// use warden_guest::{StateError, state};
/// # fn handle(order: &str, body: &[u8]) -> Result<Vec<u8>, String> {
/// match state::set(&format!("order/{order}"), body) {
///     Ok(()) => Ok(b"stored".to_vec()),
///     // Full: make room, or tell the caller (an application error, not a crash).
///     Err(StateError::QuotaExceeded(why)) => Err(format!("no room for {order}: {why}")),
///     Err(StateError::ValueTooLarge(limit)) => Err(format!("orders are at most {limit} bytes")),
///     // "state storage failed: ...": worth a crash, so the supervisor's rules apply.
///     Err(e @ StateError::Storage(_)) => panic!("{e}"),
///     Err(e) => Err(e.to_string()),
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// The key is empty or longer than the host allows; the limit in bytes.
    BadKey(u64),
    /// The value is larger than the host allows; the limit in bytes.
    ValueTooLarge(u64),
    /// The child's state quota would be exceeded; which one and by how much.
    QuotaExceeded(String),
    /// The store failed.
    Storage(String),
}

impl From<wit::StateError> for StateError {
    fn from(e: wit::StateError) -> Self {
        match e {
            wit::StateError::BadKey(n) => Self::BadKey(n),
            wit::StateError::ValueTooLarge(n) => Self::ValueTooLarge(n),
            wit::StateError::QuotaExceeded(why) => Self::QuotaExceeded(why),
            wit::StateError::Storage(why) => Self::Storage(why),
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey(n) => write!(f, "bad key: keys are 1 to {n} bytes"),
            Self::ValueTooLarge(n) => write!(f, "value too large: the limit is {n} bytes"),
            Self::QuotaExceeded(why) => write!(f, "state quota exceeded: {why}"),
            Self::Storage(why) => write!(f, "state storage failed: {why}"),
        }
    }
}

impl std::error::Error for StateError {}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::ShutdownWith(reason) => write!(f, "shutdown ({reason})"),
            Self::Error(message) => write!(f, "error: {message}"),
            Self::Trap((kind, message)) => write!(f, "trap ({kind}): {message}"),
            Self::Killed(cause) => write!(f, "killed ({cause})"),
            Self::StartFailed(message) => write!(f, "start failed: {message}"),
            Self::HostPanic(message) => write!(f, "host panic: {message}"),
            Self::HostFunctionFailed(failure) => {
                let how = if failure.panic { "panicked" } else { "failed" };
                match &failure.function {
                    Some(function) => write!(
                        f,
                        "host function {}#{function} {how}: {}",
                        failure.interface, failure.message
                    ),
                    None => write!(
                        f,
                        "host function of {} {how}: {}",
                        failure.interface, failure.message
                    ),
                }
            }
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreachable => "unreachable",
            Self::MemoryOutOfBounds => "memory out of bounds",
            Self::StackOverflow => "stack overflow",
            Self::IntegerDivisionByZero => "integer division by zero",
            Self::IntegerOverflow => "integer overflow",
            Self::IndirectCall => "bad indirect call",
            Self::OutOfFuel => "out of fuel",
            Self::MemoryLimit => "memory limit",
            Self::Other => "other",
        })
    }
}

impl fmt::Display for KillCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deadline => "deadline",
            Self::Heartbeat => "heartbeat",
            Self::ShutdownTimeout => "shutdown timeout",
            Self::BrutalKill => "brutal kill",
            Self::NodeDown => "node down",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_sentences() {
        let crashed = MessageError::CalleeCrashed(ExitReason::Killed(KillCause::Deadline));
        assert_eq!(crashed.to_string(), "callee crashed: killed (deadline)");
        let trap = ExitReason::Trap((TrapKind::StackOverflow, "in recurse".into()));
        assert_eq!(
            MessageError::CalleeCrashed(trap).to_string(),
            "callee crashed: trap (stack overflow): in recurse"
        );
        assert_eq!(MessageError::Application("no such user".into()).to_string(), "no such user");
        let cycle = vec!["root/a".to_owned(), "root/b".to_owned(), "root/a".to_owned()];
        assert_eq!(
            MessageError::Deadlock(cycle).to_string(),
            "deadlock: root/a -> root/b -> root/a"
        );
        assert_eq!(StateError::BadKey(1024).to_string(), "bad key: keys are 1 to 1024 bytes");
        for e in
            [MessageError::MailboxFull.to_string(), StateError::Storage("disk".into()).to_string()]
        {
            assert!(!e.contains("::") && !e.contains('('), "{e}");
        }
    }
}
