//! The differential check of Warden's supervisor core: a random supervisor (strategy,
//! intensity, period, auto-shutdown, children of every restart type) and a random
//! sequence of child exits, failing starts, retries, time passing and admin requests,
//! run through the core (its directives carried out at once, as the runtime does, but
//! for its retry timers, which fire on a `Retry`) and through the reference model in
//! [`crate::otp`]; after every step both must have started (or failed to start) and
//! stopped the same children in the same order, answered the same, and hold the same
//! children in the same states.

use crate::otp::{self, Action, Reason, Refusal};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use warden::ExitReason;
use warden::supervisor::{
    AdminError, AutoShutdown, ChildSpec, ChildState, Core, Directive, PluginStart, Restart,
    Shutdown, Strategy, SupervisorSpec,
};

/// A supervisor and what happens to it.
#[derive(Debug)]
pub struct Input {
    strategy: u8,
    intensity: u8,
    /// Milliseconds, at least 1.
    period: u16,
    auto_shutdown: u8,
    /// Each child's restart type, and whether it is significant (where allowed).
    children: Vec<(u8, bool)>,
    ops: Vec<Op>,
}

/// One thing that happens.
#[derive(Debug)]
pub enum Op {
    /// Child `child` (an index into the first children's ids, so it may be gone)
    /// exits on its own.
    Exit {
        child: u8,
        reason: u8,
    },
    /// Time passes.
    Advance {
        ms: u16,
    },
    Terminate {
        child: u8,
    },
    Restart {
        child: u8,
    },
    Delete {
        child: u8,
    },
    /// The next `n % 4` starts of the child fail.
    FailStarts {
        child: u8,
        n: u8,
    },
    /// The retries of failed restarts due now are delivered (OTP: its
    /// `try_again_restart` casts; Warden: its restart timers).
    Retry,
    /// The supervisor is told to stop.
    Shutdown,
}

// `Arbitrary` by hand, decoding bytes as `#[derive(Arbitrary)]` does (so the seeds
// keep their meaning; only its size hint, which refused inputs under 5 bytes, is not
// written out): the derive needs `arbitrary`'s `derive` feature, and a
// feature of ours on `arbitrary`, which Cranelift depends on too, would make `.ci/run`'s
// fuzz build compile Cranelift and wasmtime again instead of reusing the tests' build.
impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Input {
            strategy: u.arbitrary()?,
            intensity: u.arbitrary()?,
            period: u.arbitrary()?,
            auto_shutdown: u.arbitrary()?,
            children: u.arbitrary()?,
            ops: u.arbitrary()?,
        })
    }

    /// As derived: the last field takes what is left.
    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Input {
            strategy: u.arbitrary()?,
            intensity: u.arbitrary()?,
            period: u.arbitrary()?,
            auto_shutdown: u.arbitrary()?,
            children: u.arbitrary()?,
            ops: Vec::arbitrary_take_rest(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // As derived: the variant from a u32, scaled to their number (8).
        Ok(match (u64::from(u32::arbitrary(u)?) * 8) >> 32 {
            0 => Op::Exit { child: u.arbitrary()?, reason: u.arbitrary()? },
            1 => Op::Advance { ms: u.arbitrary()? },
            2 => Op::Terminate { child: u.arbitrary()? },
            3 => Op::Restart { child: u.arbitrary()? },
            4 => Op::Delete { child: u.arbitrary()? },
            5 => Op::FailStarts { child: u.arbitrary()?, n: u.arbitrary()? },
            6 => Op::Retry,
            _ => Op::Shutdown,
        })
    }
}

const MAX_CHILDREN: usize = 6;
const MAX_OPS: usize = 256;

/// Runs `input` through both; panics at the first difference, saying what differed.
pub fn check(input: &Input) {
    let (strategy, model_strategy) = match input.strategy % 3 {
        0 => (Strategy::OneForOne, otp::Strategy::OneForOne),
        1 => (Strategy::OneForAll, otp::Strategy::OneForAll),
        _ => (Strategy::RestForOne, otp::Strategy::RestForOne),
    };
    let (auto_shutdown, model_auto) = match input.auto_shutdown % 3 {
        0 => (AutoShutdown::Never, otp::AutoShutdown::Never),
        1 => (AutoShutdown::AnySignificant, otp::AutoShutdown::AnySignificant),
        _ => (AutoShutdown::AllSignificant, otp::AutoShutdown::AllSignificant),
    };
    let intensity = u32::from(input.intensity % 5);
    let period_ms = u64::from(input.period.max(1));
    let mut specs = Vec::new();
    let mut model_specs = Vec::new();
    for (i, &(restart, significant)) in input.children.iter().take(MAX_CHILDREN).enumerate() {
        let (restart, model_restart) = match restart % 3 {
            0 => (Restart::Permanent, otp::Restart::Permanent),
            1 => (Restart::Transient, otp::Restart::Transient),
            _ => (Restart::Temporary, otp::Restart::Temporary),
        };
        // OTP refuses a significant permanent child, and one under `never`.
        let significant =
            significant && restart != Restart::Permanent && auto_shutdown != AutoShutdown::Never;
        let id = format!("c{i}");
        let mut spec = ChildSpec::plugin(id.clone(), PluginStart::new("unused.wasm"));
        spec.restart = restart;
        spec.significant = significant;
        specs.push(spec);
        model_specs.push(otp::Spec { id, restart: model_restart, significant });
    }
    if specs.is_empty() {
        return;
    }
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    let mut spec = SupervisorSpec::new(strategy, specs);
    spec.intensity = intensity;
    spec.period = Duration::from_millis(period_ms);
    spec.auto_shutdown = auto_shutdown;
    let mut core = match Core::new("root", &spec, Box::new(|| 0.5)) {
        Ok(core) => core,
        Err(errors) => panic!("a spec OTP takes was refused: {errors:?}"),
    };
    let mut model =
        otp::Supervisor::start(model_strategy, intensity, period_ms, model_auto, model_specs);

    let t0 = Instant::now();
    let mut now_ms = 0u64;
    let mut runtime = Runtime::default();
    core.init(t0);
    runtime.carry_out(&mut core, t0);
    let children: Vec<String> = spec
        .children
        .iter()
        .map(|c| {
            format!("{} {:?}{}", c.id, c.restart, if c.significant { " significant" } else { "" })
        })
        .collect();
    let mut history = vec![format!(
        "init: {strategy:?}, intensity {intensity}, period {period_ms} ms, {auto_shutdown:?}; {}",
        children.join(", ")
    )];
    compare(&mut core, &mut runtime, &mut model, &history);

    for op in input.ops.iter().take(MAX_OPS) {
        if model.exited() {
            break;
        }
        let now = t0 + Duration::from_millis(now_ms);
        let id = |child: &u8| ids[usize::from(*child) % ids.len()].clone();
        history.push(format!("{op:?} at {now_ms} ms"));
        let answers = match op {
            Op::Exit { child, reason } => {
                let id = id(child);
                if !model.is_running(&id) {
                    history.pop();
                    continue;
                }
                let (reason, model_reason) = match reason % 4 {
                    0 => (ExitReason::Normal, Reason::Normal),
                    1 => (ExitReason::Shutdown, Reason::Shutdown),
                    2 => (ExitReason::ShutdownWith { reason: "done".into() }, Reason::ShutdownWith),
                    _ => (ExitReason::Error { message: "boom".into() }, Reason::Error),
                };
                let incarnation = runtime.incarnation(&core, &id);
                core.exited(&id, incarnation, reason, now);
                model.exit(&id, model_reason, now_ms);
                None
            }
            Op::Advance { ms } => {
                now_ms += u64::from(*ms);
                continue;
            }
            Op::Terminate { child } => {
                let id = id(child);
                Some((answer(core.terminate_child(&id)), model.terminate_child(&id)))
            }
            Op::Restart { child } => {
                let id = id(child);
                let asked = answer(core.restart_child(&id));
                runtime.carry_out(&mut core, now);
                // Accepted, its answer is its start's.
                let got = match asked {
                    Ok(()) => match runtime.admin.pop() {
                        Some(Ok(())) => Ok(()),
                        Some(Err(_)) => Err(Refusal::StartFailed),
                        None => panic!("restart_child accepted and never answered"),
                    },
                    refused => refused,
                };
                Some((got, model.restart_child(&id)))
            }
            Op::FailStarts { child, n } => {
                let id = id(child);
                runtime.failing.insert(id.clone(), u32::from(n % 4));
                model.fail_starts(&id, u32::from(n % 4));
                history.pop();
                history.push(format!("the next {} starts of {id} fail", n % 4));
                continue;
            }
            Op::Retry => {
                runtime.retry(&mut core, now);
                model.retry(now_ms);
                None
            }
            Op::Delete { child } => {
                let id = id(child);
                Some((answer(core.delete_child(&id)), model.delete_child(&id)))
            }
            Op::Shutdown => {
                core.shutdown();
                model.shutdown();
                None
            }
        };
        runtime.carry_out(&mut core, now);
        if let Some((got, expected)) = answers {
            assert_eq!(got, expected, "the answers differ after:\n{}", history.join("\n"));
        }
        compare(&mut core, &mut runtime, &mut model, &history);
    }
}

/// The core's admin answer, in the model's terms.
fn answer(result: Result<(), AdminError>) -> Result<(), Refusal> {
    match result {
        Ok(()) => Ok(()),
        Err(AdminError::NotFound) => Err(Refusal::NotFound),
        Err(AdminError::Running) => Err(Refusal::Running),
        Err(AdminError::Restarting) => Err(Refusal::Restarting),
        Err(other) => panic!("an answer OTP never gives here: {other:?}"),
    }
}

/// The runtime's part, done at once: what the core asked for, and what it reported.
#[derive(Default)]
struct Runtime {
    actions: Vec<Action>,
    /// How many of each child's next starts fail.
    failing: HashMap<String, u32>,
    /// The restart timers set and not yet fired, oldest first.
    timers: Vec<(String, u64)>,
    /// The answers of admin starts, newest last.
    admin: Vec<Result<(), ExitReason>>,
}

impl Runtime {
    /// Carries out every directive (a start succeeds unless its child's starts are
    /// set to fail, each stop ends in `shutdown`, a timer is kept for `Retry`),
    /// recording starts, stops and the supervisor's exit.
    fn carry_out(&mut self, core: &mut Core, now: Instant) {
        while let Some(directive) = core.pop() {
            match directive {
                Directive::Start { child, cause, .. } => {
                    let result = match self.failing.get_mut(&child).filter(|n| **n > 0) {
                        Some(n) => {
                            *n -= 1;
                            self.actions.push(Action::StartFailed(child.clone()));
                            Err(ExitReason::StartFailed { message: "refused".into() })
                        }
                        None => {
                            self.actions.push(Action::Start(child.clone()));
                            Ok(())
                        }
                    };
                    if let Some(answer) = core.started(&child, result, cause, now) {
                        self.admin.push(answer);
                    }
                }
                Directive::Stop { child, shutdown } => {
                    self.actions.push(Action::Stop(child.clone()));
                    let reason = match shutdown {
                        Shutdown::BrutalKill => {
                            ExitReason::Killed { cause: warden::KillCause::BrutalKill }
                        }
                        _ => ExitReason::Shutdown,
                    };
                    core.stopped(&child, reason);
                }
                Directive::StopAll { .. } => panic!("StopAll is for dynamic children only"),
                Directive::RestartAfter { child, generation, .. } => {
                    self.timers.push((child, generation));
                }
                Directive::Exit(reason) => {
                    assert_eq!(reason, ExitReason::Shutdown, "a supervisor ends with `shutdown`");
                    self.actions.push(Action::Exit);
                }
                Directive::Forget { .. } | Directive::Emit(_) => {}
            }
        }
    }

    /// Fires the timers set, and those they set, in order.
    fn retry(&mut self, core: &mut Core, now: Instant) {
        while !self.timers.is_empty() {
            let (child, generation) = self.timers.remove(0);
            core.timer(&child, generation, now);
            self.carry_out(core, now);
        }
    }

    /// The incarnation the core gives `child` now.
    fn incarnation(&self, core: &Core, child: &str) -> u64 {
        core.which_children().iter().find(|c| c.name == child).map_or(0, |c| c.incarnation)
    }
}

/// Both did the same since the last comparison, and hold the same children.
fn compare(
    core: &mut Core,
    runtime: &mut Runtime,
    model: &mut otp::Supervisor,
    history: &[String],
) {
    let got = std::mem::take(&mut runtime.actions);
    let expected = model.take_actions();
    assert_eq!(got, expected, "the actions differ after:\n{}", history.join("\n"));
    if model.exited() {
        return;
    }
    let children: Vec<(String, otp::State, u64)> = core
        .which_children()
        .into_iter()
        .map(|c| {
            let state = match c.state {
                ChildState::Running => otp::State::Running,
                ChildState::Stopped => otp::State::Stopped,
                ChildState::Restarting => otp::State::Restarting,
            };
            (c.name, state, c.incarnation)
        })
        .collect();
    assert_eq!(children, model.children(), "the children differ after:\n{}", history.join("\n"));
}
