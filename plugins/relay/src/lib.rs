//! Counts and records what it receives, and floods other children on request: the
//! messaging tests' witness and the throughput benchmark's load.
//!
//! | message               | effect                                                  |
//! |-----------------------|---------------------------------------------------------|
//! | `!flood:N:PATH:TEXT`  | sends TEXT to PATH N times; replies `sent S rejected R` |
//! |                       | and, if any was rejected, `: ERROR` (the first error)   |
//! | `!log`                | replies what it recorded, comma-separated               |
//! | `!count`              | replies how many messages it received (`!` ones aside)  |
//! | `!state:N:SIZE`       | N times: `state::set` a SIZE-byte value, then `get` it; |
//! |                       | replies each one's duration as timed inside the guest:  |
//! |                       | N set then N get nanoseconds, u64 little-endian         |
//! | anything else         | counted, recorded (as text), and answered `ok`          |
//!
//! Records live in the incarnation's memory, so a restart starts them over: a test can
//! tell which incarnation handled what.
use warden_guest::{Context, Envelope, Plugin, export_plugin};

struct Relay {
    count: u64,
    log: Vec<String>,
}

/// Records beyond this are counted but not kept (a benchmark sends millions).
const MAX_LOG: usize = 1_000;

impl Plugin for Relay {
    fn init(_ctx: Context) -> Result<Self, String> {
        Ok(Relay { count: 0, log: Vec::new() })
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let Some(command) = msg.payload.strip_prefix(b"!") else {
            self.count += 1;
            if self.log.len() < MAX_LOG {
                self.log.push(String::from_utf8_lossy(&msg.payload).into_owned());
            }
            return Ok(b"ok".to_vec());
        };
        let command =
            std::str::from_utf8(command).map_err(|_| "relay: command is not UTF-8".to_string())?;
        match command {
            "log" => Ok(self.log.join(",").into_bytes()),
            "count" => Ok(self.count.to_string().into_bytes()),
            _ if command.starts_with("state:") => time_state(&command["state:".len()..]),
            _ => {
                let rest = command
                    .strip_prefix("flood:")
                    .ok_or_else(|| format!("relay: unknown command {command:?}"))?;
                let mut parts = rest.splitn(3, ':');
                let (n, to, text) = match (parts.next(), parts.next(), parts.next()) {
                    (Some(n), Some(to), Some(text)) => (n, to, text),
                    _ => return Err("relay: !flood:N:PATH:TEXT".into()),
                };
                let n: u64 = n.parse().map_err(|_| format!("relay: {n:?} is not a count"))?;
                let (mut sent, mut rejected, mut first) = (0u64, 0u64, None);
                for _ in 0..n {
                    match warden_guest::send(to, text) {
                        Ok(()) => sent += 1,
                        Err(e) => {
                            rejected += 1;
                            first.get_or_insert(e);
                        }
                    }
                }
                let mut reply = format!("sent {sent} rejected {rejected}");
                if let Some(e) = first {
                    reply += &format!(": {e}");
                }
                Ok(reply.into_bytes())
            }
        }
    }
}

/// `!state:N:SIZE`: the state benchmark's inside view of `set` and `get`.
fn time_state(args: &str) -> Result<Vec<u8>, String> {
    let (n, size) = args.split_once(':').ok_or("relay: !state:N:SIZE")?;
    let n: usize = n.parse().map_err(|_| format!("relay: {n:?} is not a count"))?;
    let size: usize = size.parse().map_err(|_| format!("relay: {size:?} is not a size"))?;
    let value = vec![0x5a; size];
    let keys: Vec<String> = (0..n).map(|i| format!("bench/{i}")).collect();
    let mut nanos = Vec::with_capacity(2 * n);
    for key in &keys {
        let start = std::time::Instant::now();
        warden_guest::state::set(key, &value).map_err(|e| format!("set {key}: {e}"))?;
        nanos.push(start.elapsed().as_nanos() as u64);
    }
    for key in &keys {
        let start = std::time::Instant::now();
        let got = warden_guest::state::get(key).map_err(|e| format!("get {key}: {e}"))?;
        nanos.push(start.elapsed().as_nanos() as u64);
        if got.as_deref() != Some(&value[..]) {
            return Err(format!("get {key}: not the value set"));
        }
    }
    Ok(nanos.iter().flat_map(|n| n.to_le_bytes()).collect())
}

export_plugin!(Relay);
