//! What an upgrade changes in a child's spec, and how a change is applied to the
//! spec the supervisor holds when it carries the upgrade out (not to a copy taken
//! before the component was compiled: two upgrades one after the other each change
//! only what they name).

use crate::sandbox::{ChildLimits, Grants};
use crate::spec::{PluginSource, PluginStart};
use std::sync::Arc;

/// What [`Host::upgrade_child`](super::Host::upgrade_child) changes: the component,
/// and the config, limits or grants if given (the child keeps its own otherwise).
#[derive(Clone)]
pub struct Upgrade {
    pub(crate) plugin: PluginSource,
    config: Option<Vec<u8>>,
    limits: Option<ChildLimits>,
    grants: Option<Grants>,
    change: Option<StartChange>,
}

/// A change of a plugin start given as code ([`Upgrade::change`]).
type StartChange = Arc<dyn Fn(&mut PluginStart) + Send + Sync>;

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("plugin", &self.plugin)
            .field("config", &self.config.as_ref().map(Vec::len))
            .field("limits", &self.limits)
            .field("grants", &self.grants)
            .field("change", &self.change.is_some())
            .finish()
    }
}

impl Upgrade {
    /// An upgrade to the component `plugin` (a path, bytes or a loaded plugin).
    pub fn new(plugin: impl Into<PluginSource>) -> Self {
        Self { plugin: plugin.into(), config: None, limits: None, grants: None, change: None }
    }

    /// Gives the child a new config too.
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.config = Some(config.into());
        self
    }

    /// Gives the child new limits too.
    pub fn limits(mut self, limits: ChildLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Gives the child new grants too.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = Some(grants);
        self
    }

    /// Changes what `change` changes of the child's plugin start too (after the config,
    /// limits and grants given), applied to the start the supervisor holds when it
    /// carries the upgrade out: e.g. one limit, keeping the others.
    pub fn change(mut self, change: impl Fn(&mut PluginStart) + Send + Sync + 'static) -> Self {
        self.change = Some(Arc::new(change));
        self
    }

    /// The same upgrade, to `plugin` (the component loaded).
    pub(crate) fn with_plugin(self, plugin: impl Into<PluginSource>) -> Self {
        Self { plugin: plugin.into(), ..self }
    }

    /// `start` as this upgrade changes it.
    pub(crate) fn apply(&self, start: &PluginStart) -> PluginStart {
        let mut start = start.clone();
        start.plugin = self.plugin.clone();
        if let Some(config) = &self.config {
            start.config.clone_from(config);
        }
        if let Some(limits) = &self.limits {
            start.limits = limits.clone();
        }
        if let Some(grants) = &self.grants {
            start.grants = grants.clone();
        }
        if let Some(change) = &self.change {
            change(&mut start);
        }
        start
    }
}

/// A change of a spec the supervisor applies: an upgrade, or putting back what was
/// there before (a template whose rollout failed).
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Upgrade(Upgrade),
    Restore(PluginStart),
}

impl Change {
    pub(crate) fn apply(&self, start: &PluginStart) -> PluginStart {
        match self {
            Change::Upgrade(upgrade) => upgrade.apply(start),
            Change::Restore(before) => before.clone(),
        }
    }

    /// The component it puts in place.
    pub(crate) fn plugin(&self) -> &PluginSource {
        match self {
            Change::Upgrade(upgrade) => &upgrade.plugin,
            Change::Restore(before) => &before.plugin,
        }
    }
}
