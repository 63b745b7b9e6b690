//! Health: the per-target gate, the capacity floor guard, and watching during bakes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use tokio::time::Instant;

use super::run::Run;
use crate::analysis::{AnalysisContext, Verdict};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::model::{MemberState, PoolName, Split, Target, TargetId};
use crate::probe::Health;

impl Run<'_> {
    /// Probes once, bounded by the policy's timeout.
    pub(super) async fn probe(&self, target: &Target) -> Health {
        // Bounded, so checking a large pool neither floods the targets nor runs out of sockets.
        let _permit = self.probes.acquire().await;
        let timeout = self.plan.spec.health.timeout;
        match tokio::time::timeout(timeout, self.exec.probe.check(target)).await {
            Ok(health) => health,
            Err(_) => Health::unhealthy(format!("probe timed out after {}", humantime::format_duration(timeout))),
        }
    }

    /// The health gate: `healthy_threshold` consecutive passes spanning at least
    /// `min_healthy_time`, before `deadline`. A target that passed once and then fails
    /// `unhealthy_threshold` times in a row fails at once (it flaps).
    pub(super) async fn await_healthy(&self, target: &Target) -> Result<()> {
        self.gate(target, false).await
    }

    /// The gate of a target in a rolling batch: with [`Stability::Watched`](crate::Stability)
    /// it passes at the first passing probe, and the rest — `healthy_threshold` passes in a
    /// row spanning `min_healthy_time` — is watched while the deploy goes on
    /// ([`Run::watch_window`]).
    pub(super) async fn await_healthy_in_batch(&self, target: &Target) -> Result<()> {
        // A rollback's gates wait their windows out: what it restores must hold.
        let watched = !self.rolling_back.load(std::sync::atomic::Ordering::SeqCst) && self.opens_windows();
        self.gate(target, watched).await
    }

    async fn gate(&self, target: &Target, watch_the_window: bool) -> Result<()> {
        let policy = &self.plan.spec.health;
        let start = Instant::now();
        // Passed its gate less than a probe interval ago: the next probe would not be due yet.
        let passed = self.gated.lock().unwrap_or_else(PoisonError::into_inner).get(&target.id).copied();
        if passed.is_some_and(|at| start.duration_since(at) < policy.interval) {
            return Ok(());
        }
        let deadline = start + policy.deadline;
        // Watched: the first pass serves; the watch asks for the rest.
        let threshold = if watch_the_window { 1 } else { policy.healthy_threshold };
        let (mut passes, mut fails) = (0u32, 0u32);
        let mut streak_start: Option<Instant> = None;
        let mut ever_passed = false;
        let mut last_reason = String::from("no probe answered yet");
        loop {
            match self.probe(target).await {
                Health::Healthy => {
                    passes += 1;
                    fails = 0;
                    ever_passed = true;
                    let since = *streak_start.get_or_insert_with(Instant::now);
                    let stable = passes >= policy.healthy_threshold && since.elapsed() >= policy.min_healthy_time;
                    if passes >= threshold && (stable || watch_the_window) {
                        self.gated
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(target.id.clone(), Instant::now());
                        self.emit(EventKind::TargetHealthy { target: target.id.clone(), after: start.elapsed() });
                        if !stable {
                            self.watch_window(target.clone(), since, passes, deadline);
                        }
                        return Ok(());
                    }
                }
                Health::Unhealthy { reason } => {
                    passes = 0;
                    fails += 1;
                    streak_start = None;
                    if ever_passed && fails >= policy.unhealthy_threshold {
                        self.emit(EventKind::TargetUnhealthy { target: target.id.clone(), reason: reason.clone() });
                        return Err(Error::Unhealthy {
                            what: format!("target {} passed, then failed {fails} checks in a row: {reason}", target.id),
                        });
                    }
                    last_reason = reason;
                }
            }
            // Wait for the next probe, unless the deadline comes first; a pass already counting
            // towards min_healthy_time may need less than a full interval.
            let mut wait = policy.interval;
            if let Some(since) = streak_start {
                if passes >= threshold {
                    wait = wait.min(policy.min_healthy_time.saturating_sub(since.elapsed()));
                }
            }
            if Instant::now() + wait > deadline {
                self.emit(EventKind::TargetUnhealthy { target: target.id.clone(), reason: last_reason.clone() });
                return Err(Error::Unhealthy {
                    what: format!(
                        "target {} not healthy within {}: {last_reason}",
                        target.id,
                        humantime::format_duration(policy.deadline)
                    ),
                });
            }
            self.sleep(wait).await?;
        }
    }

    /// Every target passes the gate; the first failure ends the wait.
    pub(super) async fn await_all_healthy(&self, targets: &[Target]) -> Result<()> {
        try_join_all(targets.iter().map(|t| self.await_healthy(t))).await.map(|_| ())
    }

    /// Healthy serving members of `pools`: how many in all, and how many of them are in
    /// `removing`.
    async fn healthy_serving(&self, pools: &[PoolName], removing: &BTreeSet<TargetId>) -> Result<(usize, usize)> {
        let fleet = self.fleet_map().await?;
        let mut serving = Vec::new();
        for pool in pools {
            serving.extend(self.serving_in(pool, &fleet).await?);
        }
        let healths = join_all(serving.iter().map(|t| self.probe(t))).await;
        let healthy: Vec<&Target> =
            serving.iter().zip(&healths).filter(|(_, h)| h.is_healthy()).map(|(t, _)| t).collect();
        let taken = healthy.iter().filter(|t| removing.contains(&t.id)).count();
        Ok((healthy.len(), taken))
    }

    /// The pools the router sends traffic to now.
    async fn live_pools(&self) -> Result<Vec<PoolName>> {
        let split = self.call("read split", || self.exec.router.split()).await?;
        Ok(split.live_pools().cloned().collect())
    }

    /// Invariant 2: before taking `removing` out of service, make sure the healthy serving
    /// targets left stay at or above the plan's floor; wait for recovery up to the health
    /// deadline, then fail. Taking out only unhealthy targets costs no capacity and is always
    /// allowed.
    pub(super) async fn ensure_capacity_without(&self, removing: &[TargetId]) -> Result<()> {
        let floor = self.plan.capacity_floor;
        if floor == 0 {
            return Ok(());
        }
        let removing: BTreeSet<TargetId> = removing.iter().cloned().collect();
        let policy = &self.plan.spec.health;
        let deadline = Instant::now() + policy.deadline;
        loop {
            let pools = self.live_pools().await?;
            let (healthy, taken) = self.healthy_serving(&pools, &removing).await?;
            if taken == 0 || healthy - taken >= floor {
                return Ok(());
            }
            if Instant::now() + policy.interval > deadline {
                return Err(Error::Unhealthy {
                    what: format!(
                        "taking {} target(s) out would leave {} healthy serving, below the floor of {floor}",
                        removing.len(),
                        healthy - taken
                    ),
                });
            }
            self.sleep(policy.interval).await?;
        }
    }

    /// Waits, up to the health deadline, until every pool that would gain traffic by moving
    /// from the router's split to `split` has a healthy serving member.
    pub(super) async fn await_pools_can_serve(&self, split: &Split) -> Result<()> {
        let policy = &self.plan.spec.health;
        let deadline = Instant::now() + policy.deadline;
        loop {
            let current = self.call("read split", || self.exec.router.split()).await?;
            match self.ensure_pools_can_serve(&current, split).await {
                Err(Error::Unhealthy { .. }) if Instant::now() + policy.interval <= deadline => {
                    self.sleep(policy.interval).await?;
                }
                result => return result,
            }
        }
    }

    /// Invariant 1: every pool that gains traffic from `from` to `to` has a healthy serving
    /// member. (A pool losing traffic need not: moving traffic away from a dead pool — a
    /// rollback's ramp — must always be possible.)
    pub(super) async fn ensure_pools_can_serve(&self, from: &Split, to: &Split) -> Result<()> {
        let fleet = self.fleet_map().await?;
        for pool in to.live_pools().filter(|p| to.weight(p) > from.weight(p)) {
            let serving = self.serving_in(pool, &fleet).await?;
            let healths = join_all(serving.iter().map(|t| self.probe(t))).await;
            if !healths.iter().any(Health::is_healthy) {
                return Err(Error::Unhealthy {
                    what: format!("pool {pool} has no healthy serving target; traffic not moved to {to}"),
                });
            }
        }
        Ok(())
    }

    /// Invariant 2 for a split change that takes traffic away from a pool: the pools `to`
    /// sends traffic to must hold at least the plan's floor of healthy serving targets; waits
    /// for recovery up to the health deadline, then fails. Says whether it had to check.
    pub(super) async fn ensure_floor_after(&self, from: &Split, to: &Split) -> Result<bool> {
        let floor = self.plan.capacity_floor;
        let takes_away = from.live_pools().any(|p| to.weight(p) < from.weight(p));
        if floor == 0 || !takes_away {
            return Ok(false);
        }
        let pools: Vec<PoolName> = to.live_pools().cloned().collect();
        let policy = &self.plan.spec.health;
        let deadline = Instant::now() + policy.deadline;
        loop {
            let (healthy, _) = self.healthy_serving(&pools, &BTreeSet::new()).await?;
            if healthy >= floor {
                return Ok(true);
            }
            if Instant::now() + policy.interval > deadline {
                return Err(Error::Unhealthy {
                    what: format!("{to} would leave {healthy} healthy serving targets, below the floor of {floor}"),
                });
            }
            self.sleep(policy.interval).await?;
        }
    }

    /// Watches `targets` and evaluates the analyses for `duration` (paused time does not
    /// count; promote ends it early).
    pub(super) async fn watch(&self, duration: Duration, targets: &[Target]) -> Result<()> {
        let policy = &self.plan.spec.health;
        let mut remaining = duration;
        let mut fails: BTreeMap<TargetId, u32> = BTreeMap::new();
        self.emit(EventKind::BakeStarted { duration });
        while !remaining.is_zero() {
            if self.promoted() {
                return Ok(());
            }
            let tick = policy.interval.min(remaining);
            let started = Instant::now();
            if self.paused() {
                self.hold_while_paused().await?;
                continue;
            }
            self.sleep(tick).await?;
            if !self.paused() {
                remaining = remaining.saturating_sub(started.elapsed());
            }
            self.check_watched(targets, &mut fails).await?;
            self.evaluate_analyses(targets).await?;
        }
        Ok(())
    }

    async fn check_watched(&self, targets: &[Target], fails: &mut BTreeMap<TargetId, u32>) -> Result<()> {
        let threshold = self.plan.spec.health.unhealthy_threshold;
        let healths = join_all(targets.iter().map(|t| self.probe(t))).await;
        for (target, health) in targets.iter().zip(healths) {
            let count = fails.entry(target.id.clone()).or_default();
            match health {
                Health::Healthy => *count = 0,
                Health::Unhealthy { reason } => {
                    *count += 1;
                    if *count >= threshold {
                        self.emit(EventKind::TargetUnhealthy { target: target.id.clone(), reason: reason.clone() });
                        return Err(Error::Unhealthy {
                            what: format!("target {} failed {count} checks in a row while baking: {reason}", target.id),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    async fn evaluate_analyses(&self, targets: &[Target]) -> Result<()> {
        if self.analyses.is_empty() {
            return Ok(());
        }
        let split = self.call("read split", || self.exec.router.split()).await?;
        let context = AnalysisContext {
            deployment_id: self.id.clone(),
            service: self.plan.spec.service.clone(),
            version: self.plan.spec.version.to_string(),
            split,
            candidates: targets.to_vec(),
        };
        for analysis in &self.analyses {
            if let Verdict::Fail { reason } = analysis.evaluate(&context).await {
                self.emit(EventKind::AnalysisFailed { analysis: analysis.name(), reason: reason.clone() });
                return Err(Error::Check { what: format!("analysis {}", analysis.name()), reason });
            }
        }
        Ok(())
    }

    /// Every target of the fleet, by id.
    pub(super) async fn fleet_map(&self) -> Result<BTreeMap<TargetId, Target>> {
        let list = self.call("list fleet", || self.exec.fleet.list()).await?;
        Ok(list.into_iter().map(|t| (t.id.clone(), t)).collect())
    }

    /// The members of `pool` serving now, as `fleet` knows them (members it does not know are
    /// left out).
    pub(super) async fn serving_in(&self, pool: &PoolName, fleet: &BTreeMap<TargetId, Target>) -> Result<Vec<Target>> {
        let members = self.call("read members", || self.exec.router.members(pool)).await?;
        Ok(members
            .iter()
            .filter(|m| m.state == MemberState::Serving)
            .filter_map(|m| fleet.get(&m.id).cloned())
            .collect())
    }

    /// The states of the members of `pool` among `ids` (a batch's read: it costs what the
    /// batch is, not what the pool is).
    pub(super) async fn member_states(
        &self,
        pool: &PoolName,
        ids: &[TargetId],
    ) -> Result<BTreeMap<TargetId, MemberState>> {
        let members = self.call("read members", || self.exec.router.members_of(pool, ids)).await?;
        Ok(members.into_iter().map(|m| (m.id, m.state)).collect())
    }

    /// The targets among `ids` the fleet runs, by id.
    pub(super) async fn fleet_targets(&self, ids: &[TargetId]) -> Result<BTreeMap<TargetId, Target>> {
        let found = self.call("read targets", || self.exec.fleet.targets(ids)).await?;
        Ok(found.into_iter().map(|t| (t.id.clone(), t)).collect())
    }
}
