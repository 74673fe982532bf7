//! The shop example's cashier: sells from the application's inventory and books the
//! order in its order book. `buy:ITEM:COUNT` replies `order N: ITEM x COUNT, L left`.
//!
//! It has a bug: selling 13 of anything panics (the crash the example shows; the
//! cashier is restarted and the shop goes on).
use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin};

warden_guest::generate!(path: "../../examples/embedding/wit", world: "acme:shop/plugin");

use acme::shop::{inventory, orders};

struct Cashier;

impl Plugin for Cashier {
    fn init(_ctx: Context) -> Result<Self, String> {
        Ok(Cashier)
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(msg.payload).map_err(|_| "not UTF-8".to_string())?;
        let Some(("buy", order)) = text.split_once(':') else {
            return Err(format!("unknown command {text:?}: use buy:ITEM:COUNT"));
        };
        let (item, count) = order.split_once(':').ok_or("buy:ITEM:COUNT")?;
        let count: u32 = count.parse().map_err(|_| format!("{count:?} is not a count"))?;
        if count == 13 {
            panic!("an unlucky order: 13 {item}");
        }
        let left = inventory::take(item, count)?;
        let number = orders::place(item, count);
        Ok(format!("order {number}: {item} x {count}, {left} left").into_bytes())
    }

    fn terminate(&mut self, _reason: ExitReason) {}
}

export_plugin!(Cashier);
