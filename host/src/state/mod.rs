//! Per-child key-value state, kept across restarts.
//!
//! Each child sees only its own namespace: the store is addressed by the child's path
//! (its scope) and a key. [`MemoryStore`] keeps everything in memory, for tests and for
//! hosts that need no durability; it still enforces the key and value limits so a
//! plugin behaves the same against every store.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

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

/// A key-value store with one namespace per child path.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// The value under `key` in `scope`.
    ///
    /// # Errors
    /// A bad key or a storage failure.
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Stores `value` under `key` in `scope`.
    ///
    /// # Errors
    /// A bad key, a value too large, a quota exceeded, or a storage failure.
    fn set(&self, scope: &str, key: &str, value: &[u8]) -> Result<(), StateError>;

    /// Removes `key` from `scope`; returns whether it was there.
    ///
    /// # Errors
    /// A bad key or a storage failure.
    fn delete(&self, scope: &str, key: &str) -> Result<bool, StateError>;

    /// The keys of `scope` that start with `prefix`, ascending.
    ///
    /// # Errors
    /// A storage failure.
    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError>;
}

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::BadKey(MAX_KEY_BYTES as u64));
    }
    Ok(())
}

/// An in-memory [`StateStore`]: survives restarts of a child, not of the host.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // (scope, key) -> value; a std Mutex: it is never held across an await.
    entries: Mutex<BTreeMap<(String, String), Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written: every
        // operation is a single insert or remove.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        Ok(self.entries().get(&(scope.to_owned(), key.to_owned())).cloned())
    }

    fn set(&self, scope: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StateError::ValueTooLarge(MAX_VALUE_BYTES as u64));
        }
        self.entries().insert((scope.to_owned(), key.to_owned()), value.to_vec());
        Ok(())
    }

    fn delete(&self, scope: &str, key: &str) -> Result<bool, StateError> {
        check_key(key)?;
        Ok(self.entries().remove(&(scope.to_owned(), key.to_owned())).is_some())
    }

    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        let start = (scope.to_owned(), prefix.to_owned());
        Ok(self
            .entries()
            .range(start..)
            .take_while(|((s, k), _)| s == scope && k.starts_with(prefix))
            .map(|((_, k), _)| k.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_separate_and_keys_are_ordered() {
        let store = MemoryStore::new();
        store.set("root/a", "k2", b"2").unwrap();
        store.set("root/a", "k1", b"1").unwrap();
        store.set("root/b", "k1", b"other").unwrap();
        assert_eq!(store.get("root/a", "k1").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.keys("root/a", "k").unwrap(), ["k1", "k2"]);
        assert_eq!(store.keys("root/a", "k2").unwrap(), ["k2"]);
        assert!(store.delete("root/a", "k1").unwrap());
        assert!(!store.delete("root/a", "k1").unwrap());
        assert_eq!(store.get("root/b", "k1").unwrap().as_deref(), Some(&b"other"[..]));
    }

    #[test]
    fn bad_keys_and_large_values_are_refused() {
        let store = MemoryStore::new();
        assert_eq!(store.set("s", "", b"x"), Err(StateError::BadKey(MAX_KEY_BYTES as u64)));
        let long = "k".repeat(64 * 1024);
        assert_eq!(store.get("s", &long), Err(StateError::BadKey(MAX_KEY_BYTES as u64)));
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert_eq!(
            store.set("s", "k", &big),
            Err(StateError::ValueTooLarge(MAX_VALUE_BYTES as u64))
        );
    }
}
