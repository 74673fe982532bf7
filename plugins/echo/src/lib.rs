//! Replies with what it was sent.
use warden_guest::{Context, Envelope, Plugin, export_plugin};

struct Echo;

impl Plugin for Echo {
    fn init(_ctx: Context) -> Result<Self, String> {
        Ok(Echo)
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        Ok(msg.payload)
    }
}

export_plugin!(Echo);
