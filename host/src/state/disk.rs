//! [`DiskStore`]: state in a redb database, in a data directory one host owns.
//!
//! Layout of the directory: `LOCK` (held with `flock` while a host has the store open;
//! it holds that host's pid) and `state.redb`. Tables: `entries` ((scope, key) →
//! value), `usage` (scope → (keys, bytes), kept in the same transactions) and `meta`
//! (`format` → 1).
//!
//! Writes go to one writer thread. It takes every request queued at the time into one
//! transaction and commits it with `Durability::Immediate` (fsync) before it answers
//! any of them: a write is durable when its future resolves, and many children writing
//! at once share one fsync. Each request is planned (limits, quota) before it is
//! applied, so a refused request leaves the others of its group unaffected. Reads run
//! on the caller's thread in a read transaction (MVCC: they never wait for the writer).

use super::{Op, Quota, StateError, StateStore, Usage, check_key, in_tree, plan};
use crate::services::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use tokio::sync::oneshot;

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT: u64 = 1;

/// The database file in a data directory.
pub const DB_FILE: &str = "state.redb";
/// The lock file in a data directory.
pub(super) const LOCK_FILE: &str = "LOCK";

/// Most requests committed in one transaction.
const MAX_GROUP: usize = 512;
/// redb's page cache. Its default (1 GiB) is a lot for a plugin host's side store.
const CACHE_BYTES: usize = 64 << 20;

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process holds the directory's lock.
    #[error("data dir {} is in use by {}", dir.display(), match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another process".to_owned(),
    })]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// The process that holds it, as its lock file says.
        pid: Option<u32>,
    },
    /// The database file failed its integrity check or is not a database.
    #[error(
        "state database {} is corrupted ({detail}); it was left as it is: restore it from a \
         backup, or move it away to start with empty state",
        file.display()
    )]
    Corrupted {
        /// The database file.
        file: PathBuf,
        /// What redb found.
        detail: String,
    },
    /// The directory or a file in it could not be created, opened or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database refused to open for another reason (e.g. a newer format).
    #[error("state database {}: {detail}", file.display())]
    Database {
        /// The database file.
        file: PathBuf,
        /// redb's words.
        detail: String,
    },
}

/// A job for the writer thread, where to send its answer, and (once applied) the
/// answer, sent when its transaction has committed.
enum Request {
    Write {
        scope: String,
        ops: Vec<Op>,
        quota: Quota,
        done: oneshot::Sender<Result<Vec<bool>, StateError>>,
        /// Per op, whether its key was present before it; or the job's refusal.
        outcome: Option<Result<Vec<bool>, StateError>>,
    },
    RemoveTree {
        path: String,
        done: oneshot::Sender<Result<u64, StateError>>,
        /// The keys removed.
        removed: u64,
    },
}

impl Request {
    /// Sends the outcome, or `failure` when the transaction did not commit.
    fn answer(self, failure: Option<&StateError>) {
        match (self, failure) {
            (Request::Write { done, .. }, Some(e)) => {
                let _ = done.send(Err(e.clone()));
            }
            (Request::RemoveTree { done, .. }, Some(e)) => {
                let _ = done.send(Err(e.clone()));
            }
            (Request::Write { done, outcome, .. }, None) => {
                // Every write of a committed group was applied, so has its outcome.
                let outcome = outcome.unwrap_or_else(|| {
                    Err(StateError::Storage("the write was not applied".into()))
                });
                let _ = done.send(outcome);
            }
            (Request::RemoveTree { done, removed, .. }, None) => {
                let _ = done.send(Ok(removed));
            }
        }
    }
}

/// A durable [`StateStore`] in a data directory (see the module docs).
pub struct DiskStore {
    dir: PathBuf,
    db: Arc<Database>,
    writer: Option<(mpsc::Sender<Request>, std::thread::JoinHandle<()>)>,
    // Dropped last: the lock is held until the database is closed.
    _lock: File,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl DiskStore {
    /// Opens the store in `dir`, creating the directory and the database if needed.
    /// A database left by a killed host is recovered to its last commit.
    ///
    /// # Errors
    /// The directory is in use by another process, the database is corrupted (it is
    /// left untouched), or an I/O error.
    pub fn open(dir: impl AsRef<Path>) -> Result<DiskStore, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock = lock(&dir)?;
        let file = dir.join(DB_FILE);
        let db = Arc::new(open_database(&file)?);
        prepare(&db).map_err(|e| OpenError::Database { file, detail: e.to_string() })?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("warden-state".into())
            .spawn({
                let db = Arc::clone(&db);
                move || writer(&db, &rx)
            })
            .map_err(io(&dir))?;
        Ok(DiskStore { dir, db, writer: Some((tx, thread)), _lock: lock })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `request` for the writer; resolves once it is committed.
    fn submit<T: Send + 'static>(
        &self,
        request: Request,
        answer: oneshot::Receiver<Result<T, StateError>>,
    ) -> BoxFuture<'static, Result<T, StateError>> {
        let sent = self.writer.as_ref().is_some_and(|(tx, _)| tx.send(request).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(StateError::Storage("the state writer has stopped".into()));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(StateError::Storage("the state writer died".into())))
        })
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        // The writer finishes what is queued, then the database closes, then the lock
        // is released.
        if let Some((tx, thread)) = self.writer.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl StateStore for DiskStore {
    fn get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        let txn = self.db.begin_read().map_err(storage)?;
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let value = entries.get((scope, key)).map_err(storage)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn keys(&self, scope: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let entries = txn.open_table(ENTRIES).map_err(storage)?;
        let mut keys = Vec::new();
        for entry in entries.range((scope, prefix)..).map_err(storage)? {
            let (k, _) = entry.map_err(storage)?;
            let (s, key) = k.value();
            if s != scope || !key.starts_with(prefix) {
                break;
            }
            keys.push(key.to_owned());
        }
        Ok(keys)
    }

    fn write(
        &self,
        scope: &str,
        ops: Vec<Op>,
        quota: Quota,
    ) -> BoxFuture<'static, Result<Vec<bool>, StateError>> {
        let (done, answer) = oneshot::channel();
        let scope = scope.to_owned();
        self.submit(Request::Write { scope, ops, quota, done, outcome: None }, answer)
    }

    fn remove_tree(&self, path: &str) -> BoxFuture<'static, Result<u64, StateError>> {
        let (done, answer) = oneshot::channel();
        self.submit(Request::RemoveTree { path: path.to_owned(), done, removed: 0 }, answer)
    }

    fn scopes(&self) -> Result<Vec<(String, Usage)>, StateError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let usage = txn.open_table(USAGE).map_err(storage)?;
        let mut scopes = Vec::new();
        for entry in usage.iter().map_err(storage)? {
            let (scope, u) = entry.map_err(storage)?;
            let (keys, bytes) = u.value();
            scopes.push((scope.value().to_owned(), Usage { keys, bytes }));
        }
        Ok(scopes)
    }
}

/// Creates the tables of a new database, or checks the format of an existing one.
fn prepare(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let format = meta.get("format")?.map(|v| v.value());
        match format {
            None => {
                meta.insert("format", FORMAT)?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Err(redb::Error::Corrupted(format!(
                    "state format {other}, this warden reads format {FORMAT}"
                )));
            }
        }
        txn.open_table(ENTRIES)?;
        txn.open_table(USAGE)?;
    }
    txn.commit()?;
    Ok(())
}

fn storage(e: impl Into<redb::Error>) -> StateError {
    StateError::Storage(e.into().to_string())
}

/// Takes the directory's lock and writes this process's pid into it.
fn lock(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| OpenError::Io { path: path.clone(), source };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(OpenError::InUse { dir: dir.to_path_buf(), pid: text.trim().parse().ok() });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Opens (or creates) the database, verifying every page's checksum: a damaged file
/// is reported, never trusted or replaced.
fn open_database(file: &Path) -> Result<Database, OpenError> {
    let corrupted = |detail: String| OpenError::Corrupted { file: file.to_path_buf(), detail };
    let opened = std::panic::catch_unwind(|| {
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES).set_check_integrity_on_open(true);
        builder.create(file)
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => {
            Err(corrupted(detail))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(corrupted(e.to_string()))
        }
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(source)))) => {
            Err(OpenError::Io { path: file.to_path_buf(), source })
        }
        Ok(Err(e)) => Err(OpenError::Database { file: file.to_path_buf(), detail: e.to_string() }),
        // redb asserts on some impossible states of a damaged file rather than report them.
        Err(panic) => Err(corrupted(match panic.downcast_ref::<String>() {
            Some(message) => message.clone(),
            None => panic.downcast_ref::<&str>().map_or("unreadable", |m| m).to_owned(),
        })),
    }
}

/// The writer thread: commits groups of queued requests until every sender is gone.
fn writer(db: &Database, rx: &mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        commit(db, group);
    }
}

/// Commits a group in one transaction, then answers each request: with its own
/// outcome, or, when the transaction failed, with the failure.
fn commit(db: &Database, mut group: Vec<Request>) {
    let failure = apply(db, &mut group).err().map(storage);
    for request in group {
        request.answer(failure.as_ref());
    }
}

/// Applies the requests in one write transaction and commits it, leaving each one's
/// outcome in it. A write refused by its plan (limits, quota) has changed nothing and
/// keeps the refusal as its outcome.
fn apply(db: &Database, group: &mut [Request]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    {
        let mut entries = txn.open_table(ENTRIES)?;
        let mut usage = txn.open_table(USAGE)?;
        for request in group.iter_mut() {
            match request {
                Request::Write { scope, ops, quota, outcome, .. } => {
                    *outcome = Some(write(&mut entries, &mut usage, scope, ops, *quota)?);
                }
                Request::RemoveTree { path, removed, .. } => {
                    *removed = remove_tree(&mut entries, &mut usage, path)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

type Entries<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;
type UsageTable<'t> = redb::Table<'t, &'static str, (u64, u64)>;

/// One write job: planned against the stored sizes, then applied. The outer error is
/// the store's (it fails the group), the inner one the job's refusal.
fn write(
    entries: &mut Entries<'_>,
    usage: &mut UsageTable<'_>,
    scope: &str,
    ops: &[Op],
    quota: Quota,
) -> Result<Result<Vec<bool>, StateError>, redb::Error> {
    let before = usage.get(scope)?.map(|u| u.value()).map(|(keys, bytes)| Usage { keys, bytes });
    let mut failure = None;
    let planned =
        plan(ops, before.unwrap_or_default(), quota, |key| match entries.get((scope, key)) {
            Ok(value) => Ok(value.map(|v| v.value().len() as u64)),
            Err(e) => {
                let message = e.to_string();
                failure = Some(e);
                Err(StateError::Storage(message))
            }
        });
    if let Some(e) = failure {
        return Err(e.into());
    }
    let (after, present) = match planned {
        Ok(planned) => planned,
        Err(refused) => return Ok(Err(refused)),
    };
    for op in ops {
        match op {
            Op::Set(key, value) => {
                entries.insert((scope, key.as_str()), value.as_slice())?;
            }
            Op::Delete(key) => {
                entries.remove((scope, key.as_str()))?;
            }
        }
    }
    if after.keys == 0 {
        usage.remove(scope)?;
    } else {
        usage.insert(scope, (after.keys, after.bytes))?;
    }
    Ok(Ok(present))
}

/// Removes the entries of `path` and of every scope below it.
fn remove_tree(
    entries: &mut Entries<'_>,
    usage: &mut UsageTable<'_>,
    path: &str,
) -> Result<u64, redb::Error> {
    // Every scope in the tree sorts in [path, path + "0"): '0' follows '/'.
    let end = format!("{path}0");
    let mut scopes = Vec::new();
    for entry in usage.range(path..end.as_str())? {
        let (scope, _) = entry?;
        let scope = scope.value();
        if in_tree(scope, path) {
            scopes.push(scope.to_owned());
        }
    }
    let mut removed = 0;
    for scope in &scopes {
        let mut keys = Vec::new();
        for entry in entries.range((scope.as_str(), "")..)? {
            let (k, _) = entry?;
            let (s, key) = k.value();
            if s != scope {
                break;
            }
            keys.push(key.to_owned());
        }
        for key in &keys {
            entries.remove((scope.as_str(), key.as_str()))?;
        }
        removed += keys.len() as u64;
        usage.remove(scope.as_str())?;
    }
    Ok(removed)
}
