//! {{name}}: a Warden plugin.
//!
//! It answers `echo:TEXT` with TEXT, counts `incr` in its durable state (kept across
//! restarts), answers `get` with the count, and panics on `crash` (its supervisor
//! restarts it, and the count survives).

use warden_guest::{Context, Envelope, Plugin, export_plugin, state};

struct {{type}} {
    count: u64,
}

const COUNT: &str = "count";

impl Plugin for {{type}} {
    fn init(ctx: Context) -> Result<Self, String> {
        let count = match state::get(COUNT).map_err(|e| e.to_string())? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse().map_err(|e| format!("{e}"))?,
            None => 0,
        };
        warden_guest::info!("incarnation {} of {} starts at {count}", ctx.incarnation, ctx.path);
        Ok(Self { count })
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let text = String::from_utf8_lossy(&msg.payload);
        match text.as_ref() {
            "incr" => {
                let next = self.count + 1;
                state::set(COUNT, next.to_string()).map_err(|e| e.to_string())?;
                self.count = next;
                Ok(next.to_string().into_bytes())
            }
            "get" => Ok(self.count.to_string().into_bytes()),
            "crash" => panic!("asked to crash at {}", self.count),
            _ => match text.strip_prefix("echo:") {
                Some(reply) => Ok(reply.as_bytes().to_vec()),
                None => Err(format!("unknown message {text:?}")),
            },
        }
    }
}

export_plugin!({{type}});
