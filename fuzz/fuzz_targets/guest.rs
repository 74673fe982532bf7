//! The guest boundary: any bytes, run by the `hostile` fixture as a program of host
//! import calls with arbitrary arguments in arbitrary order (messages, calls, timers,
//! state, heartbeats, logs, exits, panics and traps, and WASI's stdout, stderr, clocks,
//! sleeps, files, environment and randomness; see `plugins/hostile/src/program.rs`),
//! beside a sibling it may message. The input is up to three programs, split at the
//! bytes `FE FE`: one run in a call, one in the child's first `init`, one in each of its
//! `terminate`s.
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
use warden::runtime::{Host, HostError};
use warden::sandbox::{Engine, MessageError, Plugin};
use warden::state::{MemoryStore, Quota, StateStore};
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};
use warden_fuzz::live::{every_message_accounted_for, within};

/// The largest program run: a few hundred ops.
const MAX_INPUT: usize = 4 << 10;

const MILLISECOND: Duration = Duration::from_millis(1);

/// Where one program of the input ends and the next begins.
const SECTION: [u8; 2] = [0xfe, 0xfe];

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

/// The input's programs: the one called, the one run in `init`, the one run in
/// `terminate` (missing ones empty).
fn programs(data: &[u8]) -> [&[u8]; 3] {
    let mut programs = [&[][..]; 3];
    let mut rest = data;
    for program in &mut programs {
        match rest.windows(2).position(|w| w == SECTION) {
            Some(end) => {
                *program = &rest[..end];
                rest = &rest[end + 2..];
            }
            None => {
                *program = rest;
                break;
            }
        }
    }
    programs
}

/// The hostile child's config: its `init` and `terminate` programs (see the fixture).
fn config(at_init: &[u8], at_terminate: &[u8]) -> Vec<u8> {
    let n = u16::try_from(at_init.len()).expect("inputs are short");
    [b"progs:", &n.to_be_bytes()[..], at_init, at_terminate].concat()
}

fn tree(fixture: &Fixture, config: Vec<u8>) -> SupervisorSpec {
    let mut h = PluginStart::new(fixture.hostile.clone());
    h.config = config;
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
    let [called, at_init, at_terminate] = programs(&data[..data.len().min(MAX_INPUT)]);
    let program = [b"prog:", called].concat();
    let fixture = fixture();
    fixture.runtime.block_on(async {
        let state = Arc::new(MemoryStore::new());
        let host = Host::builder()
            .shared_engine(fixture.engine.clone())
            .state(state.clone())
            .build()
            .expect("a host");
        let mut events = host.subscribe();
        match host.start(tree(fixture, config(at_init, at_terminate))).await {
            Ok(()) => called_and_checked(&host, program, &state).await,
            // Its `init` program may fail the first start: a typed reason, not a panic.
            Err(HostError::TreeStart { path, reason }) => {
                assert_eq!(path, "root/h", "{reason}");
                // The root's reason names the child's own: `... h: host panic: ...`.
                assert!(!reason.to_string().contains("host panic"), "{reason}");
            }
            Err(e) => panic!("the tree does not start: {e}"),
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

/// The called program is answered, the sibling still answers, the state keeps within
/// its quota.
async fn called_and_checked(host: &Host, program: Vec<u8>, state: &MemoryStore) {
    // Answered, whatever the program does: a reply, or a typed error (its own, a
    // crash, a timeout). Its nested calls wait at most what is left of this one.
    let bound = Duration::from_secs(2);
    let answer = within(bound * 3, "the program's call", host.call("root/h", program, bound)).await;
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
}
