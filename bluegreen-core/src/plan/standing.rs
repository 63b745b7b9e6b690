//! Blue-green, canary and linear over a fixed inventory: two standing pools, the idle one
//! updated in place and switched to.

use super::compile::{candidate_pool, check_expressible, check_shift_steps, ids, keep_old_for, push_shifts};
use super::{Plan, Step, TargetSet};
use crate::error::{Error, Result};
use crate::hooks::HookPoint;
use crate::router::Capabilities;

/// Blue-green, canary and linear between two standing pools of a fixed inventory: the idle
/// pool's hosts are updated in place (drained first if they still serve anything), gated,
/// and take the traffic; the old pool keeps its hosts on the old version, warm (or drained
/// after `keep_old_for`), so going back is a traffic switch.
pub(super) fn compile_standing(plan: &mut Plan, capabilities: &Capabilities) -> Result<()> {
    let spec = plan.spec.clone();
    let drain_timeout = plan.drain_timeout();
    let stable = plan.stable_pool.clone();
    let candidate = candidate_pool(plan);
    let pool_index = spec.pools.iter().position(|p| *p == candidate).unwrap_or(1);
    let idle = ids(plan.before.targets(&candidate));
    let serving = plan.before.serving(&stable).len();
    if idle.is_empty() {
        return Err(Error::invalid(
            format!("pools[{pool_index}]"),
            format!(
                "pool {candidate} has no hosts: over a fixed inventory a {} deploy updates the idle pool's hosts in \
                 place and switches traffic to them; give pool {candidate} hosts (`pool = \"{candidate}\"` on \
                 hosts of the inventory), or deploy rolling in place",
                spec.strategy.name()
            ),
        ));
    }
    match spec.replicas {
        Some(r) if r != idle.len() => {
            return Err(Error::invalid(
                "replicas",
                format!(
                    "replicas = {r}, but pool {candidate} is a standing pool of {} host(s), updated whole: leave \
                     replicas out, or set it to {} to accept a pool smaller than {stable}'s {serving}",
                    idle.len(),
                    idle.len()
                ),
            ));
        }
        None if idle.len() < serving => {
            return Err(Error::invalid(
                format!("pools[{pool_index}]"),
                format!(
                    "pool {candidate} has {} host(s) but pool {stable} serves with {serving}: after the switch {} \
                     would carry the traffic of {serving}; give {candidate} {serving} hosts, or set replicas = {} to \
                     accept the smaller pool",
                    idle.len(),
                    idle.len(),
                    idle.len()
                ),
            ));
        }
        _ => {}
    }
    check_shift_steps(&spec, capabilities)?;
    check_expressible(&spec, capabilities, (&stable, serving), (&candidate, idle.len()))?;
    plan.standing = true;
    plan.candidate_pool = candidate.clone();
    plan.capacity_floor = serving.min(idle.len());
    plan.batch_size = idle.len();
    // The live pool runs the version already (the same deploy file run again): switching to
    // the idle pool would update it for nothing.
    let live = plan.before.serving(&stable);
    if live.iter().all(|t| t.version == spec.version) {
        plan.warnings.push(format!(
            "pool {stable} serves {} already (all {} serving hosts): nothing to do",
            spec.version,
            live.len()
        ));
        return Ok(());
    }
    let new = TargetSet::Ids(idle.clone());
    plan.steps.push(Step::Hook { point: HookPoint::BeforeProvision });
    plan.steps.push(Step::UpdateBatch {
        pool: candidate.clone(),
        batch: 1,
        of: 1,
        targets: idle,
        version: spec.version.clone(),
        drain_timeout,
    });
    // The update gates each host it touches; hosts already on the version (a re-run, or a
    // rollback to the warm old pool) are gated here.
    plan.steps.push(Step::AwaitHealthy { targets: new.clone() });
    push_shifts(plan, &new);
    let s = &mut plan.steps;
    if let Some(keep) = keep_old_for(&spec) {
        if !keep.is_zero() {
            s.push(Step::Pause {
                duration: Some(keep),
                reason: format!("keep pool {stable} warm for an instant rollback"),
            });
        }
        let old = TargetSet::Ids(ids(plan.before.targets(&stable)));
        s.push(Step::Drain { pool: stable, targets: old, timeout: drain_timeout });
    }
    s.push(Step::Hook { point: HookPoint::AfterDeploy });
    Ok(())
}
