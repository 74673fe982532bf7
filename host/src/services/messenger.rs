//! Messaging as a sandbox asks for it: the sandbox implements the `runtime` imports by
//! delegating to a [`Messenger`]; the messaging runtime implements it.
//! [`NoMessaging`] answers every request with [`MessageError::Unsupported`], never a
//! panic or a trap.

use super::BoxFuture;
use crate::ExitReason;
use std::fmt;
use std::time::Duration;

/// A message as a child's `handle` receives it: the sender's path (none for the
/// embedding application), the payload, and whether the sender waits for a reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's path; `None` when the embedding application sent it.
    pub sender: Option<String>,
    /// The message body.
    pub payload: Vec<u8>,
    /// True for a call: the sender waits for the reply.
    pub expects_reply: bool,
}

/// Why a message was not sent or a call got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum MessageError {
    /// No child has that path.
    #[error("unknown target {0:?}")]
    UnknownTarget(String),
    /// A call to a child that is not running and that no restart will start:
    /// stopped by `terminate_child` (until `restart_child`), or a transient child that
    /// ended normally. OTP's `noproc`. Sent messages to it are kept for its next start.
    #[error("noproc: {0:?} is not running")]
    NotRunning(String),
    /// The target's mailbox is full.
    #[error("mailbox full")]
    MailboxFull,
    /// The payload exceeds the limit, in bytes.
    #[error("message larger than {0} bytes")]
    TooLarge(u64),
    /// The sender may not send to that target.
    #[error("not allowed to send to {0:?}")]
    NotAllowed(String),
    /// No reply within the timeout.
    #[error("timed out")]
    Timeout,
    /// Refused at once: the call would close a cycle of calls waiting on each other.
    /// The paths in the order they wait, from the callee (which already waits, directly
    /// or through others, on the caller) back to itself.
    #[error("deadlock: {}", .0.join(" -> "))]
    Deadlock(Vec<String>),
    /// The callee exited while handling the call.
    #[error("callee crashed: {0}")]
    CalleeCrashed(ExitReason),
    /// Calls to the callee fail fast while it keeps failing.
    #[error("circuit open")]
    CircuitOpen,
    /// The callee answered with an application error: its own text.
    #[error("{0}")]
    Application(String),
    /// This host has no messaging.
    #[error("messaging is not supported by this host")]
    Unsupported,
    /// The sender already has as many `send-after` timers pending as its limits allow;
    /// the text says which limit.
    #[error("too many timers: {0}")]
    TooManyTimers(String),
    /// The operation this call belongs to failed above it: the call is abandoned, or
    /// was refused at once (a call made while handling a cancelled call).
    #[error("cancelled: {0}")]
    Cancelled(CancelReason),
}

/// Why a frame of a call chain was cancelled: the operation failed above it. The same
/// reason travels down to every frame below.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CancelReason {
    /// A caller above stopped waiting: its incarnation crashed or was stopped, or
    /// (`caller` absent) the embedding application dropped its call.
    #[error("the caller {} is gone", .caller.as_deref().unwrap_or("(the application)"))]
    CallerGone {
        /// The caller that went; absent for the embedding application.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller: Option<String>,
    },
    /// A deadline passed: that of the call to `call_to` (the call being handled, or
    /// one above it: the one whose own timeout set the chain's deadline).
    #[error("the deadline of the call to {call_to} passed")]
    Deadline {
        /// The callee of the call whose deadline it was.
        call_to: String,
    },
}

/// Messaging as seen from one child (the sender of everything it sends);
/// implemented by the host's messaging runtime.
pub trait Messenger: Send + Sync + fmt::Debug {
    /// Delivers `payload` to `to`, without waiting for it to be handled.
    ///
    /// # Errors
    /// Unknown or forbidden target, full mailbox, payload too large.
    fn send(&self, to: &str, payload: Vec<u8>) -> Result<(), MessageError>;

    /// Delivers `payload` after `delay`. The timer belongs to the messenger, which
    /// belongs to one incarnation: dropping the messenger cancels its pending timers.
    ///
    /// # Errors
    /// As [`Messenger::send`], checked now, and [`MessageError::TooManyTimers`].
    fn send_after(&self, to: &str, payload: Vec<u8>, delay: Duration) -> Result<(), MessageError>;

    /// Calls `to` and waits at most `timeout` for the reply.
    ///
    /// # Errors
    /// As [`Messenger::send`], plus timeout, callee crashed, application error and
    /// circuit open.
    fn call(
        &self,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>>;

    /// Whether the call the child is handling was cancelled (its caller gone, or the
    /// chain's deadline passed): a long handler may stop early. False while it handles
    /// a sent message, or nothing.
    fn cancelled(&self) -> bool {
        false
    }
}

/// A host without messaging: every request is answered with `unsupported`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMessaging;

impl Messenger for NoMessaging {
    fn send(&self, _: &str, _: Vec<u8>) -> Result<(), MessageError> {
        Err(MessageError::Unsupported)
    }

    fn send_after(&self, _: &str, _: Vec<u8>, _: Duration) -> Result<(), MessageError> {
        Err(MessageError::Unsupported)
    }

    fn call(
        &self,
        _: &str,
        _: Vec<u8>,
        _: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>> {
        Box::pin(async { Err(MessageError::Unsupported) })
    }
}
