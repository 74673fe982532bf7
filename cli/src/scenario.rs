//! `warden test`: a plugin project's integration tests, in any plugin language.
//!
//! A scenario is a TOML file of steps, run in order against a fresh tree started from
//! the project's manifest (state in memory, so every scenario starts from nothing):
//!
//! ```toml
//! [[step]]
//! command = { cmd = "call", to = "root/hello", payload = "incr" }
//! reply = { ok = true, result = "1" }
//!
//! [[step]]
//! event = { event = "child_started", path = "root/hello", incarnation = 2 }
//! within = "2s"
//! ```
//!
//! A `command` is a control command, exactly as `warden run` reads it on stdin (every
//! command but `subscribe` and `shutdown`); its reply must be like `reply` (default
//! `{ ok = true }`). An `event` step waits for an event like the one given, published
//! since the commands before it began (the first command after the last event step)
//! and after the last event a step matched: an event a command caused is not missed
//! when it came before the step (a restart announced before the crash's reply), and
//! one from before those commands is never taken for it. "Like" means: every key given
//! has that value, in nested tables too; keys not given are not looked at.

use crate::control;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warden::events::Received;
use warden::runtime::Host;
use warden::sandbox::Engine;
use warden::supervisor::SupervisorSpec;

/// Runs a plugin project's scenarios against its manifest.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The scenarios (TOML). Default: every `.toml` file in the `tests` folder beside
    /// the manifest.
    scenarios: Vec<PathBuf>,
    /// The manifest whose tree each scenario runs against.
    #[arg(long, short, default_value = "warden.toml")]
    manifest: PathBuf,
    /// How long a step may wait for its reply or event unless it says (`within`); a
    /// call's step waits at least its `timeout_ms` and a second more.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,
    #[command(flatten)]
    cache: crate::cache::CacheArgs,
}

/// One scenario file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[serde(default)]
    step: Vec<Step>,
}

/// One step, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// What the step is for, shown when it fails.
    name: Option<String>,
    command: Option<serde_json::Map<String, Value>>,
    reply: Option<Value>,
    event: Option<Value>,
    within: Option<String>,
}

/// A step, checked.
#[derive(Debug)]
enum Action {
    Command { line: Vec<u8>, reply: Value },
    Event(Value),
}

#[derive(Debug)]
struct Checked {
    what: String,
    action: Action,
    within: Duration,
}

/// Why a scenario did not pass.
#[derive(Debug)]
struct Failure {
    /// The step (from 1), or none when the tree did not start.
    step: Option<usize>,
    message: String,
}

pub(crate) fn main(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden test: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(args));
    runtime.shutdown_background();
    code
}

async fn run(args: Args) -> ExitCode {
    let manifest = &args.manifest;
    let spec = match warden::manifest::load(manifest) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let base = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let files = match scenario_files(&args.scenarios, &base) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("warden test: {e}");
            return ExitCode::from(2);
        }
    };
    let mut scenarios = Vec::new();
    let mut bad = false;
    for file in files {
        match load(&file, args.timeout) {
            Ok(steps) => scenarios.push((file, steps)),
            Err(problems) => {
                bad = true;
                for problem in problems {
                    eprintln!("{}: {problem}", file.display());
                }
            }
        }
    }
    if bad {
        return ExitCode::from(2);
    }
    // One engine for every scenario, and each plugin compiled once, before the first.
    let mut config = crate::engine_for(&spec);
    config.cache_dir = args.cache.dir();
    let engine = match Engine::with_config(config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("warden test: {e}");
            return ExitCode::from(1);
        }
    };
    let mut spec = spec;
    match Host::builder().shared_engine(engine.clone()).build() {
        Ok(loader) => {
            let problems = crate::compile_with_progress(&loader, &mut spec);
            if !problems.is_empty() {
                for problem in problems {
                    eprintln!("{}: {problem}", manifest.display());
                }
                return ExitCode::from(2);
            }
        }
        Err(e) => {
            eprintln!("warden test: {e}");
            return ExitCode::from(1);
        }
    }
    let count = |n: usize| if n == 1 { "1 scenario".to_owned() } else { format!("{n} scenarios") };
    println!("running {} against {}", count(scenarios.len()), manifest.display());
    let mut failed = 0;
    for (file, steps) in &scenarios {
        let started = Instant::now();
        match scenario(&engine, spec.clone(), &base, steps).await {
            Ok(()) => println!(
                "scenario {} ... ok ({} steps, {:.2} s)",
                file.display(),
                steps.len(),
                started.elapsed().as_secs_f64()
            ),
            Err(failure) => {
                failed += 1;
                println!("scenario {} ... FAILED", file.display());
                let at = match failure.step {
                    Some(n) => format!("step {n} ({})", steps[n - 1].what),
                    None => "start".to_owned(),
                };
                println!("  {at}: {}", failure.message.replace('\n', "\n  "));
            }
        }
    }
    let passed = scenarios.len() - failed;
    println!("{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// The scenarios named, or every `.toml` in `tests/` beside the manifest, in order.
fn scenario_files(named: &[PathBuf], base: &Path) -> Result<Vec<PathBuf>, String> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let dir = base.join("tests");
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("no scenarios: {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no scenarios: no .toml file in {}", dir.display()));
    }
    Ok(files)
}

/// A scenario file's steps, or every problem it has (each with its place).
fn load(file: &Path, timeout: Duration) -> Result<Vec<Checked>, Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read: {e}")])?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| vec![e.to_string()])?;
    if scenario.step.is_empty() {
        return Err(vec!["no steps: a scenario is a list of [[step]] tables".into()]);
    }
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (i, step) in scenario.step.into_iter().enumerate() {
        match check(i + 1, step, timeout) {
            Ok(step) => steps.push(step),
            Err(problem) => problems.push(format!("step {}: {problem}", i + 1)),
        }
    }
    if problems.is_empty() { Ok(steps) } else { Err(problems) }
}

fn check(n: usize, step: Step, timeout: Duration) -> Result<Checked, String> {
    let within = match &step.within {
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("within: {text:?} is not a duration: {e}"))?,
        None => timeout,
    };
    // A call's own timeout (5 s unless it says) is an answer the step may expect.
    let call_timeout = match step.command.as_ref().map(|c| (c.get("cmd"), c.get("timeout_ms"))) {
        Some((Some(Value::String(cmd)), timeout_ms)) if cmd == "call" => {
            Duration::from_millis(timeout_ms.and_then(Value::as_u64).unwrap_or(5000))
        }
        _ => Duration::ZERO,
    };
    let within = if step.within.is_some() {
        within
    } else {
        within.max(call_timeout.saturating_add(Duration::from_secs(1)))
    };
    let (action, what) = match (step.command, step.event) {
        (Some(mut command), None) => {
            let cmd = match command.get("cmd") {
                Some(Value::String(cmd)) => cmd.clone(),
                _ => return Err("command: needs `cmd`, e.g. { cmd = \"call\", ... }".into()),
            };
            if cmd == "subscribe" || cmd == "shutdown" {
                return Err(format!("command: `{cmd}` is not taken in a scenario"));
            }
            command.entry("id").or_insert_with(|| Value::from(n));
            let to = ["to", "child", "supervisor"].iter().find_map(|k| command.get(*k));
            let what = match to.and_then(Value::as_str) {
                Some(to) => format!("{cmd} {to}"),
                None => cmd,
            };
            let line = serde_json::to_vec(&command).map_err(|e| e.to_string())?;
            let reply = step.reply.unwrap_or_else(|| serde_json::json!({ "ok": true }));
            (Action::Command { line, reply }, what)
        }
        (None, Some(event)) => {
            if step.reply.is_some() {
                return Err("reply: only a command step has a reply".into());
            }
            if !event.is_object() {
                return Err("event: must be a table, e.g. { event = \"child_started\" }".into());
            }
            let what = match event.get("event").and_then(Value::as_str) {
                Some(kind) => format!("event {kind}"),
                None => "event".to_owned(),
            };
            (Action::Event(event), what)
        }
        (Some(_), Some(_)) => return Err("a step has a command or an event, not both".into()),
        (None, None) => return Err("a step needs a `command` or an `event`".into()),
    };
    let what = match step.name {
        Some(name) => format!("{what}: {name}"),
        None => what,
    };
    Ok(Checked { what, action, within })
}

/// Runs one scenario on a fresh host; the tree is shut down however it ends.
async fn scenario(
    engine: &Engine,
    spec: SupervisorSpec,
    base: &Path,
    steps: &[Checked],
) -> Result<(), Failure> {
    let host = Host::builder()
        .shared_engine(engine.clone())
        .build()
        .map_err(|e| Failure { step: None, message: e.to_string() })?;
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    let mut events = host.subscribe();
    tokio::spawn(async move {
        let mut last = 0;
        while let Some(received) = events.next().await {
            let line = match received {
                Received::Event(record) => {
                    last = record.seq;
                    serde_json::to_value(crate::line::Line::Event(record))
                }
                Received::Missed(count) => {
                    last += count;
                    Ok(serde_json::json!({ "event": "events_dropped", "count": count }))
                }
            };
            if lines_tx.send((last, line.unwrap_or(Value::Null))).is_err() {
                break;
            }
        }
    });
    if let Err(e) = host.start(spec).await {
        return Err(Failure { step: None, message: format!("the tree did not start: {e}") });
    }
    let mut seen = Seen { lines: Vec::new(), cursor: 0, since: 0, marked: false };
    let mut outcome = Ok(());
    for (i, step) in steps.iter().enumerate() {
        let result = match &step.action {
            Action::Command { line, reply } => {
                // The first command since the last event step: what the next event
                // step waits for comes after this.
                if !seen.marked {
                    seen.since = host.last_event_seq();
                    seen.marked = true;
                }
                command(&host, base, line, reply, step.within).await
            }
            Action::Event(like) => seen.wait(&mut lines, like, step.within).await,
        };
        if let Err(message) = result {
            outcome = Err(Failure { step: Some(i + 1), message });
            break;
        }
    }
    host.shutdown().await;
    outcome
}

async fn command(
    host: &Host,
    base: &Path,
    line: &[u8],
    expected: &Value,
    within: Duration,
) -> Result<(), String> {
    let answer = tokio::time::timeout(within, control::answer(host, base, line))
        .await
        .map_err(|_| format!("no reply within {}", humantime::format_duration(within)))?;
    let mut reply = serde_json::to_value(answer).map_err(|e| e.to_string())?;
    if let Some(reply) = reply.as_object_mut() {
        // Timestamps are never what a scenario means.
        reply.remove("ts_us");
        reply.remove("time");
    }
    if like(&reply, expected) {
        Ok(())
    } else {
        Err(format!("expected a reply like {expected}\n     got {reply}"))
    }
}

/// The events a scenario has received (each with its number), and where the next
/// `event` step looks from.
struct Seen {
    lines: Vec<(u64, Value)>,
    /// The first event not yet looked at: the one after the last match.
    cursor: usize,
    /// The last event published before the first command since the last event step:
    /// the next event step looks only at later ones.
    since: u64,
    /// Whether `since` was set since the last event step.
    marked: bool,
}

impl Seen {
    /// Waits for an event like `like` from the cursor on; past it on success.
    async fn wait(
        &mut self,
        incoming: &mut mpsc::UnboundedReceiver<(u64, Value)>,
        like_this: &Value,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        let since = self.since;
        let mut looked = self.cursor;
        loop {
            let found = self.lines[looked..]
                .iter()
                .position(|(seq, line)| *seq > since && like(line, like_this));
            if let Some(at) = found {
                self.cursor = looked + at + 1;
                self.marked = false;
                return Ok(());
            }
            looked = self.lines.len();
            match tokio::time::timeout_at(deadline, incoming.recv()).await {
                Ok(Some(line)) => self.lines.push(line),
                Ok(None) => return Err(self.missing(like_this, "the tree stopped first")),
                Err(_) => {
                    let waited = format!("none within {}", humantime::format_duration(within));
                    return Err(self.missing(like_this, &waited));
                }
            }
        }
    }

    /// What a failed `event` step says: what it waited for, and what came instead.
    fn missing(&self, like_this: &Value, why: &str) -> String {
        const SHOWN: usize = 20;
        let looked_at = self.lines[self.cursor..].iter().filter(|(seq, _)| *seq > self.since);
        let since: Vec<&(u64, Value)> = looked_at.collect();
        let mut text = format!("expected an event like {like_this}: {why}");
        let after = match (self.cursor, self.since) {
            (0, 0) => "so far",
            (_, 0) => "after the last one matched",
            _ => "since the step's commands began",
        };
        if since.is_empty() {
            text += &format!("\nno event {after}");
        } else {
            text += &format!("\nthe {} events {after}:", since.len());
            let skipped = since.len().saturating_sub(SHOWN);
            if skipped > 0 {
                text += &format!("\n  ({skipped} earlier ones not shown)");
            }
            for (_, line) in &since[skipped..] {
                let mut line = line.clone();
                if let Some(line) = line.as_object_mut() {
                    line.remove("time");
                }
                text += &format!("\n  {line}");
            }
        }
        text
    }
}

/// Whether `actual` is like `expected`: every key of an expected table has a like
/// value in `actual`'s; arrays are alike item by item; anything else is equal.
fn like(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|found| like(found, value))),
        (Value::Array(actual), Value::Array(expected)) => {
            actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| like(a, e))
        }
        // TOML has integers and floats; JSON numbers compare by value.
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn like_looks_only_at_the_keys_given() {
        let event = json!({ "event": "child_exited", "path": "root/a",
            "reason": { "kind": "trap", "trap": "unreachable", "message": "m" } });
        assert!(like(&event, &json!({ "event": "child_exited" })));
        assert!(like(&event, &json!({ "reason": { "kind": "trap" } })));
        assert!(!like(&event, &json!({ "reason": { "kind": "error" } })));
        assert!(!like(&event, &json!({ "incarnation": 1 })));
        assert!(like(&json!({ "n": 2 }), &json!({ "n": 2.0 })));
        assert!(!like(&json!({ "a": [1, 2] }), &json!({ "a": [1] })));
    }

    #[test]
    fn bad_steps_are_named_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "[[step]]\ncommand = { to = \"root/a\" }\n\n[[step]]\nevent = { event = \"x\" }\n\
             reply = { ok = true }\n\n[[step]]\nwithin = \"soon\"\nevent = {}\n\n[[step]]\n",
        )
        .unwrap();
        let problems = load(&file, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            problems,
            [
                "step 1: command: needs `cmd`, e.g. { cmd = \"call\", ... }",
                "step 2: reply: only a command step has a reply",
                "step 3: within: \"soon\" is not a duration: expected number at 0",
                "step 4: a step needs a `command` or an `event`",
            ]
        );
        std::fs::write(&file, "[[step]]\ncomand = {}\n").unwrap();
        let problems = load(&file, Duration::from_secs(1)).unwrap_err();
        assert!(problems[0].contains("unknown field `comand`"), "{problems:?}");
        assert!(problems[0].contains("line 2"), "{problems:?}");
    }
}
