//! Durable state of children that may move between nodes: a [`StateStore`] on a
//! JetStream key-value bucket (`warden_state`), so that a child restarted on another
//! node reads what its predecessor wrote.
//!
//! Each child's scope is one value of the bucket (its keys and values, encoded), so a
//! write of several ops is one message: all or none. A write is published with the
//! revision it was planned on (optimistic concurrency): it fails rather than
//! overwrite a change it did not see. It resolves once JetStream acknowledged it,
//! which is as durable as the server's storage is: with the server's default
//! `sync_interval` the data is written to the OS at once and flushed to disk every
//! two minutes, so it survives the server's crash but not the machine's power loss;
//! `sync_interval: always` in the server's configuration flushes every write.
//!
//! Reads are answered from a local copy of the bucket, kept current by a watch: the
//! host's reads are synchronous. Each node holds a copy of the whole bucket; a scope
//! is at most one NATS message (1 MiB on a default server), whatever its quota says.

use crate::services::{BoxFuture, Op, StateError, StateStore, Usage};
use crate::spec::Quota;
use crate::state::{check_key, in_tree, plan};
use crate::task::Owned;
use async_nats::jetstream::{self, kv};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const BUCKET: &str = "warden_state";

/// The largest encoded scope: a default server's largest message, less room for the
/// headers.
const MAX_SCOPE_BYTES: usize = 1024 * 1024 - 4096;

/// A scope's keys and values, and the revision they were read at.
#[derive(Clone, Debug, Default)]
struct Scope {
    revision: u64,
    entries: BTreeMap<String, Vec<u8>>,
}

impl Scope {
    fn usage(&self) -> Usage {
        let bytes = self.entries.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        Usage { keys: self.entries.len() as u64, bytes }
    }
}

#[derive(Debug, Default)]
struct Mirror {
    scopes: BTreeMap<String, Scope>,
}

/// State kept in the cluster's JetStream key-value bucket.
pub(crate) struct ClusterStore {
    kv: kv::Store,
    mirror: Arc<Mutex<Mirror>>,
    /// One write at a time: each is planned on what the last one left.
    writing: Arc<tokio::sync::Mutex<()>>,
    _watch: Owned<()>,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore").finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// Opens (or creates) the bucket and reads it whole before answering anything.
    pub(crate) async fn open(js: &jetstream::Context) -> Result<Self, String> {
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.into(),
                    history: 1,
                    max_value_size: MAX_SCOPE_BYTES as i32,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?,
        };
        let mirror = Arc::new(Mutex::new(Mirror::default()));
        let values = kv.status().await.map_err(|e| e.to_string())?.values();
        let mut entries = kv.watch_with_history(">").await.map_err(|e| e.to_string())?;
        if values > 0 {
            use futures_util::StreamExt;
            let caught_up = async {
                while let Some(entry) = entries.next().await {
                    let entry = entry.map_err(|e| e.to_string())?;
                    let last = entry.delta == 0;
                    apply(&mirror, entry);
                    if last {
                        break;
                    }
                }
                Ok::<(), String>(())
            };
            tokio::time::timeout(Duration::from_secs(30), caught_up)
                .await
                .map_err(|_| "reading the state bucket timed out".to_owned())??;
        }
        let weak = Arc::downgrade(&mirror);
        let watch = Owned(tokio::spawn(follow(weak, entries)));
        Ok(Self { kv, mirror, writing: Arc::default(), _watch: watch })
    }

    /// Reads `scope` from the bucket itself, so that what is answered from here next
    /// is at least as new as what its last writer wrote anywhere (a child that moved
    /// reads its predecessor's last write).
    pub(crate) async fn refresh(&self, scope: &str) -> Result<(), String> {
        let entry = self.kv.entry(encode_key(scope)).await.map_err(|e| e.to_string())?;
        if let Some(entry) = entry {
            apply(&self.mirror, entry);
        }
        Ok(())
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn follow(mirror: Weak<Mutex<Mirror>>, mut entries: kv::Watch) {
    use futures_util::StreamExt;
    while let Some(entry) = entries.next().await {
        let Some(mirror) = mirror.upgrade() else { return };
        match entry {
            Ok(entry) => apply(&mirror, entry),
            Err(e) => tracing::warn!("state bucket watch: {e}"),
        }
    }
}

/// One change of the bucket, unless the copy already has it (a write of this node).
fn apply(mirror: &Mutex<Mirror>, entry: kv::Entry) {
    let Some(scope) = decode_key(&entry.key) else { return };
    let mut mirror = mirror.lock().unwrap_or_else(|p| p.into_inner());
    if mirror.scopes.get(&scope).is_some_and(|s| s.revision >= entry.revision) {
        return;
    }
    match entry.operation {
        kv::Operation::Put => match decode(&entry.value) {
            Some(entries) => {
                mirror.scopes.insert(scope, Scope { revision: entry.revision, entries });
            }
            None => tracing::warn!(scope, "a state value this node cannot read"),
        },
        // Kept, empty, with the revision of its removal: the next write follows it.
        _ => {
            mirror
                .scopes
                .insert(scope, Scope { revision: entry.revision, entries: BTreeMap::new() });
        }
    }
}

impl StateStore for ClusterStore {
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        Ok(self.mirror().scopes.get(scope).and_then(|s| s.entries.get(key)).cloned())
    }

    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        let mirror = self.mirror();
        let Some(scope) = mirror.scopes.get(scope) else { return Ok(Vec::new()) };
        Ok(scope
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn write(
        &self,
        scope: &str,
        ops: Vec<Op>,
        quota: Quota,
    ) -> BoxFuture<'static, Result<Vec<bool>, StateError>> {
        let (kv, mirror, writing) =
            (self.kv.clone(), Arc::clone(&self.mirror), Arc::clone(&self.writing));
        let scope = scope.to_owned();
        Box::pin(async move {
            let _one_at_a_time = writing.lock().await;
            let before = {
                let mirror = mirror.lock().unwrap_or_else(|p| p.into_inner());
                mirror.scopes.get(&scope).cloned().unwrap_or_default()
            };
            let (_, present) = plan(&ops, before.usage(), quota, |key| {
                Ok(before.entries.get(key).map(|v| v.len() as u64))
            })?;
            let mut after = before.clone();
            for op in ops {
                match op {
                    Op::Set(key, value) => {
                        after.entries.insert(key, value);
                    }
                    Op::Delete(key) => {
                        after.entries.remove(&key);
                    }
                }
            }
            let bytes = encode(&after.entries);
            if bytes.len() > MAX_SCOPE_BYTES {
                return Err(StateError::QuotaExceeded(format!(
                    "{} bytes encoded; a child's state in a cluster holds at most {MAX_SCOPE_BYTES}",
                    bytes.len()
                )));
            }
            let key = encode_key(&scope);
            let bytes = bytes::Bytes::from(bytes);
            let mut stored = kv.update(&key, bytes.clone(), before.revision).await;
            // Removed meanwhile (its removal not yet seen here): the write follows the
            // removal. Written by someone else: refused.
            if stored.is_err()
                && let Ok(Some(current)) = kv.entry(&key).await
                && current.operation != kv::Operation::Put
            {
                stored = kv.update(&key, bytes, current.revision).await;
            }
            let revision = stored.map_err(|e| {
                StateError::Storage(format!("the cluster's state bucket refused the write: {e}"))
            })?;
            after.revision = revision;
            let mut mirror = mirror.lock().unwrap_or_else(|p| p.into_inner());
            if mirror.scopes.get(&scope).is_none_or(|s| s.revision < revision) {
                mirror.scopes.insert(scope, after);
            }
            Ok(present)
        })
    }

    fn remove_tree(&self, path: &str) -> BoxFuture<'static, Result<u64, StateError>> {
        let gone: Vec<(String, u64)> = self
            .mirror()
            .scopes
            .iter()
            .filter(|(scope, _)| in_tree(scope, path))
            .map(|(scope, s)| (scope.clone(), s.entries.len() as u64))
            .collect();
        let (kv, mirror) = (self.kv.clone(), Arc::clone(&self.mirror));
        Box::pin(async move {
            let mut removed = 0;
            for (scope, keys) in gone {
                kv.purge(encode_key(&scope)).await.map_err(|e| {
                    StateError::Storage(format!("the cluster's state bucket refused: {e}"))
                })?;
                if let Some(s) =
                    mirror.lock().unwrap_or_else(|p| p.into_inner()).scopes.get_mut(&scope)
                {
                    s.entries.clear();
                }
                removed += keys;
            }
            Ok(removed)
        })
    }

    fn scopes(&self) -> Result<Vec<(String, Usage)>, StateError> {
        let mirror = self.mirror();
        Ok(mirror
            .scopes
            .iter()
            .filter(|(_, s)| !s.entries.is_empty())
            .map(|(scope, s)| (scope.clone(), s.usage()))
            .collect())
    }
}

/// A scope path as a bucket key (keys allow only a few characters): hex.
fn encode_key(scope: &str) -> String {
    scope.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_key(key: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..key.len())
        .step_by(2)
        .map(|i| key.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Keys and values as length-prefixed bytes.
fn encode(entries: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in entries {
        for part in [key.as_bytes(), value.as_slice()] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

fn decode(mut bytes: &[u8]) -> Option<BTreeMap<String, Vec<u8>>> {
    fn part<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let part = bytes.get(4..4 + len)?;
        *bytes = &bytes[4 + len..];
        Some(part)
    }
    let mut entries = BTreeMap::new();
    while !bytes.is_empty() {
        let key = String::from_utf8(part(&mut bytes)?.to_vec()).ok()?;
        entries.insert(key, part(&mut bytes)?.to_vec());
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_values_read_back_as_written() {
        for scope in ["root/a", "root/ü b/c", ""] {
            assert_eq!(decode_key(&encode_key(scope)).as_deref(), Some(scope));
        }
        let mut entries = BTreeMap::new();
        entries.insert("k".to_owned(), b"v".to_vec());
        entries.insert("empty".to_owned(), Vec::new());
        assert_eq!(decode(&encode(&entries)), Some(entries));
        assert_eq!(decode(&[1, 0, 0]), None, "a truncated length");
        assert_eq!(decode(&[9, 0, 0, 0, b'k']), None, "a truncated part");
    }
}
