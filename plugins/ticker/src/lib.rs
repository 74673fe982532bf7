//! Heartbeats and sends itself (or a target) a tick every interval with `send-after`.
//!
//! Config (JSON): `{"interval_ms": 100, "target": "root/sink", "message": "tick {n}",
//! "stop_after": 10}`; the target defaults to the ticker itself, the message to
//! `tick {n}` (`{n}` is the tick's number), and a ticker with `stop_after` exits
//! normally after that many ticks. Messages: `tick` (heartbeats, counts, sends, schedules
//! the next tick), `count` (replies with the ticks seen by this incarnation).
use serde::Deserialize;
use std::time::Duration;
use warden_guest::{Context, Envelope, ExitRequest, Plugin, export_plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    stop_after: Option<u64>,
}

fn default_interval() -> u64 {
    1000
}

struct Ticker {
    interval: Duration,
    target: String,
    message: String,
    stop_after: Option<u64>,
    me: String,
    ticks: u64,
}

impl Ticker {
    fn schedule(&self) -> Result<(), String> {
        warden_guest::send_after(&self.me, b"tick", self.interval).map_err(|e| e.to_string())
    }
}

impl Plugin for Ticker {
    fn init(ctx: Context) -> Result<Self, String> {
        let config: Config = if ctx.config.is_empty() {
            Config {
                interval_ms: default_interval(),
                target: None,
                message: None,
                stop_after: None,
            }
        } else {
            serde_json::from_slice(&ctx.config).map_err(|e| format!("bad ticker config: {e}"))?
        };
        let me = ctx.path;
        let ticker = Ticker {
            interval: Duration::from_millis(config.interval_ms),
            target: config.target.unwrap_or_else(|| me.clone()),
            message: config.message.unwrap_or_else(|| "tick {n}".into()),
            stop_after: config.stop_after,
            me,
            ticks: 0,
        };
        ticker.schedule()?;
        Ok(ticker)
    }

    fn handle(&mut self, msg: Envelope) -> Result<Vec<u8>, String> {
        match msg.payload.as_slice() {
            b"tick" => {
                warden_guest::heartbeat();
                self.ticks += 1;
                if self.target != self.me {
                    let message = self.message.replace("{n}", &self.ticks.to_string());
                    warden_guest::send(&self.target, message).map_err(|e| e.to_string())?;
                }
                if self.stop_after.is_some_and(|n| self.ticks >= n) {
                    warden_guest::exit(ExitRequest::Normal);
                } else {
                    self.schedule()?;
                }
                Ok(Vec::new())
            }
            b"count" => Ok(self.ticks.to_string().into_bytes()),
            other => Err(format!("unknown command {:?}", String::from_utf8_lossy(other))),
        }
    }
}

export_plugin!(Ticker);
