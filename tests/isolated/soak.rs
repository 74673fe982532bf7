//! A chaos soak: a tree of a few hundred chaos children under nested supervisors of
//! every strategy, hit at random, step after step, for `WARDEN_SOAK_SECONDS` (10 s by
//! default; `.ci/run` gives it a minute, an hour by hand): every trap kind, CPU
//! loops killed at their deadline, memory bombs, hangs killed by the heartbeat
//! watchdog, host-side stops and restarts, dynamic children started and stopped,
//! bursts of messages, and calls between children.
//!
//! After every step: the children a crash restarted are exactly those OTP's strategy
//! names (the crashed child's group: itself, all its siblings, or itself and those
//! after it), each once, with the next incarnation; no child runs twice at once; every
//! static child runs again with the incarnation the events say; every message sent is
//! accounted for. At the end, with the dynamic children gone again: resident memory
//! within 10% of where it stood at half time (once the event bus is warm; the pool's
//! freed slots keep no linear memory here), and open file descriptors and live tasks
//! back where they were.
//! `WARDEN_SOAK_SEED` replays a run.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use warden::events::{Event, Events};
use warden::runtime::Host;
use warden::sandbox::{Engine, EngineConfig, HeartbeatPolicy, MessageError, Plugin};
use warden::supervisor::{
    ChildKind, ChildSpec, ChildState, PluginStart, Restart, Strategy, SupervisorSpec,
};
use warden::{ExitReason, KillCause, TrapKind};
use warden_tests::{CHAOS, resident_bytes};

/// The deadline for anything a step waits for.
const WAIT: Duration = Duration::from_secs(10);
const MAX_DYNAMIC: usize = 150;

/// A small, seeded generator (xorshift): a failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A static supervisor of the tree: its path, strategy, and children in start order.
struct Group {
    path: &'static str,
    strategy: Strategy,
    children: Vec<String>,
}

/// A chaos child, 16 MiB of memory; a busy export ended by the heartbeat watchdog
/// (100 ms of silence) when `heartbeat`, else by a CPU deadline of 100 ms.
fn chaos(plugin: &Plugin, id: String, heartbeat: bool) -> ChildSpec {
    let mut start = PluginStart::new(plugin.clone());
    start.limits.max_memory_bytes = 16 << 20;
    if heartbeat {
        start.limits.heartbeat = Some(HeartbeatPolicy::Timeout(Duration::from_millis(100)));
    } else {
        start.limits.call_deadline = Some(Duration::from_millis(100));
    }
    start.mailbox.targets = warden::messaging::Targets::any();
    ChildSpec::plugin(id, start)
}

fn supervisor(strategy: Strategy, children: Vec<ChildSpec>) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new(strategy, children);
    spec.intensity = u32::MAX;
    spec.period = Duration::from_millis(1);
    spec
}

/// The tree, and its static groups.
fn tree(plugin: &Plugin) -> (SupervisorSpec, Vec<Group>) {
    let workers = |prefix: &str, n: usize, heartbeat: bool| -> Vec<ChildSpec> {
        (0..n).map(|i| chaos(plugin, format!("{prefix}{i}"), heartbeat)).collect()
    };
    let inner = supervisor(Strategy::RestForOne, workers("i", 10, false));
    let mut ofo = workers("w", 60, true);
    ofo.push(ChildSpec::supervisor("inner", inner));
    let mut template = chaos(plugin, "worker".into(), false);
    template.restart = Restart::Transient;
    let spec = supervisor(
        Strategy::OneForOne,
        vec![
            ChildSpec::supervisor("ofo", supervisor(Strategy::OneForOne, ofo)),
            ChildSpec::supervisor("ofa", supervisor(Strategy::OneForAll, workers("a", 10, false))),
            ChildSpec::supervisor("rfo", supervisor(Strategy::RestForOne, workers("r", 30, false))),
            ChildSpec::supervisor("pool", supervisor(Strategy::SimpleOneForOne, vec![template])),
        ],
    );
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect();
    let groups = vec![
        Group { path: "root/ofo", strategy: Strategy::OneForOne, children: names("w", 60) },
        Group { path: "root/ofo/inner", strategy: Strategy::RestForOne, children: names("i", 10) },
        Group { path: "root/ofa", strategy: Strategy::OneForAll, children: names("a", 10) },
        Group { path: "root/rfo", strategy: Strategy::RestForOne, children: names("r", 30) },
    ];
    (spec, groups)
}

/// What the events say about every child: its last incarnation, and whether it runs.
#[derive(Default)]
struct Seen {
    incarnation: HashMap<String, u64>,
    running: HashSet<String>,
}

impl Seen {
    /// Takes one event in, checking that no child runs twice and that incarnations only
    /// grow.
    fn take(&mut self, event: &Event) {
        match event {
            Event::ChildStarted { path, incarnation, .. } => {
                assert!(self.running.insert(path.clone()), "{path} started while running");
                let last = self.incarnation.insert(path.clone(), *incarnation).unwrap_or(0);
                assert!(*incarnation > last, "{path} started as #{incarnation} after #{last}");
            }
            Event::ChildExited { path, .. } => {
                assert!(self.running.remove(path), "{path} exited while not running");
            }
            _ => {}
        }
    }
}

/// The next event, within the deadline.
async fn next(events: &mut Events) -> Event {
    let received = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event within the deadline")
        .expect("the tree runs");
    received.event().expect("the soak keeps up with its events").event
}

/// Whether an exit reason is the one a fault must cause.
type Expected = fn(&ExitReason) -> bool;

/// The faults a crash step injects, with the exit each must cause.
const CRASHES: &[(&str, Expected)] = &[
    ("trap", |r| matches!(r, ExitReason::Trap { trap: TrapKind::Unreachable, .. })),
    ("panic", |r| matches!(r, ExitReason::Trap { trap: TrapKind::Unreachable, .. })),
    ("div0", |r| matches!(r, ExitReason::Trap { trap: TrapKind::IntegerDivisionByZero, .. })),
    ("oob", |r| matches!(r, ExitReason::Trap { trap: TrapKind::MemoryOutOfBounds, .. })),
    ("stack", |r| matches!(r, ExitReason::Trap { trap: TrapKind::StackOverflow, .. })),
    ("oom", |r| matches!(r, ExitReason::Trap { trap: TrapKind::MemoryLimit, .. })),
    // Killed by its deadline, or, where the children have a heartbeat, by the watchdog.
    ("loop", |r| {
        matches!(r, ExitReason::Killed { cause: KillCause::Deadline | KillCause::Heartbeat })
    }),
    ("exit:error", |r| matches!(r, ExitReason::Error { .. })),
];

/// Crashes `child` of `group` with `fault` and checks that exactly its group (by the
/// strategy) is restarted, each member once.
async fn crash(
    host: &Host,
    events: &mut Events,
    seen: &mut Seen,
    group: &Group,
    child: usize,
    fault: &str,
    expected: Expected,
) {
    let members: Vec<&String> = match group.strategy {
        Strategy::OneForAll => group.children.iter().collect(),
        Strategy::RestForOne => group.children[child..].iter().collect(),
        _ => vec![&group.children[child]],
    };
    let path = |id: &str| format!("{}/{id}", group.path);
    let crashed = path(&group.children[child]);
    let mut due: HashMap<String, u64> =
        members.iter().map(|id| (path(id), seen.incarnation[&path(id)] + 1)).collect();
    let reply = host.call(&crashed, fault.as_bytes().to_vec(), WAIT).await;
    if fault != "exit:error" {
        assert!(matches!(reply, Err(MessageError::CalleeCrashed(_))), "{fault}: {reply:?}");
    }
    let mut exited = false;
    while !due.is_empty() || !exited {
        let event = next(events).await;
        seen.take(&event);
        match &event {
            Event::ChildExited { path, reason, .. } if *path == crashed && !exited => {
                assert!(expected(reason), "{crashed} after {fault}: {reason:?}");
                exited = true;
            }
            Event::ChildExited { path, reason, .. } => {
                assert!(
                    due.contains_key(path),
                    "{path} exited ({reason:?}), not in {crashed}'s group"
                );
                assert_eq!(*reason, ExitReason::Shutdown, "{path}, stopped for the group");
            }
            Event::ChildStarted { path, incarnation, .. } => {
                let wanted = due.remove(path);
                assert_eq!(wanted, Some(*incarnation), "{path} started, not (again) in the group");
            }
            _ => {}
        }
    }
}

/// Reads events until `done` holds for one, taking each in.
async fn until(events: &mut Events, seen: &mut Seen, done: impl Fn(&Event) -> bool) {
    loop {
        let event = next(events).await;
        seen.take(&event);
        if done(&event) {
            return;
        }
    }
}

/// The tree is whole: every static child runs with the incarnation its events say,
/// and every message sent is accounted for.
async fn check(host: &Host, groups: &[Group], seen: &Seen) {
    tokio::time::timeout(WAIT, host.messages_settled()).await.expect("messages settle");
    let stats = host.message_stats();
    assert_eq!(
        stats.sent,
        stats.rejected + stats.handled + stats.failed + stats.dead_letters + stats.pending,
        "every message is accounted for: {stats:?}"
    );
    for group in groups {
        let children = host.which_children(group.path).await.expect("the supervisor runs");
        let children: Vec<_> =
            children.into_iter().filter(|c| c.kind == ChildKind::Worker).collect();
        let ids: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(ids, group.children, "{}'s children", group.path);
        for child in children {
            assert_eq!(child.state, ChildState::Running, "{}", child.path);
            assert_eq!(
                Some(&child.incarnation),
                seen.incarnation.get(&child.path),
                "{}",
                child.path
            );
        }
    }
}

/// What the process holds: resident bytes, open file descriptors, live tasks.
fn holdings() -> (u64, usize, usize) {
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    (resident_bytes(), open_fds(), tasks)
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0)
}

/// Stops every dynamic child (each exit awaited).
async fn empty_the_pool(host: &Host, events: &mut Events, seen: &mut Seen) {
    let children = host.which_children("root/pool").await.expect("the pool runs");
    for child in children {
        host.terminate_child("root/pool", &child.name).await.expect("it stops");
        let path = child.path.clone();
        until(events, seen, |e| matches!(e, Event::ChildExited { path: p, .. } if *p == path))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_soak_keeps_otp_s_rules_and_gives_back_what_it_took() {
    let _serial = super::serial().await;
    let seconds: u64 =
        std::env::var("WARDEN_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let seed: u64 = std::env::var("WARDEN_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) * 2_654_435_761 + 1);
    eprintln!("soak: {seconds} s, WARDEN_SOAK_SEED={seed}");
    let mut rng = Rng(seed.max(1));
    // A pool sized for the tree (260 children at most, and those being replaced), whose
    // freed slots keep none of their linear memory resident: a slot otherwise keeps up
    // to 256 KiB of what its busiest incarnation touched, so the pool's resident share
    // rose by design all through the run, a slot at a time (by up to 9% of the host's
    // memory between half time and the end, against 1 to 3% without), and hid what the
    // check is for. That reusing a slot does not grow it is a test of its own
    // (`ten_thousand_crash_cycles_do_not_grow_resident_memory`, with the default).
    let config = EngineConfig { max_instances: 320, keep_resident: 0, ..EngineConfig::default() };
    let engine = Engine::with_config(config).unwrap();
    let plugin = engine.load_file(CHAOS).unwrap();
    let (spec, groups) = tree(&plugin);
    let host = Host::builder().shared_engine(engine).build().unwrap();
    let mut events = host.subscribe();
    host.start(spec).await.expect("the tree starts");
    let mut seen = Seen::default();
    while let Some(received) = events.try_next() {
        seen.take(&received.event().expect("kept up").event);
    }
    let mut dynamic: Vec<String> = Vec::new();
    let mut faults: HashMap<&str, u64> = HashMap::new();
    let mut first = None;
    let mut baseline = None;
    let started = Instant::now();
    let mut steps = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) || baseline.is_none() {
        steps += 1;
        let group = &groups[rng.below(groups.len())];
        let child = rng.below(group.children.len());
        let path = format!("{}/{}", group.path, group.children[child]);
        let kind = match rng.below(10) {
            0..=3 => {
                let (fault, expected) = CRASHES[rng.below(CRASHES.len())];
                crash(&host, &mut events, &mut seen, group, child, fault, expected).await;
                fault
            }
            4 if group.path == "root/ofo" => {
                // A hang the heartbeat watchdog ends (its timeout is 100 ms).
                crash(&host, &mut events, &mut seen, group, child, "hang:2000", |r| {
                    *r == ExitReason::Killed { cause: KillCause::Heartbeat }
                })
                .await;
                "hang"
            }
            5 => {
                // Stopped and started by the host: no group restart, the next incarnation.
                let id = &group.children[child];
                host.terminate_child(group.path, id).await.expect("it stops");
                host.restart_child(group.path, id).await.expect("it starts");
                let next = seen.incarnation[&path] + 1;
                until(&mut events, &mut seen, |e| {
                    matches!(e, Event::ChildStarted { path: p, incarnation, .. } if *p == path && *incarnation == next)
                })
                .await;
                "terminate+restart"
            }
            6 => {
                if dynamic.len() < MAX_DYNAMIC {
                    let name =
                        host.start_dynamic("root/pool", None, None).await.expect("it starts");
                    let path = format!("root/pool/{name}");
                    until(
                        &mut events,
                        &mut seen,
                        |e| matches!(e, Event::ChildStarted { path: p, .. } if *p == path),
                    )
                    .await;
                    dynamic.push(name);
                    "start_dynamic"
                } else {
                    let name = dynamic.swap_remove(rng.below(dynamic.len()));
                    host.terminate_child("root/pool", &name).await.expect("it stops");
                    let path = format!("root/pool/{name}");
                    until(
                        &mut events,
                        &mut seen,
                        |e| matches!(e, Event::ChildExited { path: p, .. } if *p == path),
                    )
                    .await;
                    "terminate_dynamic"
                }
            }
            7 => {
                // A burst of sends, every one handled or accounted for.
                for _ in 0..200 {
                    let _ = host.send(&path, b"echo:burst".to_vec());
                }
                "burst"
            }
            _ => {
                // A call from one child to another, through the host.
                let other = &groups[rng.below(groups.len())];
                let target =
                    format!("{}/{}", other.path, other.children[rng.below(other.children.len())]);
                if target == path {
                    continue; // a call to itself is refused as a deadlock, by design
                }
                let reply =
                    host.call(&path, format!("call:{target}:echo:hi").into_bytes(), WAIT).await;
                assert_eq!(reply.as_deref(), Ok(&b"hi"[..]), "{path} calling {target}");
                "call"
            }
        };
        *faults.entry(kind).or_default() += 1;
        check(&host, &groups, &seen).await;
        // What the process holds with no dynamic child: after 200 steps (for the
        // report), and at half time, once the instance pool and the event bus have
        // warmed up (the baseline the end is held to).
        let half = started.elapsed() >= Duration::from_secs(seconds) / 2;
        if (steps == 200 && first.is_none()) || (half && steps >= 200 && baseline.is_none()) {
            empty_the_pool(&host, &mut events, &mut seen).await;
            dynamic.clear();
            check(&host, &groups, &seen).await;
            let snapshot = Some(holdings());
            if first.is_none() {
                first = snapshot;
            } else {
                baseline = snapshot;
            }
        }
    }
    empty_the_pool(&host, &mut events, &mut seen).await;
    check(&host, &groups, &seen).await;
    let (rss0, fds0, tasks0) = baseline.expect("warmed up");
    let (rss, fds, tasks) = holdings();
    let mut faults: Vec<_> = faults.into_iter().collect();
    faults.sort();
    eprintln!(
        "soak: {steps} steps in {:.0} s, seed {seed}; faults {faults:?}; resident {} KiB after \
         200 steps, {} KiB at half time, {} KiB at the end; fds {fds0} -> {fds}, tasks {tasks0} \
         -> {tasks}; {:?}",
        started.elapsed().as_secs_f64(),
        first.map_or(0, |f| f.0 >> 10),
        rss0 >> 10,
        rss >> 10,
        host.message_stats()
    );
    assert!(rss <= rss0 + rss0 / 10, "resident memory grew from {rss0} to {rss} bytes");
    assert!(fds <= fds0 + 2, "open file descriptors went from {fds0} to {fds}");
    assert!(tasks <= tasks0 + 4, "live tasks went from {tasks0} to {tasks}");
    host.shutdown().await;
}
