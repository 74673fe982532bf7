//! The decision core against OTP's rules, with a simulated runtime: no Wasm, no
//! sleeps, the clock injected.

use super::*;
use crate::events::Event;
use crate::spec::Shutdown;
use crate::{ExitReason, KillCause, TrapKind};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn worker(id: &str, restart: Restart) -> ChildSpec {
    let mut spec = ChildSpec::plugin(id, PluginStart::new("chaos.wasm"));
    spec.restart = restart;
    spec
}

fn sup(strategy: Strategy, children: Vec<ChildSpec>) -> SupervisorSpec {
    SupervisorSpec::new(strategy, children)
}

fn crash() -> ExitReason {
    ExitReason::Trap { trap: TrapKind::Unreachable, message: "boom".into(), panic: false }
}

/// A runtime that carries directives out at once: starts succeed unless
/// `fail_from[child]` says that incarnation fails; stops end with `shutdown`.
struct Sim {
    core: Core,
    t0: Instant,
    now: Duration,
    log: Vec<String>,
    timers: Vec<(String, Duration, u64)>,
    fail_from: std::collections::HashMap<String, u64>,
    /// Single incarnations whose start fails.
    fail_at: HashSet<(String, u64)>,
    admin_results: Vec<Result<(), ExitReason>>,
    exited: Option<ExitReason>,
    /// Children whose spec the core dropped, in order.
    forgotten: Vec<String>,
}

impl Sim {
    fn new(spec: SupervisorSpec) -> Sim {
        let core = Core::new("root", &spec, Box::new(|| 0.5)).expect("valid spec");
        Sim {
            core,
            t0: Instant::now(),
            now: Duration::ZERO,
            log: Vec::new(),
            timers: Vec::new(),
            fail_from: Default::default(),
            fail_at: HashSet::new(),
            admin_results: Vec::new(),
            exited: None,
            forgotten: Vec::new(),
        }
    }

    fn start(spec: SupervisorSpec) -> Sim {
        let mut sim = Sim::new(spec);
        sim.core.init(sim.at());
        sim.run();
        sim
    }

    fn at(&self) -> Instant {
        self.t0 + self.now
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Carries out the agenda, recording directives and events as short strings.
    fn run(&mut self) {
        while let Some(directive) = self.core.pop() {
            match directive {
                Directive::Start { child, incarnation, cause } => {
                    self.log.push(format!("start {child} #{incarnation}"));
                    let fails = self.fail_from.get(&child).is_some_and(|&n| incarnation >= n)
                        || self.fail_at.contains(&(child.clone(), incarnation));
                    let result = if fails {
                        Err(ExitReason::StartFailed { message: format!("{child} refuses") })
                    } else {
                        Ok(())
                    };
                    if let Some(r) = self.core.started(&child, result, cause, self.at()) {
                        self.admin_results.push(r);
                    }
                }
                Directive::Stop { child, shutdown } => {
                    self.log.push(format!("stop {child}"));
                    let reason = match shutdown {
                        Shutdown::BrutalKill => ExitReason::Killed { cause: KillCause::BrutalKill },
                        _ => ExitReason::Shutdown,
                    };
                    self.core.stopped(&child, reason);
                }
                Directive::StopAll { children, .. } => {
                    self.log.push(format!("stop_all {}", children.join(",")));
                    let results = children.into_iter().map(|c| (c, ExitReason::Shutdown)).collect();
                    self.core.stopped_all(results);
                }
                Directive::RestartAfter { child, delay, generation } => {
                    self.log.push(format!("timer {child} {}ms", delay.as_millis()));
                    self.timers.push((child, self.now + delay, generation));
                }
                Directive::Forget { child, .. } => self.forgotten.push(child),
                Directive::Emit(event) => self.log.push(describe(&event)),
                Directive::Exit(reason) => {
                    self.log.push(format!("exit {reason}"));
                    self.exited = Some(reason);
                }
            }
        }
    }

    /// Fires every timer due by now, in order.
    fn fire_timers(&mut self) {
        loop {
            self.timers.sort_by_key(|t| t.1);
            let Some(pos) = self.timers.iter().position(|t| t.1 <= self.now) else { return };
            let (child, _, generation) = self.timers.remove(pos);
            self.core.timer(&child, generation, self.at());
            self.run();
        }
    }

    fn exit(&mut self, child: &str, reason: ExitReason) {
        let incarnation = self.incarnation(child);
        self.log.clear();
        self.core.exited(child, incarnation, reason, self.at());
        self.run();
    }

    fn incarnation(&self, child: &str) -> u64 {
        self.core.which_children().iter().find(|c| c.name == child).map_or(0, |c| c.incarnation)
    }

    fn state(&self, child: &str) -> Option<ChildState> {
        self.core.which_children().iter().find(|c| c.name == child).map(|c| c.state)
    }

    fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::ChildStarted { path, incarnation, .. } => format!("started {path} #{incarnation}"),
        Event::ChildExited { path, incarnation, reason, .. } => {
            format!("exited {path} #{incarnation} {reason}")
        }
        Event::ChildRestarting { path, attempt, delay_ms } => {
            format!("restarting {path} attempt {attempt} delay {delay_ms}")
        }
        Event::ChildStartFailed { path, .. } => format!("start_failed {path}"),
        Event::SupervisorGaveUp { path, reason } => format!("gave_up {path} {reason}"),
        Event::SupervisorStopped { path, reason } => format!("sup_stopped {path} {reason}"),
        Event::ChildUpgraded { path, incarnation, from, to } => {
            format!("upgraded {path} #{incarnation} {from} -> {to}")
        }
        Event::UpgradeFailed { path, from, to, .. } => {
            format!("upgrade_failed {path} {to}, back to {from}")
        }
        other => unreachable!("the core does not publish {other:?}"),
    }
}

fn abc(strategy: Strategy) -> SupervisorSpec {
    let mut spec = sup(
        strategy,
        vec![
            worker("a", Restart::Permanent),
            worker("b", Restart::Permanent),
            worker("c", Restart::Permanent),
        ],
    );
    spec.intensity = 10;
    spec
}

#[test]
fn children_start_in_order() {
    let mut sim = Sim::start(abc(Strategy::OneForOne));
    assert_eq!(
        sim.take_log(),
        [
            "start a #1",
            "started root/a #1",
            "start b #1",
            "started root/b #1",
            "start c #1",
            "started root/c #1"
        ]
    );
}

#[test]
fn one_for_one_restarts_only_the_failed_child() {
    let mut sim = Sim::start(abc(Strategy::OneForOne));
    sim.exit("b", crash());
    assert_eq!(
        sim.take_log(),
        [
            "exited root/b #1 trap unreachable: boom",
            "restarting root/b attempt 1 delay 0",
            "start b #2",
            "started root/b #2"
        ]
    );
    assert_eq!((sim.incarnation("a"), sim.incarnation("c")), (1, 1));
}

#[test]
fn one_for_all_stops_the_others_newest_first_then_starts_all_in_order() {
    let mut sim = Sim::start(abc(Strategy::OneForAll));
    sim.exit("b", crash());
    assert_eq!(
        sim.take_log(),
        [
            "exited root/b #1 trap unreachable: boom",
            "restarting root/b attempt 1 delay 0",
            "stop c",
            "exited root/c #1 shutdown",
            "stop a",
            "exited root/a #1 shutdown",
            "start a #2",
            "started root/a #2",
            "start b #2",
            "started root/b #2",
            "start c #2",
            "started root/c #2"
        ]
    );
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let mut sim = Sim::start(abc(Strategy::RestForOne));
    sim.exit("b", crash());
    let log = sim.take_log();
    assert!(
        !log.iter().any(|l| l == "stop a" || l.starts_with("start a ") || l.contains("root/a ")),
        "{log:?}"
    );
    assert_eq!(
        log,
        [
            "exited root/b #1 trap unreachable: boom",
            "restarting root/b attempt 1 delay 0",
            "stop c",
            "exited root/c #1 shutdown",
            "start b #2",
            "started root/b #2",
            "start c #2",
            "started root/c #2"
        ]
    );
}

#[test]
fn restart_types_follow_otp() {
    let spec = sup(
        Strategy::OneForOne,
        vec![
            worker("p", Restart::Permanent),
            worker("t", Restart::Transient),
            worker("tmp", Restart::Temporary),
        ],
    );
    let mut spec = spec;
    spec.intensity = 100;
    let mut sim = Sim::start(spec);
    // Permanent: restarted even after a normal exit.
    sim.exit("p", ExitReason::Normal);
    assert_eq!(sim.incarnation("p"), 2);
    // Transient: normal, shutdown and shutdown_with are normal; killed is not.
    for reason in
        [ExitReason::Normal, ExitReason::Shutdown, ExitReason::ShutdownWith { reason: "x".into() }]
    {
        sim.core.restart_child("t").ok();
        sim.run();
        sim.exit("t", reason);
        assert_eq!(sim.state("t"), Some(ChildState::Stopped));
    }
    sim.core.restart_child("t").unwrap();
    sim.run();
    let before = sim.incarnation("t");
    sim.exit("t", ExitReason::Killed { cause: KillCause::Heartbeat });
    assert_eq!((sim.state("t"), sim.incarnation("t")), (Some(ChildState::Running), before + 1));
    // Temporary: never restarted, and its spec is dropped.
    sim.exit("tmp", crash());
    assert_eq!(sim.state("tmp"), None);
    assert!(!sim.take_log().iter().any(|l| l.starts_with("start tmp")));
}

#[test]
fn a_temporary_bystander_of_a_group_restart_is_dropped() {
    let mut spec = sup(
        Strategy::OneForAll,
        vec![worker("a", Restart::Permanent), worker("tmp", Restart::Temporary)],
    );
    spec.intensity = 5;
    let mut sim = Sim::start(spec);
    sim.exit("a", crash());
    let log = sim.take_log();
    assert!(log.contains(&"stop tmp".to_string()), "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("start tmp")), "{log:?}");
    assert_eq!(sim.state("tmp"), None);
    assert_eq!(sim.forgotten, ["tmp"], "the runtime is told to release its mailbox");
    assert_eq!(sim.state("a"), Some(ChildState::Running));
}

#[test]
fn default_intensity_gives_up_at_the_second_restart_within_five_seconds() {
    let mut spec = abc(Strategy::OneForOne);
    spec.intensity = 1;
    let mut sim = Sim::start(spec);
    sim.exit("b", crash());
    assert_eq!(sim.incarnation("b"), 2);
    sim.advance(Duration::from_secs(5)); // inclusive window: still inside
    sim.exit("b", crash());
    assert_eq!(
        sim.take_log(),
        [
            "exited root/b #2 trap unreachable: boom",
            "gave_up root reached_max_restart_intensity",
            "stop c",
            "exited root/c #1 shutdown",
            "stop a",
            "exited root/a #1 shutdown",
            "sup_stopped root shutdown",
            "exit shutdown"
        ]
    );
    assert_eq!(sim.exited, Some(ExitReason::Shutdown));
}

#[test]
fn restarts_older_than_the_period_leave_the_window() {
    let mut spec = abc(Strategy::OneForOne);
    spec.intensity = 1;
    let mut sim = Sim::start(spec);
    for _ in 0..5 {
        sim.exit("a", crash());
        sim.advance(Duration::from_millis(5001));
    }
    assert_eq!(sim.exited, None);
    assert_eq!(sim.incarnation("a"), 6);
}

#[test]
fn intensity_zero_gives_up_at_the_first_failure() {
    let mut spec = abc(Strategy::OneForOne);
    spec.intensity = 0;
    let mut sim = Sim::start(spec);
    sim.exit("c", crash());
    assert!(sim.take_log().contains(&"gave_up root reached_max_restart_intensity".to_string()));
    assert_eq!(sim.exited, Some(ExitReason::Shutdown));
}

#[test]
fn a_group_restart_counts_once() {
    let mut spec = abc(Strategy::OneForAll);
    spec.intensity = 1;
    let mut sim = Sim::start(spec);
    sim.exit("a", crash());
    assert_eq!(sim.exited, None, "three children restarted, one restart counted");
    assert_eq!(sim.incarnation("c"), 2);
}

#[test]
fn a_failed_restart_is_retried_counted_and_shown_as_restarting() {
    let mut spec = abc(Strategy::OneForOne);
    spec.intensity = 3;
    let mut sim = Sim::start(spec);
    sim.fail_from.insert("b".into(), 2);
    sim.exit("b", crash());
    assert_eq!(
        sim.take_log(),
        [
            "exited root/b #1 trap unreachable: boom",
            "restarting root/b attempt 1 delay 0",
            "start b #2",
            "start_failed root/b",
            "restarting root/b attempt 2 delay 0",
            "timer b 0ms"
        ]
    );
    // Meanwhile the supervisor answers requests, and b is not active.
    assert_eq!(sim.state("b"), Some(ChildState::Restarting));
    assert_eq!(
        sim.core.count_children(),
        ChildCounts { specs: 3, active: 2, supervisors: 0, workers: 3 }
    );
    assert_eq!(sim.core.restart_child("b"), Err(AdminError::Restarting));
    assert_eq!(sim.core.delete_child("b"), Err(AdminError::Restarting));
    // Each retry counts: crash (1), retry (2), retry (3), retry (4) > 3.
    sim.fire_timers();
    let log = sim.take_log();
    assert_eq!(log.iter().filter(|l| l.starts_with("start b")).count(), 2, "{log:?}");
    assert!(log.contains(&"gave_up root reached_max_restart_intensity".to_string()), "{log:?}");
    assert_eq!(sim.exited, Some(ExitReason::Shutdown));
}

#[test]
fn terminate_child_cancels_a_pending_retry_and_nothing_is_revived() {
    let mut spec = abc(Strategy::OneForOne);
    spec.intensity = 10;
    let mut sim = Sim::start(spec);
    sim.fail_from.insert("b".into(), 2);
    sim.exit("b", crash());
    assert_eq!(sim.core.terminate_child("b"), Ok(()));
    sim.run();
    sim.fire_timers();
    assert_eq!(sim.state("b"), Some(ChildState::Stopped));
    assert!(!sim.take_log().iter().any(|l| l.starts_with("start b #3")));
    // Terminating did not count as a restart, and restart_child revives it on demand.
    sim.fail_from.clear();
    assert_eq!(sim.core.restart_child("b"), Ok(()));
    sim.run();
    assert_eq!(sim.state("b"), Some(ChildState::Running));
    assert_eq!(sim.admin_results.pop(), Some(Ok(())));
}

#[test]
fn a_start_failure_at_start_up_stops_the_started_children_and_names_the_child() {
    let mut sim = Sim::new(abc(Strategy::OneForOne));
    sim.fail_from.insert("b".into(), 1);
    sim.core.init(sim.at());
    sim.run();
    assert_eq!(
        sim.take_log(),
        [
            "start a #1",
            "started root/a #1",
            "start b #1",
            "start_failed root/b",
            "stop a",
            "exited root/a #1 shutdown",
            "sup_stopped root start failed: failed_to_start_child b: start failed: b refuses",
            "exit start failed: failed_to_start_child b: start failed: b refuses"
        ]
    );
}

#[test]
fn admin_requests_answer_as_otp_does() {
    let mut spec = abc(Strategy::OneForOne);
    spec.intensity = 10;
    let mut sim = Sim::start(spec);
    assert_eq!(
        sim.core.start_child(worker("a", Restart::Permanent)),
        Err(AdminError::AlreadyStarted)
    );
    assert_eq!(sim.core.restart_child("a"), Err(AdminError::Running));
    assert_eq!(sim.core.delete_child("a"), Err(AdminError::Running));
    assert_eq!(sim.core.terminate_child("zz"), Err(AdminError::NotFound));
    assert_eq!(sim.core.restart_child("zz"), Err(AdminError::NotFound));
    assert_eq!(sim.core.delete_child("zz"), Err(AdminError::NotFound));

    sim.take_log();
    assert_eq!(sim.core.terminate_child("a"), Ok(()));
    sim.run();
    assert_eq!(sim.take_log(), ["stop a", "exited root/a #1 shutdown"]);
    assert_eq!(sim.core.terminate_child("a"), Ok(()), "ok even when stopped");
    assert_eq!(
        sim.core.start_child(worker("a", Restart::Permanent)),
        Err(AdminError::AlreadyPresent)
    );
    assert_eq!(
        sim.core.count_children(),
        ChildCounts { specs: 3, active: 2, supervisors: 0, workers: 3 }
    );
    assert_eq!(sim.core.delete_child("a"), Ok(()));
    assert_eq!(sim.core.count_children().specs, 2);

    assert_eq!(sim.core.start_child(worker("d", Restart::Permanent)), Ok(()));
    sim.run();
    assert_eq!(sim.forgotten, ["a"], "only the deleted spec is forgotten");
    assert_eq!(sim.admin_results.pop(), Some(Ok(())));
    let names: Vec<String> = sim.core.which_children().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["b", "c", "d"], "a started child goes last");

    // A start_child whose start fails leaves no spec behind.
    sim.fail_from.insert("e".into(), 1);
    assert_eq!(sim.core.start_child(worker("e", Restart::Permanent)), Ok(()));
    sim.run();
    assert!(matches!(sim.admin_results.pop(), Some(Err(ExitReason::StartFailed { .. }))));
    assert_eq!(sim.state("e"), None);
}

#[test]
fn significant_children_shut_the_supervisor_down() {
    let mut significant = worker("s", Restart::Transient);
    significant.significant = true;
    let mut spec = sup(Strategy::OneForOne, vec![worker("a", Restart::Permanent), significant]);
    spec.auto_shutdown = AutoShutdown::AnySignificant;
    let mut sim = Sim::start(spec);
    sim.exit("s", crash()); // abnormal: restarted, no shutdown
    assert_eq!(sim.exited, None);
    sim.exit("s", ExitReason::Normal);
    assert_eq!(
        sim.take_log()[1..],
        ["stop a", "exited root/a #1 shutdown", "sup_stopped root shutdown", "exit shutdown"]
    );

    let mut s1 = worker("s1", Restart::Temporary);
    s1.significant = true;
    let mut s2 = worker("s2", Restart::Temporary);
    s2.significant = true;
    let mut spec = sup(Strategy::OneForOne, vec![s1, s2]);
    spec.auto_shutdown = AutoShutdown::AllSignificant;
    let mut sim = Sim::start(spec);
    sim.exit("s1", crash());
    assert_eq!(sim.exited, None, "one significant child is still running");
    sim.exit("s2", ExitReason::Normal);
    assert_eq!(sim.exited, Some(ExitReason::Shutdown));
}

#[test]
fn validation_reports_every_problem_with_its_place() {
    let mut significant_permanent = worker("p", Restart::Permanent);
    significant_permanent.significant = true;
    let mut significant_never = worker("q", Restart::Transient);
    significant_never.significant = true;
    let mut spec = sup(
        Strategy::OneForOne,
        vec![
            worker("a", Restart::Permanent),
            worker("a", Restart::Permanent),
            significant_permanent,
            significant_never,
        ],
    );
    spec.period = Duration::ZERO;
    let errors: Vec<String> = Core::new("root", &spec, Box::new(|| 0.0))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [
            "supervisor root: period must be greater than zero",
            "supervisor root, child \"a\": duplicate child id",
            "supervisor root, child \"p\": significant is true but the supervisor's auto_shutdown is never",
            "supervisor root, child \"p\": significant is true but the child is permanent",
            "supervisor root, child \"q\": significant is true but the supervisor's auto_shutdown is never",
        ]
    );
    let nested = sup(
        Strategy::SimpleOneForOne,
        vec![worker("w", Restart::Temporary), worker("x", Restart::Temporary)],
    );
    let spec = sup(Strategy::OneForOne, vec![ChildSpec::supervisor("pool", nested)]);
    let errors = Core::new("root", &spec, Box::new(|| 0.0)).unwrap_err();
    assert_eq!(errors[0].place(), "supervisor root/pool");
    assert_eq!(errors[0].problem, SpecProblem::TemplateCount { found: 2 });
}

#[test]
fn backoff_delays_grow_reset_after_a_stable_run_and_never_revive_a_terminated_child() {
    let mut child = worker("a", Restart::Permanent);
    child.backoff = Backoff::Exponential {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        jitter: 0.0,
    };
    child.backoff_reset = Duration::from_secs(30);
    let mut spec = sup(Strategy::OneForOne, vec![child]);
    spec.intensity = 100;
    spec.period = Duration::from_secs(1);
    let mut sim = Sim::start(spec);
    let mut delays = Vec::new();
    for _ in 0..6 {
        sim.exit("a", crash());
        delays.push(sim.take_log().into_iter().find(|l| l.starts_with("timer")).unwrap());
        sim.advance(Duration::from_secs(2));
        sim.fire_timers();
    }
    assert_eq!(
        delays,
        [
            "timer a 100ms",
            "timer a 200ms",
            "timer a 400ms",
            "timer a 800ms",
            "timer a 1000ms",
            "timer a 1000ms"
        ]
    );
    sim.advance(Duration::from_secs(30)); // a stable run
    sim.exit("a", crash());
    assert!(sim.take_log().contains(&"timer a 100ms".to_string()));
    // Terminated during its backoff: the timer revives nothing.
    assert_eq!(sim.core.terminate_child("a"), Ok(()));
    sim.advance(Duration::from_secs(2));
    sim.fire_timers();
    assert_eq!(sim.state("a"), Some(ChildState::Stopped));
}

#[test]
fn backoff_shapes_and_jitter() {
    let ms = Duration::from_millis;
    let linear = Backoff::Linear { initial: ms(10), step: ms(5), max: ms(22) };
    assert_eq!([1, 2, 3, 4].map(|n| linear.delay(n, 0.0)), [ms(10), ms(15), ms(20), ms(22)]);
    assert_eq!(Backoff::Fixed(ms(7)).delay(9, 0.9), ms(7));
    let jittered = Backoff::Exponential { initial: ms(100), max: ms(1000), jitter: 0.5 };
    assert_eq!(jittered.delay(2, 0.0), ms(200));
    assert_eq!(jittered.delay(2, 1.0), ms(100));
}

#[test]
fn no_restart_on_a_listed_trap_kind() {
    let mut child = worker("a", Restart::Permanent);
    child.no_restart_on = vec![TrapKind::MemoryLimit];
    let mut sim = Sim::start(sup(Strategy::OneForOne, vec![child]));
    sim.exit(
        "a",
        ExitReason::Trap { trap: TrapKind::MemoryLimit, message: "limit".into(), panic: false },
    );
    assert_eq!(sim.state("a"), Some(ChildState::Stopped));
    assert_eq!(sim.exited, None);
}

#[test]
fn dynamic_children_start_from_the_template_restart_with_their_config_and_stop_together() {
    let mut spec = sup(Strategy::SimpleOneForOne, vec![worker("w", Restart::Permanent)]);
    spec.intensity = 10;
    let mut sim = Sim::start(spec);
    assert_eq!(sim.core.start_dynamic(None, Some(b"one".to_vec())), Ok("w-1".to_string()));
    assert_eq!(sim.core.start_dynamic(None, Some(b"two".to_vec())), Ok("w-2".to_string()));
    sim.run();
    assert_eq!(sim.core.restart_child("w-1"), Err(AdminError::SimpleOneForOne));
    assert_eq!(sim.core.delete_child("w-1"), Err(AdminError::SimpleOneForOne));
    assert_eq!(
        sim.core.start_child(worker("x", Restart::Permanent)),
        Err(AdminError::SimpleOneForOne)
    );
    sim.exit("w-2", crash());
    assert_eq!(sim.incarnation("w-2"), 2);
    match &sim.core.spec("w-2").unwrap().start {
        ChildStart::Plugin(p) => assert_eq!(p.config, b"two"),
        ChildStart::Supervisor(_) => unreachable!(),
    }
    assert_eq!(
        sim.core.count_children(),
        ChildCounts { specs: 1, active: 2, supervisors: 0, workers: 2 }
    );
    sim.take_log();
    sim.core.shutdown();
    sim.run();
    assert_eq!(
        sim.take_log(),
        [
            "stop_all w-1,w-2",
            // Stopped together; reported newest first.
            "exited root/w-2 #2 shutdown",
            "exited root/w-1 #1 shutdown",
            "sup_stopped root shutdown",
            "exit shutdown"
        ]
    );
}

#[test]
fn shutdown_stops_children_newest_first() {
    let mut sim = Sim::start(abc(Strategy::OneForOne));
    sim.take_log();
    sim.core.shutdown();
    sim.run();
    assert_eq!(
        sim.take_log(),
        [
            "stop c",
            "exited root/c #1 shutdown",
            "stop b",
            "exited root/b #1 shutdown",
            "stop a",
            "exited root/a #1 shutdown",
            "sup_stopped root shutdown",
            "exit shutdown"
        ]
    );
    assert_eq!(
        sim.core.start_child(worker("z", Restart::Permanent)),
        Err(AdminError::ShuttingDown)
    );
}

mod properties {
    use super::*;
    use proptest::prelude::{Just, ProptestConfig, any, prop_assert, prop_oneof, proptest};
    use proptest::strategy::Strategy as Gen;

    #[derive(Clone, Debug)]
    enum Input {
        Crash { child: usize, normal: bool, after_ms: u64 },
        Terminate(usize),
        Restart(usize),
        Fire,
    }

    fn input() -> impl Gen<Value = Input> {
        prop_oneof![
            6 => (0..4usize, any::<bool>(), 0..3000u64).prop_map(|(child, normal, after_ms)| Input::Crash { child, normal, after_ms }),
            1 => (0..4usize).prop_map(Input::Terminate),
            1 => (0..4usize).prop_map(Input::Restart),
            1 => Just(Input::Fire),
        ]
    }

    fn restart_type() -> impl Gen<Value = Restart> {
        prop_oneof![Just(Restart::Permanent), Just(Restart::Transient), Just(Restart::Temporary)]
    }

    fn strategy() -> impl Gen<Value = super::Strategy> {
        prop_oneof![
            Just(super::Strategy::OneForOne),
            Just(super::Strategy::OneForAll),
            Just(super::Strategy::RestForOne)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn invariants_hold(
            strategy in strategy(),
            restarts in proptest::collection::vec(restart_type(), 4),
            intensity in 0u32..4,
            backoff in any::<bool>(),
            inputs in proptest::collection::vec(input(), 1..60),
        ) {
            let names = ["a", "b", "c", "d"];
            let children: Vec<ChildSpec> = names.iter().zip(&restarts).map(|(n, r)| {
                let mut spec = worker(n, *r);
                if backoff {
                    spec.backoff = Backoff::Fixed(Duration::from_millis(500));
                }
                spec
            }).collect();
            let temporary: HashSet<&str> = names.iter().zip(&restarts).filter(|(_, r)| **r == Restart::Temporary).map(|(n, _)| *n).collect();
            let mut spec = sup(strategy, children);
            spec.intensity = intensity;
            spec.period = Duration::from_secs(5);
            let mut sim = Sim::start(spec);
            let start_order: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut restart_times: Vec<Duration> = Vec::new();
            let mut terminated: HashSet<String> = HashSet::new();

            for input in inputs {
                if sim.exited.is_some() { break; }
                match input {
                    Input::Crash { child, normal, after_ms } => {
                        sim.advance(Duration::from_millis(after_ms));
                        let name = names[child];
                        if sim.state(name) != Some(ChildState::Running) { continue; }
                        let order_before: Vec<String> = sim.core.which_children().into_iter().map(|c| c.name).collect();
                        sim.exit(name, if normal { ExitReason::Normal } else { crash() });
                        let log = sim.take_log();
                        // A temporary child is never restarted.
                        for t in &temporary {
                            prop_assert!(!log.iter().any(|l| l.starts_with(&format!("start {t} "))), "{log:?}");
                        }
                        // rest_for_one never touches children started before the failed one.
                        // (Giving up stops everyone, which is right.)
                        let gave_up = log.iter().any(|l| l.starts_with("gave_up"));
                        if strategy == super::Strategy::RestForOne && !gave_up {
                            let pos = order_before.iter().position(|n| n == name).unwrap();
                            for earlier in &order_before[..pos] {
                                prop_assert!(!log.iter().any(|l| l == &format!("stop {earlier}") || l.starts_with(&format!("start {earlier} "))), "{log:?}");
                            }
                        }
                        if log.iter().any(|l| l.starts_with("restarting")) {
                            restart_times.push(sim.now);
                        }
                        // Stops within one decision come newest first.
                        let stops: Vec<usize> = log.iter().filter_map(|l| l.strip_prefix("stop ")).filter_map(|n| start_order.iter().position(|s| s == n)).collect();
                        prop_assert!(stops.windows(2).all(|w| w[0] > w[1]), "{log:?}");
                    }
                    Input::Terminate(i) => {
                        if sim.core.terminate_child(names[i]).is_ok() {
                            terminated.insert(names[i].to_string());
                        }
                        sim.run();
                        sim.take_log();
                    }
                    Input::Restart(i) => {
                        if sim.core.restart_child(names[i]).is_ok() {
                            terminated.remove(names[i]);
                        }
                        sim.run();
                        sim.take_log();
                    }
                    Input::Fire => {
                        sim.advance(Duration::from_millis(600));
                        sim.fire_timers();
                        let log = sim.take_log();
                        // A terminated child is never revived by its pending timer. (A
                        // sibling's group restart does start it again, as in OTP, whose
                        // start_children starts every spec in the list.)
                        for t in terminated.iter().filter(|_| strategy == super::Strategy::OneForOne) {
                            prop_assert!(!log.iter().any(|l| l.starts_with(&format!("start {t} "))), "revived {t}: {log:?}");
                        }
                    }
                }
                // Within any window, restarts never exceed the intensity while running.
                if sim.exited.is_none() {
                    for (i, &t) in restart_times.iter().enumerate() {
                        let in_window = restart_times[i..].iter().filter(|&&u| u - t <= Duration::from_secs(5)).count();
                        prop_assert!(in_window <= intensity as usize, "{restart_times:?}");
                    }
                }
            }
        }
    }
}

/// An upgrade of `child` to the plugin file `to` (config unchanged), as the runtime
/// asks it.
fn upgrade(sim: &mut Sim, child: &str, to: &str) -> Result<UpgradeStep, AdminError> {
    sim.log.clear();
    let change = |old: &PluginStart| PluginStart { plugin: to.into(), ..old.clone() };
    let step = sim.core.upgrade_child(child, change, ("v1".into(), "v2".into()));
    sim.run();
    step
}

fn plugin_of(sim: &Sim, child: &str) -> String {
    match &sim.core.spec(child).unwrap().start {
        ChildStart::Plugin(start) => start.plugin.name(),
        ChildStart::Supervisor(_) => unreachable!(),
    }
}

#[test]
fn an_upgrade_stops_the_child_and_starts_the_new_version_counting_no_restart() {
    let mut sim = Sim::start(abc(Strategy::OneForAll));
    assert_eq!(upgrade(&mut sim, "b", "v2.wasm"), Ok(UpgradeStep::Started));
    assert_eq!(
        sim.take_log(),
        [
            "stop b",
            "exited root/b #1 shutdown",
            "start b #2",
            "started root/b #2",
            "upgraded root/b #2 v1 -> v2"
        ],
        "only b, whatever the strategy"
    );
    assert_eq!(sim.admin_results, [Ok(())]);
    assert_eq!(plugin_of(&sim, "b"), "v2.wasm");
    let b = sim.core.which_children().into_iter().find(|c| c.name == "b").unwrap();
    assert_eq!(b.restarts, 0, "an upgrade is no restart");
    assert_eq!(sim.core.upgrading_from("b"), None, "done");
}

#[test]
fn a_failed_upgrade_starts_the_old_spec_again_and_answers_the_failure() {
    let mut sim = Sim::start(abc(Strategy::OneForOne));
    sim.fail_at.insert(("b".into(), 2));
    assert_eq!(upgrade(&mut sim, "b", "bad.wasm"), Ok(UpgradeStep::Started));
    let log = sim.take_log();
    assert_eq!(
        log[..5],
        [
            "stop b",
            "exited root/b #1 shutdown",
            "start b #2",
            "start_failed root/b",
            "upgrade_failed root/b v2, back to v1"
        ]
    );
    assert!(matches!(sim.admin_results.as_slice(), [Err(ExitReason::StartFailed { .. })]));
    assert_eq!(plugin_of(&sim, "b"), "chaos.wasm", "the old spec is back");
    assert_eq!(log[5..], ["start b #3", "started root/b #3"]);
    let b = sim.core.which_children().into_iter().find(|c| c.name == "b").unwrap();
    assert_eq!((b.state, b.restarts), (ChildState::Running, 0));
}

#[test]
fn a_child_not_running_takes_the_new_spec_for_its_next_start() {
    let mut sim = Sim::start(abc(Strategy::OneForOne));
    sim.core.terminate_child("b").unwrap();
    sim.run();
    assert_eq!(upgrade(&mut sim, "b", "v2.wasm"), Ok(UpgradeStep::Stored));
    assert!(sim.take_log().is_empty(), "nothing started");
    assert_eq!(plugin_of(&sim, "b"), "v2.wasm");
    // One waiting for its restart takes it for that restart.
    let mut backoff = abc(Strategy::OneForOne);
    backoff.children[2].backoff = crate::spec::Backoff::Fixed(Duration::from_millis(100));
    let mut sim = Sim::start(backoff);
    sim.exit("c", crash());
    assert_eq!(sim.state("c"), Some(ChildState::Restarting));
    assert_eq!(upgrade(&mut sim, "c", "v2.wasm"), Ok(UpgradeStep::Stored));
    sim.advance(Duration::from_millis(100));
    sim.fire_timers();
    assert_eq!(sim.take_log(), ["start c #2", "started root/c #2"], "no upgrade event");
    assert_eq!(plugin_of(&sim, "c"), "v2.wasm");
    // A missing child, a supervisor child: refused.
    assert_eq!(upgrade(&mut sim, "nobody", "v2.wasm"), Err(AdminError::NotFound));
    let mut nested = Sim::start(sup(
        Strategy::OneForOne,
        vec![ChildSpec::supervisor("sub", abc(Strategy::OneForOne))],
    ));
    assert_eq!(upgrade(&mut nested, "sub", "v2.wasm"), Err(AdminError::NotAWorker));
}

#[test]
fn a_template_upgrade_changes_what_children_start_from_and_gives_back_the_old() {
    let spec = sup(Strategy::SimpleOneForOne, vec![worker("w", Restart::Permanent)]);
    let mut sim = Sim::start(spec);
    let change = |old: &PluginStart| PluginStart { plugin: "v2.wasm".into(), ..old.clone() };
    let before = sim.core.upgrade_template(change).unwrap();
    assert_eq!(before.plugin.name(), "chaos.wasm");
    let name = sim.core.start_dynamic(None, None).unwrap();
    sim.run();
    assert_eq!(plugin_of(&sim, &name), "v2.wasm");
    let mut static_one = Sim::start(abc(Strategy::OneForOne));
    let refused = static_one.core.upgrade_template(|old| old.clone());
    assert!(matches!(refused, Err(AdminError::NotSimpleOneForOne)));
}

#[test]
fn a_group_restart_cut_short_by_a_failed_start_leaves_the_rest_stopped_as_otp_does() {
    // Found by the differential fuzz target: one_for_all, c crashes, b's start fails;
    // OTP leaves c `undefined` (restart_child and delete_child take it), only b is
    // `restarting`. Warden once left c restarting too, refusing both.
    let mut sim = Sim::start(abc(Strategy::OneForAll));
    sim.fail_at.insert(("b".into(), 2));
    sim.exit("c", crash());
    let log = sim.take_log();
    assert_eq!(
        log[6..],
        [
            "start a #2",
            "started root/a #2",
            "start b #2",
            "start_failed root/b",
            "restarting root/b attempt 1 delay 0",
            "timer b 0ms"
        ],
        "c's start was cut short with the batch"
    );
    assert_eq!(sim.state("b"), Some(ChildState::Restarting));
    assert_eq!(sim.state("c"), Some(ChildState::Stopped));
    assert_eq!(sim.core.restart_child("c"), Ok(()));
    sim.run();
    assert_eq!(sim.state("c"), Some(ChildState::Running));
    assert_eq!(sim.incarnation("c"), 2, "no incarnation number skipped");
    // b's retry restarts the whole group, c with it.
    sim.fire_timers();
    assert_eq!([sim.state("a"), sim.state("b"), sim.state("c")], [Some(ChildState::Running); 3]);
}
