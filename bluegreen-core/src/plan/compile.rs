//! Compiling a spec into a plan against what the backends serve.

use std::collections::BTreeMap;

use super::{Plan, Snapshot, Step, TargetSet};
use crate::error::{Error, Result};
use crate::fleet::FleetCapabilities;
use crate::hooks::HookPoint;
use crate::model::{PoolName, Split, Target, TargetId, Version};
use crate::router::Capabilities;
use crate::spec::{Approval, BlueGreen, Canary, RollbackPace, ShortBakePolicy, Spec, Strategy};

impl Plan {
    /// Compiles `spec` against `before` for a router with `capabilities` and a fleet that can
    /// do everything (see [`compile_for`](Plan::compile_for)).
    ///
    /// # Errors
    /// As [`compile_for`](Plan::compile_for).
    pub fn compile(spec: &Spec, before: &Snapshot, capabilities: &Capabilities) -> Result<Plan> {
        Self::compile_for(spec, before, capabilities, &FleetCapabilities::all())
    }

    /// Compiles `spec` against `before` for a router with `capabilities` and a fleet that can
    /// do what `fleet` says. Over a fleet that cannot start targets but updates them in place
    /// (a fixed inventory of hosts), blue-green, canary and linear run between two *standing*
    /// pools: the idle pool's hosts are updated in place, gated, and take the traffic; the old
    /// pool keeps its hosts on the old version, out of traffic (see [`Plan::standing`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a spec that cannot work on these backends (unknown pool, batch
    /// larger than the pool, a weight the router cannot express, a capacity floor the batch
    /// breaks), [`Error::Drift`] when the backends show an unfinished deploy. Nothing is
    /// called on any backend.
    pub fn compile_for(
        spec: &Spec,
        before: &Snapshot,
        capabilities: &Capabilities,
        fleet: &FleetCapabilities,
    ) -> Result<Plan> {
        spec.validate()?;
        // A rolling deploy needs only its live pool; a second pool it does not use may be absent.
        let rolling = matches!(spec.strategy, Strategy::Rolling(_));
        for (i, pool) in spec.pools.iter().enumerate() {
            if !before.pools.contains_key(pool) && !rolling {
                let known: Vec<&str> = before.pools.keys().map(PoolName::as_str).collect();
                return Err(Error::invalid(
                    format!("pools[{i}]"),
                    format!("the router has no pool {:?} (it has: {})", pool.as_str(), known.join(", ")),
                ));
            }
        }
        let standing = !fleet.provisions && !rolling;
        if standing && before.split.live_pools().count() > 1 {
            // Both standing pools serve: the idle one is not idle.
            return Err(Error::invalid(
                "pools",
                format!(
                    "the router splits traffic {} between the standing pools, and a {} deploy needs one of them idle: \
                     if an earlier deployment did not finish, resume or roll it back (`bluegreen status`); otherwise \
                     take the idle pool out of traffic (its servers at weight 0, its records out of the name)",
                    before.split,
                    spec.strategy.name()
                ),
            ));
        }
        let stable = live_pool(spec, before)?;
        let stable_targets = before.targets(&stable);
        if stable_targets.is_empty() {
            return Err(Error::invalid("pools", format!("the live pool {stable} has no targets to replace")));
        }
        let mut plan = Plan {
            spec: spec.clone(),
            from_version: most_common_version(stable_targets),
            stable_pool: stable.clone(),
            candidate_pool: stable.clone(),
            before: before.clone(),
            capacity_floor: 0,
            batch_size: 1,
            propagation_delay: capabilities.propagation_delay,
            standing: false,
            steps: Vec::new(),
            warnings: Vec::new(),
        };
        check_drain_timeout(&mut plan);
        match &spec.strategy {
            Strategy::Rolling(rolling) => super::rolling::compile_rolling(&mut plan, rolling, capabilities)?,
            _ if !fleet.provisions && fleet.updates_in_place => {
                super::standing::compile_standing(&mut plan, capabilities)?
            }
            _ => compile_shift(&mut plan, capabilities)?,
        }
        check_bakes(&mut plan)?;
        Ok(plan)
    }
}

/// The health gate and the registration of new targets, in the order the router needs: gate
/// first, unless the router health-checks members itself (then its view needs them registered).
pub(crate) fn gate_and_attach(steps: &mut Vec<Step>, capabilities: &Capabilities, pool: &PoolName, set: &TargetSet) {
    let gate = Step::AwaitHealthy { targets: set.clone() };
    let attach = Step::Attach { pool: pool.clone(), targets: set.clone() };
    if capabilities.checks_members {
        steps.extend([attach, gate]);
    } else {
        steps.extend([gate, attach]);
    }
}

/// Says so when drains last longer than `drain.timeout` because the router's propagation
/// delay is longer (see [`Plan::drain_timeout`]).
fn check_drain_timeout(plan: &mut Plan) {
    let (asked, delay) = (plan.spec.drain.timeout, plan.propagation_delay);
    if asked < delay {
        let d = crate::model::short;
        plan.warnings.push(format!(
            "drain.timeout ({}) is shorter than the router's propagation delay ({}, the DNS TTL plus resolver \
             margin): each drain lasts {}, so no target is updated or stopped while resolvers may still hand out \
             its address",
            d(asked),
            d(delay),
            d(delay)
        ));
    }
}

/// Warns about (or refuses) bakes shorter than the propagation delay.
fn check_bakes(plan: &mut Plan) -> Result<()> {
    let delay = plan.propagation_delay;
    let short = plan.steps.iter().enumerate().filter_map(|(i, step)| match step {
        Step::Bake { duration, .. } if *duration < delay => Some((i, *duration)),
        _ => None,
    });
    let d = crate::model::short;
    let messages: Vec<String> = short
        .map(|(i, bake)| {
            format!(
                "step {}: the bake ({}) is shorter than the router's propagation delay ({}, the DNS TTL plus \
                 resolver margin): it decides on less than one cache lifetime of traffic; bake longer or lower the TTL",
                i + 1,
                d(bake),
                d(delay)
            )
        })
        .collect();
    if let (Some(first), ShortBakePolicy::Refuse) = (messages.first(), plan.spec.short_bakes) {
        return Err(Error::invalid("short_bakes", format!("{first} (short_bakes = \"refuse\")")));
    }
    plan.warnings.extend(messages);
    Ok(())
}

/// The pool carrying all traffic, which must be one of the spec's pools. A rolling deploy whose
/// spec leaves `pools` at its default (`blue`, `green`) rolls whichever one pool carries all
/// traffic: it never creates a second pool, so a router of one pool named `web` just works.
fn live_pool(spec: &Spec, before: &Snapshot) -> Result<PoolName> {
    let any_pool = matches!(spec.strategy, Strategy::Rolling(_)) && spec.pools == crate::spec::default_pools();
    let candidates: Vec<PoolName> =
        if any_pool { before.split.live_pools().cloned().collect() } else { spec.pools.clone() };
    let live: Vec<&PoolName> = candidates.iter().filter(|p| before.split.weight(p) == 100).collect();
    match live.as_slice() {
        [pool] => Ok((*pool).clone()),
        _ if before.split.live_pools().count() > 1 => Err(Error::drift(format!(
            "the router splits traffic {}: an earlier deployment did not finish; resume or roll it back first",
            before.split
        ))),
        _ => Err(Error::invalid(
            "pools",
            format!(
                "none of the pools {:?} carries all traffic (the router serves {}; its pools: {})",
                names(&spec.pools),
                before.split,
                before.pools.keys().map(PoolName::as_str).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

fn names(pools: &[PoolName]) -> Vec<&str> {
    pools.iter().map(PoolName::as_str).collect()
}

fn most_common_version(targets: &[Target]) -> Option<Version> {
    let mut counts: BTreeMap<&Version, usize> = BTreeMap::new();
    for t in targets {
        *counts.entry(&t.version).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v.clone())
}

pub(super) fn ids(targets: &[Target]) -> Vec<TargetId> {
    targets.iter().map(|t| t.id.clone()).collect()
}

/// The tag of the targets a deployment of `spec` starts for `name` (a pool, a batch):
/// `service/version/name`; with an empty `name`, the prefix every such tag starts with.
pub(crate) fn tag(spec: &Spec, name: &str) -> String {
    format!("{}/{}/{name}", spec.service, spec.version)
}

pub(super) fn zones_of(targets: &[Target]) -> Vec<String> {
    let mut zones: Vec<String> = targets.iter().filter_map(|t| t.zone.clone()).collect();
    zones.sort();
    zones.dedup();
    zones
}

/// The pool a blue-green, canary or linear deploy moves traffic to: the spec's other pool.
pub(super) fn candidate_pool(plan: &Plan) -> PoolName {
    plan.spec.pools.iter().find(|p| **p != plan.stable_pool).cloned().expect("validated: two pools")
}

/// Refuses traffic steps (and a ramped rollback) the router cannot express.
/// The spec field a traffic step comes from.
fn step_field(spec: &Spec, i: usize) -> String {
    match &spec.strategy {
        Strategy::Canary(c) if c.preset.is_some() => "strategy.preset".to_owned(),
        Strategy::Canary(_) => format!("strategy.steps[{i}].percent"),
        Strategy::Linear(_) => "strategy.percent".to_owned(),
        _ => "strategy".to_owned(),
    }
}

pub(super) fn check_shift_steps(spec: &Spec, capabilities: &Capabilities) -> Result<()> {
    for (i, step) in spec.shift_steps().iter().enumerate() {
        let field = step_field(spec, i);
        if step.percent < 100 && !capabilities.weighted_split {
            return Err(Error::invalid(
                field,
                format!("the router cannot split by weight, so {}% is impossible", step.percent),
            ));
        }
        if step.percent % capabilities.weight_granularity != 0 {
            return Err(Error::invalid(
                field,
                format!(
                    "{}% is not a multiple of the router's {}% weight step",
                    step.percent, capabilities.weight_granularity
                ),
            ));
        }
    }
    if let RollbackPace::Ramp { percent, .. } = &spec.rollback.pace {
        if !capabilities.weighted_split {
            return Err(Error::invalid(
                "rollback.pace",
                "the router cannot split by weight, so a ramped rollback is impossible; use \"immediate\"",
            ));
        }
        if percent % capabilities.weight_granularity != 0 {
            return Err(Error::invalid(
                "rollback.pace.ramp.percent",
                format!(
                    "{percent}% is not a multiple of the router's {}% weight step",
                    capabilities.weight_granularity
                ),
            ));
        }
    }
    Ok(())
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The distinct targets each pool needs for `percent` on the candidate by target count: the
/// stable pool's and the candidate's weights in units of their common divisor.
fn targets_needed(percent: u32) -> (usize, usize) {
    let d = gcd(100 - percent, percent);
    (((100 - percent) / d) as usize, (percent / d) as usize)
}

/// With a router that weights pools by their count of served targets
/// ([`Capabilities::weight_by_target_count`]: DNS record multiplicity), refuses a traffic step
/// (or a step of a ramped rollback) that `stable` and `candidate`, with the given numbers of
/// targets, cannot express, saying what it would need and which steps the targets allow.
pub(super) fn check_expressible(
    spec: &Spec,
    capabilities: &Capabilities,
    (stable, stable_targets): (&PoolName, usize),
    (candidate, candidate_targets): (&PoolName, usize),
) -> Result<()> {
    if !capabilities.weight_by_target_count {
        return Ok(());
    }
    let fits = |percent: u32| {
        let (s, c) = targets_needed(percent);
        s <= stable_targets && c <= candidate_targets
    };
    let refuse = |field: String, percent: u32| {
        let (s, c) = targets_needed(percent);
        let mut short = Vec::new();
        if s > stable_targets {
            short.push(format!("pool {stable} needs {s} distinct targets and has {stable_targets}"));
        }
        if c > candidate_targets {
            short.push(format!("pool {candidate} needs {c} distinct targets and has {candidate_targets}"));
        }
        let g = capabilities.weight_granularity.max(1);
        let possible: Vec<String> = (1..100 / g).map(|k| k * g).filter(|p| fits(*p)).map(|p| format!("{p}%")).collect();
        let possible = if possible.is_empty() {
            "none below 100% (a blue-green switch only)".to_owned()
        } else {
            possible.join(", ")
        };
        Error::invalid(
            field,
            format!(
                "{percent}% splits traffic {stable} {}% / {candidate} {percent}%, which this router expresses by the \
                 number of targets it serves from each pool (one DNS record per address): {}; with these targets it \
                 can express {possible} on {candidate}",
                100 - percent,
                short.join(", ")
            ),
        )
    };
    let steps: Vec<u32> = spec.shift_steps().iter().map(|s| s.percent).collect();
    for (i, percent) in steps.iter().enumerate() {
        if *percent > 0 && *percent < 100 && !fits(*percent) {
            return Err(refuse(step_field(spec, i), *percent));
        }
    }
    if let RollbackPace::Ramp { percent: ramp, .. } = &spec.rollback.pace {
        // The rollback ramps down from wherever the deploy stands, in steps of `ramp`.
        for start in &steps {
            let mut on_candidate = *start;
            while *ramp > 0 && on_candidate > *ramp {
                on_candidate -= ramp;
                if !fits(on_candidate) {
                    return Err(refuse("rollback.pace.ramp.percent".to_owned(), on_candidate));
                }
            }
        }
    }
    Ok(())
}

/// The steps from the test phase to the last traffic step: hooks, test traffic, each shift
/// with its bake.
pub(super) fn push_shifts(plan: &mut Plan, new: &TargetSet) {
    let spec = plan.spec.clone();
    let (stable, candidate) = (plan.stable_pool.clone(), plan.candidate_pool.clone());
    let s = &mut plan.steps;
    if let Strategy::BlueGreen(bg) = &spec.strategy {
        if !bg.test_for.is_zero() {
            s.push(Step::TestTraffic { duration: bg.test_for, targets: new.clone() });
        }
    }
    s.push(Step::Hook { point: HookPoint::AfterTestTraffic });
    let approve = |s: &mut Vec<Step>, approval: &Approval| {
        s.push(Step::Approve { timeout: approval.timeout, on_timeout: approval.on_timeout });
    };
    if let Strategy::BlueGreen(BlueGreen { approve: Some(approval), .. }) = &spec.strategy {
        approve(s, approval);
    }
    s.push(Step::Hook { point: HookPoint::BeforeTraffic });
    for step in spec.shift_steps() {
        if step.percent == 100 {
            if let Strategy::Canary(Canary { approve: Some(approval), .. }) = &spec.strategy {
                approve(s, approval);
            }
        }
        s.push(Step::ShiftTraffic { split: Split::between(&stable, &candidate, step.percent) });
        if step.percent == 100 {
            s.push(Step::Hook { point: HookPoint::AfterSwitch });
        }
        if !step.bake.is_zero() {
            s.push(Step::Bake { duration: step.bake, watch: new.clone() });
        }
    }
}

/// How long a blue-green keeps the old pool warm, if the spec says.
pub(super) fn keep_old_for(spec: &Spec) -> Option<std::time::Duration> {
    match &spec.strategy {
        Strategy::BlueGreen(bg) => bg.keep_old_for,
        _ => None,
    }
}

/// Blue-green, canary and linear: a full new pool, traffic moved in steps, the old pool retired.
fn compile_shift(plan: &mut Plan, capabilities: &Capabilities) -> Result<()> {
    let spec = plan.spec.clone();
    let drain_timeout = plan.drain_timeout();
    let stable = plan.stable_pool.clone();
    let candidate = candidate_pool(plan);
    let leftovers = plan.before.targets(&candidate);
    if !leftovers.is_empty() {
        return Err(Error::drift(format!(
            "pool {candidate} still has {} target(s) ({}): an earlier deployment did not finish; resume or roll it back first",
            leftovers.len(),
            leftovers.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    check_shift_steps(&spec, capabilities)?;
    let old = ids(plan.before.targets(&stable));
    let replicas = spec.replicas.unwrap_or(old.len());
    let serving = plan.before.serving(&stable).len();
    check_expressible(&spec, capabilities, (&stable, serving), (&candidate, replicas))?;
    let zones = if spec.zones.is_empty() { zones_of(plan.before.targets(&stable)) } else { spec.zones.clone() };
    plan.candidate_pool = candidate.clone();
    plan.capacity_floor = plan.before.serving(&stable).len().min(replicas);
    plan.batch_size = replicas;
    let new = TargetSet::Tagged(tag(&spec, &candidate.0));
    plan.steps.push(Step::Hook { point: HookPoint::BeforeProvision });
    plan.steps.push(Step::Provision {
        pool: candidate.clone(),
        version: spec.version.clone(),
        count: replicas,
        zones,
        tag: tag(&spec, &candidate.0),
    });
    gate_and_attach(&mut plan.steps, capabilities, &candidate, &new);
    push_shifts(plan, &new);
    let s = &mut plan.steps;
    if let Some(keep) = keep_old_for(&spec).filter(|k| !k.is_zero()) {
        s.push(Step::Pause {
            duration: Some(keep),
            reason: format!("keep pool {stable} warm for an instant rollback"),
        });
    }
    let old = TargetSet::Ids(old);
    s.push(Step::Drain { pool: stable.clone(), targets: old.clone(), timeout: drain_timeout });
    s.push(Step::Detach { pool: stable, targets: old.clone() });
    s.push(Step::Retire { targets: old });
    s.push(Step::Hook { point: HookPoint::AfterDeploy });
    Ok(())
}
