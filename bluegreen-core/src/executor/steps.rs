//! Each plan step as an "ensure": observe, do what is missing, read back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use tokio::time::Instant;

use super::run::Run;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::fleet::ProvisionRequest;
use crate::hooks::{Hook, HookContext, HookPoint, RollbackFacts};
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};
use crate::plan::{Step, TargetSet};
use crate::router::DrainReport;
use crate::spec::OnTimeout;

impl Run<'_> {
    pub(super) async fn run_step(&self, step: &Step) -> Result<()> {
        match step {
            Step::Adopt { adoptions } => {
                self.call("adopt", || self.exec.router.adopt(adoptions)).await?;
                self.emit(EventKind::Adopted { members: adoptions.iter().map(|a| a.what.clone()).collect() });
                Ok(())
            }
            Step::Hook { point } => self.run_hooks(*point).await,
            Step::Provision { pool: _, version, count, zones, tag } => {
                self.provision(version, *count, zones, tag).await
            }
            Step::AwaitHealthy { targets } => {
                let targets = self.resolve(targets).await?;
                self.await_all_healthy(&targets).await
            }
            Step::Attach { pool, targets } => {
                let targets = self.resolve(targets).await?;
                self.attach(pool, &targets).await
            }
            Step::TestTraffic { duration, targets } | Step::Bake { duration, watch: targets } => {
                let targets = self.resolve(targets).await?;
                self.watch(*duration, &targets).await
            }
            Step::ShiftTraffic { split } => self.shift(split).await,
            Step::Pause { duration, reason } => self.pause(*duration, reason).await,
            Step::Approve { timeout, on_timeout } => self.approve(*timeout, *on_timeout).await,
            Step::Drain { pool, targets, timeout } => self.drain(pool, &self.ids(targets).await?, *timeout).await,
            Step::Detach { pool, targets } => self.detach(pool, &self.ids(targets).await?).await,
            Step::Retire { targets } => self.retire(&self.ids(targets).await?).await,
            Step::UpdateBatch { pool, targets, version, drain_timeout, .. } => {
                self.update_batch(pool, targets, version, *drain_timeout).await
            }
        }
    }

    /// The targets of a set that exist in the fleet.
    pub(super) async fn resolve(&self, set: &TargetSet) -> Result<Vec<Target>> {
        Ok(match set {
            TargetSet::Ids(ids) => {
                let mut found = self.fleet_targets(ids).await?;
                ids.iter().filter_map(|id| found.remove(id)).collect()
            }
            TargetSet::Tagged(_) | TargetSet::TagPrefix(_) => {
                let fleet = self.fleet_map().await?;
                fleet.into_values().filter(|t| set.matches_tag(t.tag.as_deref())).collect()
            }
        })
    }

    async fn ids(&self, set: &TargetSet) -> Result<Vec<TargetId>> {
        Ok(match set {
            TargetSet::Ids(ids) => ids.clone(),
            TargetSet::Tagged(_) | TargetSet::TagPrefix(_) => {
                self.resolve(set).await?.into_iter().map(|t| t.id).collect()
            }
        })
    }

    async fn run_hooks(&self, point: HookPoint) -> Result<()> {
        let hooks = self.hooks_at(point);
        if hooks.is_empty() {
            return Ok(());
        }
        let candidates = self.resolve(&self.candidate_set()).await?;
        self.run_hooks_with(hooks, self.hook_context(point, &candidates, None)).await
    }

    /// The deploy's facts for a hook at `point`.
    pub(super) fn hook_context(
        &self,
        point: HookPoint,
        candidates: &[Target],
        rollback: Option<RollbackFacts>,
    ) -> HookContext {
        HookContext {
            point,
            deployment_id: self.id.clone(),
            service: self.plan.spec.service.clone(),
            version: self.plan.spec.version.to_string(),
            previous_version: self.plan.from_version.as_ref().map(ToString::to_string),
            stable_pool: self.plan.stable_pool.to_string(),
            candidate_pool: self.plan.candidate_pool.to_string(),
            candidate_addresses: candidates.iter().map(|t| t.address.clone()).collect(),
            rollback,
        }
    }

    /// Runs `hooks` in order, each reported in the event log; the first failure stops them.
    pub(super) async fn run_hooks_with(&self, hooks: Vec<Arc<dyn Hook>>, context: HookContext) -> Result<()> {
        let point = context.point;
        for hook in hooks {
            let result = hook.run(&context).await;
            let (ok, output) = match &result {
                Ok(out) => (true, out.output.clone()),
                Err(e) => (false, e.to_string()),
            };
            self.emit(EventKind::HookFinished { point: point.to_string(), hook: hook.name(), ok, output });
            result?;
        }
        Ok(())
    }

    /// The new version's targets: the candidate pool's tag (its hosts, for a standing pool), or
    /// (rolling) the live pool's targets.
    pub(super) fn candidate_set(&self) -> TargetSet {
        let spec = &self.plan.spec;
        if self.plan.standing {
            let ids = self.plan.before.targets(&self.plan.candidate_pool).iter().map(|t| t.id.clone()).collect();
            TargetSet::Ids(ids)
        } else if self.plan.shifts_traffic() {
            TargetSet::Tagged(crate::plan::tag(spec, self.plan.candidate_pool.as_str()))
        } else {
            let ids = self.plan.before.targets(&self.plan.stable_pool).iter().map(|t| t.id.clone()).collect();
            TargetSet::Ids(ids)
        }
    }

    async fn provision(&self, version: &Version, count: usize, zones: &[String], tag: &str) -> Result<()> {
        let before = self.resolve(&TargetSet::Tagged(tag.to_owned())).await?;
        if before.len() >= count {
            return Ok(());
        }
        let request = ProvisionRequest { version: version.clone(), count, zones: zones.to_vec(), tag: tag.to_owned() };
        let all = self.call("provision", || self.exec.fleet.provision(&request)).await?;
        let started: Vec<TargetId> =
            all.iter().filter(|t| !before.iter().any(|b| b.id == t.id)).map(|t| t.id.clone()).collect();
        self.emit(EventKind::TargetsStarted { version: version.clone(), targets: started });
        let now = self.resolve(&TargetSet::Tagged(tag.to_owned())).await?;
        if now.len() < count || now.iter().any(|t| t.version != *version) {
            return Err(Error::ReadBackMismatch {
                what: format!("targets tagged {tag}"),
                expected: format!("{count} of {version}"),
                observed: format!("{} ({})", now.len(), versions(&now)),
            });
        }
        Ok(())
    }

    pub(super) async fn attach(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        let ids: Vec<TargetId> = targets.iter().map(|t| t.id.clone()).collect();
        let states = self.member_states(pool, &ids).await?;
        let missing: Vec<Target> =
            targets.iter().filter(|t| states.get(&t.id) != Some(&MemberState::Serving)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.call("register targets", || self.exec.router.add_targets(pool, &missing)).await?;
        let ids: Vec<TargetId> = missing.iter().map(|t| t.id.clone()).collect();
        self.verify_states(pool, &ids, |s| s == Some(MemberState::Serving), "serving").await?;
        self.emit(EventKind::TargetsRegistered { pool: pool.clone(), targets: ids });
        Ok(())
    }

    /// Reads `pool` back and checks every target's state with `ok`.
    async fn verify_states(
        &self,
        pool: &PoolName,
        ids: &[TargetId],
        ok: impl Fn(Option<MemberState>) -> bool,
        expected: &str,
    ) -> Result<()> {
        let states = self.member_states(pool, ids).await?;
        for id in ids {
            let state = states.get(id).copied();
            if !ok(state) {
                return Err(Error::ReadBackMismatch {
                    what: format!("target {id} in pool {pool}"),
                    expected: expected.to_owned(),
                    observed: state.map_or_else(|| "not a member".to_owned(), |s| format!("{s:?}").to_lowercase()),
                });
            }
        }
        Ok(())
    }

    pub(super) async fn shift(&self, split: &Split) -> Result<()> {
        let router = &self.exec.router;
        let current = self.call("read split", || router.split()).await?;
        if !current.same_traffic(split) {
            self.ensure_pools_can_serve(&current, split).await?;
            // Checking the floor takes time (and may wait): check the pools again after it, so
            // the health seen right before the write is fresh.
            if self.ensure_floor_after(&current, split).await? {
                self.ensure_pools_can_serve(&current, split).await?;
            }
            self.call("set split", || router.set_split(split)).await?;
            let observed = self.call("read split", || router.split()).await?;
            if !observed.same_traffic(split) {
                return Err(Error::ReadBackMismatch {
                    what: "split".to_owned(),
                    expected: split.to_string(),
                    observed: observed.to_string(),
                });
            }
            self.emit(EventKind::TrafficShifted { from: current, to: observed });
        }
        let delay = self.plan.propagation_delay;
        if !delay.is_zero() {
            self.emit(EventKind::AwaitingPropagation { wait: delay });
            self.sleep(delay).await?;
        }
        Ok(())
    }

    async fn pause(&self, duration: Option<Duration>, reason: &str) -> Result<()> {
        if self.promoted() {
            return Ok(());
        }
        self.emit(EventKind::Paused { reason: reason.to_owned() });
        match duration {
            Some(duration) => {
                let end = Instant::now() + duration;
                while Instant::now() < end && !self.promoted() {
                    self.wait_control(|s| s.promoted, end - Instant::now()).await?;
                }
            }
            None => {
                // A manual pause ends on resume or promote.
                let resumes = self.control_resumes();
                loop {
                    self.wait_control(|s| s.promoted || s.resumes > resumes, Duration::from_secs(3600)).await?;
                    if self.promoted() || self.control_resumes() > resumes {
                        break;
                    }
                }
            }
        }
        self.emit(EventKind::Resumed);
        Ok(())
    }

    /// Waits for `resume` (or `promote`) at most `timeout`, paused meanwhile; then `on_timeout`.
    async fn approve(&self, timeout: Duration, on_timeout: OnTimeout) -> Result<()> {
        if self.promoted() {
            return Ok(());
        }
        let within = humantime::format_duration(timeout);
        self.emit(EventKind::Paused {
            reason: format!("awaiting approval: bluegreen resume (or promote) within {within}, else {on_timeout}"),
        });
        let resumes = self.control_resumes();
        let approved = |run: &Self| run.promoted() || run.control_resumes() > resumes;
        let end = Instant::now() + timeout;
        while !approved(self) && Instant::now() < end {
            self.wait_control(|s| s.promoted || s.resumes > resumes, end - Instant::now()).await?;
        }
        if approved(self) {
            self.emit(EventKind::Resumed);
            return Ok(());
        }
        match on_timeout {
            OnTimeout::Proceed => {
                self.emit(EventKind::Warning {
                    message: format!("not approved within {within}: going on (on_timeout)"),
                });
                self.emit(EventKind::Resumed);
                Ok(())
            }
            OnTimeout::RollBack => {
                Err(Error::Check { what: "approval".to_owned(), reason: format!("not approved within {within}") })
            }
        }
    }

    /// Drains the members of `ids` still serving in `pool`, each target on its own when the
    /// router can, so one slow target does not hold the others.
    pub(super) async fn drain(&self, pool: &PoolName, ids: &[TargetId], timeout: Duration) -> Result<()> {
        let states = self.member_states(pool, ids).await?;
        let todo: Vec<TargetId> = ids
            .iter()
            .filter(|id| matches!(states.get(*id), Some(MemberState::Serving | MemberState::Draining)))
            .cloned()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.ensure_capacity_without(&todo).await?;
        self.emit(EventKind::DrainStarted { pool: pool.clone(), targets: todo.clone() });
        let live = self.carries_traffic(pool).await?;
        if self.exec.router.capabilities().per_target_drain {
            try_join_all(todo.iter().map(|id| self.drain_one_group(pool, std::slice::from_ref(id), timeout, live)))
                .await?;
        } else {
            self.drain_one_group(pool, &todo, timeout, live).await?;
        }
        self.verify_states(pool, &todo, |s| s != Some(MemberState::Serving), "not serving").await
    }

    /// Whether the router sends `pool` any traffic now.
    async fn carries_traffic(&self, pool: &PoolName) -> Result<bool> {
        Ok(self.call("read split", || self.exec.router.split()).await?.weight(pool) > 0)
    }

    /// Drains `ids` with one router call; in a pool that carries traffic (`live`) it lasts at
    /// least the router's propagation delay: clients of a DNS router keep the old answer that
    /// long, whatever the router reported. A pool at weight 0 is in no answer, and the shift
    /// that took its traffic away waited the delay already.
    async fn drain_one_group(
        &self,
        pool: &PoolName,
        ids: &[TargetId],
        timeout: Duration,
        live: bool,
    ) -> Result<DrainReport> {
        let started = Instant::now();
        let report = self.call("drain", || self.exec.router.drain(pool, ids, timeout)).await?;
        let delay = if live { self.plan.propagation_delay } else { Duration::ZERO };
        if started.elapsed() < delay {
            self.sleep(delay - started.elapsed()).await?;
        }
        self.emit(EventKind::TargetsDrained {
            pool: pool.clone(),
            targets: ids.to_vec(),
            in_flight_at_start: report.in_flight_at_start,
            in_flight_at_end: report.in_flight_at_end,
            timed_out: report.timed_out,
        });
        Ok(report)
    }

    pub(super) async fn detach(&self, pool: &PoolName, ids: &[TargetId]) -> Result<()> {
        let states = self.member_states(pool, ids).await?;
        let present: Vec<TargetId> = ids.iter().filter(|id| states.contains_key(*id)).cloned().collect();
        if present.is_empty() {
            return Ok(());
        }
        if let Some(serving) = present.iter().find(|id| states.get(*id) == Some(&MemberState::Serving)) {
            return Err(Error::drift(format!(
                "target {serving} in pool {pool} still serves; it must be drained first"
            )));
        }
        self.call("deregister targets", || self.exec.router.remove_targets(pool, &present)).await?;
        self.verify_states(pool, &present, |s| s.is_none(), "not a member").await?;
        self.emit(EventKind::TargetsDeregistered { pool: pool.clone(), targets: present });
        Ok(())
    }

    /// Invariant 3: refuses to stop a target any pool still sends requests to.
    pub(super) async fn retire(&self, ids: &[TargetId]) -> Result<()> {
        let fleet = self.fleet_targets(ids).await?;
        let present: Vec<TargetId> = ids.iter().filter(|id| fleet.contains_key(*id)).cloned().collect();
        if present.is_empty() {
            return Ok(());
        }
        self.ensure_not_serving(&present).await?;
        self.call("stop targets", || self.exec.fleet.retire(&present)).await?;
        let after = self.fleet_targets(&present).await?;
        if let Some(left) = present.iter().find(|id| after.contains_key(*id)) {
            return Err(Error::ReadBackMismatch {
                what: format!("target {left}"),
                expected: "stopped".to_owned(),
                observed: "still running".to_owned(),
            });
        }
        self.emit(EventKind::TargetsStopped { targets: present });
        Ok(())
    }

    async fn ensure_not_serving(&self, ids: &[TargetId]) -> Result<()> {
        let pools = self.call("list pools", || self.exec.router.pools()).await?;
        for pool in &pools {
            let states = self.member_states(pool, ids).await?;
            if let Some(id) = ids.iter().find(|id| states.get(*id) == Some(&MemberState::Serving)) {
                return Err(Error::drift(format!("target {id} still serves in pool {pool}; it must be drained first")));
            }
        }
        Ok(())
    }

    /// Updates a batch in place; each target goes drain → update → health gate → re-enable
    /// on its own, so a drained target does not wait for its batch partners.
    pub(super) async fn update_batch(
        &self,
        pool: &PoolName,
        ids: &[TargetId],
        version: &Version,
        drain_timeout: Duration,
    ) -> Result<()> {
        let fleet = self.fleet_targets(ids).await?;
        let states = self.member_states(pool, ids).await?;
        let todo: Vec<Target> = ids
            .iter()
            .filter_map(|id| fleet.get(id))
            .filter(|t| !(t.version == *version && states.get(&t.id) == Some(&MemberState::Serving)))
            .cloned()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let serving: Vec<TargetId> =
            todo.iter().filter(|t| states.get(&t.id) == Some(&MemberState::Serving)).map(|t| t.id.clone()).collect();
        self.ensure_capacity_without(&serving).await?;
        if !serving.is_empty() {
            self.emit(EventKind::DrainStarted { pool: pool.clone(), targets: serving.clone() });
        }
        let states = &states;
        let live = self.carries_traffic(pool).await?;
        try_join_all(todo.iter().map(|t| self.update_one(pool, t, states, version, drain_timeout, live))).await?;
        let ids: Vec<TargetId> = todo.iter().map(|t| t.id.clone()).collect();
        self.verify_states(pool, &ids, |s| s == Some(MemberState::Serving), "serving").await
    }

    async fn update_one(
        &self,
        pool: &PoolName,
        target: &Target,
        states: &BTreeMap<TargetId, MemberState>,
        version: &Version,
        drain_timeout: Duration,
        live: bool,
    ) -> Result<()> {
        let id = std::slice::from_ref(&target.id);
        if matches!(states.get(&target.id), Some(MemberState::Serving | MemberState::Draining)) {
            self.drain_one_group(pool, id, drain_timeout, live).await?;
            // Invariant 3: never restart a target the router still sends requests to.
            self.verify_states(pool, id, |s| s != Some(MemberState::Serving), "not serving").await?;
        }
        let mut target = target.clone();
        if target.version != *version {
            let updated = self.call("update target", || self.exec.fleet.update(&target.id, version)).await?;
            if updated.version != *version {
                return Err(Error::ReadBackMismatch {
                    what: format!("target {}", target.id),
                    expected: version.to_string(),
                    observed: updated.version.to_string(),
                });
            }
            self.emit(EventKind::TargetUpdated {
                target: target.id.clone(),
                from: target.version.clone(),
                to: version.clone(),
            });
            target = updated;
        }
        let enable = || async {
            self.call("re-enable target", || self.exec.router.add_targets(pool, std::slice::from_ref(&target))).await?;
            self.emit(EventKind::TargetsRegistered { pool: pool.clone(), targets: id.to_vec() });
            Ok::<(), Error>(())
        };
        // A router that health-checks its members (an ALB) serves none that fail, and its
        // view sees only members: register first, then gate. Any other router: gate first.
        if self.exec.router.capabilities().checks_members {
            enable().await?;
            self.await_healthy_in_batch(&target).await
        } else {
            self.await_healthy_in_batch(&target).await?;
            enable().await
        }
    }
}

fn versions(targets: &[Target]) -> String {
    let mut v: Vec<&str> = targets.iter().map(|t| t.version.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}
