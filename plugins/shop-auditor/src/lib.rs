//! The shop example's auditor: exports `report.summary`, which the application calls
//! typed, and reads the inventory and the order book to answer it. Its `init` config
//! names the items it watches (`["apples", "pears"]`).
use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin};

warden_guest::generate!(path: "../../examples/embedding/wit", world: "acme:shop/reporter");

use acme::shop::{inventory, orders};
use std::cell::RefCell;

thread_local! {
    /// The items the auditor watches, from its config.
    static WATCHED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct Auditor;

impl Plugin for Auditor {
    fn init(ctx: Context) -> Result<Self, String> {
        let config = String::from_utf8_lossy(&ctx.config);
        let items = config
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|item| item.trim().trim_matches('"').to_owned())
            .filter(|item| !item.is_empty())
            .collect();
        WATCHED.with(|watched| *watched.borrow_mut() = items);
        Ok(Auditor)
    }

    fn handle(&mut self, _msg: Envelope) -> Result<Vec<u8>, String> {
        Ok(<Report as exports::acme::shop::report::Guest>::summary().into_bytes())
    }

    fn terminate(&mut self, _reason: ExitReason) {}
}

struct Report;

impl exports::acme::shop::report::Guest for Report {
    fn summary() -> String {
        let stock: Vec<String> = WATCHED.with(|watched| {
            watched
                .borrow()
                .iter()
                .map(|item| format!("{item} {}", inventory::stock(item)))
                .collect()
        });
        format!("{} orders; in stock: {}", orders::count(), stock.join(", "))
    }
}

export_plugin!(Auditor);
export!(Report);
