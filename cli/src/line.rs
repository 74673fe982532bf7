//! One line of a run's output: an event of the tree, or what the CLI itself says (a
//! reply to a command, a note that events were lost), in the same JSON shape
//! (`{"event":"reply",...,"ts_us":...}`). What the CLI says is not an event of the
//! library's: no other subscriber sees it.
//!
//! Once the run has [`anchor`]ed the host's clock to the wall clock, every line also
//! carries its wall-clock `time` (RFC 3339, UTC, microseconds), derived from its
//! monotonic `ts_us`: the two never disagree about order.

use serde::{Serialize, Serializer};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use warden::events::EventRecord;

/// One line of output.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Line {
    /// An event of the tree.
    Event(EventRecord),
    /// The CLI's own, at the host's time `ts_us`.
    Said { said: Said, ts_us: u64 },
}

/// The wall-clock time at which the host's clock read 0.
static EPOCH: OnceLock<SystemTime> = OnceLock::new();

/// Ties the host's clock (reading `clock_us` now) to the wall clock, once per process.
pub(crate) fn anchor(clock_us: u64) {
    let _ = EPOCH.set(SystemTime::now() - Duration::from_micros(clock_us));
}

/// The wall-clock time of the host's `ts_us`, once anchored.
fn time(ts_us: u64) -> Option<String> {
    let at = *EPOCH.get()? + Duration::from_micros(ts_us);
    Some(humantime::format_rfc3339_micros(at).to_string())
}

impl Serialize for Line {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Stamped<'a, T> {
            #[serde(flatten)]
            body: &'a T,
            #[serde(skip_serializing_if = "Option::is_none")]
            time: Option<String>,
        }
        #[derive(Serialize)]
        struct SaidAt<'a> {
            #[serde(flatten)]
            said: &'a Said,
            ts_us: u64,
        }
        match self {
            Line::Event(record) => {
                Stamped { body: record, time: time(record.ts_us) }.serialize(serializer)
            }
            Line::Said { said, ts_us } => {
                let body = SaidAt { said, ts_us: *ts_us };
                Stamped { body: &body, time: time(*ts_us) }.serialize(serializer)
            }
        }
    }
}

/// What the CLI says in the event stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Said {
    /// The answer to a control command; `id` echoes the command's.
    Reply {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Value>,
        ok: bool,
        /// The result, when it succeeded (`null` for a command with nothing to return).
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// What went wrong, when it failed (OTP's word where OTP has one).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The printer fell behind and lost `count` events (it goes on with the newest).
    /// Replies are never among them.
    EventsDropped { count: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_s_own_lines_have_the_shape_of_events_and_their_time() {
        let reply = Line::Said {
            said: Said::Reply {
                id: Some(7.into()),
                ok: true,
                result: Some(Value::Null),
                error: None,
            },
            ts_us: 5,
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"event":"reply","id":7,"ok":true,"result":null,"ts_us":5}"#
        );
        let dropped = Line::Said { said: Said::EventsDropped { count: 3 }, ts_us: 9 };
        assert_eq!(
            serde_json::to_string(&dropped).unwrap(),
            r#"{"event":"events_dropped","count":3,"ts_us":9}"#
        );

        // Once anchored (the only test that anchors: the anchor is the process's), every
        // line has its wall-clock time too.
        anchor(1_000_000);
        let now = SystemTime::now();
        let line = Line::Said { said: Said::EventsDropped { count: 1 }, ts_us: 1_000_000 };
        let json: Value = serde_json::to_value(&line).unwrap();
        let time = humantime::parse_rfc3339(json["time"].as_str().unwrap()).unwrap();
        let apart = now.duration_since(time).unwrap_or_else(|e| e.duration());
        assert!(apart < Duration::from_secs(5), "{json}");
        assert_eq!(json["ts_us"], 1_000_000);
    }
}
