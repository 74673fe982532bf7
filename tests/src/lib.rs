//! Fixture plugins for Warden's integration tests, built from `plugins/` by this
//! crate's build script, and small helpers the tests share.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

pub mod browser;
pub mod nats;

use std::sync::OnceLock;
use warden::sandbox::Engine;

/// One engine for a whole test binary (the test kit's): compiled plugins are shared,
/// as in a host, and parallel tests do not each reserve an instance pool.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(warden::testing::engine)
}

/// The resident set size of this process, in bytes (Linux).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm is readable");
    let pages: u64 =
        statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm has RSS");
    pages * 4096
}
