//! The simulated fleet.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::time::Instant;

use super::behaviour::FleetOp;
use super::Sim;
use crate::error::{Error, Result};
use crate::fleet::{Fleet, FleetCapabilities, ProvisionRequest};
use crate::model::{PoolName, Target, TargetId, Version};

#[derive(Debug)]
pub(super) struct SimFleet(pub(super) Sim);

#[async_trait]
impl Fleet for SimFleet {
    fn name(&self) -> &str {
        "sim"
    }

    fn capabilities(&self) -> FleetCapabilities {
        FleetCapabilities::all().with_provisions(self.0.standing.is_none())
    }

    fn standing_pools(&self) -> BTreeMap<TargetId, PoolName> {
        self.0.standing.as_deref().cloned().unwrap_or_default()
    }

    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        if self.0.standing.is_some() && request.count > 0 {
            return Err(Error::invalid(
                "strategy",
                "the simulated fleet is a fixed inventory and cannot start targets",
            ));
        }
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(FleetOp::Provision)?;
        let mut tagged: Vec<Target> = w
            .targets
            .values()
            .filter(|t| t.target.tag.as_deref() == Some(request.tag.as_str()))
            .map(|t| t.target.clone())
            .collect();
        let prefix = request.version.to_string();
        for i in tagged.len()..request.count {
            let zone = (!request.zones.is_empty()).then(|| request.zones[i % request.zones.len()].clone());
            tagged.push(w.new_target(&request.version, zone, Some(request.tag.clone()), &prefix));
        }
        drop(w);
        self.0.wrote();
        Ok(tagged)
    }

    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target> {
        self.0.delay().await;
        {
            let mut w = self.0.lock();
            w.enter(FleetOp::Update)?;
            let current = w.targets.get(target).ok_or_else(|| Error::not_found(format!("target {target}")))?;
            if current.target.version == *version {
                return Ok(current.target.clone());
            }
            w.check_drained(target, "updated");
            w.drop_in_flight(target);
        }
        if !self.0.update_time.is_zero() {
            tokio::time::sleep(self.0.update_time).await;
        }
        let mut w = self.0.lock();
        let t = w.targets.get_mut(target).ok_or_else(|| Error::not_found(format!("target {target}")))?;
        t.target.version = version.clone();
        t.started = Instant::now();
        t.passed_probe_at = None;
        let updated = t.target.clone();
        drop(w);
        self.0.wrote();
        Ok(updated)
    }

    async fn retire(&self, targets: &[TargetId]) -> Result<()> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(FleetOp::Retire)?;
        let capacity_before = w.capacity_before_change();
        for id in targets {
            if w.targets.contains_key(id) {
                w.check_drained(id, "stopped");
                w.drop_in_flight(id);
                w.targets.remove(id);
                for members in w.pools.values_mut() {
                    members.remove(id);
                }
            }
        }
        w.check_floor(&format!("stopping {} target(s)", targets.len()), capacity_before);
        drop(w);
        self.0.wrote();
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Target>> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(FleetOp::List)?;
        let list: Vec<Target> = w.targets.values().map(|t| t.target.clone()).collect();
        w.work.fleet_read += list.len() as u64;
        Ok(list)
    }

    async fn targets(&self, ids: &[TargetId]) -> Result<Vec<Target>> {
        self.0.delay().await;
        let mut w = self.0.lock();
        w.enter(FleetOp::List)?;
        let found: Vec<Target> = ids.iter().filter_map(|id| w.targets.get(id)).map(|t| t.target.clone()).collect();
        w.work.fleet_read += found.len() as u64;
        Ok(found)
    }
}
