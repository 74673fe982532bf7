//! Per-child key-value state, kept across restarts (and, on disk, across host
//! restarts).
//!
//! Each child sees only its own namespace: the store is addressed by the child's path
//! (its scope) and a key. Two stores implement [`StateStore`]:
//! - [`DiskStore`]: a redb database in a data directory; a write is durable (fsynced)
//!   when its future resolves. Writes from every child are committed by one writer
//!   thread, several at a time (group commit), so no runtime thread waits for a disk.
//! - [`MemoryStore`]: the same rules in memory, for tests and hosts that need no
//!   durability.
//!
//! Both enforce the same key and value limits and the child's [`Quota`] with the same
//! code ([`plan`]), so a plugin behaves the same against either.

mod disk;

pub use disk::{DB_FILE, DiskStore, OpenError};

pub use crate::services::{BoxFuture, Op, StateError, StateStore, Usage};
pub use crate::spec::Quota;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Where `warden run` keeps the state of the tree in `manifest` when neither the
/// command line nor the manifest says: `$XDG_STATE_HOME/warden/NAME-HASH` (or
/// `~/.local/state/warden/NAME-HASH`), NAME the manifest's file stem and HASH from its
/// absolute path, so that two manifests never share a directory and the same manifest
/// always finds its own. Without a home directory, `.warden-state/NAME` beside the
/// manifest.
pub fn default_data_dir(manifest: &std::path::Path) -> std::path::PathBuf {
    use sha2::Digest;
    let absolute = std::path::absolute(manifest).unwrap_or_else(|_| manifest.to_path_buf());
    let absolute = absolute.canonicalize().unwrap_or(absolute);
    let name = manifest.file_stem().map_or("tree".into(), |s| s.to_string_lossy());
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(".local/state")));
    match base {
        Some(base) => {
            let digest = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
            let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            base.join("warden").join(format!("{name}-{hash}"))
        }
        None => absolute
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(".warden-state")
            .join(&*name),
    }
}

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Refuses an empty key or one longer than [`MAX_KEY_BYTES`].
///
/// # Errors
/// [`StateError::BadKey`].
pub fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::BadKey(MAX_KEY_BYTES as u64));
    }
    Ok(())
}

/// Checks `ops` against the key and value limits and `quota`, given the scope's
/// `usage` and, through `stored`, the size of a key's value before the write. Returns
/// the usage after the write and, per op, whether its key was present before it.
///
/// A write that only shrinks a child already over its quota (a quota lowered since)
/// is allowed.
///
/// # Errors
/// The first bad key or value, or the quota that would be exceeded; or what `stored`
/// returned.
pub fn plan(
    ops: &[Op],
    usage: Usage,
    quota: Quota,
    mut stored: impl FnMut(&str) -> Result<Option<u64>, StateError>,
) -> Result<(Usage, Vec<bool>), StateError> {
    let mut after = usage;
    // What the write did so far to the keys it touched: their value size, if present.
    let mut touched: HashMap<&str, Option<u64>> = HashMap::new();
    let mut present = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key();
        check_key(key)?;
        let before = match touched.get(key) {
            Some(size) => *size,
            None => stored(key)?,
        };
        let key_bytes = key.len() as u64;
        if let Some(size) = before {
            after.keys -= 1;
            after.bytes -= key_bytes + size;
        }
        let now = match op {
            Op::Set(_, value) => {
                let size = value.len() as u64;
                if size > quota.max_value_bytes {
                    return Err(StateError::ValueTooLarge(quota.max_value_bytes));
                }
                after.keys += 1;
                after.bytes += key_bytes + size;
                Some(size)
            }
            Op::Delete(_) => None,
        };
        touched.insert(key, now);
        present.push(before.is_some());
    }
    if after.keys > quota.max_keys && after.keys > usage.keys {
        return Err(StateError::QuotaExceeded(format!(
            "{} keys, the limit is {}",
            after.keys, quota.max_keys
        )));
    }
    if after.bytes > quota.max_bytes && after.bytes > usage.bytes {
        return Err(StateError::QuotaExceeded(format!(
            "{} bytes, the limit is {}",
            after.bytes, quota.max_bytes
        )));
    }
    Ok((after, present))
}

/// Whether `scope` is `path` or below it (`root/a/x` is in the tree of `root/a`,
/// `root/ab` is not).
pub fn in_tree(scope: &str, path: &str) -> bool {
    scope.strip_prefix(path).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// An in-memory [`StateStore`]: survives restarts of a child, not of the host.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // a std Mutex: it is never held across an await.
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    // (scope, key) -> value
    entries: BTreeMap<(String, String), Vec<u8>>,
    usage: BTreeMap<String, Usage>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Memory> {
        // Every change is planned before it is made, so a panic cannot leave the maps
        // half-written.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        Ok(self.inner().entries.get(&(scope.to_owned(), key.to_owned())).cloned())
    }

    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        let start = (scope.to_owned(), prefix.to_owned());
        Ok(self
            .inner()
            .entries
            .range(start..)
            .take_while(|((s, k), _)| s == scope && k.starts_with(prefix))
            .map(|((_, k), _)| k.clone())
            .collect())
    }

    fn write(
        &self,
        scope: &str,
        ops: Vec<Op>,
        quota: Quota,
    ) -> BoxFuture<'static, Result<Vec<bool>, StateError>> {
        let mut inner = self.inner();
        let usage = inner.usage.get(scope).copied().unwrap_or_default();
        let planned = plan(&ops, usage, quota, |key| {
            Ok(inner.entries.get(&(scope.to_owned(), key.to_owned())).map(|v| v.len() as u64))
        });
        let result = planned.map(|(after, present)| {
            for op in ops {
                match op {
                    Op::Set(key, value) => {
                        inner.entries.insert((scope.to_owned(), key), value);
                    }
                    Op::Delete(key) => {
                        inner.entries.remove(&(scope.to_owned(), key));
                    }
                }
            }
            if after.keys == 0 {
                inner.usage.remove(scope);
            } else {
                inner.usage.insert(scope.to_owned(), after);
            }
            present
        });
        Box::pin(std::future::ready(result))
    }

    fn remove_tree(&self, path: &str) -> BoxFuture<'static, Result<u64, StateError>> {
        let mut inner = self.inner();
        let before = inner.entries.len();
        inner.entries.retain(|(scope, _), _| !in_tree(scope, path));
        inner.usage.retain(|scope, _| !in_tree(scope, path));
        let removed = (before - inner.entries.len()) as u64;
        Box::pin(std::future::ready(Ok(removed)))
    }

    fn scopes(&self) -> Result<Vec<(String, Usage)>, StateError> {
        Ok(self.inner().usage.iter().map(|(s, u)| (s.clone(), *u)).collect())
    }
}

#[cfg(test)]
mod tests;
