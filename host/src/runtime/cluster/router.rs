//! Messages and calls to children on other nodes, for the post office: the payload
//! is a NATS request's body, the rest in headers; the answer's body is the reply, or
//! its `Warden-Error` header the error.
//!
//! A child placed on a node reaches the rest of its tree through its supervisor's
//! node, which knows where each of its children runs and forwards once (one hop).

use super::lock;
use crate::messaging::Remote;
use crate::runtime::shared::Shared;
use crate::sandbox::{BoxFuture, MessageError};
use crate::{ExitReason, KillCause};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Sends on their way to other nodes at once; past it a send is refused
/// `mailbox_full` (backpressure, as a full mailbox here).
const SENDS_IN_FLIGHT: usize = 4096;
/// How long a send waits for its node to take it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The post office's way to children on other nodes.
#[derive(Debug)]
pub(super) struct Router {
    shared: Weak<Shared>,
    sends: Arc<Semaphore>,
    /// The host's runtime: a send may come from any thread.
    runtime: tokio::runtime::Handle,
}

impl Router {
    pub(super) fn new(shared: Weak<Shared>, runtime: tokio::runtime::Handle) -> Self {
        Self { shared, sends: Arc::new(Semaphore::new(SENDS_IN_FLIGHT)), runtime }
    }
}

impl Remote for Router {
    fn node_of(&self, from: Option<&str>, to: &str) -> Option<String> {
        let shared = self.shared.upgrade()?;
        let nodes = &shared.nodes;
        if let Some(node) =
            nodes.placed_node(to).or_else(|| lock(&nodes.last_node).get(to).cloned())
        {
            return Some(node);
        }
        let from = from?;
        lock(&nodes.hosted).get(from).map(|h| h.origin.clone())
    }

    fn send(
        &self,
        node: String,
        from: Option<String>,
        to: String,
        payload: Vec<u8>,
    ) -> Result<(), MessageError> {
        let shared =
            self.shared.upgrade().ok_or_else(|| MessageError::UnknownTarget(to.clone()))?;
        let cluster = shared.nodes.cluster.get().cloned();
        let cluster = cluster.ok_or_else(|| MessageError::UnknownTarget(to.clone()))?;
        let permit =
            Arc::clone(&self.sends).try_acquire_owned().map_err(|_| MessageError::MailboxFull)?;
        let weak = self.shared.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let size = payload.len() as u64;
            let (headers, body) = message(from.as_deref(), &to, None, false, payload);
            let unknown = || MessageError::UnknownTarget(to.clone());
            let refused = tokio::select! {
                reply = cluster.request(&node, "send", headers, body, Some(SEND_TIMEOUT)) => match reply {
                    Ok(reply) => answer(&reply).err(),
                    Err(_) => Some(unknown()),
                },
                () = cluster.down(&node) => Some(unknown()),
            };
            let Some(shared) = weak.upgrade() else { return };
            match refused {
                Some(error) => shared.post.dead_letter_remote(&to, from, size, &error),
                None => shared.post.forwarded(),
            }
        });
        Ok(())
    }

    fn call(
        &self,
        node: String,
        from: Option<String>,
        to: String,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let Some(shared) = shared else { return Err(MessageError::UnknownTarget(to)) };
            call(&shared, node, from, to, payload, timeout, false).await
        })
    }
}

/// A call to `to` on `node`: its answer, `callee_crashed` with `killed(node_down)`
/// when the node dies first. A crash's event is announced here before the answer.
async fn call(
    shared: &Shared,
    node: String,
    from: Option<String>,
    to: String,
    payload: Vec<u8>,
    timeout: Duration,
    forwarded: bool,
) -> Result<Vec<u8>, MessageError> {
    let Some(cluster) = shared.nodes.cluster.get().cloned() else {
        return Err(MessageError::UnknownTarget(to));
    };
    let incarnation = shared.nodes.placed_incarnation(&to);
    let (headers, body) = message(from.as_deref(), &to, Some(timeout), forwarded, payload);
    let lost = MessageError::CalleeCrashed(ExitReason::Killed { cause: KillCause::NodeDown });
    // The callee's node answers `timeout` itself; this is the backstop.
    let backstop = timeout.saturating_add(Duration::from_secs(1));
    let result = tokio::select! {
        reply = cluster.request(&node, "call", headers, body, None) => match reply {
            Ok(reply) => answer(&reply),
            // Nobody serves that node any more.
            Err(_) => Err(lost),
        },
        () = cluster.down(&node) => Err(lost),
        () = tokio::time::sleep(backstop) => Err(MessageError::Timeout),
    };
    // The crash's event comes first, as for a child here: its exit notice (or its
    // node's loss) is on its way.
    if let (Err(MessageError::CalleeCrashed(_)), Some(incarnation)) = (&result, incarnation) {
        let limit = cluster.ttl + Duration::from_secs(1);
        shared.nodes.exit_announced(&to, incarnation, limit).await;
    }
    result
}

/// A message to a child on another node: the payload as the body, the rest in headers.
fn message(
    from: Option<&str>,
    to: &str,
    timeout: Option<Duration>,
    forwarded: bool,
    payload: Vec<u8>,
) -> (async_nats::HeaderMap, Vec<u8>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Warden-To", to);
    if let Some(from) = from {
        headers.insert("Warden-From", from);
    }
    if let Some(timeout) = timeout {
        headers.insert("Warden-Timeout-Ms", timeout.as_millis().to_string().as_str());
    }
    if forwarded {
        headers.insert("Warden-Forwarded", "1");
    }
    (headers, payload)
}

/// The answer to a message: the reply as the body, or an error in a header.
fn answer(reply: &async_nats::Message) -> Result<Vec<u8>, MessageError> {
    match reply.headers.as_ref().and_then(|h| h.get("Warden-Error")) {
        Some(error) => Err(serde_json::from_str(error.as_str())
            .unwrap_or_else(|e| MessageError::Application(format!("a bad answer: {e}")))),
        None => Ok(reply.payload.to_vec()),
    }
}

/// Delivers a message from another node to a child here, or, once, to the node this
/// node's supervisor placed it on; its answer.
pub(super) async fn deliver(
    shared: &Shared,
    request: &async_nats::Message,
    is_call: bool,
) -> (async_nats::HeaderMap, Vec<u8>) {
    let header = |name: &str| {
        request.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned())
    };
    let to = header("Warden-To").unwrap_or_default();
    let from = header("Warden-From");
    let forwarded = header("Warden-Forwarded").is_some();
    let payload = request.payload.to_vec();
    let timeout = header("Warden-Timeout-Ms")
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let elsewhere = match shared.post.lookup(&to) {
        Some(_) => None,
        None if forwarded => None,
        None => shared.nodes.placed_node(&to),
    };
    let result = match (elsewhere, is_call) {
        (Some(node), true) => call(shared, node, from, to, payload, timeout, true).await,
        (Some(node), false) => {
            let (headers, body) = message(from.as_deref(), &to, None, true, payload);
            match shared.nodes.cluster.get() {
                Some(cluster) => {
                    match cluster.request(&node, "send", headers, body, Some(SEND_TIMEOUT)).await {
                        Ok(reply) => answer(&reply),
                        Err(_) => Err(MessageError::UnknownTarget(to)),
                    }
                }
                None => Err(MessageError::UnknownTarget(to)),
            }
        }
        (None, true) => shared.post.call_from_remote(from, &to, payload, timeout).await,
        (None, false) => shared.post.send_from_remote(from, &to, payload).map(|()| Vec::new()),
    };
    match result {
        Ok(reply) => (async_nats::HeaderMap::new(), reply),
        Err(error) => (refusal(&error), Vec::new()),
    }
}

/// The headers of an answer that is `error`.
pub(super) fn refusal(error: &MessageError) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    let error = serde_json::to_string(error).unwrap_or_default();
    headers.insert("Warden-Error", error.as_str());
    headers
}
