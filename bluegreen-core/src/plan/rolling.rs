//! Rolling: the live pool's targets updated or replaced in batches.

use std::collections::{BTreeMap, VecDeque};

use super::compile::{gate_and_attach, ids, tag, zones_of};
use super::{Plan, Step, TargetSet};
use crate::error::{Error, Result};
use crate::hooks::HookPoint;
use crate::model::{Target, TargetId};
use crate::router::Capabilities;
use crate::spec::{Rolling, RollingMode};

/// Rolling: the live pool's targets in batches, in place or replaced.
pub(super) fn compile_rolling(plan: &mut Plan, rolling: &Rolling, capabilities: &Capabilities) -> Result<()> {
    let spec = plan.spec.clone();
    let drain_timeout = plan.drain_timeout();
    let pool = plan.stable_pool.clone();
    // Members an operator took out of service stay as they are; batches and the floor count
    // the serving ones.
    let targets = plan.before.serving(&pool);
    let total = targets.len();
    if total == 0 {
        return Err(Error::invalid("pools", format!("the live pool {pool} has no serving targets to update")));
    }
    let batch = rolling.batch.of(total);
    if batch > total {
        return Err(Error::invalid(
            "strategy.batch",
            format!("a batch of {batch} is larger than pool {pool}'s {total} target(s)"),
        ));
    }
    let (surge, unavailable) = match rolling.mode {
        RollingMode::InPlace => (0, batch),
        RollingMode::Replace => {
            let surge = rolling.max_surge.map_or(batch, |s| s.of(total)).min(batch);
            (surge, batch - surge)
        }
    };
    let allowed = rolling.max_unavailable.map_or(usize::MAX, |u| u.of(total));
    let allowed = if rolling.mode == RollingMode::Replace && rolling.max_unavailable.is_none() { 0 } else { allowed };
    if unavailable > allowed {
        return Err(Error::invalid(
            "strategy.max_unavailable",
            format!("each batch takes {unavailable} target(s) out of service but max_unavailable allows {allowed}"),
        ));
    }
    if unavailable >= total {
        return Err(Error::invalid(
            "strategy.batch",
            format!(
                "batches of {batch} take all {total} target(s) of the live pool {pool} out of service at once; \
                 use a smaller batch, or mode = \"replace\" with max_surge"
            ),
        ));
    }
    let floor = match rolling.min_healthy_percent {
        Some(p) => (total * p as usize).div_ceil(100),
        None => total - unavailable,
    };
    if total - unavailable < floor {
        return Err(Error::invalid(
            "strategy.min_healthy_percent",
            format!(
                "batches of {batch} leave {} of {total} target(s) serving, below the floor of {floor} ({}%)",
                total - unavailable,
                rolling.min_healthy_percent.unwrap_or(100)
            ),
        ));
    }
    plan.capacity_floor = floor.max(1);
    plan.batch_size = batch;

    let order = if rolling.zone_balanced { interleave_zones(&targets) } else { targets };
    let batches: Vec<&[Target]> = order.chunks(batch).collect();
    let s = &mut plan.steps;
    s.push(Step::Hook { point: HookPoint::BeforeProvision });
    s.push(Step::Hook { point: HookPoint::BeforeTraffic });
    let mut done: Vec<TargetId> = Vec::new();
    for (i, members) in batches.iter().enumerate() {
        let n = i + 1;
        match rolling.mode {
            RollingMode::InPlace => {
                s.push(Step::UpdateBatch {
                    pool: pool.clone(),
                    batch: n,
                    of: batches.len(),
                    targets: ids(members),
                    version: spec.version.clone(),
                    drain_timeout,
                });
                done.extend(ids(members));
            }
            RollingMode::Replace => {
                let surge_now = surge.min(members.len());
                let provision = |s: &mut Vec<Step>, count: usize, zones: Vec<String>, name: String| {
                    let tag = tag(&spec, &name);
                    s.push(Step::Provision {
                        pool: pool.clone(),
                        version: spec.version.clone(),
                        count,
                        zones,
                        tag: tag.clone(),
                    });
                    gate_and_attach(s, capabilities, &pool, &TargetSet::Tagged(tag));
                };
                if surge_now > 0 {
                    provision(s, surge_now, zones_of(&members[..surge_now]), format!("batch-{n}-surge"));
                }
                let old = TargetSet::Ids(ids(members));
                s.push(Step::Drain { pool: pool.clone(), targets: old.clone(), timeout: drain_timeout });
                s.push(Step::Detach { pool: pool.clone(), targets: old.clone() });
                s.push(Step::Retire { targets: old });
                if members.len() > surge_now {
                    provision(s, members.len() - surge_now, zones_of(&members[surge_now..]), format!("batch-{n}"));
                }
            }
        }
        if !rolling.bake_between_batches.is_zero() && n < batches.len() {
            let watch = match rolling.mode {
                RollingMode::InPlace => TargetSet::Ids(done.clone()),
                RollingMode::Replace => TargetSet::TagPrefix(tag(&spec, "batch-")),
            };
            s.push(Step::Bake { duration: rolling.bake_between_batches, watch });
        }
    }
    s.push(Step::Hook { point: HookPoint::AfterSwitch });
    s.push(Step::Hook { point: HookPoint::AfterDeploy });
    Ok(())
}

/// Orders targets so that consecutive ones come from different zones in turn, so every batch
/// takes from each zone rather than emptying one.
fn interleave_zones(targets: &[Target]) -> Vec<Target> {
    let mut by_zone: BTreeMap<Option<&str>, VecDeque<&Target>> = BTreeMap::new();
    for t in targets {
        by_zone.entry(t.zone.as_deref()).or_default().push_back(t);
    }
    let mut out = Vec::with_capacity(targets.len());
    while out.len() < targets.len() {
        for queue in by_zone.values_mut() {
            if let Some(t) = queue.pop_front() {
                out.push(t.clone());
            }
        }
    }
    out
}
