//! Supervision with Erlang/OTP `supervisor` semantics.
//!
//! [`Core`] decides (pure, synchronous, clock and randomness passed in); the runtime
//! carries its [`Directive`]s out. The spec types and their validation are in
//! [`spec`](self::SupervisorSpec).

mod core;

pub use self::core::{
    AdminError, ChildCounts, ChildInfo, ChildKind, ChildState, Core, Directive, StartCause,
    UpgradeStep,
};
pub use crate::spec::{
    AutoShutdown, Backoff, ChildSpec, ChildStart, LoadedPlugin, Placement, PluginSource,
    PluginStart, Restart, Shutdown, SpecError, SpecProblem, Strategy, SupervisorSpec, validate,
};

#[cfg(test)]
mod tests;
