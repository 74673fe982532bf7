//! The `runtime` and `state` imports as plugins use them: state across incarnations,
//! send-after, heartbeats, calls (captured stdout is in the `isolated` binary: it needs
//! the process's tracing registry to itself).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::sandbox::{BoxFuture, MessageError, Messenger, Sandbox, SandboxConfig};
use warden::state::MemoryStore;
use warden::{ExitReason, TrapKind};
use warden_tests::{CHAOS, COUNTER, TICKER, engine};

/// One recorded message: to, payload text, and the delay of a send-after.
type Sent = (String, String, Option<Duration>);

/// A messenger that records what plugins send and answers calls with `re:PAYLOAD`.
#[derive(Debug, Default)]
struct Recorder {
    sent: Mutex<Vec<Sent>>,
}

impl Recorder {
    fn record(&self, to: &str, payload: &[u8], delay: Option<Duration>) {
        let text = String::from_utf8_lossy(payload).into_owned();
        self.sent.lock().unwrap().push((to.into(), text, delay));
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

impl Messenger for Recorder {
    fn send(&self, to: &str, payload: Vec<u8>) -> Result<(), MessageError> {
        if to == "root/full" {
            return Err(MessageError::MailboxFull);
        }
        self.record(to, &payload, None);
        Ok(())
    }

    fn send_after(&self, to: &str, payload: Vec<u8>, delay: Duration) -> Result<(), MessageError> {
        self.record(to, &payload, Some(delay));
        Ok(())
    }

    fn call(
        &self,
        to: &str,
        payload: Vec<u8>,
        _: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, MessageError>> {
        self.record(to, &payload, None);
        let reply = [b"re:".as_slice(), &payload].concat();
        Box::pin(async move { Ok(reply) })
    }
}

#[tokio::test]
async fn the_counter_continues_from_its_state_after_a_crash() {
    let plugin = engine().load_file(COUNTER).unwrap();
    let mut config = SandboxConfig::new("root/counter");
    config.state = Arc::new(MemoryStore::new());
    let mut first = Sandbox::start(&plugin, config.clone(), 1).await.unwrap();
    for expected in ["1", "2", "3"] {
        let handled = first.handle(None, b"incr".to_vec(), true).await.unwrap();
        assert_eq!(handled.reply.as_deref(), Ok(expected.as_bytes()));
    }
    let reason = first.handle(None, b"crash".to_vec(), true).await.unwrap_err();
    match reason {
        ExitReason::Trap { trap: TrapKind::Unreachable, panic: true, message } => {
            assert!(message.contains("counter asked to crash at 3"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let mut second = Sandbox::start(&plugin, config.clone(), 2).await.unwrap();
    let handled = second.handle(None, b"incr".to_vec(), true).await.unwrap();
    assert_eq!(handled.reply.as_deref(), Ok(&b"4"[..]));
    assert_eq!(config.state.get("root/counter", "count").unwrap().as_deref(), Some(&b"4"[..]));
}

#[tokio::test]
async fn ticker_sets_its_timers_through_the_messenger_and_ticks_heartbeat() {
    let recorder = Arc::new(Recorder::default());
    let plugin = engine().load_file(TICKER).unwrap();
    let mut config = SandboxConfig::new("root/ticker");
    config.config = br#"{"interval_ms": 250, "target": "root/sink"}"#.to_vec();
    config.messenger = recorder.clone();
    let heartbeat = config.heartbeat.clone();
    let mut ticker = Sandbox::start(&plugin, config, 1).await.unwrap();
    let tick = ("root/ticker".to_string(), "tick".to_string(), Some(Duration::from_millis(250)));
    assert_eq!(recorder.sent(), std::slice::from_ref(&tick), "init schedules the first tick");
    assert_eq!(heartbeat.count(), 0);

    ticker.handle(None, b"tick".to_vec(), false).await.unwrap();
    assert_eq!(heartbeat.count(), 1, "a tick heartbeats");
    let forwarded = ("root/sink".to_string(), "tick 1".to_string(), None);
    assert_eq!(recorder.sent(), [tick.clone(), forwarded, tick]);
    let count = ticker.handle(None, b"count".to_vec(), true).await.unwrap();
    assert_eq!(count.reply.as_deref(), Ok(&b"1"[..]));
}

#[tokio::test]
async fn chaos_sends_and_calls_through_the_messenger_and_sees_its_errors() {
    let recorder = Arc::new(Recorder::default());
    let plugin = engine().load_file(CHAOS).unwrap();
    let mut config = SandboxConfig::new("root/chaos");
    config.messenger = recorder.clone();
    let mut chaos = Sandbox::start(&plugin, config, 1).await.unwrap();
    let sent = chaos.handle(None, b"send:root/echo:hello".to_vec(), false).await.unwrap();
    assert_eq!(sent.reply.as_deref(), Ok(&b"ok"[..]));
    let called = chaos.handle(None, b"call:root/echo:ping".to_vec(), true).await.unwrap();
    assert_eq!(called.reply.as_deref(), Ok(&b"re:ping"[..]));
    let full = chaos.handle(None, b"send:root/full:x".to_vec(), false).await.unwrap();
    assert_eq!(full.reply.unwrap_err(), "mailbox full", "the guest gets the error as a sentence");
    assert_eq!(
        recorder.sent(),
        [("root/echo".into(), "hello".into(), None), ("root/echo".into(), "ping".into(), None),]
    );
}
