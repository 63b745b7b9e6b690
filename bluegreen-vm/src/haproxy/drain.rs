//! Draining: servers set to `drain`, their sessions watched, each put into `maint` as soon as
//! it has none (or all remaining ones at the timeout).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bluegreen_core::{DrainReport, PoolName, Result, TargetId};
use tokio::time::Instant;

use super::error::HaproxyError;
use super::router::{Admin, HaproxyRouter};
use super::state::{ServerStat, ServerState};

impl HaproxyRouter {
    /// The second half of a drain in `backend`: each of `watch` (set to `drain` already) goes
    /// to maintenance as soon as its own sessions are done, or at `started + timeout`; then
    /// every one of `names` is read back in maintenance.
    pub(super) async fn observe_drain(
        &self,
        backend: &str,
        names: &[String],
        mut watch: Vec<String>,
        started: Instant,
        timeout: Duration,
    ) -> Result<DrainReport> {
        let deadline = started + timeout;
        let mut at_start: Option<u64> = None;
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut timed_out = false;
        while !watch.is_empty() {
            let stats = self.stats_in(backend).await?;
            let mut done = Vec::new();
            for name in &watch {
                let in_flight = stats.iter().find(|s| s.name == *name).map_or(0, ServerStat::in_flight);
                last.insert(name.clone(), in_flight);
                if in_flight == 0 {
                    done.push(name.clone());
                }
            }
            at_start.get_or_insert_with(|| watch.iter().map(|n| last[n]).sum());
            for name in &done {
                self.set_state_in(backend, name, Admin::Maint).await?;
            }
            watch.retain(|n| !done.contains(n));
            if watch.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                for name in &watch {
                    self.set_state_in(backend, name, Admin::Maint).await?;
                }
                break;
            }
            tokio::time::sleep(self.inner.drain_poll.min(deadline - now)).await;
        }
        let in_flight_at_end = if timed_out { names.iter().filter_map(|n| last.get(n)).sum() } else { 0 };
        let expected: Vec<(String, Option<Admin>)> = names.iter().map(|n| (n.clone(), Some(Admin::Maint))).collect();
        self.verify_in(backend, &expected).await?;
        Ok(DrainReport {
            in_flight_at_start: Some(at_start.unwrap_or(0)),
            in_flight_at_end: Some(in_flight_at_end),
            timed_out,
            elapsed: started.elapsed(),
        })
    }

    /// [`Router::drain`](bluegreen_core::Router::drain).
    pub(super) async fn drain_members(
        &self,
        pool: &PoolName,
        ids: &[TargetId],
        timeout: Duration,
    ) -> Result<DrainReport> {
        let started = Instant::now();
        self.check_pool(pool)?;
        let names: Vec<String> = ids.iter().map(|id| self.server_name(pool, id)).collect();
        let watch: Vec<String> = {
            let _writes = self.inner.writes.lock().await;
            let servers = self.servers().await?;
            for (id, name) in ids.iter().zip(&names) {
                if !servers.iter().any(|s| s.name == *name) {
                    return Err(HaproxyError::NotAMember {
                        target: id.to_string(),
                        pool: pool.to_string(),
                        backend: self.inner.backend.clone(),
                        server: name.clone(),
                    }
                    .into());
                }
            }
            let to_drain: Vec<&ServerState> = servers.iter().filter(|s| names.contains(&s.name) && s.ready()).collect();
            if !to_drain.is_empty() {
                let current = self.served_split(&servers)?;
                let change: BTreeMap<String, Admin> = to_drain.iter().map(|s| (s.name.clone(), Admin::Drain)).collect();
                let ready = self.ready_after(&servers, &change);
                let desired = match current {
                    Some(current) => self.weights_for(&ready, &current)?,
                    None => BTreeMap::new(),
                };
                let (up, down) = Self::weight_changes(&servers, &desired, &BTreeSet::new());
                for (name, weight) in up {
                    self.set_weight(&name, weight).await?;
                }
                for server in &to_drain {
                    self.set_state(&server.name, Admin::Drain).await?;
                }
                for (name, weight) in down {
                    self.set_weight(&name, weight).await?;
                }
                // Read back: draining, and the split between pools as it was.
                let expected = self.expected_split(&ready, &desired);
                let draining: Vec<(String, Option<Admin>)> =
                    to_drain.iter().map(|s| (s.name.clone(), Some(Admin::Drain))).collect();
                self.verify(&draining, expected.as_ref().filter(|_| !desired.is_empty())).await?;
            }
            servers.iter().filter(|s| names.contains(&s.name) && !s.in_maintenance()).map(|s| s.name.clone()).collect()
        };
        self.observe_drain(&self.inner.backend, &names, watch, started, timeout).await
    }
}
