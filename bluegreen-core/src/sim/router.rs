//! The simulated router.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::world::SimMember;
use super::Sim;
use crate::error::{Error, Result};
use crate::layers::RouterOp;
use crate::model::{Member, MemberState, PoolName, Split, Target, TargetId};
use crate::router::{Capabilities, DrainReport, Router};

/// How often a drain looks at the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(super) struct SimRouter(pub(super) Sim);

#[async_trait]
impl Router for SimRouter {
    fn name(&self) -> &str {
        "sim"
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities.clone()
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::Pools)?;
        Ok(w.pools.keys().cloned().collect())
    }

    async fn split(&self) -> Result<Split> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::Split)?;
        Ok(w.split.clone())
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        split.validate("split")?;
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::SetSplit)?;
        let capacity_before = w.capacity_before_change();
        for (pool, weight) in split.iter() {
            w.pool(pool)?;
            let granularity = self.0.capabilities.weight_granularity;
            if weight % granularity != 0 || (!self.0.capabilities.weighted_split && weight != 0 && weight != 100) {
                return Err(Error::invalid("split", format!("the router cannot weight pool {pool} at {weight}%")));
            }
        }
        // Invariant 1: a pool given more traffic must be able to serve it (taking traffic
        // away from a pool that died is always allowed).
        let before = w.split.clone();
        for pool in split.live_pools().filter(|p| split.weight(p) > before.weight(p)) {
            if w.checking && !w.pool_known_to_serve(pool) {
                w.violate(1, format!("traffic sent to pool {pool}, which has no healthy serving target ({split})"));
            }
        }
        let old: Vec<PoolName> = w.split.live_pools().cloned().collect();
        w.set_split(split.clone());
        if old.iter().any(|p| split.weight(p) == 0) {
            w.check_floor("a split change", capacity_before);
        }
        drop(w);
        self.0.wrote();
        Ok(())
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::AddTargets)?;
        w.pool(pool)?;
        if let Some(t) = targets.iter().find(|t| !w.targets.contains_key(&t.id)) {
            return Err(Error::not_found(format!("target {}", t.id)));
        }
        let live = w.split.weight(pool) > 0;
        for t in targets {
            if live && w.checking && !w.known_healthy(&t.id) {
                w.violate(1, format!("unhealthy target {} put into service in pool {pool}, which has traffic", t.id));
            }
            let members = w.pools.get_mut(pool).expect("checked above");
            members.insert(t.id.clone(), SimMember { state: MemberState::Serving, drain: None });
        }
        drop(w);
        self.0.wrote();
        Ok(())
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.0.delay().await;
        let started = Instant::now();
        let in_flight_at_start = {
            let mut w = self.0.lock();
            w.enter(RouterOp::Drain)?;
            let capacity_before = w.capacity_before_change();
            let members = w.pool(pool)?;
            if let Some(id) = targets.iter().find(|id| !members.contains_key(*id)) {
                return Err(Error::not_found(format!("target {id} in pool {pool}")));
            }
            let members = w.pools.get_mut(pool).expect("checked above");
            for id in targets {
                let m = members.get_mut(id).expect("checked above");
                if m.state == MemberState::Serving {
                    *m = SimMember { state: MemberState::Draining, drain: Some((started, timeout)) };
                }
            }
            w.check_floor(&format!("draining {} target(s) in pool {pool}", targets.len()), capacity_before);
            in_flight(&w, targets)
        };
        let timed_out = loop {
            let left = in_flight(&self.0.lock(), targets);
            if left == 0 {
                break false;
            }
            if started.elapsed() >= timeout {
                break true;
            }
            tokio::time::sleep(DRAIN_POLL.min(timeout.saturating_sub(started.elapsed()))).await;
        };
        let mut w = self.0.lock();
        let in_flight_at_end = in_flight(&w, targets);
        if let Some(members) = w.pools.get_mut(pool) {
            for id in targets {
                if let Some(m) = members.get_mut(id) {
                    if m.state == MemberState::Draining {
                        m.state = MemberState::Disabled;
                    }
                }
            }
        }
        drop(w);
        self.0.wrote();
        Ok(DrainReport {
            in_flight_at_start: Some(in_flight_at_start),
            in_flight_at_end: Some(in_flight_at_end),
            timed_out,
            elapsed: started.elapsed(),
        })
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::RemoveTargets)?;
        let capacity_before = w.capacity_before_change();
        w.pool(pool)?;
        for id in targets {
            if w.pools[pool].contains_key(id) {
                w.check_drained(id, "deregistered");
                w.pools.get_mut(pool).expect("checked above").remove(id);
                let still_member = w.pools.values().any(|m| m.contains_key(id));
                if !still_member {
                    w.drop_in_flight(id);
                }
            }
        }
        w.check_floor(&format!("removing {} target(s) from pool {pool}", targets.len()), capacity_before);
        drop(w);
        self.0.wrote();
        Ok(())
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::Members)?;
        w.members(pool, None)
    }

    async fn members_of(&self, pool: &PoolName, ids: &[TargetId]) -> Result<Vec<Member>> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(RouterOp::Members)?;
        w.members(pool, Some(ids))
    }
}

fn in_flight(w: &super::world::World, targets: &[TargetId]) -> u64 {
    targets.iter().filter_map(|id| w.targets.get(id)).map(|t| t.in_flight).sum()
}
