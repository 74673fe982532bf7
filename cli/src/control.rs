//! The JSON-lines control protocol, on stdin and on each connection to the control
//! socket: one command per line, each answered by one `reply` event that echoes its
//! `id`, on the session the command came from.
//!
//! ```text
//!   input ──▶ read_line (bounded) ──▶ Command (typed, at the edge) ──▶ task per command
//!                 │ bad line: an error reply, and the loop goes on          │
//!                 ▼                                                         ▼
//!   `shutdown` ──▶ the main loop (stops the tree, then replies)     Reply ──▶ session's
//!                                                                            writer
//! ```
//!
//! Commands run concurrently: a slow `call` never delays another command, and replies
//! come as commands finish. Each command is sent on its way (a letter in a mailbox, a
//! request in a supervisor's queue) before the next line is read, so commands to the
//! same child or supervisor take effect in the order of their lines, as a script
//! expects. (`upgrade_child` is the exception: it is sent once its component is
//! loaded, which may take a while, and a command after it may act first.)
//! `shutdown` answers the commands before it first, then stops the tree.
//!
//! A reply is sent to the printer with the number of the last event published when
//! its command finished, and printed only after that event, so it follows every event
//! its command caused; replies are never dropped, however far the event stream falls
//! behind. A session answers at most [`MAX_PENDING`] commands at once: past that it
//! reads no further line until a reply has been written, so a client that sends
//! without reading makes the host hold a bounded number of replies.

use crate::line::{Line, Said};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use warden::events::Events;
use warden::runtime::{Host, HostError};
use warden::sandbox::MessageError;

/// The longest control line read; a longer one is refused (and skipped to its end).
const MAX_LINE: usize = 64 << 20;

/// The most commands a session has unanswered (running, or answered but not yet
/// written) before it stops reading.
pub(crate) const MAX_PENDING: usize = 1024;

/// A reply, with the number of the last event published when its command finished.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) after: u64,
    pub(crate) line: Line,
    /// The session's pending slot, freed when the reply is written (or dropped).
    pub(crate) _slot: Option<OwnedSemaphorePermit>,
}

/// Where a session's replies go, and how it starts following events.
#[derive(Debug)]
pub(crate) struct Session {
    /// Its replies, to its writer.
    pub(crate) replies: mpsc::UnboundedSender<Reply>,
    /// For a session that does not follow events yet (a socket connection): where a
    /// `subscribe` command sends the stream, to its writer.
    pub(crate) subscribe: Option<oneshot::Sender<Subscription>>,
}

/// The events a `subscribe` command asked for.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) events: Events,
    /// The last event published when the stream was made.
    pub(crate) since: u64,
    pub(crate) format: Format,
    /// Colour the pretty format.
    pub(crate) colour: bool,
    /// The `subscribe` command's reply, written before the events.
    pub(crate) reply: Reply,
}

/// How a subscribed session's lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Format {
    /// JSON lines, as on stdout.
    #[default]
    Jsonl,
    /// The readable log of `--events pretty`.
    Pretty,
}

/// A `shutdown` command: its id, and where its reply goes once the tree has stopped.
pub(crate) type ShutdownAsked = (Option<Value>, mpsc::UnboundedSender<Reply>);

impl Reply {
    /// The reply to the command `id`, to be printed after every event published so far.
    pub(crate) fn new(host: &Host, id: Option<Value>, outcome: Result<Value, String>) -> Self {
        // `result` is always there on success (`null` for a command with nothing to
        // return), as the CLI contract has it.
        let (ok, result, error) = match outcome {
            Ok(result) => (true, Some(result), None),
            Err(error) => (false, None, Some(error)),
        };
        let after = host.last_event_seq();
        let said = Said::Reply { id, ok, result, error };
        Self { after, line: Line::Said { said, ts_us: host.clock_us() }, _slot: None }
    }
}

/// One control command.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Command {
    Send {
        to: String,
        #[serde(flatten)]
        payload: Payload,
    },
    Call {
        to: String,
        #[serde(flatten)]
        payload: Payload,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
    StartChild {
        supervisor: String,
        #[serde(default)]
        spec: Option<Value>,
    },
    TerminateChild {
        supervisor: String,
        child: String,
    },
    RestartChild {
        supervisor: String,
        child: String,
    },
    DeleteChild {
        supervisor: String,
        child: String,
    },
    /// Replaces a child's component (`child`), or every child of a simple_one_for_one
    /// supervisor (no `child`), keeping mailboxes and state.
    UpgradeChild {
        supervisor: String,
        #[serde(default)]
        child: Option<String>,
        /// The new component's file (relative to the manifest's directory).
        plugin: PathBuf,
        /// A new config for it (JSON), if given.
        #[serde(default)]
        config: Option<Value>,
        /// New limits, as a manifest child entry's `limits`, `heartbeat` and `state`
        /// tables: any of them given replaces the child's limits (what they leave out
        /// takes the manifest's default).
        #[serde(default)]
        limits: Option<Value>,
        #[serde(default)]
        heartbeat: Option<Value>,
        #[serde(default)]
        state: Option<Value>,
        /// New grants, as a manifest child entry's `grants` table.
        #[serde(default)]
        grants: Option<Value>,
    },
    WhichChildren {
        supervisor: String,
    },
    CountChildren {
        supervisor: String,
    },
    /// Follow the event stream on this session (a socket connection; stdin already
    /// does).
    Subscribe {
        #[serde(default)]
        format: Format,
        /// Colour the pretty format (for a terminal).
        #[serde(default)]
        colour: bool,
    },
    Shutdown {},
}

fn default_timeout_ms() -> u64 {
    5000
}

/// A payload as text or as base64.
#[derive(Debug, Deserialize)]
struct Payload {
    payload: Option<String>,
    payload_b64: Option<String>,
}

impl Payload {
    fn bytes(self) -> Result<Vec<u8>, String> {
        match (self.payload, self.payload_b64) {
            (Some(text), None) => Ok(text.into_bytes()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("payload_b64 is not base64: {e}")),
            (Some(_), Some(_)) => Err("give \"payload\" or \"payload_b64\", not both".into()),
            (None, None) => Err("needs a string \"payload\" or \"payload_b64\"".into()),
        }
    }
}

/// Reads commands from `input` until it closes (the tree keeps running after that),
/// `stop` turns true, or a `shutdown` command comes, which goes to `shutdown`: the main
/// loop stops the tree, then replies. Every other command runs in a task of its own;
/// its reply goes to the session's writer. Returns the commands still running.
pub(crate) async fn serve(
    host: Host,
    base: PathBuf,
    mut input: impl AsyncBufRead + Unpin,
    mut session: Session,
    shutdown: mpsc::UnboundedSender<ShutdownAsked>,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut running = JoinSet::new();
    let mut line = Vec::new();
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    loop {
        while running.try_join_next().is_some() {}
        let read = tokio::select! {
            read = async {
                let slot = pending.clone().acquire_owned().await;
                (slot, read_line(&mut input, &mut line).await)
            } => read,
            () = stopped(&mut stop) => return running,
        };
        let (slot, read) = (read.0.ok(), read.1);
        let (id, command) = match read {
            Ok(Some(Ok(()))) if line.trim_ascii().is_empty() => continue,
            Ok(Some(Ok(()))) => parse(&line),
            Ok(Some(Err(len))) => (
                None,
                Err(format!(
                    "malformed command: a line of {len} bytes or more, the most is {MAX_LINE}"
                )),
            ),
            Ok(None) | Err(_) => return running,
        };
        let reply =
            move |host: &Host, id, outcome| Reply { _slot: slot, ..Reply::new(host, id, outcome) };
        let command = match command {
            Ok(Command::Shutdown {}) => {
                // The commands before it are answered first (each within its own
                // timeout); SIGINT and SIGTERM do not wait.
                // Stopped meanwhile (by another shutdown or a signal), it is still
                // answered, once the tree has stopped.
                tokio::select! {
                    () = async { while running.join_next().await.is_some() {} } => {}
                    () = stopped(&mut stop) => {}
                }
                let _ = shutdown.send((id, session.replies.clone()));
                return running;
            }
            Ok(Command::Subscribe { format, colour }) => {
                match session.subscribe.take() {
                    Some(subscribe) => {
                        // Subscribed first: an event published meanwhile is in the
                        // stream, not a gap in it.
                        let events = host.subscribe();
                        let since = host.last_event_seq();
                        let reply = reply(&host, id, Ok(Value::Null));
                        let _ =
                            subscribe.send(Subscription { events, since, format, colour, reply });
                    }
                    None => {
                        let error = "subscribe: this session already follows the events";
                        let _ = session.replies.send(reply(&host, id, Err(error.into())));
                    }
                }
                continue;
            }
            Ok(command) => command,
            Err(error) => {
                let _ = session.replies.send(reply(&host, id, Err(error)));
                continue;
            }
        };
        let (host, base, replies) = (host.clone(), base.clone(), session.replies.clone());
        let mut task = Box::pin(async move {
            let outcome = execute(&host, &base, command).await;
            let _ = replies.send(reply(&host, id, outcome));
        });
        // The first poll sends the command on its way, in line order; what is left
        // (waiting for the answer) runs in a task of its own.
        let done = std::future::poll_fn(|cx| Poll::Ready(task.as_mut().poll(cx).is_ready())).await;
        if !done {
            running.spawn(task);
        }
    }
}

/// Answers one command line on its own (the live view's admin actions): `subscribe`
/// and `shutdown` are not taken there.
pub(crate) async fn answer(host: &Host, base: &std::path::Path, line: &[u8]) -> Line {
    let (id, command) = parse(line);
    let outcome = match command {
        Ok(Command::Subscribe { .. } | Command::Shutdown {}) => {
            Err("this command is not taken here: use stdin or the control socket".into())
        }
        Ok(command) => execute(host, base, command).await,
        Err(error) => Err(error),
    };
    Reply::new(host, id, outcome).line
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Reads one line into `line` (without its newline): `Ok(None)` at the end of the
/// input, `Err(len)` for a line longer than [`MAX_LINE`] (read to its end and dropped).
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Result<(), usize>>> {
    line.clear();
    let mut skipped = 0;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (line.is_empty(), skipped) {
                (true, 0) => None,
                (_, 0) => Some(Ok(())),
                _ => Some(Err(skipped)),
            });
        }
        let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if skipped > 0 || line.len() + chunk.len() > MAX_LINE {
            skipped += line.len() + chunk.len();
            line.clear();
        } else {
            line.extend_from_slice(chunk);
        }
        let used = end.unwrap_or(buf.len());
        input.consume(used);
        if end.is_some() {
            return Ok(Some(if skipped > 0 { Err(skipped) } else { Ok(()) }));
        }
    }
}

/// A line as a command, with its id (kept even when the rest is wrong).
fn parse(line: &[u8]) -> (Option<Value>, Result<Command, String>) {
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(e) => return (None, Err(format!("malformed command: {e}"))),
    };
    let Value::Object(object) = &value else {
        return (None, Err("malformed command: expected a JSON object".into()));
    };
    let id = object.get("id").cloned();
    let Some(name) = object.get("cmd").and_then(Value::as_str).map(str::to_owned) else {
        return (id, Err("malformed command: no \"cmd\"".into()));
    };
    let command = serde_json::from_value(value).map_err(|e| {
        let e = e.to_string();
        if e.starts_with("unknown variant") {
            format!("unknown command {name:?} (the commands: {})", COMMANDS.join(", "))
        } else if let Some(field) =
            e.strip_prefix("missing field `").and_then(|f| f.split('`').next())
        {
            format!("{name}: needs a string \"{field}\"")
        } else {
            format!("{name}: {e}")
        }
    });
    (id, command)
}

/// Every command's name, for the error that names an unknown one.
const COMMANDS: &[&str] = &[
    "send",
    "call",
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
    "upgrade_child",
    "which_children",
    "count_children",
    "subscribe",
    "shutdown",
];

async fn execute(host: &Host, base: &std::path::Path, command: Command) -> Result<Value, String> {
    match command {
        Command::Send { to, payload } => {
            host.send(&to, payload.bytes()?).map_err(message_error)?;
            Ok(Value::Null)
        }
        Command::Call { to, payload, timeout_ms } => {
            let timeout = Duration::from_millis(timeout_ms);
            let reply = host.call(&to, payload.bytes()?, timeout).await.map_err(message_error)?;
            Ok(match String::from_utf8(reply) {
                Ok(text) => Value::String(text),
                Err(e) => {
                    json!({ "payload_b64": base64::engine::general_purpose::STANDARD.encode(e.as_bytes()) })
                }
            })
        }
        Command::StartChild { supervisor, spec } => {
            let spec = spec.unwrap_or_else(|| json!({}));
            let is_static = spec.get("plugin").is_some() || spec.get("supervisor").is_some();
            let name = if is_static {
                let entry: warden::manifest::ChildEntry = serde_json::from_value(spec)
                    .map_err(|e| format!("start_child: bad spec: {e}"))?;
                let child =
                    warden::manifest::child(&supervisor, &entry, base).map_err(|problems| {
                        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                    })?;
                let name = child.id.clone();
                host.start_child(&supervisor, child).await.map_err(host_error)?;
                name
            } else {
                let name = spec.get("name").and_then(Value::as_str).map(str::to_owned);
                let config = spec.get("config").map(|c| serde_json::to_vec(c).unwrap_or_default());
                host.start_dynamic(&supervisor, name, config).await.map_err(host_error)?
            };
            Ok(json!({ "name": name, "path": format!("{supervisor}/{name}") }))
        }
        Command::TerminateChild { supervisor, child } => {
            host.terminate_child(&supervisor, &child).await.map_err(host_error)?;
            Ok(Value::Null)
        }
        Command::RestartChild { supervisor, child } => {
            host.restart_child(&supervisor, &child).await.map_err(host_error)?;
            Ok(Value::Null)
        }
        Command::DeleteChild { supervisor, child } => {
            host.delete_child(&supervisor, &child).await.map_err(host_error)?;
            Ok(Value::Null)
        }
        Command::UpgradeChild {
            supervisor,
            child,
            plugin,
            config,
            limits,
            heartbeat,
            state,
            grants,
        } => {
            let mut upgrade = warden::Upgrade::new(base.join(&plugin));
            if let Some(config) = config {
                upgrade = upgrade.config(serde_json::to_vec(&config).map_err(|e| e.to_string())?);
            }
            if limits.is_some() || heartbeat.is_some() || state.is_some() || grants.is_some() {
                let name = child.clone().unwrap_or_else(|| "*".into());
                let tables = Tables { limits, heartbeat, state, grants };
                upgrade = upgrade.change(tables.patch(&supervisor, &name, &plugin, base)?);
            }
            let step = |step: warden::supervisor::UpgradeStep| match step {
                warden::supervisor::UpgradeStep::Started => "upgraded",
                warden::supervisor::UpgradeStep::Stored => "stored",
            };
            match child {
                Some(child) => {
                    let done = host.upgrade_child(&supervisor, &child, upgrade).await;
                    Ok(json!({ "step": step(done.map_err(host_error)?) }))
                }
                None => {
                    let done = host.upgrade_children(&supervisor, upgrade).await;
                    let done: Vec<Value> = done
                        .map_err(host_error)?
                        .into_iter()
                        .map(|(path, done)| json!({ "path": path, "step": step(done) }))
                        .collect();
                    Ok(json!({ "children": done }))
                }
            }
        }
        Command::WhichChildren { supervisor } => {
            let children = host.which_children(&supervisor).await.map_err(host_error)?;
            serde_json::to_value(children).map_err(|e| e.to_string())
        }
        Command::CountChildren { supervisor } => {
            let counts = host.count_children(&supervisor).await.map_err(host_error)?;
            serde_json::to_value(counts).map_err(|e| e.to_string())
        }
        Command::Shutdown {} | Command::Subscribe { .. } => Ok(Value::Null),
    }
}

/// An upgrade's new limits, heartbeat, state quotas and grants, as a manifest child
/// entry's tables.
struct Tables {
    limits: Option<Value>,
    heartbeat: Option<Value>,
    state: Option<Value>,
    grants: Option<Value>,
}

impl Tables {
    /// What they change in a plugin start, read with the manifest's checks: each key
    /// given sets its setting, and only that. The mailbox's settings (`message_size`,
    /// `mailbox`, `mailbox_bytes`, `timers`, `timer_bytes`) are refused: the mailbox outlives
    /// incarnations and keeps them.
    fn patch(
        self,
        supervisor: &str,
        name: &str,
        plugin: &std::path::Path,
        base: &std::path::Path,
    ) -> Result<impl Fn(&mut warden::supervisor::PluginStart) + Send + Sync + 'static, String> {
        let given = |table: &Option<Value>, key: &str| {
            table.as_ref().and_then(Value::as_object).is_some_and(|t| t.contains_key(key))
        };
        for key in ["message_size", "mailbox", "mailbox_bytes", "timers", "timer_bytes"] {
            if given(&self.limits, key) {
                return Err(format!(
                    "upgrade_child: limits.{key} is the mailbox's, and the mailbox outlives \
                     incarnations: it cannot change with an upgrade"
                ));
            }
        }
        let entry = json!({ "name": name, "plugin": plugin, "limits": self.limits,
            "heartbeat": self.heartbeat, "state": self.state, "grants": self.grants });
        let entry: warden::manifest::ChildEntry =
            serde_json::from_value(entry).map_err(|e| format!("upgrade_child: {e}"))?;
        let spec = warden::manifest::child(supervisor, &entry, base).map_err(|problems| {
            problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        })?;
        let warden::supervisor::ChildStart::Plugin(read) = spec.start else {
            return Err("upgrade_child: not a plugin".into());
        };
        let keys = ["memory", "deadline", "fuel", "output"].map(|k| given(&self.limits, k));
        let (heartbeat, state, grants) =
            (self.heartbeat.is_some(), self.state.is_some(), self.grants.is_some());
        Ok(move |start: &mut warden::supervisor::PluginStart| {
            fn take<T: Clone>(given: bool, to: &mut T, from: &T) {
                if given {
                    to.clone_from(from);
                }
            }
            let (to, from) = (&mut start.limits, &read.limits);
            let [memory, deadline, fuel, output] = keys;
            take(memory, &mut to.max_memory_bytes, &from.max_memory_bytes);
            take(deadline, &mut to.call_deadline, &from.call_deadline);
            take(fuel, &mut to.fuel_per_call, &from.fuel_per_call);
            take(output, &mut to.output_per_second, &from.output_per_second);
            take(heartbeat, &mut to.heartbeat, &from.heartbeat);
            take(state, &mut to.state, &from.state);
            take(grants, &mut start.grants, &read.grants);
        })
    }
}

/// A host's error as the reply's `error`: OTP's word where OTP has one, else what was
/// wrong (a plugin that cannot load, as a failed start; a spec's problems).
fn host_error(e: HostError) -> String {
    match e {
        HostError::Admin(e) => e.to_string(),
        HostError::NotFound { .. } => "not_found".into(),
        HostError::Load { error, .. } => {
            warden::ExitReason::StartFailed { message: error.to_string() }.to_string()
        }
        HostError::InvalidSpec(problems) => {
            let problems: Vec<String> = problems.iter().map(|p| p.problem.to_string()).collect();
            format!("invalid child spec: {}", problems.join("; "))
        }
        other => other.to_string(),
    }
}

fn message_error(e: MessageError) -> String {
    match e {
        MessageError::UnknownTarget(_) => "not_found".into(),
        MessageError::NotRunning(_) => "noproc".into(),
        MessageError::CalleeCrashed(reason) => format!("callee_crashed: {reason}"),
        MessageError::Timeout => "timeout".into(),
        MessageError::MailboxFull => "mailbox_full".into(),
        MessageError::TooLarge(limit) => format!("too_large: the limit is {limit} bytes"),
        MessageError::CircuitOpen => "circuit_open".into(),
        MessageError::Deadlock(cycle) => format!("deadlock: {}", cycle.join(" -> ")),
        MessageError::Application(message) => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_any_bytes_are_a_line() {
        let mut input: &[u8] = b"{\"cmd\":\"shutdown\"}\n\xff\xfe\nlast";
        let mut line = Vec::new();
        assert_eq!(read_line(&mut input, &mut line).await.unwrap(), Some(Ok(())));
        assert_eq!(line, b"{\"cmd\":\"shutdown\"}");
        assert_eq!(read_line(&mut input, &mut line).await.unwrap(), Some(Ok(())));
        assert_eq!(line, b"\xff\xfe");
        assert!(parse(&line).1.unwrap_err().starts_with("malformed command"));
        assert_eq!(read_line(&mut input, &mut line).await.unwrap(), Some(Ok(())));
        assert_eq!(line, b"last");
        assert_eq!(read_line(&mut input, &mut line).await.unwrap(), None);

        let long = vec![b'x'; MAX_LINE + 10];
        let text = [long.as_slice(), b"\n{}\n"].concat();
        let mut input = tokio::io::BufReader::with_capacity(4096, text.as_slice());
        assert_eq!(read_line(&mut input, &mut line).await.unwrap(), Some(Err(MAX_LINE + 10)));
        assert_eq!(read_line(&mut input, &mut line).await.unwrap(), Some(Ok(())));
        assert_eq!(line, b"{}");
    }

    #[test]
    fn a_bad_command_keeps_its_id_and_says_what_is_wrong() {
        let (id, command) = parse(br#"{"cmd":"terminate_child","id":7,"supervisor":"root"}"#);
        assert_eq!(id, Some(json!(7)));
        assert_eq!(command.unwrap_err(), "terminate_child: needs a string \"child\"");
        let (_, command) = parse(br#"{"cmd":"dance","id":"x"}"#);
        assert!(command.unwrap_err().starts_with("unknown command \"dance\" (the commands: send,"));
        let (_, command) = parse(br#"{"id":1}"#);
        assert_eq!(command.unwrap_err(), "malformed command: no \"cmd\"");
        let (_, command) =
            parse(br#"{"cmd":"call","to":"root/a","payload":"x","timeout_ms":"soon"}"#);
        assert!(command.unwrap_err().starts_with("call: invalid type: string \"soon\""));
        for name in COMMANDS {
            let (_, command) = parse(format!(r#"{{"cmd":"{name}"}}"#).as_bytes());
            assert!(!command.is_err_and(|e| e.starts_with("unknown command")), "{name}");
        }
        let (_, command) = parse(br#"{"cmd":"send","to":"root/a"}"#);
        assert!(matches!(command, Ok(Command::Send { .. })), "payload checked when run");
    }
}
