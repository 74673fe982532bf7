//! A key-value store scoped to this child's path and kept across restarts.
//!
//! Keys are UTF-8 strings, values are bytes. Every call returns a [`StateError`] on
//! failure (bad key, value too large, quota exceeded, storage failure); none traps.

use crate::StateError;
use crate::bindings::warden::plugin::state as wit;

/// The value stored under `key`, if any.
///
/// # Errors
/// [`StateError`] for a bad key or a storage failure.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    wit::get(key)
}

/// Stores `value` under `key`.
///
/// # Errors
/// [`StateError`] for a bad key, a value over the limit, an exceeded quota or a storage
/// failure.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
    wit::set(key, value.as_ref())
}

/// Removes `key`; returns whether it was present.
///
/// # Errors
/// [`StateError`] for a bad key or a storage failure.
pub fn delete(key: &str) -> Result<bool, StateError> {
    wit::delete(key)
}

/// The keys starting with `prefix`, in ascending order.
///
/// # Errors
/// [`StateError`] for a storage failure.
pub fn keys(prefix: &str) -> Result<Vec<String>, StateError> {
    wit::keys(prefix)
}
