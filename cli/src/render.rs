//! What the CLI shows people: a manifest's tree (`warden tree`) and the live event
//! log of `warden run --events pretty`.

use crate::line::{Line, Said};
use std::fmt::Write as _;
use std::time::Duration;
use warden::escape::printable;
use warden::events::Event;
use warden::sandbox::{GuestStream, HeartbeatPolicy, LogLevel, Network, Shutdown};
use warden::supervisor::{Backoff, ChildSpec, ChildStart, Placement, Restart, SupervisorSpec};

/// The tree as the manifest defines it, one line per node, with its settings.
pub(crate) fn tree(spec: &SupervisorSpec) -> String {
    let mut out = format!("root  {}\n", supervisor_flags(spec));
    children(spec, "", &mut out);
    out
}

fn supervisor_flags(spec: &SupervisorSpec) -> String {
    let mut flags = format!(
        "supervisor {}, intensity {} in {}",
        serde_name(&spec.strategy),
        spec.intensity,
        human(spec.period)
    );
    if spec.auto_shutdown != Default::default() {
        let _ = write!(flags, ", auto_shutdown {}", serde_name(&spec.auto_shutdown));
    }
    flags
}

fn children(spec: &SupervisorSpec, indent: &str, out: &mut String) {
    let dynamic = spec.strategy == warden::supervisor::Strategy::SimpleOneForOne;
    for (i, child) in spec.children.iter().enumerate() {
        let last = i + 1 == spec.children.len();
        let (branch, next) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
        let name = if dynamic { format!("{} (template)", child.id) } else { child.id.clone() };
        let _ = writeln!(out, "{indent}{branch}{name}  {}", describe(child));
        if let ChildStart::Supervisor(sub) = &child.start {
            children(sub, &format!("{indent}{next}"), out);
        }
    }
}

fn describe(child: &ChildSpec) -> String {
    let mut parts = Vec::new();
    match &child.start {
        ChildStart::Plugin(p) => {
            let file = match p.plugin.file().and_then(|f| f.file_name()) {
                Some(name) => name.to_string_lossy().into_owned(),
                None => p.plugin.name(),
            };
            parts.push(format!("worker {file}"));
        }
        ChildStart::Supervisor(sub) => parts.push(supervisor_flags(sub)),
    }
    if child.restart != Restart::Permanent {
        parts.push(serde_name(&child.restart));
    }
    parts.push(match child.shutdown {
        Shutdown::BrutalKill => "shutdown brutal_kill".into(),
        Shutdown::Infinity => "shutdown infinity".into(),
        Shutdown::Timeout(t) => format!("shutdown {}", human(t)),
    });
    if child.significant {
        parts.push("significant".into());
    }
    match child.backoff {
        Backoff::None => {}
        Backoff::Fixed(d) => parts.push(format!("backoff {}", human(d))),
        Backoff::Linear { initial, step, max } => parts.push(format!(
            "backoff linear {} +{} ≤{}",
            human(initial),
            human(step),
            human(max)
        )),
        Backoff::Exponential { initial, max, jitter } => parts.push(format!(
            "backoff exponential {} ≤{} jitter {jitter}",
            human(initial),
            human(max)
        )),
    }
    if !child.no_restart_on.is_empty() {
        let kinds: Vec<String> = child.no_restart_on.iter().map(ToString::to_string).collect();
        parts.push(format!("no restart on {}", kinds.join(",")));
    }
    if let Placement::Nodes(nodes) = &child.placement {
        parts.push(format!("on node {}", nodes.join(" or ")));
    }
    if let ChildStart::Plugin(p) = &child.start {
        let l = &p.limits;
        parts.push(format!("memory {}", size(l.max_memory_bytes as u64)));
        match l.call_deadline {
            Some(d) => parts.push(format!("deadline {}", human(d))),
            None => parts.push("no deadline".into()),
        }
        if let Some(fuel) = l.fuel_per_call {
            parts.push(format!("fuel {fuel}"));
        }
        match l.heartbeat {
            Some(HeartbeatPolicy::Timeout(t)) => parts.push(format!("heartbeat {}", human(t))),
            Some(HeartbeatPolicy::PhiAccrual(phi)) => {
                parts.push(format!("heartbeat phi {}", phi.threshold));
            }
            None => {}
        }
        let m = &p.mailbox;
        parts.push(format!("mailbox {}", m.capacity));
        if !m.targets.patterns().is_empty() {
            parts.push(format!("sends to {}", m.targets.patterns().join(",")));
        }
        if let Some(c) = m.circuit {
            parts.push(format!("circuit {} in a row, reset {}", c.failures, human(c.reset)));
        }
        let g = &p.grants;
        for dir in &g.dirs {
            let mode = if dir.writable { "rw" } else { "ro" };
            parts.push(format!("dir {}={} {mode}", dir.guest, dir.host.display()));
        }
        if !g.env.is_empty() {
            let names: Vec<&str> = g.env.iter().map(|(k, _)| k.as_str()).collect();
            parts.push(format!("env {}", names.join(",")));
        }
        match &g.network {
            Network::None => {}
            Network::Any => parts.push("network".into()),
            Network::Only(rules) => {
                let rules: Vec<String> = rules.iter().map(ToString::to_string).collect();
                parts.push(format!("network {}", rules.join(",")));
            }
            _ => parts.push(format!("network {:?}", g.network)),
        }
    }
    parts.join(", ")
}

/// A value's serde name (`one_for_one`, `transient`, ...).
fn serde_name(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Colours for the pretty log; none when `NO_COLOR` is set or output is not a terminal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    colour: bool,
}

impl Style {
    pub(crate) fn new(colour: bool) -> Self {
        Self { colour: colour && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

/// One event as a line for people: the time, the path, what happened. Whatever a
/// guest can influence (exit reasons, messages, errors, replies, even paths of dynamic
/// children) is escaped: one event is one line, and no escape sequence reaches the
/// terminal.
pub(crate) fn pretty(line: &Line, style: Style) -> String {
    let (ts_us, (path, colour, what)) = match line {
        Line::Event(record) => (record.ts_us, describe_event(&record.event)),
        Line::Said { said, ts_us } => (*ts_us, describe_said(said)),
    };
    let time = style.paint(DIM, &format!("{:>10.3}s", ts_us as f64 / 1e6));
    let (path, what) = (printable(path), printable(&what));
    // Padded before painting: escape codes have no width on screen.
    format!(
        "{time}  {} {}",
        style.paint(colour, &format!("{path:<24}")),
        style.paint(colour, &what)
    )
}

const GREEN: &str = "32";
const RED: &str = "31";
const BOLD_RED: &str = "1;31";
const YELLOW: &str = "33";
const BLUE: &str = "34";
const MAGENTA: &str = "35";
const CYAN: &str = "36";
const DIM: &str = "2";

/// The path an event is about, its colour and what it says.
fn describe_event(event: &Event) -> (&str, &'static str, String) {
    match event {
        Event::ChildStarted { path, incarnation, node } => {
            (path.as_str(), GREEN, format!("started #{incarnation}{}", on(node)))
        }
        Event::ChildExited { path, incarnation, reason, node } => {
            let colour = if reason.is_normal() { DIM } else { RED };
            (path.as_str(), colour, format!("exited #{incarnation}{}: {reason}", on(node)))
        }
        Event::NodeUp { node } => ("", GREEN, format!("node {node} is up")),
        Event::NodeDown { node, reason } => ("", RED, format!("node {node} is down ({reason})")),
        Event::ChildRestarting { path, attempt, delay_ms } => {
            (path.as_str(), YELLOW, format!("restarting (attempt {attempt}) in {delay_ms} ms"))
        }
        Event::ChildStartFailed { path, message } => {
            (path.as_str(), RED, format!("failed to start: {message}"))
        }
        Event::SupervisorGaveUp { path, reason } => {
            (path.as_str(), BOLD_RED, format!("supervisor gave up: {reason}"))
        }
        Event::SupervisorStopped { path, reason } => {
            (path.as_str(), DIM, format!("supervisor stopped: {reason}"))
        }
        Event::HeartbeatMissed { path, incarnation, since_ms } => (
            path.as_str(),
            YELLOW,
            format!("#{incarnation} missed its heartbeat: silent for {since_ms} ms"),
        ),
        Event::DeadLetter { path, reason, sender, size, crashes, .. } => {
            let mut what = format!("dead letter ({reason}): {size} bytes");
            if let Some(sender) = sender {
                let _ = write!(what, " from {sender}");
            }
            if *crashes > 1 {
                let _ = write!(what, ", after {crashes} crashes");
            }
            (path.as_str(), MAGENTA, what)
        }
        Event::CircuitChanged { path, state, failures } => {
            let state = serde_name(state);
            (path.as_str(), BLUE, format!("circuit {state} after {failures} failures"))
        }
        Event::CallCancelled { chain, path, caller, reason } => {
            let from = caller.as_deref().map_or_else(String::new, |c| format!(" from {c}"));
            (path.as_str(), YELLOW, format!("call{from} cancelled (chain {chain}): {reason}"))
        }
        Event::DeadLettersSuppressed { path, count, window_ms } => (
            path.as_str(),
            MAGENTA,
            format!("{count} more dead letters in {window_ms} ms (not shown one by one)"),
        ),
        Event::Log { path, stream, level, message } => {
            let colour = match level {
                LogLevel::Error => RED,
                LogLevel::Warn => YELLOW,
                _ => "0",
            };
            let from = match stream {
                GuestStream::Log => serde_name(level),
                other => serde_name(other),
            };
            (path.as_str(), colour, format!("[{from}] {message}"))
        }
        other => ("", DIM, format!("{other:?}")),
    }
}

/// A size in bytes in the largest binary unit that shows it well: `512 KiB`, `16 MiB`,
/// `1.5 GiB`, `100 bytes`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        let one = 1u64 << shift;
        if bytes >= one {
            return if bytes.is_multiple_of(one) {
                format!("{} {unit}", bytes >> shift)
            } else {
                format!("{:.1} {unit}", bytes as f64 / one as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// " on node N" for a child placed on a node.
fn on(node: &Option<String>) -> String {
    node.as_ref().map_or_else(String::new, |node| format!(" on node {node}"))
}

/// What the CLI's own line says, as [`describe_event`] does for events.
fn describe_said(said: &Said) -> (&str, &'static str, String) {
    match said {
        Said::Reply { id, ok, result, error } => {
            let id = id.as_ref().map_or_else(String::new, |id| format!("{id} "));
            let body = match (ok, result, error) {
                (true, None | Some(serde_json::Value::Null), _) => "ok".into(),
                (true, Some(result), _) => format!("ok {result}"),
                (false, _, Some(error)) => format!("error: {error}"),
                (false, _, None) => "error".into(),
            };
            ("reply", CYAN, format!("{id}{body}"))
        }
        Said::EventsDropped { count } => {
            ("", BOLD_RED, format!("{count} events were lost: the log fell behind"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden::ExitReason;
    use warden::events::EventRecord;

    #[test]
    fn a_tree_shows_every_node_with_its_settings() {
        let text = r#"
[root]
strategy = "one_for_all"
intensity = 3
period = "10s"

[[root.children]]
name = "a"
plugin = "a.wasm"
restart = "transient"
limits = { memory = "16MiB", deadline = "200ms" }
heartbeat = { timeout = "1s" }
grants = { targets = ["root/pool/*"] }

[[root.children]]
name = "pool"
supervisor = { strategy = "simple_one_for_one", children = [{ name = "w", plugin = "w.wasm" }] }
"#;
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.wasm", "w.wasm"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let spec = warden::manifest::parse("t.toml", text, dir.path()).unwrap();
        let shown = tree(&spec);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0], "root  supervisor one_for_all, intensity 3 in 10s");
        assert!(lines[1].starts_with("├── a  worker a.wasm, transient, shutdown 5s"), "{shown}");
        assert!(lines[1].contains("memory 16 MiB, deadline 200ms, heartbeat 1s"), "{shown}");
        assert!(lines[1].contains("sends to root/pool/*"), "{shown}");
        assert!(
            lines[2].starts_with(
                "└── pool  supervisor simple_one_for_one, intensity 1 in 5s, shutdown infinity"
            ),
            "{shown}"
        );
        assert!(lines[3].starts_with("    └── w (template)  worker w.wasm"), "{shown}");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn sizes_are_shown_in_the_unit_that_fits() {
        assert_eq!(size(512 << 10), "512 KiB");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(1000), "1000 bytes");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn pretty_lines_say_what_happened_and_colour_only_when_asked() {
        let record = EventRecord {
            event: Event::ChildExited {
                path: "root/a".into(),
                incarnation: 2,
                reason: ExitReason::Killed { cause: warden::KillCause::Heartbeat },
                node: None,
            },
            ts_us: 1_500_000,
            seq: 1,
        };
        let record = Line::Event(record);
        let plain = pretty(&record, Style { colour: false });
        assert_eq!(plain, "     1.500s  root/a                   exited #2: killed: heartbeat");
        let coloured = pretty(&record, Style { colour: true });
        assert!(coloured.contains("\x1b[31mroot/a                  \x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn what_a_guest_says_cannot_forge_a_line_or_reach_the_terminal() {
        let forged =
            "boom\n     1.365s  root                     supervisor gave up\x1b]0;pwned\x07";
        let record = EventRecord {
            event: Event::ChildExited {
                path: "root/a".into(),
                incarnation: 1,
                reason: ExitReason::Trap {
                    trap: warden::TrapKind::Unreachable,
                    message: forged.into(),
                    panic: true,
                },
                node: None,
            },
            ts_us: 0,
            seq: 1,
        };
        let line = pretty(&Line::Event(record), Style { colour: false });
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line:?}");
        assert!(line.contains("boom\\n     1.365s"), "{line}");
        let reply = Line::Said {
            said: Said::Reply {
                id: Some(serde_json::json!("x\ny")),
                ok: false,
                result: None,
                error: Some("a\rb".into()),
            },
            ts_us: 0,
        };
        let line = pretty(&reply, Style { colour: false });
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\r'), "{line:?}");
    }
}
