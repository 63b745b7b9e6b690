//! The [`Fleet`] trait: what owns capacity.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{PoolName, Target, TargetId, Version};

/// What a fleet can do. The executor refuses a plan that needs more, before anything changes
/// (a fixed inventory of hosts asked to start targets for a blue-green deploy), and the
/// conformance suite tests what is claimed and that the rest is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FleetCapabilities {
    /// Starts new targets ([`Fleet::provision`]): blue-green, canary, linear and a rolling
    /// replace need it.
    pub provisions: bool,
    /// Moves a target to another version in place ([`Fleet::update`]): a rolling deploy in
    /// place needs it.
    pub updates_in_place: bool,
    /// Reads what each target runs from the targets themselves. A fleet that cannot (a fixed
    /// inventory, whose file gives only the first versions) is told, before every plan and
    /// resume of an executor with a state store, what the recorded deployments left each
    /// target on ([`Fleet::learn_versions`]).
    pub reads_versions: bool,
}

impl FleetCapabilities {
    /// A fleet that provisions and updates in place (the default).
    pub fn all() -> Self {
        Self { provisions: true, updates_in_place: true, reads_versions: true }
    }

    /// The same, with `provisions` set.
    #[must_use]
    pub fn with_provisions(mut self, yes: bool) -> Self {
        self.provisions = yes;
        self
    }

    /// The same, with `updates_in_place` set.
    #[must_use]
    pub fn with_updates_in_place(mut self, yes: bool) -> Self {
        self.updates_in_place = yes;
        self
    }

    /// The same, with `reads_versions` set.
    #[must_use]
    pub fn with_reads_versions(mut self, yes: bool) -> Self {
        self.reads_versions = yes;
        self
    }
}

impl Default for FleetCapabilities {
    fn default() -> Self {
        Self::all()
    }
}

/// A request for targets of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// The version to run.
    pub version: Version,
    /// How many targets with this `tag` must exist when the call returns.
    pub count: usize,
    /// Zones to spread the targets over, round-robin; empty means the fleet chooses.
    #[serde(default)]
    pub zones: Vec<String>,
    /// A label stored on each target, unique per deployment step. Provisioning is "ensure":
    /// targets already carrying this tag count towards `count`, so a re-run creates only
    /// what is missing.
    pub tag: String,
}

/// Owns capacity: starts, updates, stops and lists targets.
///
/// # Guarantees (what an implementation must provide)
/// - [`provision`](Fleet::provision) is "ensure": it returns every target carrying the
///   request's tag, creating only the missing ones, so a re-run never doubles capacity.
/// - [`retire`](Fleet::retire) of a target that is already gone succeeds.
/// - [`update`](Fleet::update) of a target already on the version succeeds without a restart.
/// - [`list`](Fleet::list) reads the fleet, not a cache.
///
/// # Assumptions
/// - The executor drains a target in the router before it calls `update` or `retire`.
///
/// # Errors
/// - [`Error::NotFound`](crate::Error::NotFound) for an unknown target in `update`.
/// - [`Error::Invalid`](crate::Error::Invalid) for a version the fleet cannot run.
/// - [`Error::Backend`](crate::Error::Backend), retryable or not, as for [`Router`](crate::Router).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Fleet: Send + Sync + Debug {
    /// A short name for events and errors.
    fn name(&self) -> &str;

    /// What this fleet can do; by default, everything. A fleet that cannot provision or cannot
    /// update in place says so, and still refuses such a call with [`Error::Invalid`](crate::Error::Invalid).
    fn capabilities(&self) -> FleetCapabilities {
        FleetCapabilities::all()
    }

    /// The standing environments of a fixed inventory: each host and the pool it stands in
    /// (empty by default, and for any fleet that provisions). The executor counts such a host
    /// as a member of its pool even while the router does not list it yet (it is registered
    /// when its pool is deployed to), and refuses a router that serves it from another pool.
    fn standing_pools(&self) -> BTreeMap<TargetId, PoolName> {
        BTreeMap::new()
    }

    /// Takes what the recorded deployments left each target on (a fleet that does not
    /// [`read versions`](FleetCapabilities::reads_versions)); ids it does not know are
    /// ignored. The default ignores them all.
    fn learn_versions(&self, recorded: &BTreeMap<TargetId, Version>) {
        let _ = recorded;
    }

    /// Ensures `request.count` targets of `request.version` tagged `request.tag` exist.
    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>>;

    /// Moves one target to `version` in place (restart with the new software).
    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target>;

    /// Stops and removes `targets`.
    async fn retire(&self, targets: &[TargetId]) -> Result<()>;

    /// Every target the fleet runs.
    async fn list(&self) -> Result<Vec<Target>>;

    /// The targets among `ids` the fleet runs (ids it does not run are left out), read like
    /// [`list`](Fleet::list). The executor reads a batch's targets with it. The default lists
    /// the whole fleet and keeps the ones asked for; a fleet that can look targets up by id
    /// cheaply should say so here.
    async fn targets(&self, ids: &[TargetId]) -> Result<Vec<Target>> {
        let wanted: BTreeSet<&TargetId> = ids.iter().collect();
        Ok(self.list().await?.into_iter().filter(|t| wanted.contains(&t.id)).collect())
    }
}
