//! The `runtime` and `state` imports, implemented over the sandbox's services.
//! Nothing here panics on guest input or blocks a runtime thread.

use super::bindings;
use super::bindings::warden::plugin::{runtime, state, types};
use super::output;
use super::store::StoreData;
use crate::services::{CancelReason, MessageError, Op, StateError};
use crate::{ExitReason, KillCause, TrapKind};
use std::time::Duration;

/// Longest abort message kept from a guest; the rest is cut.
const MAX_ABORT_MESSAGE: usize = 4096;

impl types::Host for StoreData {}

impl runtime::Host for StoreData {
    fn heartbeat(&mut self) {
        self.heartbeat.beat();
    }

    fn send(&mut self, to: String, payload: Vec<u8>) -> Result<(), types::MessageError> {
        self.messenger.send(&to, payload).map_err(to_wit_message_error)
    }

    fn send_after(
        &mut self,
        to: String,
        payload: Vec<u8>,
        delay_ms: u64,
    ) -> Result<(), types::MessageError> {
        self.messenger
            .send_after(&to, payload, Duration::from_millis(delay_ms))
            .map_err(to_wit_message_error)
    }

    async fn call(
        &mut self,
        to: String,
        payload: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<Vec<u8>, types::MessageError> {
        let reply = self.messenger.call(&to, payload, Duration::from_millis(timeout_ms));
        // Waiting for the callee is neither the guest's CPU time (the fiber is
        // suspended, which the deadline leaves out) nor a silence the watchdog counts.
        let _wait = self.heartbeat.wait_in_host();
        reply.await.map_err(to_wit_message_error)
    }

    fn exit(&mut self, reason: types::ExitRequest) {
        self.exit_request = Some(match reason {
            types::ExitRequest::Normal => ExitReason::Normal,
            types::ExitRequest::Shutdown => ExitReason::Shutdown,
            types::ExitRequest::ShutdownWith(reason) => ExitReason::ShutdownWith { reason },
            types::ExitRequest::Error(message) => ExitReason::Error { message },
        });
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        let level = match level {
            types::LogLevel::Trace => output::LogLevel::Trace,
            types::LogLevel::Debug => output::LogLevel::Debug,
            types::LogLevel::Info => output::LogLevel::Info,
            types::LogLevel::Warn => output::LogLevel::Warn,
            types::LogLevel::Error => output::LogLevel::Error,
        };
        output::log(&self.output, &self.path, level, &message);
    }

    fn abort_reason(&mut self, mut message: String) {
        if message.len() > MAX_ABORT_MESSAGE {
            let mut cut = MAX_ABORT_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.abort_reason = Some(message);
    }

    fn self_path(&mut self) -> String {
        self.path.to_string()
    }

    fn upgraded_from(&mut self) -> Option<String> {
        self.upgraded_from.clone()
    }

    fn cancelled(&mut self) -> bool {
        self.messenger.cancelled()
    }
}

impl state::Host for StoreData {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, types::StateError> {
        self.state.get(&self.path, &key).map_err(to_wit_state_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), types::StateError> {
        self.write_state(vec![Op::Set(key, value)]).await.map(drop)
    }

    async fn delete(&mut self, key: String) -> Result<bool, types::StateError> {
        let present = self.write_state(vec![Op::Delete(key)]).await?;
        Ok(present.first().copied().unwrap_or(false))
    }

    async fn batch(&mut self, ops: Vec<state::StateOp>) -> Result<(), types::StateError> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                state::StateOp::Set((key, value)) => Op::Set(key, value),
                state::StateOp::Delete(key) => Op::Delete(key),
            })
            .collect();
        self.write_state(ops).await.map(drop)
    }

    fn keys(&mut self, prefix: String) -> Result<Vec<String>, types::StateError> {
        self.state.keys(&self.path, &prefix).map_err(to_wit_state_error)
    }
}

impl StoreData {
    /// Queues a write within the child's quota and waits for its commit.
    async fn write_state(&mut self, ops: Vec<Op>) -> Result<Vec<bool>, types::StateError> {
        let committed = self.state.write(&self.path, ops, self.quota);
        // Waiting for the disk is not the guest's silence.
        let _wait = self.heartbeat.wait_in_host();
        committed.await.map_err(to_wit_state_error)
    }
}

fn to_wit_message_error(e: MessageError) -> types::MessageError {
    match e {
        MessageError::UnknownTarget(t) => types::MessageError::UnknownTarget(t),
        MessageError::MailboxFull => types::MessageError::MailboxFull,
        MessageError::TooLarge(n) => types::MessageError::TooLarge(n),
        MessageError::NotAllowed(t) => types::MessageError::NotAllowed(t),
        MessageError::Timeout => types::MessageError::Timeout,
        MessageError::Deadlock(chain) => types::MessageError::Deadlock(chain),
        MessageError::CalleeCrashed(reason) => {
            types::MessageError::CalleeCrashed(to_wit_exit(&reason))
        }
        MessageError::CircuitOpen => types::MessageError::CircuitOpen,
        MessageError::Application(m) => types::MessageError::Application(m),
        MessageError::Unsupported => types::MessageError::Unsupported,
        MessageError::TooManyTimers(m) => types::MessageError::TooManyTimers(m),
        MessageError::Cancelled(reason) => types::MessageError::Cancelled(match reason {
            CancelReason::CallerGone { caller } => types::CancelReason::CallerGone(caller),
            CancelReason::Deadline { call_to } => types::CancelReason::Deadline(call_to),
        }),
        MessageError::NotRunning(path) => types::MessageError::NotRunning(path),
    }
}

fn to_wit_state_error(e: StateError) -> types::StateError {
    match e {
        StateError::BadKey(n) => types::StateError::BadKey(n),
        StateError::ValueTooLarge(n) => types::StateError::ValueTooLarge(n),
        StateError::QuotaExceeded(m) => types::StateError::QuotaExceeded(m),
        StateError::Storage(m) => types::StateError::Storage(m),
    }
}

/// The WIT form of an exit reason, for `terminate` and `callee-crashed`.
pub(crate) fn to_wit_exit(reason: &ExitReason) -> bindings::warden::plugin::types::ExitReason {
    use bindings::warden::plugin::types::{ExitReason as W, KillCause as K, TrapKind as T};
    match reason {
        ExitReason::Normal => W::Normal,
        ExitReason::Shutdown => W::Shutdown,
        ExitReason::ShutdownWith { reason } => W::ShutdownWith(reason.clone()),
        ExitReason::Error { message } => W::Error(message.clone()),
        ExitReason::Trap { trap, message, .. } => W::Trap((
            match trap {
                TrapKind::Unreachable => T::Unreachable,
                TrapKind::MemoryOutOfBounds => T::MemoryOutOfBounds,
                TrapKind::StackOverflow => T::StackOverflow,
                TrapKind::IntegerDivisionByZero => T::IntegerDivisionByZero,
                TrapKind::IntegerOverflow => T::IntegerOverflow,
                TrapKind::IndirectCall => T::IndirectCall,
                TrapKind::OutOfFuel => T::OutOfFuel,
                TrapKind::MemoryLimit => T::MemoryLimit,
                TrapKind::Other => T::Other,
            },
            message.clone(),
        )),
        ExitReason::Killed { cause } => W::Killed(match cause {
            KillCause::Deadline => K::Deadline,
            KillCause::Heartbeat => K::Heartbeat,
            KillCause::ShutdownTimeout => K::ShutdownTimeout,
            KillCause::BrutalKill => K::BrutalKill,
            KillCause::NodeDown => K::NodeDown,
        }),
        ExitReason::StartFailed { message } => W::StartFailed(message.clone()),
        ExitReason::HostPanic { message } => W::HostPanic(message.clone()),
        ExitReason::HostFunctionFailed(failure) => {
            W::HostFunctionFailed(types::HostFunctionFailure {
                interface: failure.interface.clone(),
                function: failure.function.clone(),
                message: failure.message.clone(),
                panic: failure.panic,
            })
        }
    }
}
