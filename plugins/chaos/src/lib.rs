//! Does what its messages and config say, so any fault can be injected into any tree.
//!
//! Messages (UTF-8):
//!
//! | message          | effect                                                        |
//! |------------------|---------------------------------------------------------------|
//! | `trap`           | executes `unreachable`                                        |
//! | `panic`          | panics (reported with its message)                            |
//! | `div0`           | a real `i32.div_s` by zero                                    |
//! | `oob`            | loads from outside linear memory                              |
//! | `stack`          | recurses without bound                                        |
//! | `oom`            | allocates until the memory limit refuses to grow              |
//! | `loop`           | spins forever without heartbeats                              |
//! | `busy:MS`        | works MS milliseconds, heartbeating                           |
//! | `hang:MS`        | works MS milliseconds without heartbeats                      |
//! | `patient:MS`     | works MS milliseconds, heartbeating, stopping early once the  |
//! |                  | call it handles is cancelled; replies and stores (`patient`)  |
//! |                  | what happened: `done after N ms` or `stopped after N ms; a    |
//! |                  | call then failed: cancelled: ...`                             |
//! | `exit:normal`, `exit:shutdown`, `exit:error` | asks to exit so; replies `ok`     |
//! | `echo:TEXT`      | replies TEXT                                                  |
//! | `upgraded-from`  | replies the version this incarnation replaced in an upgrade,  |
//! |                  | or `none`                                                     |
//! | `state:set:K:V`  | stores V under K; replies `ok`                                |
//! | `state:get:K`    | replies the value under K (an error if there is none)         |
//! | `state:del:K`    | removes K; replies `true` if it was there, else `false`       |
//! | `state:keys:P`   | replies the keys starting with P, comma-separated             |
//! | `state:batch:OPS`| applies `K=V` (set) and `-K` (delete) ops, comma-separated,   |
//! |                  | atomically; replies `ok`                                      |
//! | `state:fill:N:SIZE` | sets `fill0`… `fill{N-1}` to SIZE bytes each, stopping at  |
//! |                  | the first error; replies `stored N` or `stored M: ERROR`      |
//! | `send:PATH:TEXT` | sends TEXT to PATH; replies `ok`                              |
//! | `call:PATH:TEXT` | calls PATH with TEXT; replies with its reply (or the error)   |
//!
//! Config (JSON object, every key optional, unknown keys refused): `fail_init` (every
//! start fails), `fail_init_from` (incarnations from N on fail), `init_delay_ms`,
//! `ignore_terminate` (spins in `terminate` until killed), `terminate_delay_ms`,
//! `call_timeout_ms` (the timeout of `call:`; default 5000).
use serde::Deserialize;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warden_guest::{Context, Envelope, ExitReason, ExitRequest, Plugin, export_plugin, state};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    fail_init: bool,
    #[serde(default)]
    fail_init_from: Option<u64>,
    #[serde(default)]
    init_delay_ms: u64,
    #[serde(default)]
    ignore_terminate: bool,
    #[serde(default)]
    terminate_delay_ms: u64,
    #[serde(default)]
    call_timeout_ms: Option<u64>,
}

struct Chaos {
    config: Config,
}

/// Side effects that keep the optimiser from deleting the faults below.
static WORK: AtomicU64 = AtomicU64::new(0);

impl Plugin for Chaos {
    fn init(ctx: Context) -> Result<Self, String> {
        let config: Config = if ctx.config.is_empty() {
            Config::default()
        } else {
            serde_json::from_slice(&ctx.config).map_err(|e| format!("bad chaos config: {e}"))?
        };
        if config.init_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(config.init_delay_ms));
        }
        if config.fail_init {
            return Err("chaos: fail_init is set".into());
        }
        if let Some(from) = config.fail_init_from
            && ctx.incarnation >= from
        {
            let n = ctx.incarnation;
            return Err(format!("chaos: fail_init_from {from}, this is incarnation {n}"));
        }
        Ok(Chaos { config })
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(msg.payload)
            .map_err(|_| "chaos: message is not UTF-8".to_string())?;
        let ok = || Ok(b"ok".to_vec());
        match text.as_str() {
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("chaos: panic requested"),
            "div0" => Ok(divide(black_box(1), black_box(0)).to_string().into_bytes()),
            "oob" => Ok(out_of_bounds().to_string().into_bytes()),
            "stack" => Ok(recurse(black_box(0)).to_string().into_bytes()),
            "oom" => grow_until_refused(),
            "loop" => loop {
                WORK.fetch_add(1, Ordering::Relaxed);
            },
            "upgraded-from" => {
                Ok(warden_guest::upgraded_from().unwrap_or_else(|| "none".into()).into_bytes())
            }
            "exit:normal" => {
                warden_guest::exit(ExitRequest::Normal);
                ok()
            }
            "exit:shutdown" => {
                warden_guest::exit(ExitRequest::Shutdown);
                ok()
            }
            "exit:error" => {
                warden_guest::exit(ExitRequest::Error("chaos: exit:error requested".into()));
                ok()
            }
            _ => {
                if let Some(ms) = text.strip_prefix("busy:") {
                    spin(parse_ms(ms)?, true);
                    ok()
                } else if let Some(ms) = text.strip_prefix("patient:") {
                    Ok(patient(parse_ms(ms)?).into_bytes())
                } else if let Some(ms) = text.strip_prefix("hang:") {
                    spin(parse_ms(ms)?, false);
                    ok()
                } else if let Some(reply) = text.strip_prefix("echo:") {
                    Ok(reply.as_bytes().to_vec())
                } else if let Some(kv) = text.strip_prefix("state:set:") {
                    let (k, v) = kv.split_once(':').ok_or("chaos: state:set:K:V needs a value")?;
                    state::set(k, v).map_err(|e| e.to_string())?;
                    ok()
                } else if let Some(k) = text.strip_prefix("state:get:") {
                    match state::get(k).map_err(|e| e.to_string())? {
                        Some(v) => Ok(v),
                        None => Err(format!("chaos: no state under {k:?}")),
                    }
                } else if let Some(k) = text.strip_prefix("state:del:") {
                    Ok(state::delete(k).map_err(|e| e.to_string())?.to_string().into_bytes())
                } else if let Some(prefix) = text.strip_prefix("state:keys:") {
                    Ok(state::keys(prefix).map_err(|e| e.to_string())?.join(",").into_bytes())
                } else if let Some(ops) = text.strip_prefix("state:batch:") {
                    let ops = ops.split(',').map(|op| match op.strip_prefix('-') {
                        Some(key) => Ok(state::Op::Delete(key.to_owned())),
                        None => match op.split_once('=') {
                            Some((k, v)) => Ok(state::Op::Set(k.to_owned(), v.as_bytes().to_vec())),
                            None => Err(format!("chaos: batch op {op:?} is neither K=V nor -K")),
                        },
                    });
                    state::batch(ops.collect::<Result<Vec<_>, _>>()?).map_err(|e| e.to_string())?;
                    ok()
                } else if let Some(args) = text.strip_prefix("state:fill:") {
                    let (n, size) = args.split_once(':').ok_or("chaos: state:fill:N:SIZE")?;
                    let n: u64 = n.parse().map_err(|_| format!("chaos: {n:?} is not a count"))?;
                    let size: usize =
                        size.parse().map_err(|_| format!("chaos: {size:?} is not a size"))?;
                    let value = vec![b'x'; size];
                    for i in 0..n {
                        if let Err(e) = state::set(&format!("fill{i}"), &value) {
                            return Ok(format!("stored {i}: {e}").into_bytes());
                        }
                    }
                    Ok(format!("stored {n}").into_bytes())
                } else if let Some(rest) = text.strip_prefix("send:") {
                    let (to, body) =
                        rest.split_once(':').ok_or("chaos: send:PATH:TEXT needs a text")?;
                    warden_guest::send(to, body).map_err(|e| e.to_string())?;
                    ok()
                } else if let Some(rest) = text.strip_prefix("call:") {
                    let (to, body) =
                        rest.split_once(':').ok_or("chaos: call:PATH:TEXT needs a text")?;
                    let timeout =
                        Duration::from_millis(self.config.call_timeout_ms.unwrap_or(5000));
                    warden_guest::call(to, body, timeout).map_err(|e| e.to_string())
                } else {
                    Err(format!("chaos: unknown command {text:?}"))
                }
            }
        }
    }

    fn terminate(&mut self, _reason: ExitReason) {
        if self.config.terminate_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.config.terminate_delay_ms));
        }
        if self.config.ignore_terminate {
            loop {
                WORK.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn parse_ms(ms: &str) -> Result<Duration, String> {
    ms.parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("chaos: {ms:?} is not a number of milliseconds"))
}

fn spin(duration: Duration, heartbeat: bool) {
    let start = Instant::now();
    let mut last_beat = start;
    while start.elapsed() < duration {
        WORK.fetch_add(1, Ordering::Relaxed);
        if heartbeat && last_beat.elapsed() >= Duration::from_millis(1) {
            warden_guest::heartbeat();
            last_beat = Instant::now();
        }
    }
}

/// Works up to `duration`, heartbeating, and stops early once the call it handles is
/// cancelled; then tries a call (which must fail `cancelled`). What happened is the
/// reply and the state under `patient`, since a cancelled call's reply goes nowhere.
fn patient(duration: Duration) -> String {
    let start = Instant::now();
    let mut last_beat = start;
    while start.elapsed() < duration {
        WORK.fetch_add(1, Ordering::Relaxed);
        if last_beat.elapsed() >= Duration::from_millis(1) {
            warden_guest::heartbeat();
            last_beat = Instant::now();
            if warden_guest::cancelled() {
                let ms = start.elapsed().as_millis();
                let then = match warden_guest::call(&warden_guest::self_path(), "echo:x", duration)
                {
                    Ok(_) => "a call then answered".to_owned(),
                    Err(e) => format!("a call then failed: {e}"),
                };
                let said = format!("stopped after {ms} ms; {then}");
                let _ = state::set("patient", &said);
                return said;
            }
        }
    }
    let said = format!("done after {} ms", start.elapsed().as_millis());
    let _ = state::set("patient", &said);
    said
}

/// A real `i32.div_s`: Rust's `/` checks for zero and panics, so the check is removed
/// by promising the optimiser that `b` is never zero. That promise is broken on
/// purpose; the wasm instruction then traps, which is exactly the fault wanted here.
#[inline(never)]
fn divide(a: i32, b: i32) -> i32 {
    if b == 0 {
        // SAFETY: deliberately false, see above; the trap ends the instance.
        unsafe { std::hint::unreachable_unchecked() }
    }
    a / b
}

/// Loads from an address past the end of any wasm32 memory.
#[inline(never)]
fn out_of_bounds() -> u8 {
    let address = black_box(u32::MAX as usize - 15);
    // SAFETY: deliberately invalid; the wasm load traps and ends the instance.
    unsafe { std::ptr::read_volatile(address as *const u8) }
}

/// Recursion that the optimiser cannot turn into a loop (the rotate is not an
/// accumulator it can hoist) and that keeps its frames off the shadow stack, so it
/// exhausts the wasm call stack itself.
#[inline(never)]
#[allow(unconditional_recursion, reason = "the point is to overflow the stack")]
fn recurse(n: u64) -> u64 {
    WORK.fetch_add(1, Ordering::Relaxed);
    recurse(n.wrapping_add(1)).rotate_left((n & 31) as u32)
}

fn grow_until_refused() -> Result<Vec<u8>, String> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let chunk = vec![1u8; 1 << 20];
        hoard.push(black_box(chunk));
    }
}

export_plugin!(Chaos);
