//! The shop example's stocker: puts goods into the application's inventory.
//! `restock:ITEM:COUNT` replies `ITEM: N in stock`; its `init` stocks what its
//! config lists (`{"apples": 10}`).
use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin};

warden_guest::generate!(path: "../../examples/embedding/wit", world: "acme:shop/plugin");

use acme::shop::inventory;

struct Stocker;

impl Plugin for Stocker {
    fn init(ctx: Context) -> Result<Self, String> {
        // `{"apples": 10, "pears": 4}`, read without a JSON library.
        let config = String::from_utf8_lossy(&ctx.config);
        for entry in config.trim_matches(|c| c == '{' || c == '}' || c == ' ').split(',') {
            if let Some((item, count)) = entry.split_once(':') {
                let item = item.trim().trim_matches('"');
                let count = count.trim().parse().map_err(|_| format!("bad count for {item}"))?;
                inventory::restock(item, count);
            }
        }
        Ok(Stocker)
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(msg.payload).map_err(|_| "not UTF-8".to_string())?;
        let Some(("restock", order)) = text.split_once(':') else {
            return Err(format!("unknown command {text:?}: use restock:ITEM:COUNT"));
        };
        let (item, count) = order.split_once(':').ok_or("restock:ITEM:COUNT")?;
        let count = count.parse().map_err(|_| format!("{count:?} is not a count"))?;
        let now = inventory::restock(item, count);
        Ok(format!("{item}: {now} in stock").into_bytes())
    }

    fn terminate(&mut self, _reason: ExitReason) {}
}

export_plugin!(Stocker);
