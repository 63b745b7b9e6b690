//! Plans: a deployment as plain-data steps, compiled from a [`Spec`](crate::Spec) against
//! what the backends serve now ([`Snapshot`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hooks::HookPoint;
use crate::model::{PoolName, Split, Target, TargetId, Version};
use crate::router::Adoption;
use crate::spec::Spec;

mod compile;
mod rolling;
mod standing;
pub(crate) use compile::{gate_and_attach, tag};
mod timeline;

pub use timeline::{PoolRow, Timeline, TimelineRow};

/// What the backends serve before a deploy: the split and each pool's members.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The split served.
    pub split: Split,
    /// Each pool's member targets (serving or not), with the version they run.
    pub pools: BTreeMap<PoolName, Vec<Target>>,
    /// Members that were not serving (drained or in maintenance, by an operator say): a deploy
    /// leaves them out of its batches and a rollback leaves them out of service.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub disabled: BTreeSet<TargetId>,
}

impl Snapshot {
    /// The targets of `pool` (empty if unknown).
    pub fn targets(&self, pool: &PoolName) -> &[Target] {
        self.pools.get(pool).map_or(&[], Vec::as_slice)
    }

    /// The targets of `pool` that were serving.
    pub fn serving(&self, pool: &PoolName) -> Vec<Target> {
        self.targets(pool).iter().filter(|t| !self.disabled.contains(&t.id)).cloned().collect()
    }
}

/// Which targets a step acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TargetSet {
    /// These targets, known when the plan was compiled.
    Ids(Vec<TargetId>),
    /// The targets an earlier `Provision` step created with this tag.
    Tagged(String),
    /// The targets whose tag starts with this (every batch a rolling replace started so far).
    TagPrefix(String),
}

impl TargetSet {
    /// Whether a target carrying `tag` belongs to a tag-selected set (never for `Ids`).
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        match (self, tag) {
            (Self::Tagged(want), Some(tag)) => want == tag,
            (Self::TagPrefix(prefix), Some(tag)) => tag.starts_with(prefix.as_str()),
            _ => false,
        }
    }
}

impl fmt::Display for TargetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ids(ids) => write!(f, "{} target{}", ids.len(), if ids.len() == 1 { "" } else { "s" }),
            Self::Tagged(tag) => write!(f, "targets tagged {tag}"),
            Self::TagPrefix(prefix) => write!(f, "targets tagged {prefix}*"),
        }
    }
}

/// One step of a plan. Every step is an "ensure": the executor observes, does only what is
/// missing, and verifies by reading back, so any step can be run again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Take over what the router serves but bluegreen does not manage yet (see
    /// [`Router::adopt`](crate::Router::adopt)); it serves on unchanged.
    Adopt {
        /// What is taken over.
        adoptions: Vec<Adoption>,
    },
    /// Run the hooks of a point.
    Hook {
        /// The point.
        point: HookPoint,
    },
    /// Ensure `count` targets of `version` tagged `tag` exist.
    Provision {
        /// The pool they are for.
        pool: PoolName,
        /// Their version.
        version: Version,
        /// How many.
        count: usize,
        /// Zones to spread them over.
        zones: Vec<String>,
        /// The tag that finds them again.
        tag: String,
    },
    /// Wait until every target passes the health gate.
    AwaitHealthy {
        /// The targets.
        targets: TargetSet,
    },
    /// Ensure the targets are serving members of `pool`.
    Attach {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: TargetSet,
    },
    /// Run the analyses against the new targets directly, before production traffic.
    TestTraffic {
        /// How long.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// The targets tested.
        targets: TargetSet,
    },
    /// Ensure the router serves `split`, then wait for propagation.
    ShiftTraffic {
        /// The split.
        split: Split,
    },
    /// Watch the new targets and run the analyses for `duration` (skipped on promote).
    Bake {
        /// How long.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// The targets whose health is watched.
        watch: TargetSet,
    },
    /// Wait: for `duration`, or until an operator resumes when `None`.
    Pause {
        /// How long, or `None` for a manual pause.
        #[serde(default, with = "humantime_serde")]
        duration: Option<Duration>,
        /// Why (shown in the timeline and events).
        reason: String,
    },
    /// Wait for a human to approve (`resume` or `promote`), at most `timeout`; then
    /// `on_timeout`.
    Approve {
        /// How long to wait.
        #[serde(with = "humantime_serde")]
        timeout: Duration,
        /// What a timeout does.
        on_timeout: crate::spec::OnTimeout,
    },
    /// Drain targets out of `pool`: no new requests, wait for in-flight work or the timeout.
    Drain {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: TargetSet,
        /// Longest wait.
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    },
    /// Ensure the targets are no longer members of `pool`.
    Detach {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: TargetSet,
    },
    /// Ensure the targets are stopped (they must be drained first).
    Retire {
        /// The targets.
        targets: TargetSet,
    },
    /// Update a batch in place; each target independently: drain, update, pass the health
    /// gate, re-enable.
    UpdateBatch {
        /// The pool.
        pool: PoolName,
        /// Batch number, from 1.
        batch: usize,
        /// Batches in all.
        of: usize,
        /// The targets.
        targets: Vec<TargetId>,
        /// The version to run.
        version: Version,
        /// Longest drain.
        #[serde(with = "humantime_serde")]
        drain_timeout: Duration,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| crate::model::short(*d);
        match self {
            Self::Adopt { adoptions } => {
                let what: Vec<&str> = adoptions.iter().map(|a| a.what.as_str()).collect();
                let n = adoptions.len();
                write!(f, "adopt {n} member{} ({})", if n == 1 { "" } else { "s" }, what.join(", "))
            }
            Self::Hook { point } => write!(f, "run {point} hooks"),
            Self::Provision { pool, version, count, .. } => {
                write!(f, "start {count} target{} of {version} for pool {pool}", if *count == 1 { "" } else { "s" })
            }
            Self::AwaitHealthy { targets } => write!(f, "wait until {targets} are healthy"),
            Self::Attach { pool, targets } => write!(f, "register {targets} in pool {pool}"),
            Self::TestTraffic { duration, targets } => write!(f, "test {targets} for {}", d(duration)),
            Self::ShiftTraffic { split } => write!(f, "shift traffic to {split}"),
            Self::Bake { duration, .. } => write!(f, "bake for {}", d(duration)),
            Self::Pause { duration: Some(t), reason } => write!(f, "pause {} ({reason})", d(t)),
            Self::Pause { duration: None, reason } => write!(f, "pause until resumed ({reason})"),
            Self::Approve { timeout, on_timeout } => {
                write!(f, "wait for approval (bluegreen resume) ≤ {}, then {on_timeout}", d(timeout))
            }
            Self::Drain { pool, targets, timeout } => write!(f, "drain {targets} in pool {pool} (≤ {})", d(timeout)),
            Self::Detach { pool, targets } => write!(f, "deregister {targets} from pool {pool}"),
            Self::Retire { targets } => write!(f, "stop {targets}"),
            Self::UpdateBatch { pool, batch, of, targets, version, .. } => {
                write!(
                    f,
                    "batch {batch}/{of}: update {} target{} in pool {pool} to {version}",
                    targets.len(),
                    if targets.len() == 1 { "" } else { "s" }
                )
            }
        }
    }
}

/// A compiled deployment: plain data, printable as a [`Timeline`] before anything runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The spec it was compiled from (its policies, hooks and analyses drive the run).
    pub spec: Spec,
    /// The version serving before (the most common one in the live pool), if any.
    pub from_version: Option<Version>,
    /// The pool serving before the deploy.
    pub stable_pool: PoolName,
    /// The pool that receives the new version (equal to `stable_pool` for rolling deploys).
    pub candidate_pool: PoolName,
    /// What the backends served before: the rollback restores it.
    pub before: Snapshot,
    /// Healthy serving targets never drop below this many (invariant 2).
    pub capacity_floor: usize,
    /// Per-target-batch size used by a rollback of in-place updates.
    pub batch_size: usize,
    /// Added to every wait after a traffic change (the router's propagation delay).
    #[serde(with = "humantime_serde")]
    pub propagation_delay: Duration,
    /// The candidate pool is a standing environment of a fixed inventory: its hosts are
    /// updated in place rather than started, the old pool keeps its hosts (warm, or drained
    /// after `keep_old_for`) rather than stopping them, and a rollback switches traffic back
    /// without updating any host.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standing: bool,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// What the operator should know before running it (a bake shorter than a DNS TTL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Plan {
    /// The version deployed.
    pub fn to_version(&self) -> &Version {
        &self.spec.version
    }

    /// How long a drain may last: the spec's `drain.timeout`, raised to the router's
    /// propagation delay — clients of a DNS router hold a withdrawn address for a TTL, so a
    /// drain cut shorter would update or stop a target they may still reach.
    pub fn drain_timeout(&self) -> Duration {
        self.spec.drain.timeout.max(self.propagation_delay)
    }

    /// What the plan takes over before anything else (its first step), if anything.
    pub fn adoptions(&self) -> &[Adoption] {
        match self.steps.first() {
            Some(Step::Adopt { adoptions }) => adoptions,
            _ => &[],
        }
    }

    /// Whether this plan moves traffic between two pools (blue-green, canary, linear).
    pub fn shifts_traffic(&self) -> bool {
        self.stable_pool != self.candidate_pool
    }
}
