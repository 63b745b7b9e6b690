//! The rollback, computed from where the deployment stands.
//!
//! Three phases, each an "ensure" like the plan's steps:
//! 1. the old targets serve again: updated ones are updated back, drained ones pass the
//!    health gate and are re-enabled, retired ones are replaced by new targets of the old
//!    version (a standing idle pool is left as it is: it carries no traffic once the split is
//!    restored, so going back between standing pools is a traffic switch);
//! 2. the pre-deploy split is restored (at once, or ramped);
//! 3. the targets this deployment started are drained, deregistered and stopped.
//!
//! When phase 1 finds the old version unhealthy, [`OldUnhealthyPolicy`] decides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use super::run::Run;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::hooks::{HookPoint, RollbackFacts};
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};
use crate::outcome::Status;
use crate::plan::{Step, TargetSet};
use crate::spec::{OldUnhealthyPolicy, RollbackPace};

/// Whole rollbacks tried before a human is needed.
const ROLLBACK_ATTEMPTS: u32 = 3;

impl Run<'_> {
    /// Rolls back, then runs the `on_rollback` hooks with the reason and the end.
    pub(super) async fn rollback(&self, cause: &Error) -> Status {
        let status = self.roll_back(cause).await;
        // Another owner is in charge: it runs them when its rollback ends.
        if !self.lost_lock() {
            self.run_rollback_hooks(cause, status).await;
        }
        status
    }

    /// The `on_rollback` hooks. Their failure changes nothing of the outcome: the rollback
    /// already ended; it is in the event log (`hook_finished` with `ok: false`).
    async fn run_rollback_hooks(&self, cause: &Error, status: Status) {
        let hooks = self.hooks_at(HookPoint::OnRollback);
        if hooks.is_empty() {
            return;
        }
        // Whatever of the new version is left (none once its targets are removed).
        let candidates = self.resolve(&self.candidate_set()).await.unwrap_or_default();
        let facts = RollbackFacts { reason: cause.to_string(), status: status.to_string() };
        let context = self.hook_context(HookPoint::OnRollback, &candidates, Some(facts));
        let _ = self.run_hooks_with(hooks, context).await;
    }

    async fn roll_back(&self, cause: &Error) -> Status {
        self.rolling_back.store(true, Ordering::SeqCst);
        self.emit(EventKind::RollbackStarted { reason: cause.to_string() });
        let mut attempt = 1;
        loop {
            match self.try_rollback().await {
                // Another owner is in charge: stop touching the backends at once.
                _ if self.lost_lock() => return Status::RollbackFailed,
                Ok(()) => return Status::RolledBack,
                Err(e @ Error::Unhealthy { .. }) => {
                    return match self.plan.spec.rollback.if_old_unhealthy {
                        OldUnhealthyPolicy::Hold => self.blocked(&e, "holding traffic where it is (policy: hold)"),
                        OldUnhealthyPolicy::RollForward => match self.roll_forward().await {
                            Ok(()) => Status::RolledForward,
                            Err(forward) => self.blocked(&e, &format!("rolling forward failed too: {forward}")),
                        },
                    };
                }
                // Every phase is an "ensure", so a rollback that hit a backend error starts
                // over from a fresh observation rather than giving up at once.
                Err(e) if attempt < ROLLBACK_ATTEMPTS => {
                    let backoff = self.plan.spec.retry.max_backoff;
                    self.emit(EventKind::Retrying {
                        operation: "rollback".to_owned(),
                        attempt,
                        error: e.to_string(),
                        backoff,
                    });
                    if self.sleep(backoff).await.is_err() && self.lost_lock() {
                        return Status::RollbackFailed;
                    }
                    attempt += 1;
                }
                Err(e) => return self.blocked(&e, "the rollback stopped here"),
            }
        }
    }

    async fn try_rollback(&self) -> Result<()> {
        self.restore_old_targets().await?;
        self.await_pools_can_serve(&self.plan.before.split).await?;
        self.restore_split().await?;
        self.remove_new_targets().await
    }

    fn blocked(&self, error: &Error, what_now: &str) -> Status {
        self.emit(EventKind::RollbackBlocked { reason: format!("{error}; {what_now}") });
        Status::RollbackFailed
    }

    /// Phase 1: every pre-deploy member of every pool serves its old version again.
    async fn restore_old_targets(&self) -> Result<()> {
        let fleet = self.fleet_map().await?;
        let drain_timeout = self.plan.drain_timeout();
        for (pool, before) in &self.plan.before.pools {
            // A standing idle pool carries no traffic once the split is restored: its hosts
            // stay on the new version, warm, and no updater runs (the instant rollback).
            if self.plan.standing && *pool == self.plan.candidate_pool {
                continue;
            }
            let ids: Vec<TargetId> = before.iter().map(|t| t.id.clone()).collect();
            let states = self.member_states(pool, &ids).await?;
            let mut to_update: BTreeMap<&Version, Vec<TargetId>> = BTreeMap::new();
            let mut to_enable: Vec<Target> = Vec::new();
            let mut missing: BTreeMap<&Version, Vec<&Target>> = BTreeMap::new();
            for old in before {
                match fleet.get(&old.id) {
                    None => missing.entry(&old.version).or_default().push(old),
                    Some(now) if now.version != old.version => {
                        to_update.entry(&old.version).or_default().push(old.id.clone())
                    }
                    // Out of service before the deploy (an operator's choice): leave it so.
                    Some(_) if self.plan.before.disabled.contains(&old.id) => {}
                    Some(now) if states.get(&old.id) != Some(&MemberState::Serving) => to_enable.push(now.clone()),
                    Some(_) => {}
                }
            }
            // Capacity first: drained old targets and replacements go back into service
            // before any serving target is taken out to be reverted.
            if !to_enable.is_empty() {
                self.await_all_healthy(&to_enable).await?;
                self.attach(pool, &to_enable).await?;
            }
            for (version, targets) in missing {
                self.replace_missing(pool, version, &targets).await?;
            }
            for (version, mut ids) in to_update {
                // Targets out of service first: reverting them costs no capacity, and brings
                // back what the serving ones need to be taken out in turn.
                ids.sort_by_key(|id| states.get(id) == Some(&MemberState::Serving));
                for batch in ids.chunks(self.plan.batch_size.max(1)) {
                    self.update_batch(pool, batch, version, drain_timeout).await?;
                }
            }
        }
        Ok(())
    }

    /// Starts new targets of the old version in place of retired ones.
    async fn replace_missing(&self, pool: &PoolName, version: &Version, targets: &[&Target]) -> Result<()> {
        // Tagged with this deployment, so replacements left by an earlier rollback are not
        // counted as this one's.
        let tag = format!("{}/{version}/restore-{pool}-{}", self.plan.spec.service, self.id);
        let mut zones: Vec<String> = targets.iter().filter_map(|t| t.zone.clone()).collect();
        zones.sort();
        zones.dedup();
        let provision = Step::Provision {
            pool: pool.clone(),
            version: version.clone(),
            count: targets.len(),
            zones,
            tag: tag.clone(),
        };
        self.run_step(&provision).await?;
        let mut steps = Vec::new();
        crate::plan::gate_and_attach(&mut steps, &self.exec.router.capabilities(), pool, &TargetSet::Tagged(tag));
        for step in &steps {
            self.run_step(step).await?;
        }
        Ok(())
    }

    /// Phase 2: the pre-deploy split, at the configured pace.
    async fn restore_split(&self) -> Result<()> {
        let target = &self.plan.before.split;
        let current = self.call("read split", || self.exec.router.split()).await?;
        if current.same_traffic(target) {
            return Ok(());
        }
        if let (RollbackPace::Ramp { percent, interval }, true) =
            (&self.plan.spec.rollback.pace, self.plan.shifts_traffic())
        {
            let (stable, candidate) = (&self.plan.stable_pool, &self.plan.candidate_pool);
            let mut on_candidate = current.weight(candidate);
            while on_candidate > *percent {
                on_candidate -= percent;
                self.shift(&Split::between(stable, candidate, on_candidate)).await?;
                self.sleep(*interval).await?;
            }
        }
        self.shift(target).await
    }

    /// Phase 3: drain, deregister and stop every target this deployment started.
    async fn remove_new_targets(&self) -> Result<()> {
        let before: BTreeSet<&TargetId> = self.plan.before.pools.values().flatten().map(|t| &t.id).collect();
        let prefix = crate::plan::tag(&self.plan.spec, "");
        let started_here = |t: &Target| {
            !before.contains(&t.id)
                && t.tag.as_deref().is_some_and(|tag| tag.starts_with(&prefix) && !tag.contains("/restore-"))
        };
        let new: Vec<TargetId> = self.fleet_map().await?.into_values().filter(started_here).map(|t| t.id).collect();
        if new.is_empty() {
            return Ok(());
        }
        let drain_timeout = self.plan.drain_timeout();
        for pool in self.call("list pools", || self.exec.router.pools()).await? {
            let states = self.member_states(&pool, &new).await?;
            let members: Vec<TargetId> = new.iter().filter(|id| states.contains_key(*id)).cloned().collect();
            if !members.is_empty() {
                self.drain(&pool, &members, drain_timeout).await?;
                self.detach(&pool, &members).await?;
            }
        }
        self.retire(&new).await
    }

    /// The old version is unhealthy: put all traffic on the new one, if it is healthy.
    async fn roll_forward(&self) -> Result<()> {
        if self.plan.shifts_traffic() {
            let candidate = &self.plan.candidate_pool;
            let targets = self.resolve(&self.candidate_set()).await?;
            if targets.is_empty() {
                return Err(Error::Unhealthy { what: format!("pool {candidate} has no targets of the new version") });
            }
            self.await_all_healthy(&targets).await?;
            self.attach(candidate, &targets).await?;
            return self.shift(&Split::all_to(candidate)).await;
        }
        for step in &self.plan.steps {
            match step {
                Step::UpdateBatch { .. } => self.run_step(step).await?,
                Step::Provision { .. } | Step::Drain { .. } | Step::Retire { .. } => {
                    return Err(Error::invalid(
                        "rollback.if_old_unhealthy",
                        "roll_forward supports in-place rolling only",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
