//! `warden ctl`: the command-line client of a running tree's control socket. Each
//! command is one line of the control protocol; its reply is shown readably, or as
//! the reply's JSON with `--json`.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Talks to a running tree through its control socket (`warden run` prints its path
/// at start). Exits 0 when the command succeeded, 1 when the run refused it, 2 when
/// no run could be reached.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run's control socket. Default: $WARDEN_CONTROL, else the socket in the
    /// state directory of the run of --manifest.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Find the socket of the run of this manifest (in its state directory).
    #[arg(long, short, global = true)]
    manifest: Option<PathBuf>,
    /// Print each reply (and event) as the protocol's JSON line, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Ctl,
}

#[derive(Debug, clap::Subcommand)]
enum Ctl {
    /// Lists a supervisor's children in start order.
    WhichChildren {
        /// The supervisor's path, e.g. `root` or `root/sub`.
        supervisor: String,
    },
    /// Counts a supervisor's children.
    CountChildren { supervisor: String },
    /// Calls a child and prints its answer.
    Call {
        /// The child's path, e.g. `root/echo`.
        path: String,
        /// The request (text).
        payload: String,
        /// How long to wait for the answer.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        timeout: std::time::Duration,
    },
    /// Sends a child a message (no answer).
    Send { path: String, payload: String },
    /// Starts a child: a dynamic one under a simple_one_for_one supervisor (with
    /// --name and --config), or the child --spec describes (a manifest child entry as
    /// JSON).
    StartChild {
        supervisor: String,
        #[arg(long)]
        name: Option<String>,
        /// The child's config, as JSON.
        #[arg(long)]
        config: Option<String>,
        /// A manifest child entry as JSON, e.g. '{"id":"b","plugin":"echo.wasm"}'.
        #[arg(long, conflicts_with_all = ["name", "config"])]
        spec: Option<String>,
    },
    /// Terminates a child (its spec is kept), e.g. `root/a`.
    TerminateChild { path: String },
    /// Restarts a terminated child.
    RestartChild { path: String },
    /// Deletes a terminated child's spec.
    DeleteChild { path: String },
    /// Replaces a child's component with FILE, keeping its mailbox and state (with
    /// --all: every child of the simple_one_for_one supervisor PATH, one at a time).
    Upgrade {
        /// The child, e.g. `root/a`; with --all, the supervisor.
        path: String,
        /// The new component (.wasm).
        file: PathBuf,
        /// A new config for it, as JSON.
        #[arg(long)]
        config: Option<String>,
        /// New limits, as a manifest's `limits` table in JSON, e.g. '{"memory":"32MiB"}'
        /// (what it leaves out takes the manifest's default).
        #[arg(long)]
        limits: Option<String>,
        /// New grants, as a manifest's `grants` table in JSON.
        #[arg(long)]
        grants: Option<String>,
        /// Upgrade every child of the simple_one_for_one supervisor PATH.
        #[arg(long)]
        all: bool,
    },
    /// Prints the tree's events as they happen, until the run ends.
    Events {
        /// Keep following (the run keeps no history: this is what `events` does).
        #[arg(long, short)]
        follow: bool,
    },
    /// Stops the tree and ends the run (exit 0).
    Shutdown,
    /// Sends one command of the control protocol as it is (a JSON object).
    Raw { command: String },
}

pub(crate) fn main(args: Args) -> ExitCode {
    let path = match socket_path(&args) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("warden ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let stream = match UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("warden ctl: {}", cannot_connect(&path, &e));
            return ExitCode::from(2);
        }
    };
    let command = match command(&args.command) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("warden ctl: {e}");
            return ExitCode::from(2);
        }
    };
    match exchange(stream, &command, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("warden ctl: the run at {} stopped answering: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// The socket to talk to, from the flags or the environment.
fn socket_path(args: &Args) -> Result<PathBuf, String> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    if let Some(socket) = std::env::var_os("WARDEN_CONTROL").filter(|v| !v.is_empty()) {
        return Ok(socket.into());
    }
    match &args.manifest {
        Some(manifest) => {
            let (_, settings) =
                warden::manifest::load_with_settings(manifest).map_err(|e| e.to_string())?;
            let dir =
                settings.data_dir.unwrap_or_else(|| warden::state::default_data_dir(manifest));
            Ok(crate::socket::default_path(&dir))
        }
        None => Err("which run? give --socket PATH (`warden run` prints its socket at start), \
                     --manifest FILE, or set WARDEN_CONTROL"
            .into()),
    }
}

fn cannot_connect(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("no control socket at {} (is the run going?)", path.display())
        }
        std::io::ErrorKind::ConnectionRefused => format!(
            "the control socket {} is stale: nothing listens on it (the run has ended)",
            path.display()
        ),
        _ => format!("cannot connect to the control socket {}: {e}", path.display()),
    }
}

/// A subcommand as a line of the protocol.
fn command(ctl: &Ctl) -> Result<Value, String> {
    let split = |path: &str| -> Result<(String, String), String> {
        match path.rsplit_once('/') {
            Some((supervisor, child)) if !supervisor.is_empty() && !child.is_empty() => {
                Ok((supervisor.to_owned(), child.to_owned()))
            }
            _ => Err(format!("{path:?} is not a child's path (like root/a)")),
        }
    };
    let admin = |cmd: &str, path: &str| -> Result<Value, String> {
        let (supervisor, child) = split(path)?;
        Ok(json!({ "cmd": cmd, "supervisor": supervisor, "child": child }))
    };
    Ok(match ctl {
        Ctl::WhichChildren { supervisor } => {
            json!({ "cmd": "which_children", "supervisor": supervisor })
        }
        Ctl::CountChildren { supervisor } => {
            json!({ "cmd": "count_children", "supervisor": supervisor })
        }
        Ctl::Call { path, payload, timeout } => json!({
            "cmd": "call", "to": path, "payload": payload,
            "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
        Ctl::Send { path, payload } => json!({ "cmd": "send", "to": path, "payload": payload }),
        Ctl::StartChild { supervisor, name, config, spec } => {
            let spec = match (spec, name, config) {
                (Some(spec), _, _) => {
                    serde_json::from_str(spec).map_err(|e| format!("--spec is not JSON: {e}"))?
                }
                (None, name, config) => {
                    let mut spec = serde_json::Map::new();
                    if let Some(name) = name {
                        spec.insert("name".into(), name.clone().into());
                    }
                    if let Some(config) = config {
                        let config: Value = serde_json::from_str(config)
                            .map_err(|e| format!("--config is not JSON: {e}"))?;
                        spec.insert("config".into(), config);
                    }
                    Value::Object(spec)
                }
            };
            json!({ "cmd": "start_child", "supervisor": supervisor, "spec": spec })
        }
        Ctl::TerminateChild { path } => admin("terminate_child", path)?,
        Ctl::RestartChild { path } => admin("restart_child", path)?,
        Ctl::DeleteChild { path } => admin("delete_child", path)?,
        Ctl::Upgrade { path, file, config, limits, grants, all } => {
            // The run resolves a relative path from its manifest's directory: this
            // one's is from here.
            let file = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut command = if *all {
                json!({ "cmd": "upgrade_child", "supervisor": path, "plugin": file })
            } else {
                let (supervisor, child) = split(path)?;
                json!({ "cmd": "upgrade_child", "supervisor": supervisor, "child": child, "plugin": file })
            };
            for (key, value) in [("config", config), ("limits", limits), ("grants", grants)] {
                if let Some(value) = value {
                    command[key] = serde_json::from_str(value)
                        .map_err(|e| format!("--{key} is not JSON: {e}"))?;
                }
            }
            command
        }
        Ctl::Events { .. } => json!({ "cmd": "subscribe" }),
        Ctl::Shutdown => json!({ "cmd": "shutdown" }),
        Ctl::Raw { command } => {
            let value: Value = serde_json::from_str(command)
                .map_err(|e| format!("the command is not JSON: {e}"))?;
            if !value.is_object() {
                return Err("the command must be a JSON object, like {\"cmd\":\"shutdown\"}".into());
            }
            value
        }
    })
}

/// The id `warden ctl` gives its command.
const ID: &str = "ctl";

/// Sends the command, waits for its reply and shows it; for `events`, then copies
/// the event stream until the run ends.
fn exchange(stream: UnixStream, command: &Value, args: &Args) -> std::io::Result<ExitCode> {
    let mut command = command.clone();
    let terminal = std::io::stdout().is_terminal();
    if matches!(args.command, Ctl::Events { .. }) && !args.json {
        command["format"] = "pretty".into();
        command["colour"] = terminal.into();
    }
    command["id"] = ID.into();
    let mut writer = stream.try_clone()?;
    writeln!(writer, "{command}")?;
    let mut lines = BufReader::new(stream).lines();
    let reply = loop {
        let Some(line) = lines.next().transpose()? else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before the reply",
            ));
        };
        let Ok(reply) = serde_json::from_str::<Value>(&line) else { continue };
        // The id is absent only when the run refused the connection itself.
        if reply["event"] == "reply" && (reply["id"] == ID || reply.get("id").is_none()) {
            break reply;
        }
    };
    let ok = reply["ok"] == true;
    if args.json {
        println!("{reply}");
    } else if !ok {
        eprintln!("warden ctl: {}", reply["error"].as_str().unwrap_or("failed"));
    } else {
        show(&args.command, &reply["result"]);
    }
    if !ok {
        return Ok(ExitCode::from(1));
    }
    if let Ctl::Events { .. } = args.command {
        if !args.json {
            eprintln!("warden ctl: following the events (until the run ends or Ctrl-C)");
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            if writeln!(out, "{}", line?).and_then(|()| out.flush()).is_err() {
                break; // stdout closed (`| head`): done
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A successful reply, readably.
fn show(ctl: &Ctl, result: &Value) {
    match (ctl, result) {
        (Ctl::WhichChildren { .. }, Value::Array(children)) => {
            print!("{}", children_table(children));
        }
        (Ctl::CountChildren { .. }, counts) => {
            let count = |key: &str| counts[key].as_u64().unwrap_or(0);
            println!(
                "{} specs, {} active, {} supervisors, {} workers",
                count("specs"),
                count("active"),
                count("supervisors"),
                count("workers")
            );
        }
        (Ctl::Call { .. }, Value::String(text)) => {
            println!("{}", warden::escape::printable(text));
        }
        (Ctl::Upgrade { path, all: false, .. }, done) => println!("{}", upgraded(path, done)),
        (Ctl::Upgrade { all: true, .. }, done) => {
            for child in done["children"].as_array().into_iter().flatten() {
                println!("{}", upgraded(child["path"].as_str().unwrap_or("?"), child));
            }
        }
        (Ctl::StartChild { .. }, started) => {
            println!("started {}", started["path"].as_str().unwrap_or("?"));
        }
        (_, Value::Null) => {}
        (_, other) => println!("{other}"),
    }
}

/// What an upgrade did to the child at `path`.
fn upgraded(path: &str, done: &Value) -> String {
    match done["step"].as_str() {
        Some("stored") => {
            format!("{path} is not running: it takes the new version at its next start")
        }
        _ => format!("upgraded {path}"),
    }
}

/// `which_children`'s list as a table.
fn children_table(children: &[Value]) -> String {
    let text = |child: &Value, key: &str| match &child[key] {
        Value::String(s) => warden::escape::printable(s).into_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows = vec![["NAME", "TYPE", "STATE", "INCARNATION", "NODE"].map(String::from)];
    for child in children {
        rows.push(["name", "type", "state", "incarnation", "node"].map(|k| text(child, k)));
    }
    let widths: Vec<usize> =
        (0..5).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_commands_take_a_child_s_path() {
        let ctl = Ctl::RestartChild { path: "root/sub/a".into() };
        assert_eq!(
            command(&ctl).unwrap(),
            json!({"cmd":"restart_child","supervisor":"root/sub","child":"a"})
        );
        let ctl = Ctl::TerminateChild { path: "root".into() };
        assert_eq!(command(&ctl).unwrap_err(), "\"root\" is not a child's path (like root/a)");
    }

    #[test]
    fn children_are_a_table() {
        let children = json!([
            {"name":"a","path":"root/a","type":"worker","state":"running","incarnation":2},
            {"name":"sub","path":"root/sub","type":"supervisor","state":"restarting","incarnation":1,"node":"b"},
        ]);
        assert_eq!(
            children_table(children.as_array().unwrap()),
            "NAME  TYPE        STATE       INCARNATION  NODE\n\
             a     worker      running     2\n\
             sub   supervisor  restarting  1            b\n"
        );
    }
}
