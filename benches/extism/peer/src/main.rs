//! Extism on Warden's peer scenarios, with the same method as `warden-bench`: warm-up,
//! then samples, p50 and p99 in microseconds, printed as a table and as JSON
//! (`--json FILE`), for the README's side-by-side table.
//!
//! - `call_64B`: `Plugin::call("handle", 64 bytes)` on a live plugin (the echo logic).
//! - `recreate_after_trap`: after a call that trapped, a fresh plugin from the
//!   `CompiledPlugin` (`Plugin::new_from_compiled`) and its first call (`init`), which
//!   creates the instance: Extism's way to a clean state after a trap, as a supervised
//!   restart is Warden's.
//!
//! ```text
//! rustup target add wasm32-unknown-unknown
//! cd benches/extism && cargo build --release --target wasm32-unknown-unknown -p extism-echo
//! cargo run --release -p extism-peer [-- --quick] [--json FILE]
//! ```

use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};
use std::time::Instant;

const PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/wasm32-unknown-unknown/release/extism_echo.wasm"
);

fn main() -> Result<(), extism::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let samples = if quick { 2_000 } else { 20_000 };
    let manifest = Manifest::new([Wasm::file(PLUGIN)]);
    // WASI on, as Warden's sandboxes have it; no on-disk cache: the module is compiled
    // once here and every plugin is made from that.
    let compiled =
        CompiledPlugin::new(PluginBuilder::new(manifest).with_wasi(true).with_cache_disabled())?;

    let mut plugin = Plugin::new_from_compiled(&compiled)?;
    plugin.call::<(), ()>("init", ())?;
    let payload = vec![7u8; 64];
    let mut call = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        let reply: Vec<u8> = plugin.call("handle", payload.as_slice())?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert_eq!(reply.len(), 64, "echo answered {} bytes", reply.len());
        if i >= samples / 10 {
            call.push(us);
        }
    }

    let restarts = samples / 4;
    let mut recreate = Vec::with_capacity(restarts);
    for i in 0..restarts + restarts / 10 {
        let trapped = plugin.call::<(), ()>("trap", ());
        assert!(trapped.is_err(), "trap did not trap");
        let t = Instant::now();
        plugin = Plugin::new_from_compiled(&compiled)?;
        plugin.call::<(), ()>("init", ())?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        if i >= restarts / 10 {
            recreate.push(us);
        }
    }

    let report = serde_json::json!({
        "peer": "extism 1.30.0 (wasmtime 43), extism-pdk 1.4.1",
        "scenarios": [summary("call_64B", call), summary("recreate_after_trap", recreate)],
    });
    for s in report["scenarios"].as_array().into_iter().flatten() {
        let (p50, p99) = (s["p50"].as_f64().unwrap_or(0.0), s["p99"].as_f64().unwrap_or(0.0));
        println!("{:<22} p50 {p50:>9.2} us   p99 {p99:>9.2} us", s["name"].as_str().unwrap_or(""));
    }
    if let Some(path) = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)) {
        std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap_or_default())
            .unwrap_or_else(|e| eprintln!("cannot write {path}: {e}"));
    }
    Ok(())
}

fn summary(name: &str, mut us: Vec<f64>) -> serde_json::Value {
    us.sort_by(f64::total_cmp);
    let at = |p: f64| us[((us.len() as f64 - 1.0) * p).round() as usize];
    serde_json::json!({ "name": name, "unit": "us", "samples": us.len(), "p50": at(0.5), "p99": at(0.99) })
}
