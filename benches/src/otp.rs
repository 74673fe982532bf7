//! Beside OTP: the scenarios where Erlang/OTP's `supervisor` and `gen_server` are the
//! yardstick, measured the same way on both sides in one run. The OTP side is
//! `benches/otp/warden_bench.erl`, compiled with `erlc` at run time and run in a VM of
//! its own per scenario, right before Warden's side; without `erl` and `erlc` on the
//! PATH each row says "OTP not installed" and Warden's side runs all the same.
//!
//! Both sides: a tenth of the samples more as warm-up, left out; percentiles computed
//! here, from every sample, by the same code.

use crate::{Scenario, chaos_child, micros, never_giving_up, next_event, scenario};
use anyhow::{Context as _, Result};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};
use warden::events::Event;
use warden::runtime::Host;
use warden::supervisor::{ChildSpec, PluginStart, Strategy, SupervisorSpec};

/// What a row says in place of OTP's figures where there are none.
const NOT_INSTALLED: &str = "OTP not installed";

/// The scenarios.
const NAMES: &[&str] = &[
    "otp_call_64B",
    "otp_restart",
    "otp_restart_all_100",
    "otp_crash_loop",
    "otp_sends",
    "otp_start_dynamic",
];

/// How much each scenario does.
pub(crate) struct Sizes {
    pub calls: usize,
    pub restarts: usize,
    pub group_restarts: usize,
    pub crash_loop_seconds: u64,
    pub sends: usize,
    pub dynamic_children: usize,
}

/// Runs the scenarios `want` names, each on both sides.
pub(crate) fn run(
    want: impl Fn(&str) -> bool,
    sizes: &Sizes,
    runtime: &tokio::runtime::Runtime,
    parallel: &tokio::runtime::Runtime,
) -> Result<Vec<Scenario>> {
    if !NAMES.iter().any(|name| want(name)) {
        return Ok(Vec::new());
    }
    // Installed or not; and compiled, if it could be.
    let (installed, erlang) = match Erlang::compile() {
        Ok(Some(erlang)) => (true, Some(erlang)),
        Ok(None) => {
            eprintln!("beside OTP: no erlc on the PATH, so the OTP rows say {NOT_INSTALLED:?}");
            (false, None)
        }
        Err(e) => {
            eprintln!("beside OTP: {e:#}");
            (true, None)
        }
    };
    let erlang = erlang.as_ref();
    let mut scenarios = Vec::new();
    if want("otp_call_64B") {
        let n = sizes.calls;
        let theirs = theirs(erlang, "call_64B", n as u64, |o| o.samples("call_64B"));
        let ours = runtime.block_on(async { tokio::spawn(call_64b(n)).await? })?;
        scenarios.push(beside(
            "otp_call_64B",
            ours,
            "OTP gen_server:call of 64 B to a registered child",
            theirs,
        ));
    }
    if want("otp_restart") {
        let n = sizes.restarts;
        let theirs = theirs(erlang, "restart", n as u64, |o| o.samples("restart"));
        let ours = runtime.block_on(restart(Strategy::OneForOne, 1, n))?;
        scenarios.push(beside(
            "otp_restart",
            ours,
            "OTP one_for_one: crashing call -> the new child answers a call",
            theirs,
        ));
    }
    if want("otp_restart_all_100") {
        let n = sizes.group_restarts;
        let theirs = theirs(erlang, "restart_all_100", n as u64, |o| o.samples("restart_all_100"));
        let ours = runtime.block_on(restart(Strategy::OneForAll, 100, n))?;
        scenarios.push(beside(
            "otp_restart_all_100",
            ours,
            "OTP one_for_all of 100: crashing call -> the 100th new child answers",
            theirs,
        ));
    }
    if want("otp_crash_loop") {
        let seconds = sizes.crash_loop_seconds;
        let theirs = theirs(erlang, "crash_loop", seconds, |o| o.samples("crash_loop"));
        let ours = runtime.block_on(crash_loop(Duration::from_secs(seconds)))?;
        let mut s = beside(
            "otp_crash_loop",
            ours,
            "OTP: one child crashing back to back, each restart as in otp_restart",
            theirs,
        );
        s.note = Some(format!(
            "{seconds} s of back-to-back crashes under a supervisor allowing 10^9 restarts \
             a minute on both sides"
        ));
        scenarios.push(s);
    }
    if want("otp_sends") {
        let n = sizes.sends;
        let theirs = theirs(erlang, "sends", n as u64, |o| o.figure("sends"));
        let ours = parallel.block_on(async { tokio::spawn(sends(n)).await? })?;
        let mut s = value_beside(
            "otp_sends",
            "msg/s",
            ours,
            "OTP gen_server:cast of 64 B to one child, then a call",
            theirs,
        );
        s.note = Some(format!(
            "{n} sends of 64 B to one child, then a call it answers once all are handled; \
             the median of 3 runs; ratio is Warden / OTP (higher is faster)"
        ));
        scenarios.push(s);
    }
    if want("otp_start_dynamic") {
        let n = sizes.dynamic_children;
        let theirs = theirs(erlang, "start_dynamic", n as u64, |o| {
            Ok((o.figure("start_dynamic_ms")?, o.figure("start_dynamic_bytes_per_child")?))
        });
        let ours = parallel.block_on(crate::start_children(n, Some(Duration::ZERO)))?;
        anyhow::ensure!(
            ours.names.len() == n,
            "only {} of {n} dynamic children started: {:?}",
            ours.names.len(),
            ours.refused
        );
        parallel.block_on(ours.host.shutdown());
        let (time, bytes) = theirs.unzip();
        let mut s = value_beside(
            "otp_start_dynamic",
            "ms",
            ours.start_ms,
            "OTP supervisor:start_child of idle gen_servers",
            time,
        );
        s.note = Some(format!(
            "{n} dynamic children of one simple_one_for_one supervisor, started one after \
             another (Warden's hibernating)"
        ));
        scenarios.push(s);
        let mut s = value_beside(
            "otp_bytes_per_child",
            "B",
            ours.rss_per_child,
            "OTP: the VM's resident growth per idle gen_server",
            bytes,
        );
        s.note = Some(format!("resident memory grown per child after starting {n}"));
        scenarios.push(s);
    }
    if installed {
        // OTP is installed: a row without its figures is one its side failed.
        for s in scenarios.iter_mut().filter(|s| s.baseline == Some(NOT_INSTALLED)) {
            s.baseline = Some("OTP side failed (see its error above)");
        }
    }
    Ok(scenarios)
}

/// What `read` takes from the OTP side's run of `scenario`; `None` where OTP is not
/// installed or its side failed, which is printed: Warden's side and the rest of the
/// run are kept.
fn theirs<T>(
    erlang: Option<&Erlang>,
    scenario: &str,
    n: u64,
    read: impl FnOnce(Output) -> Result<T>,
) -> Option<T> {
    match erlang?.run(scenario, n).and_then(read) {
        Ok(figures) => Some(figures),
        Err(e) => {
            eprintln!("beside OTP: {e:#}");
            None
        }
    }
}

/// A latency row: Warden's samples beside OTP's, or beside nothing.
fn beside(
    name: &'static str,
    ours: Vec<f64>,
    baseline: &'static str,
    theirs: Option<Vec<f64>>,
) -> Scenario {
    match theirs {
        Some(theirs) => scenario(name, "us", ours, baseline, theirs),
        None => scenario(name, "us", ours, NOT_INSTALLED, Vec::new()),
    }
}

/// A row of one figure each side; the ratio is Warden's over OTP's.
fn value_beside(
    name: &'static str,
    unit: &'static str,
    ours: f64,
    baseline: &'static str,
    theirs: Option<f64>,
) -> Scenario {
    Scenario {
        name,
        unit,
        samples: 1,
        warden_value: Some(ours),
        baseline: Some(if theirs.is_some() { baseline } else { NOT_INSTALLED }),
        baseline_value: theirs,
        ratio_value: theirs.map(|theirs| ours / theirs),
        ..Scenario::default()
    }
}

/// The embedder calls a child with 64 B and awaits its reply, from a task.
async fn call_64b(samples: usize) -> Result<Vec<f64>> {
    let echo = ChildSpec::plugin("echo", PluginStart::new(warden_tests::ECHO));
    let (host, _events) = never_giving_up(Strategy::OneForOne, vec![echo]).await?;
    let payload = vec![7u8; 64];
    let mut us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let reply = host.call("root/echo", payload.clone(), Duration::from_secs(5)).await?;
        let elapsed = t.elapsed();
        anyhow::ensure!(reply == payload, "echo answered {} bytes", reply.len());
        if i >= samples / 10 {
            us.push(micros(elapsed));
        }
    }
    host.shutdown().await;
    Ok(us)
}

/// `children` chaos children under `strategy`: from the call that makes the middle one
/// trap to the last one's answer to a call in its new incarnation.
async fn restart(strategy: Strategy, children: usize, samples: usize) -> Result<Vec<f64>> {
    let specs = (0..children).map(|i| chaos_child(&format!("c{i}"))).collect();
    let (host, mut events) = never_giving_up(strategy, specs).await?;
    let (crash, last) = (format!("root/c{}", children / 2), format!("root/c{}", children - 1));
    let mut us = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let elapsed = crash_and_answer(&host, &mut events, &crash, &last).await?;
        if i >= samples / 10 {
            us.push(micros(elapsed));
        }
    }
    host.shutdown().await;
    Ok(us)
}

/// One chaos child trapping back to back for `length`, under a supervisor allowing
/// 10^9 restarts a minute: every restart, timed as in [`restart`].
async fn crash_loop(length: Duration) -> Result<Vec<f64>> {
    let host = Host::builder().build()?;
    let mut spec = SupervisorSpec::new(Strategy::OneForOne, vec![chaos_child("c")]);
    (spec.intensity, spec.period) = (1_000_000_000, Duration::from_secs(60));
    host.start(spec).await?;
    let mut events = host.subscribe();
    let until = Instant::now() + length;
    let mut us = Vec::new();
    while Instant::now() < until {
        us.push(micros(crash_and_answer(&host, &mut events, "root/c", "root/c").await?));
    }
    host.shutdown().await;
    Ok(us)
}

/// Makes `crash` trap with a call, awaits `last`'s next `child_started` and calls it:
/// the time from the crashing call to that answer.
async fn crash_and_answer(
    host: &Host,
    events: &mut warden::Events,
    crash: &str,
    last: &str,
) -> Result<Duration> {
    let t = Instant::now();
    let trapped = host.call(crash, b"trap".to_vec(), Duration::from_secs(5)).await;
    anyhow::ensure!(trapped.is_err(), "{crash} answered a trap: {trapped:?}");
    next_event(events, |e| matches!(e, Event::ChildStarted { path, .. } if path == last)).await?;
    let reply = host.call(last, b"echo:".to_vec(), Duration::from_secs(5)).await?;
    let elapsed = t.elapsed();
    anyhow::ensure!(reply.is_empty(), "{last} answered {reply:?} to an empty echo");
    Ok(elapsed)
}

/// `n` sends of 64 B from the embedder to one child, then a call, which it answers
/// once it has handled them all: messages per second, the median of three runs.
async fn sends(n: usize) -> Result<f64> {
    let mut start = PluginStart::new(warden_tests::ECHO);
    start.mailbox.capacity = n + 16;
    start.mailbox.max_queued_bytes = (n + 16) * 64;
    let (host, _events) =
        never_giving_up(Strategy::OneForOne, vec![ChildSpec::plugin("echo", start)]).await?;
    let payload = vec![7u8; 64];
    let mut rates = Vec::new();
    for _ in 0..3 {
        let before = host.message_stats().handled;
        let t = Instant::now();
        for _ in 0..n {
            host.send("root/echo", payload.clone())?;
        }
        host.call("root/echo", Vec::new(), Duration::from_secs(60)).await?;
        let elapsed = t.elapsed();
        let handled = host.message_stats().handled - before;
        anyhow::ensure!(handled == n as u64 + 1, "{handled} of {n} sends and a call handled");
        rates.push(n as f64 / elapsed.as_secs_f64());
    }
    host.shutdown().await;
    rates.sort_by(f64::total_cmp);
    Ok(rates[1])
}

/// The OTP side, compiled into a directory of its own.
struct Erlang {
    dir: tempfile::TempDir,
}

/// What one run of the OTP side printed.
struct Output {
    scenario: String,
    samples: HashMap<String, Vec<f64>>,
    figures: HashMap<String, f64>,
}

impl Erlang {
    /// Compiles the OTP side, or `None` where `erlc` is not on the PATH.
    fn compile() -> Result<Option<Self>> {
        let dir = tempfile::tempdir()?;
        let source = dir.path().join("warden_bench.erl");
        std::fs::write(&source, include_str!("../otp/warden_bench.erl"))?;
        let compiled = match Command::new("erlc").arg("-o").arg(dir.path()).arg(&source).output() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            compiled => compiled.context("cannot run erlc")?,
        };
        anyhow::ensure!(
            compiled.status.success(),
            "erlc could not compile benches/otp/warden_bench.erl ({}): {}",
            compiled.status,
            String::from_utf8_lossy(&compiled.stderr)
        );
        Ok(Some(Self { dir }))
    }

    /// Runs `scenario` of size `n` in a VM of its own.
    fn run(&self, scenario: &str, n: u64) -> Result<Output> {
        let output = Command::new("erl")
            .args(["-noshell", "-pa"])
            .arg(self.dir.path())
            .args(["-run", "warden_bench", "main", scenario, &n.to_string()])
            .output()
            .context("cannot run erl")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "the OTP side of {scenario} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut parsed = Output {
            scenario: scenario.to_owned(),
            samples: HashMap::new(),
            figures: HashMap::new(),
        };
        for line in stdout.lines() {
            let mut words = line.split_whitespace();
            let (kind, name) = (words.next(), words.next());
            let numbers: Result<Vec<f64>, _> = words.map(str::parse).collect();
            let numbers =
                numbers.with_context(|| format!("the OTP side of {scenario} printed {line:?}"))?;
            anyhow::ensure!(!numbers.is_empty(), "the OTP side of {scenario} printed {line:?}");
            match (kind, name, numbers.as_slice()) {
                (Some("samples"), Some(name), _) => {
                    parsed.samples.insert(name.to_owned(), numbers);
                }
                (Some("figure"), Some(name), &[value]) => {
                    parsed.figures.insert(name.to_owned(), value);
                }
                _ => anyhow::bail!("the OTP side of {scenario} printed {line:?}"),
            }
        }
        Ok(parsed)
    }
}

impl Output {
    fn samples(mut self, name: &str) -> Result<Vec<f64>> {
        let samples = self.samples.remove(name);
        samples.with_context(|| format!("the OTP side of {} gave no {name} samples", self.scenario))
    }

    fn figure(&self, name: &str) -> Result<f64> {
        let figure = self.figures.get(name).copied();
        figure.with_context(|| format!("the OTP side of {} gave no {name} figure", self.scenario))
    }
}
