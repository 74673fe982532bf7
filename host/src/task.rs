//! Owned tasks: a spawned task is aborted when its owner drops the handle, so nothing
//! a child, a mailbox or a supervisor started outlives it.

use tokio::task::JoinHandle;

/// A task handle that aborts the task when dropped.
#[derive(Debug)]
pub(crate) struct Owned<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
