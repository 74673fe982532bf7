//! A key-value store scoped to this child's path and kept across restarts.
//!
//! Keys are UTF-8 strings, values are bytes. Every call returns a [`StateError`] on
//! failure (bad key, value too large, quota exceeded, storage failure); none traps.
//!
//! ```no_run
//! use warden_guest::state;
//! state::set("greeting", "hello")?;
//! assert_eq!(state::get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! for key in state::keys("order/")? {
//!     state::delete(&key)?;
//! }
//! # Ok::<(), warden_guest::StateError>(())
//! ```

use crate::StateError;
use crate::bindings::warden::plugin::state as wit;

/// The value stored under `key`, if any.
///
/// # Errors
/// [`StateError`] for a bad key or a storage failure.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    wit::get(key).map_err(StateError::from)
}

/// Stores `value` under `key`; durable when it returns `Ok`.
///
/// # Errors
/// [`StateError`] for a bad key, a value over the limit, an exceeded quota or a storage
/// failure.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
    wit::set(key, value.as_ref()).map_err(StateError::from)
}

/// Removes `key`; returns whether it was present.
///
/// # Errors
/// [`StateError`] for a bad key or a storage failure.
pub fn delete(key: &str) -> Result<bool, StateError> {
    wit::delete(key).map_err(StateError::from)
}

/// The keys starting with `prefix`, in ascending order.
///
/// # Errors
/// [`StateError`] for a storage failure.
pub fn keys(prefix: &str) -> Result<Vec<String>, StateError> {
    wit::keys(prefix).map_err(StateError::from)
}

/// One change of a [`batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store the value under the key.
    Set(String, Vec<u8>),
    /// Remove the key.
    Delete(String),
}

/// Applies `ops` in order, atomically: when it returns `Ok`, all of them are durable;
/// when it returns an error, none was applied.
///
/// ```no_run
/// use warden_guest::state::{self, Op};
/// state::batch([
///     Op::Set("from".into(), b"90".to_vec()),
///     Op::Set("to".into(), b"10".to_vec()),
/// ])?;
/// # Ok::<(), warden_guest::StateError>(())
/// ```
///
/// # Errors
/// [`StateError`] for a bad key, a value over the limit, an exceeded quota or a storage
/// failure.
pub fn batch(ops: impl IntoIterator<Item = Op>) -> Result<(), StateError> {
    let ops: Vec<wit::StateOp> = ops
        .into_iter()
        .map(|op| match op {
            Op::Set(key, value) => wit::StateOp::Set((key, value)),
            Op::Delete(key) => wit::StateOp::Delete(key),
        })
        .collect();
    wit::batch(&ops).map_err(StateError::from)
}
