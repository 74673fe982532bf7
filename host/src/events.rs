//! What the host tells the world: one typed event enum, serialised to exactly the
//! JSON of the CLI contract (`{"event":"child_started",...}`).

use crate::ExitReason;
use serde::Serialize;

/// Something that happened in the tree. Field names are a contract: fields may be
/// added, never renamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A child's incarnation started (its `init` returned ok).
    ChildStarted {
        /// The child's path.
        path: String,
        /// Its incarnation number.
        incarnation: u64,
    },
    /// A child's incarnation ended.
    ChildExited {
        /// The child's path.
        path: String,
        /// The incarnation that ended.
        incarnation: u64,
        /// Why.
        reason: ExitReason,
    },
    /// A child will be restarted after `delay_ms`.
    ChildRestarting {
        /// The child's path.
        path: String,
        /// Consecutive restart attempt, 1 for the first.
        attempt: u32,
        /// The backoff delay.
        delay_ms: u64,
    },
    /// A child failed to start.
    ChildStartFailed {
        /// The child's path.
        path: String,
        /// Why.
        message: String,
    },
    /// A supervisor reached its restart intensity and gives up.
    SupervisorGaveUp {
        /// The supervisor's path.
        path: String,
        /// `reached_max_restart_intensity`.
        reason: String,
    },
    /// The answer to a control command (CLI); `id` echoes the command's.
    Reply {
        /// The command's id, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
        /// Whether the command succeeded.
        ok: bool,
        /// The result, when it succeeded.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        /// What went wrong, when it failed (OTP's word where OTP has one).
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A supervisor stopped, its children stopped before it.
    SupervisorStopped {
        /// The supervisor's path.
        path: String,
        /// Its exit reason (`shutdown` after giving up or an auto shutdown).
        reason: ExitReason,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_to_the_cli_contract() {
        let started = Event::ChildStarted { path: "root/a".into(), incarnation: 1 };
        assert_eq!(
            serde_json::to_string(&started).unwrap(),
            r#"{"event":"child_started","path":"root/a","incarnation":1}"#
        );
        let restarting = Event::ChildRestarting { path: "root/a".into(), attempt: 2, delay_ms: 0 };
        assert_eq!(
            serde_json::to_string(&restarting).unwrap(),
            r#"{"event":"child_restarting","path":"root/a","attempt":2,"delay_ms":0}"#
        );
        let gave_up = Event::SupervisorGaveUp {
            path: "root/sub".into(),
            reason: "reached_max_restart_intensity".into(),
        };
        assert_eq!(
            serde_json::to_string(&gave_up).unwrap(),
            r#"{"event":"supervisor_gave_up","path":"root/sub","reason":"reached_max_restart_intensity"}"#
        );
        let stopped =
            Event::SupervisorStopped { path: "root/sub".into(), reason: ExitReason::Shutdown };
        assert_eq!(
            serde_json::to_string(&stopped).unwrap(),
            r#"{"event":"supervisor_stopped","path":"root/sub","reason":{"kind":"shutdown"}}"#
        );
    }
}
