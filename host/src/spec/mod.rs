//! What a tree is made of, as plain data: the bottom layer every other part uses.
//!
//! ```text
//!   spec: supervisor and child specs, limits, grants, mailbox and heartbeat settings
//!     ▲ used by
//!   supervisor core · sandbox · messaging · state     (side by side, independent)
//!     ▲ wired by
//!   runtime (Host) ──▶ manifest, testing
//! ```
//!
//! Nothing here does anything: no tokio, no wasmtime, no I/O. Validation of a spec
//! ([`validate`]) is OTP's rules on the data.

mod heartbeat;
mod interfaces;
mod limits;
mod mailbox;
mod network;
mod source;
mod tree;

pub use heartbeat::{HeartbeatPolicy, PhiAccrual};
pub use interfaces::{
    check_interface_grant, check_interface_name, grant_covers, is_application_interface,
};
pub use limits::{ChildLimits, DirGrant, Grants, Quota};
pub use mailbox::{BadTarget, CircuitConfig, MailboxConfig, Targets, TimerLimits};
pub use network::{BadNetRule, NetRule, Network, Protocol, SocketUse, Transport};
pub use source::{LoadedPlugin, PluginSource};
pub(crate) use tree::check_child;
pub use tree::{
    AutoShutdown, Backoff, ChildSpec, ChildStart, Placement, PluginStart, Restart, Shutdown,
    SpecError, SpecProblem, Strategy, SupervisorSpec, validate,
};
