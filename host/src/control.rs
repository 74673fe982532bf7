//! The JSON-lines control protocol on stdin: one command per line, each answered by
//! one `reply` event that echoes its `id`.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use warden::events::Event;
use warden::runtime::{Host, HostError};
use warden::sandbox::MessageError;

/// Reads commands until stdin closes; the tree keeps running after that.
pub(crate) async fn serve(host: Host, base: PathBuf, shutdown: tokio::sync::mpsc::Sender<()>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let (id, outcome, stop) = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(command)) => {
                let id = command.get("id").cloned();
                let stop = command.get("cmd").and_then(Value::as_str) == Some("shutdown");
                (id, execute(&host, &base, &command).await, stop)
            }
            Ok(_) => (None, Err("malformed command: expected a JSON object".to_owned()), false),
            Err(e) => (None, Err(format!("malformed command: {e}")), false),
        };
        let (ok, result, error) = match outcome {
            Ok(result) => (true, Some(result), None),
            Err(error) => (false, None, Some(error)),
        };
        host.publish(Event::Reply { id, ok, result, error });
        if stop {
            let _ = shutdown.send(()).await;
            return;
        }
    }
}

async fn execute(
    host: &Host,
    base: &std::path::Path,
    command: &Map<String, Value>,
) -> Result<Value, String> {
    let cmd = command.get("cmd").and_then(Value::as_str).ok_or("malformed command: no \"cmd\"")?;
    let text = |key: &str| -> Result<String, String> {
        command
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{cmd}: needs a string \"{key}\""))
    };
    match cmd {
        "send" => {
            host.send(&text("to")?, payload(command)?).map_err(message_error)?;
            Ok(Value::Null)
        }
        "call" => {
            let timeout = command.get("timeout_ms").and_then(Value::as_u64).unwrap_or(5000);
            let reply = host
                .call(&text("to")?, payload(command)?, Duration::from_millis(timeout))
                .await
                .map_err(message_error)?;
            Ok(match String::from_utf8(reply) {
                Ok(text) => Value::String(text),
                Err(e) => {
                    json!({ "payload_b64": base64::engine::general_purpose::STANDARD.encode(e.as_bytes()) })
                }
            })
        }
        "start_child" => {
            let supervisor = text("supervisor")?;
            let spec = command.get("spec").cloned().unwrap_or(Value::Object(Map::new()));
            let is_static = spec.get("plugin").is_some() || spec.get("supervisor").is_some();
            if is_static {
                let entry: warden::manifest::ChildEntry = serde_json::from_value(spec)
                    .map_err(|e| format!("start_child: bad spec: {e}"))?;
                let child = warden::manifest::child(&supervisor, &entry, base)
                    .map_err(|problems| problems.join("; "))?;
                let name = child.id.clone();
                host.start_child(&supervisor, child).await.map_err(host_error)?;
                Ok(json!({ "name": name, "path": format!("{supervisor}/{name}") }))
            } else {
                let name = spec.get("name").and_then(Value::as_str).map(str::to_owned);
                let config = spec.get("config").map(|c| serde_json::to_vec(c).unwrap_or_default());
                let name =
                    host.start_dynamic(&supervisor, name, config).await.map_err(host_error)?;
                Ok(json!({ "name": name, "path": format!("{supervisor}/{name}") }))
            }
        }
        "terminate_child" => {
            host.terminate_child(&text("supervisor")?, &text("child")?)
                .await
                .map_err(host_error)?;
            Ok(Value::Null)
        }
        "restart_child" => {
            host.restart_child(&text("supervisor")?, &text("child")?).await.map_err(host_error)?;
            Ok(Value::Null)
        }
        "delete_child" => {
            host.delete_child(&text("supervisor")?, &text("child")?).await.map_err(host_error)?;
            Ok(Value::Null)
        }
        "which_children" => {
            let children = host.which_children(&text("supervisor")?).await.map_err(host_error)?;
            serde_json::to_value(children).map_err(|e| e.to_string())
        }
        "count_children" => {
            let counts = host.count_children(&text("supervisor")?).await.map_err(host_error)?;
            serde_json::to_value(counts).map_err(|e| e.to_string())
        }
        "shutdown" => Ok(Value::Null),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn payload(command: &Map<String, Value>) -> Result<Vec<u8>, String> {
    if let Some(text) = command.get("payload").and_then(Value::as_str) {
        return Ok(text.as_bytes().to_vec());
    }
    if let Some(encoded) = command.get("payload_b64").and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("payload_b64 is not base64: {e}"));
    }
    Err("needs a string \"payload\" or \"payload_b64\"".into())
}

fn host_error(e: HostError) -> String {
    match e {
        HostError::Admin(e) => e.to_string(),
        HostError::NotFound => "not_found".into(),
        other => other.to_string(),
    }
}

fn message_error(e: MessageError) -> String {
    match e {
        MessageError::UnknownTarget(_) => "not_found".into(),
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
