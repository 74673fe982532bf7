//! The guest boundary: any bytes, run by the `hostile` fixture as a program of host
//! import calls with arbitrary arguments in arbitrary order (messages, calls, timers,
//! state, heartbeats, logs, exits, panics and traps; see
//! `plugins/hostile/src/program.rs`), beside a sibling it may message.
//!
//! For every input: the call is answered (a reply or a typed error) within its bound;
//! no incarnation ends with `host_panic`; the sibling still answers; the child's state
//! keeps within its quota; the host shuts down within a bound; and once it has, every
//! message sent is accounted for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use warden::ExitReason;
use warden::events::{Event, Received};
use warden::messaging::Targets;
use warden::runtime::Host;
use warden::sandbox::{Engine, MessageError, Plugin};
use warden::state::{MemoryStore, Quota, StateStore};
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use warden_fuzz::live::{every_message_accounted_for, within};

/// The largest program run: a few hundred ops.
const MAX_INPUT: usize = 4 << 10;

const MILLISECOND: Duration = Duration::from_millis(1);

/// The child's state quota, small enough for a program to reach.
const QUOTA: Quota = Quota { max_bytes: 16 << 10, max_keys: 16, max_value_bytes: 4 << 10 };

struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    hostile: Plugin,
    echo: Plugin,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let engine = Engine::new().expect("an engine");
        let hostile = engine.load_file(warden_tests::HOSTILE).expect("the fixture loads");
        let echo = engine.load_file(warden_tests::ECHO).expect("the fixture loads");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        Fixture { runtime, engine, hostile, echo }
    })
}

fn tree(fixture: &Fixture) -> SupervisorSpec {
    let mut h = PluginStart::new(fixture.hostile.clone());
    h.mailbox.targets = Targets::any();
    h.limits.max_memory_bytes = 48 << 20;
    h.limits.call_deadline = Some(Duration::from_secs(1));
    h.limits.state = QUOTA;
    let echo = PluginStart::new(fixture.echo.clone());
    let mut spec = SupervisorSpec::new(
        Strategy::OneForOne,
        vec![ChildSpec::plugin("h", h), ChildSpec::plugin("echo", echo)],
    );
    spec.intensity = 1000;
    spec
}

fuzz_target!(|data: &[u8]| {
    let program = [b"prog:", &data[..data.len().min(MAX_INPUT)]].concat();
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let state = Arc::new(MemoryStore::new());
        let host = Host::builder()
            .shared_engine(fixture.engine.clone())
            .state(state.clone())
            .build()
            .expect("a host");
        let mut events = host.subscribe();
        host.start(tree(fixture)).await.expect("the tree starts");

        // Answered, whatever the program does: a reply, or a typed error (its own, a
        // crash, a timeout). Its nested calls wait at most what is left of this one.
        let bound = Duration::from_secs(2);
        let answer =
            within(bound * 3, "the program's call", host.call("root/h", program, bound)).await;
        if let Err(MessageError::CalleeCrashed(ExitReason::HostPanic { message })) = answer {
            panic!("the host panicked serving the program: {message}");
        }
        // The program may have filled the sibling's mailbox, or set timers that fill it
        // as they fire: `mailbox-full` says to try again later, and later it has room.
        let echo = async {
            loop {
                let call = host.call("root/echo", b"still here".to_vec(), Duration::from_secs(5));
                match call.await {
                    Err(MessageError::MailboxFull) => tokio::time::sleep(MILLISECOND).await,
                    answer => return answer,
                }
            }
        };
        let reply = within(Duration::from_secs(10), "the sibling's call", echo).await;
        assert_eq!(reply.as_deref(), Ok(&b"still here"[..]), "the sibling answers");

        for (scope, usage) in state.scopes().expect("the store answers") {
            assert!(
                usage.keys <= QUOTA.max_keys && usage.bytes <= QUOTA.max_bytes,
                "{scope} keeps {usage:?}, over its quota {QUOTA:?}"
            );
        }

        within(Duration::from_secs(20), "the shutdown", host.shutdown()).await;
        let mut seen = Vec::new();
        while let Some(received) = events.try_next() {
            assert!(!matches!(received, Received::Missed(_)), "an event lost: {received:?}");
            if let Received::Event(record) = &received
                && let Event::ChildExited {
                    reason: ExitReason::HostPanic { message }, path, ..
                } = &record.event
            {
                panic!("the host panicked serving {path}: {message}");
            }
            seen.push(received);
        }

        every_message_accounted_for(&host, &seen).await;
    });
});
