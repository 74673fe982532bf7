//! Imports the tests' application interfaces (`tests/wit/app.wit`) and calls them on
//! command, and exports their `report` interface, for the host's embedding tests.
//!
//! Messages: `add:A:B` (replies the sum), `adds:N` (N calls of `add`, for the
//! benchmarks; replies the sum), `fail:TEXT`, `boom:TEXT`, `whoami`,
//! `served`, `sleep:MS` (replies `slept`), `reveal`, `spin` (an endless loop).
use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin};

warden_guest::generate!(path: "../../tests/wit", world: "test:app/importer");

use test::app::{calc, clock, secret};

struct Importer;

impl Plugin for Importer {
    fn init(_ctx: Context) -> Result<Self, String> {
        Ok(Importer)
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(msg.payload).map_err(|_| "not UTF-8".to_string())?;
        let (command, arg) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let reply = match command {
            "add" => {
                let (a, b) = arg.split_once(':').ok_or("add:A:B")?;
                let number = |n: &str| n.parse::<u32>().map_err(|e| e.to_string());
                calc::add(number(a)?, number(b)?).to_string()
            }
            "adds" => {
                let n: u32 = arg.parse().map_err(|_| "adds:N")?;
                (0..n).fold(0u32, calc::add).to_string()
            }
            "fail" => {
                calc::fail(arg);
                "survived".to_string()
            }
            "boom" => {
                calc::boom(arg);
                "survived".to_string()
            }
            "whoami" => calc::whoami(),
            "served" => calc::served().to_string(),
            "sleep" => {
                clock::sleep(arg.parse().map_err(|_| "sleep:MS")?);
                "slept".to_string()
            }
            "reveal" => secret::reveal(),
            "spin" => loop {
                std::hint::black_box(());
            },
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(reply.into_bytes())
    }

    fn terminate(&mut self, _reason: ExitReason) {}
}

export_plugin!(Importer);

/// The `report` export, called typed by the application.
struct Report;

impl exports::test::app::report::Guest for Report {
    fn summary(topic: String) -> Result<String, String> {
        if topic.is_empty() {
            return Err("an empty topic".into());
        }
        Ok(format!("{topic}: {}", calc::served()))
    }

    fn crash() {
        panic!("a crash the application asked for");
    }

    fn spin() {
        loop {
            std::hint::black_box(());
        }
    }
}

export!(Report);
