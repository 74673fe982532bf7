//! One line of a run's output: an event of the tree, or what the CLI itself says (a
//! reply to a command, a note that events were lost), in the same JSON shape
//! (`{"event":"reply",...,"ts_us":...}`). What the CLI says is not an event of the
//! library's: no other subscriber sees it.

use serde::Serialize;
use serde_json::Value;
use warden::events::EventRecord;

/// One line of output.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Line {
    /// An event of the tree.
    Event(EventRecord),
    /// The CLI's own, at the host's time `ts_us`.
    Said {
        #[serde(flatten)]
        said: Said,
        ts_us: u64,
    },
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
    fn the_cli_s_own_lines_have_the_shape_of_events() {
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
    }
}
