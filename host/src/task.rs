//! Owned tasks: a spawned task is aborted when its owner drops the handle, so nothing
//! a child, a mailbox or a supervisor started outlives it; and the panics of a task,
//! caught as the task's own outcome.

use std::future::Future;
use tokio::task::JoinHandle;

/// A task handle that aborts the task when dropped.
#[derive(Debug)]
pub(crate) struct Owned<T>(pub(crate) JoinHandle<T>);

impl<T> Owned<T> {
    /// Waits for the task; `None` if it panicked or was cancelled.
    pub(crate) async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `future`, turning a panic in any of its polls into the panic's message.
pub(crate) async fn catch_panic<T>(future: impl Future<Output = T>) -> Result<T, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(polled) => polled.map(Ok),
            Err(payload) => std::task::Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    })
    .await
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_owned(),
    }
}
