//! `prog:BYTES`: the guest-boundary fuzz target's program. Every byte string is a
//! program: each op is a byte naming a host import (or a way to end the export), and the
//! bytes after it are that import's arguments, read as far as they go (zeros past the
//! end). Imports are called through the raw bindings, not the SDK, so that no argument
//! is cleaned up on the way: any length, any delay, any path, any order. Beside them,
//! the WASI doors Rust's std opens: stdout and stderr, clocks and sleeps, files,
//! environment and randomness.
use std::io::Write;
use warden_guest::bindings::warden::plugin::{runtime, state, types};

/// The paths a program names: itself, its sibling, its supervisor, nobody, malformed.
const PATHS: [&str; 10] =
    ["root/h", "root/echo", "root/nobody", "root", "", "/", "root/h/x", "root//echo", "..", "*"];

/// The program's bytes, read from the front.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.bytes.is_empty()
    }

    fn byte(&mut self) -> u8 {
        let (first, rest) = self.bytes.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.bytes = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    /// A delay or timeout: mostly short, sometimes anything at all.
    fn millis(&mut self) -> u64 {
        match self.byte() % 4 {
            0 => self.u64(),
            1 => u64::MAX,
            _ => u64::from(self.byte()),
        }
    }

    /// A length: mostly small, sometimes a power of two up to 16 MiB or one either side
    /// of it. The host's limits are powers of two (1 MiB messages and state values,
    /// 4 MiB of pending timers, 16 MiB mailboxes; the fuzz target's state quota), so
    /// each is met at, just under and just over.
    fn len(&mut self) -> usize {
        match self.byte() % 8 {
            0 => 1 << (self.byte() % 25),
            1 => (1 << (self.byte() % 25)) - 1,
            2 => (1 << (self.byte() % 25)) + 1,
            _ => usize::from(self.byte()),
        }
    }

    /// Bytes: taken from the program, or `len` copies of one byte.
    fn bytes(&mut self) -> Vec<u8> {
        if self.byte().is_multiple_of(2) {
            let n = usize::from(self.byte()).min(self.bytes.len());
            let (taken, rest) = self.bytes.split_at(n);
            self.bytes = rest;
            taken.to_vec()
        } else {
            let len = self.len();
            vec![self.byte(); len]
        }
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    fn path(&mut self) -> String {
        match self.byte() {
            n if usize::from(n) < PATHS.len() * 20 => PATHS[usize::from(n) % PATHS.len()].into(),
            _ => self.text(),
        }
    }

    fn key(&mut self) -> String {
        match self.byte() % 4 {
            0 => self.text(),
            n => format!("k{n}"),
        }
    }

    fn level(&mut self) -> types::LogLevel {
        use types::LogLevel::*;
        [Trace, Debug, Info, Warn, Error][usize::from(self.byte() % 5)]
    }

    fn exit(&mut self) -> types::ExitRequest {
        use types::ExitRequest::*;
        match self.byte() % 4 {
            0 => Normal,
            1 => Shutdown,
            2 => ShutdownWith(self.text()),
            _ => Error(self.text()),
        }
    }
}

/// Runs `program` and answers with how many ops it ran and the errors it was given,
/// unless the program ends the export otherwise (an error, a panic, a trap).
pub(crate) fn run(program: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = Reader { bytes: program };
    let mut errors = 0u32;
    let mut ops = 0u32;
    let mut count = |result: Result<(), String>| errors += u32::from(result.is_err());
    while !r.done() {
        ops += 1;
        match r.byte() % 22 {
            0 => runtime::heartbeat(),
            1 => count(runtime::send(&r.path(), &r.bytes()).map_err(|e| format!("{e:?}"))),
            2 => {
                let (to, payload) = (r.path(), r.bytes());
                count(runtime::send_after(&to, &payload, r.millis()).map_err(|e| format!("{e:?}")))
            }
            3 => {
                let (to, payload) = (r.path(), r.bytes());
                count(
                    runtime::call(&to, &payload, r.millis())
                        .map(drop)
                        .map_err(|e| format!("{e:?}")),
                )
            }
            4 => count(if runtime::cancelled() { Err("cancelled".into()) } else { Ok(()) }),
            5 => runtime::exit(&r.exit()),
            6 => runtime::log(r.level(), &r.text()),
            7 => runtime::abort_reason(&r.text()),
            8 => count(if runtime::self_path() == "root/h" { Ok(()) } else { Err("path".into()) }),
            9 => count(runtime::upgraded_from().map_or(Ok(()), Err)),
            10 => count(state::get(&r.key()).map(drop).map_err(|e| format!("{e:?}"))),
            11 => count(state::set(&r.key(), &r.bytes()).map_err(|e| format!("{e:?}"))),
            12 => count(state::delete(&r.key()).map(drop).map_err(|e| format!("{e:?}"))),
            13 => {
                let ops = (0..r.len())
                    .map(|_| match r.byte() % 2 {
                        0 => state::StateOp::Set((r.key(), r.bytes())),
                        _ => state::StateOp::Delete(r.key()),
                    })
                    .collect::<Vec<_>>();
                count(state::batch(&ops).map_err(|e| format!("{e:?}")))
            }
            14 => count(state::keys(&r.text()).map(drop).map_err(|e| format!("{e:?}"))),
            15 => return Err(r.text()),
            16 => match r.byte() % 3 {
                0 => panic!("{}", r.text()),
                1 => core::arch::wasm32::unreachable(),
                _ => return Ok(r.bytes()),
            },
            // WASI, through std.
            17 => {
                let bytes = r.bytes();
                let written = match r.byte() % 2 {
                    0 => {
                        std::io::stdout().write_all(&bytes).and_then(|()| std::io::stdout().flush())
                    }
                    _ => std::io::stderr().write_all(&bytes),
                };
                count(written.map_err(|e| e.to_string()));
            }
            18 => {
                let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                let start = std::time::Instant::now();
                // Short: a WASI sleep is the host's wait, not the guest's time, and no
                // deadline bounds it in `init` (OTP's start waits for `init` too).
                std::thread::sleep(std::time::Duration::from_millis(u64::from(r.byte() % 8)));
                let slept = start.elapsed();
                count(wall.map(drop).map_err(|e| e.to_string()));
                count(if slept.as_nanos() > 0 { Ok(()) } else { Err("no time passed".into()) });
            }
            19 => {
                let path = r.text();
                let result = match r.byte() % 4 {
                    0 => std::fs::read(&path).map(drop),
                    1 => std::fs::write(&path, r.bytes()),
                    2 => std::fs::read_dir(&path).map(|entries| entries.for_each(drop)),
                    _ => std::fs::create_dir_all(&path),
                };
                count(result.map_err(|e| e.to_string()));
            }
            20 => {
                let vars = std::env::vars_os().count() + std::env::args_os().count();
                let dir = std::env::current_dir().map(drop).map_err(|e| e.to_string());
                count(if vars < 1 << 16 { dir } else { Err("environment".into()) });
            }
            _ => {
                // Randomness: std's hash seeds come from WASI's random source.
                use std::hash::BuildHasher;
                let hash = std::collections::hash_map::RandomState::new().hash_one(r.byte());
                count(if hash != 0 || r.done() { Ok(()) } else { Err("zero".into()) });
            }
        }
    }
    Ok(format!("ran {ops}, {errors} refused").into_bytes())
}
