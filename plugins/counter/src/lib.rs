//! Counts `incr` messages and keeps the count in its durable state, so a restarted
//! incarnation continues where the last one stopped.
//!
//! Messages: `incr` (adds one, replies with the new count), `get` (replies with the
//! count), `crash` (panics: the count survives).
use warden_guest::{Context, Envelope, Plugin, export_plugin, state};

struct Counter {
    count: u64,
}

const KEY: &str = "count";

impl Plugin for Counter {
    fn init(ctx: Context) -> Result<Self, String> {
        let count = match state::get(KEY).map_err(|e| e.to_string())? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .parse()
                .map_err(|e| format!("stored count is not a number: {e}"))?,
            None => 0,
        };
        warden_guest::info!("incarnation {} starts at {count}", ctx.incarnation);
        Ok(Counter { count })
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        match msg.payload.as_slice() {
            b"incr" => {
                let next = self.count + 1;
                state::set(KEY, next.to_string()).map_err(|e| e.to_string())?;
                self.count = next;
                Ok(next.to_string().into_bytes())
            }
            b"get" => Ok(self.count.to_string().into_bytes()),
            b"crash" => panic!("counter asked to crash at {}", self.count),
            other => Err(format!("unknown command {:?}", String::from_utf8_lossy(other))),
        }
    }
}

export_plugin!(Counter);
