//! The async shell around the supervision core: one tokio task per supervisor and
//! per child, owned all the way down (dropping a supervisor's task aborts its
//! children's), carrying out the [`Directive`](crate::supervisor::Directive)s of each supervisor's
//! [`Core`](crate::supervisor::Core).
//!
//! ```text
//!  Host ──▶ root supervisor task ──┬─▶ worker task (owns one Sandbox incarnation)
//!   │ supervisors by path          ├─▶ worker task ◀── mailbox (by path, outlives it)
//!   │ events: broadcast            └─▶ nested supervisor task ──▶ ...
//! ```
//!
//! A child's exit reaches its supervisor as a message; a supervisor's exit reaches
//! its parent the same way, which is how giving up escalates.

mod cluster;
mod error;
mod guest_logs;
mod handle;
mod host;
mod protocol;
mod report;
mod shared;
mod supervisor;
mod upgrade;
mod worker;

pub use error::{ExportError, HostError};
pub use host::{Host, HostBuilder};
pub use report::{ChildReport, HostReport, MailboxInfo, SupervisorReport};
pub use upgrade::Upgrade;
