//! What the targets that run a live tree (`control`, `guest`) check the same way.

use std::fmt::Debug;
use std::time::Duration;
use warden::runtime::Host;

/// `f`'s output, or a panic naming `what` if it takes longer than `bound`.
pub async fn within<T>(bound: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, f).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {bound:?}"),
    }
}

/// Once `host`'s tree is gone: its messages settle within 10 s and every one sent is
/// accounted for. `story` (what happened, e.g. the events) is shown on a failure.
pub async fn every_message_accounted_for(host: &Host, story: &impl Debug) {
    let settled = tokio::time::timeout(Duration::from_secs(10), host.messages_settled()).await;
    let stats = host.message_stats();
    assert!(settled.is_ok(), "messages did not settle within 10 s: {stats:?}\n{story:#?}");
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert_eq!(
        stats.sent,
        stats.rejected + stats.handled + stats.failed + stats.dead_letters + stats.forwarded,
        "every message sent is accounted for: {stats:?}\n{story:#?}"
    );
}
