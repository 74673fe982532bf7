//! The messenger of one incarnation of a child: what its `runtime` imports send through.

use super::mailbox::Mailbox;
use super::post::Post;
use super::timers::Timers;
use crate::services::{BoxFuture, MessageError, Messenger};
use std::sync::Arc;
use std::time::Duration;

/// Messaging as one incarnation of a child sees it: it sends as itself, within its
/// allow-list, and owns its `send-after` timers (dropped with it).
#[derive(Debug)]
pub(crate) struct Outbox {
    post: Arc<Post>,
    me: Arc<Mailbox>,
    timers: Timers,
}

impl Outbox {
    pub(crate) fn new(post: Arc<Post>, me: Arc<Mailbox>) -> Self {
        let timers = Timers::new(me.config.timers);
        Self { post, me, timers }
    }
}

impl Messenger for Outbox {
    fn send(&self, to: &str, payload: Vec<u8>) -> Result<(), MessageError> {
        self.post.send(Some(&self.me), to, payload)
    }

    fn send_after(&self, to: &str, payload: Vec<u8>, delay: Duration) -> Result<(), MessageError> {
        self.timers.set(&self.post, &self.me, to, payload, delay)
    }

    fn call(
        &self,
        to: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>> {
        let (post, me, to) = (Arc::clone(&self.post), Arc::clone(&self.me), to.to_owned());
        Box::pin(async move { post.call(Some(&me), &to, payload, timeout).await })
    }

    fn cancelled(&self) -> bool {
        self.me.handling().is_some_and(|frame| frame.cancelled().is_some())
    }
}
