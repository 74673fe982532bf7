//! Attacks its host on request: the regression fixture for what a hostile plugin could
//! once make the host hold or do (timers, output, logging, terminal escapes).
//!
//! | message                   | effect                                               |
//! |---------------------------|------------------------------------------------------|
//! | `timers:N:SIZE:DELAY_MS`  | sets N `send-after` timers to itself, SIZE bytes     |
//! |                           | each; replies `set K` and, if one was refused,       |
//! |                           | `: ERROR` (the error)                                |
//! | `after:DELAY_MS:PATH:TEXT`| sets one `send-after` timer: TEXT to PATH            |
//! | `sends:N:SIZE:PATH`       | sends N messages of SIZE bytes to PATH; replies      |
//! |                           | `sent K` and, if one was refused, `: ERROR`          |
//! | `stdout:N`                | writes N newlines to stdout, 4 KiB at a time         |
//! | `log:N:SIZE`              | logs N lines of SIZE bytes at error level            |
//! | `panic:TEXT`              | panics with TEXT (`\n` and `\e` in it are a newline  |
//! |                           | and an escape character)                             |
//! | `fail:TEXT`               | answers with the application error TEXT (same        |
//! |                           | escapes)                                             |
//! | `prog:BYTES`              | runs BYTES as a program of host import calls with    |
//! |                           | arbitrary arguments (see `program.rs`)               |
//! | anything else             | answered `ok` (timers it set arrive as `tick`)       |
//!
//! A config of `progs:`, a 2-byte big-endian length N, N bytes and the rest: the first
//! N bytes are a program run in the first incarnation's `init` (its error fails the
//! start; later incarnations start plainly, so a restart always can), the rest one run
//! in every `terminate`.
use std::io::Write;
use std::time::Duration;
use warden_guest::{Context, Envelope, ExitReason, Plugin, export_plugin};

mod program;

struct Hostile {
    me: String,
    /// The program `terminate` runs.
    at_terminate: Vec<u8>,
}

impl Plugin for Hostile {
    fn init(ctx: Context) -> Result<Self, String> {
        let (at_init, at_terminate) = match ctx.config.strip_prefix(b"progs:") {
            Some([hi, lo, rest @ ..]) => {
                let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
                (&rest[..n], rest[n..].to_vec())
            }
            _ => (&[][..], Vec::new()),
        };
        if ctx.incarnation == 1 {
            program::run(at_init)?;
        }
        Ok(Hostile { me: ctx.path, at_terminate })
    }

    fn terminate(&mut self, _reason: ExitReason) {
        let _ = program::run(&self.at_terminate);
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        if let Some(program) = msg.payload.strip_prefix(b"prog:") {
            return program::run(program);
        }
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        let mut args = text.split(':');
        match args.next().unwrap_or_default() {
            "timers" => {
                let n = number(args.next())?;
                let size = number(args.next())? as usize;
                let delay = Duration::from_millis(number(args.next())?);
                for set in 0..n {
                    if let Err(e) = warden_guest::send_after(&self.me, vec![b't'; size], delay) {
                        return Ok(format!("set {set}: {e}").into_bytes());
                    }
                }
                Ok(format!("set {n}").into_bytes())
            }
            "sends" => {
                let n = number(args.next())?;
                let size = number(args.next())? as usize;
                let to = args.next().ok_or("hostile: sends:N:SIZE:PATH")?;
                for sent in 0..n {
                    if let Err(e) = warden_guest::send(to, vec![b's'; size]) {
                        return Ok(format!("sent {sent}: {e}").into_bytes());
                    }
                }
                Ok(format!("sent {n}").into_bytes())
            }
            "after" => {
                let delay = Duration::from_millis(number(args.next())?);
                let to = args.next().ok_or("hostile: after:DELAY_MS:PATH:TEXT")?;
                let text: Vec<&str> = args.collect();
                warden_guest::send_after(to, text.join(":"), delay).map_err(|e| e.to_string())?;
                Ok(b"ok".to_vec())
            }
            "stdout" => {
                let mut left = number(args.next())? as usize;
                let chunk = [b'\n'; 4096];
                let mut out = std::io::stdout().lock();
                while left > 0 {
                    let n = left.min(chunk.len());
                    out.write_all(&chunk[..n]).map_err(|e| e.to_string())?;
                    left -= n;
                }
                out.flush().map_err(|e| e.to_string())?;
                Ok(b"ok".to_vec())
            }
            "log" => {
                let n = number(args.next())?;
                let line = "x".repeat(number(args.next())? as usize);
                for _ in 0..n {
                    warden_guest::error!("{line}");
                }
                Ok(b"ok".to_vec())
            }
            "panic" => panic!("{}", unescape(&text["panic:".len()..])),
            "fail" => Err(unescape(&text["fail:".len()..])),
            _ => Ok(b"ok".to_vec()),
        }
    }
}

fn number(arg: Option<&str>) -> Result<u64, String> {
    arg.and_then(|a| a.parse().ok()).ok_or_else(|| format!("hostile: {arg:?} is not a number"))
}

fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\e", "\x1b")
}

export_plugin!(Hostile);
