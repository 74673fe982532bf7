//! Durable state as a sandbox asks for it: a [`StateStore`] with one namespace per
//! child path. The `state` module implements it on disk and in memory.

use super::BoxFuture;
use crate::spec::Quota;
use std::fmt;

/// Why a state operation failed. The guest gets it as a WIT error and keeps running.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key is empty or longer than the limit, in bytes.
    #[error("key is empty or longer than {0} bytes")]
    BadKey(u64),
    /// The value exceeds the limit, in bytes.
    #[error("value larger than {0} bytes")]
    ValueTooLarge(u64),
    /// The child's quota would be exceeded.
    #[error("state quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The store failed.
    #[error("state storage failed: {0}")]
    Storage(String),
}

/// One change in a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store the value under the key.
    Set(String, Vec<u8>),
    /// Remove the key.
    Delete(String),
}

impl Op {
    /// The key it changes.
    pub fn key(&self) -> &str {
        match self {
            Op::Set(key, _) | Op::Delete(key) => key,
        }
    }
}

/// What one child keeps: its number of keys and their bytes (keys and values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Keys stored.
    pub keys: u64,
    /// Bytes of keys and values together.
    pub bytes: u64,
}

/// A key-value store with one namespace per child path.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// The value under `key` in `scope`.
    ///
    /// # Errors
    /// A bad key or a storage failure.
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// The keys of `scope` that start with `prefix`, ascending.
    ///
    /// # Errors
    /// A storage failure.
    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError>;

    /// Applies `ops` to `scope` in order, all or none, within `quota`. When the future
    /// resolves with `Ok`, the change is durable (as durable as the store is); it
    /// holds, for each op, whether its key was present before it.
    ///
    /// The write is queued when this returns: a later write or read of the same scope
    /// from the same caller sees it once the future resolved.
    fn write(
        &self,
        scope: &str,
        ops: Vec<Op>,
        quota: Quota,
    ) -> BoxFuture<'static, Result<Vec<bool>, StateError>>;

    /// Removes the state of `path` and of every path below it (`path/...`); resolves
    /// to the number of keys removed.
    fn remove_tree(&self, path: &str) -> BoxFuture<'static, Result<u64, StateError>>;

    /// Every scope that holds keys, ascending, with its usage.
    ///
    /// # Errors
    /// A storage failure.
    fn scopes(&self) -> Result<Vec<(String, Usage)>, StateError>;
}

/// A host without durable state: every read and write is answered with
/// [`StateError::Storage`], never a panic or a trap. A sandbox has it unless it is
/// given a store.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoState;

impl NoState {
    fn refused() -> StateError {
        StateError::Storage("this host keeps no state for this child".into())
    }
}

impl StateStore for NoState {
    fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StateError> {
        Err(Self::refused())
    }

    fn keys(&self, _: &str, _: &str) -> Result<Vec<String>, StateError> {
        Err(Self::refused())
    }

    fn write(
        &self,
        _: &str,
        _: Vec<Op>,
        _: Quota,
    ) -> BoxFuture<'static, Result<Vec<bool>, StateError>> {
        Box::pin(async { Err(Self::refused()) })
    }

    fn remove_tree(&self, _: &str) -> BoxFuture<'static, Result<u64, StateError>> {
        Box::pin(async { Ok(0) })
    }

    fn scopes(&self) -> Result<Vec<(String, Usage)>, StateError> {
        Ok(Vec::new())
    }
}
