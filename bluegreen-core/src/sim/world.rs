//! The simulated world: targets, pools, split, traffic counters and invariant checks.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::behaviour::{Fault, Op, VersionBehaviour};
use super::{TrafficStats, Violation, Work};
use crate::error::{Error, Result};
use crate::model::{Member, MemberState, PoolName, Split, Target, TargetId, Version};

pub(super) struct SimTarget {
    pub(super) target: Target,
    pub(super) started: Instant,
    pub(super) in_flight: u64,
    /// Bumped when the target stops or restarts, so requests in flight to an earlier
    /// incarnation are known to be lost.
    pub(super) generation: u64,
    /// Set by [`Sim::kill`](super::Sim::kill): unhealthy whatever its version does.
    pub(super) killed: bool,
    /// When a probe last found this incarnation healthy (cleared by a failed probe or a
    /// restart): what a deployer can know of it.
    pub(super) passed_probe_at: Option<Instant>,
}

pub(super) struct SimMember {
    pub(super) state: MemberState,
    /// When draining began and its timeout.
    pub(super) drain: Option<(Instant, Duration)>,
}

pub(super) struct Request {
    pub(super) done_at: Instant,
    pub(super) target: TargetId,
    pub(super) generation: u64,
}

pub(super) struct World {
    pub(super) epoch: Instant,
    pub(super) targets: BTreeMap<TargetId, SimTarget>,
    pub(super) pools: BTreeMap<PoolName, BTreeMap<TargetId, SimMember>>,
    pub(super) split: Split,
    pub(super) behaviours: BTreeMap<Version, VersionBehaviour>,
    pub(super) next_id: u64,
    pub(super) calls: BTreeMap<Op, u64>,
    pub(super) faults: Vec<Fault>,
    pub(super) violations: Vec<Violation>,
    pub(super) floor: usize,
    /// How long a passed probe excuses a target that died since (see
    /// [`known_healthy`](Self::known_healthy)).
    pub(super) probe_grace: Duration,
    /// Whether mutations are checked against the invariants (off for scale benchmarks).
    pub(super) checking: bool,
    pub(super) stats: TrafficStats,
    pub(super) work: Work,
    pub(super) in_flight: VecDeque<Request>,
    /// Round-robin cursors of the traffic generator, per pool and over pools.
    pub(super) cursors: BTreeMap<PoolName, usize>,
    pub(super) pool_credit: BTreeMap<PoolName, i64>,
    pub(super) split_history: Vec<(Duration, Split)>,
    pub(super) addressing: Addressing,
}

/// How new targets are addressed: `sim:<id>` by default, or consecutive IPv4 addresses (for
/// routers that need real ones: DNS records, ALB `ip` targets), optionally as their ids too.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct Addressing {
    /// The first address (as a number) and the port.
    pub(super) ipv4_from: Option<(u32, u16)>,
    /// Whether a target's id is its address (`10.0.0.1:8080`).
    pub(super) ids_are_addresses: bool,
}

impl World {
    pub(super) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Counts a call and fails it if a fault says so.
    pub(super) fn enter(&mut self, op: impl Into<Op>) -> Result<()> {
        let op = op.into();
        let n = {
            let count = self.calls.entry(op).or_default();
            *count += 1;
            *count
        };
        for fault in &mut self.faults {
            if fault.op == op && n >= fault.from_call && fault.times > 0 {
                fault.times -= 1;
                let message = format!("injected fault on {} call {n}", op.as_str());
                return Err(if fault.retryable {
                    Error::transient("sim", message)
                } else {
                    Error::permanent("sim", message)
                });
            }
        }
        Ok(())
    }

    pub(super) fn healthy(&self, id: &TargetId) -> bool {
        self.targets.get(id).is_some_and(|t| {
            if t.killed {
                return false;
            }
            let behaviour = self.behaviours.get(&t.target.version).copied().unwrap_or_default();
            behaviour.healthy_at(t.started.elapsed())
        })
    }

    pub(super) fn violate(&mut self, invariant: u8, message: String) {
        let at = self.now();
        self.violations.push(Violation { invariant, at, message });
    }

    pub(super) fn pool(&self, pool: &PoolName) -> Result<&BTreeMap<TargetId, SimMember>> {
        self.pools.get(pool).ok_or_else(|| Error::not_found(format!("pool {pool:?}")))
    }

    /// The members of `pool`, or of them those in `ids`, counted as read.
    pub(super) fn members(&mut self, pool: &PoolName, ids: Option<&[TargetId]>) -> Result<Vec<Member>> {
        let members = self.pool(pool)?;
        let member = |(id, m): (&TargetId, &SimMember)| Member {
            id: id.clone(),
            state: m.state,
            in_flight: Some(self.targets.get(id).map_or(0, |t| t.in_flight)),
        };
        let read: Vec<Member> = match ids {
            None => members.iter().map(member).collect(),
            Some(ids) => ids.iter().filter_map(|id| members.get_key_value(id)).map(member).collect(),
        };
        self.work.members_read += read.len() as u64;
        Ok(read)
    }

    /// Healthy as far as a deployer can know: healthy now, or a probe passed no longer than
    /// the probe grace ago and it died since. No deployer sees a death before its next probe,
    /// so capacity a target takes with it in the moment between a floor check and the change
    /// the check allowed is not the deployer's doing; a change made on older knowledge is.
    pub(super) fn known_healthy(&self, id: &TargetId) -> bool {
        self.healthy(id)
            || self.targets.get(id).and_then(|t| t.passed_probe_at).is_some_and(|at| at.elapsed() <= self.probe_grace)
    }

    /// Serving members of live pools: the structural capacity.
    pub(super) fn serving_capacity(&self) -> usize {
        self.split
            .live_pools()
            .filter_map(|p| self.pools.get(p))
            .map(|members| members.values().filter(|m| m.state == MemberState::Serving).count())
            .sum()
    }

    /// Serving members of live pools that are [known healthy](Self::known_healthy).
    pub(super) fn known_healthy_capacity(&self) -> usize {
        self.split
            .live_pools()
            .filter_map(|p| self.pools.get(p))
            .map(|members| {
                members.iter().filter(|(id, m)| m.state == MemberState::Serving && self.known_healthy(id)).count()
            })
            .sum()
    }

    /// The healthy capacity before a change, for [`check_floor`](Self::check_floor).
    pub(super) fn capacity_before_change(&self) -> usize {
        if self.checking && self.floor > 0 {
            self.known_healthy_capacity()
        } else {
            0
        }
    }

    /// Invariant 2, checked after every change that may take capacity away: a change that
    /// lowered healthy serving capacity must not leave it below the floor. (Targets that die
    /// on their own are not the deployer's doing; taking capacity away while they are dead is.)
    pub(super) fn check_floor(&mut self, what: &str, before: usize) {
        if !self.checking || self.floor == 0 {
            return;
        }
        let capacity = self.known_healthy_capacity();
        if capacity < before && capacity < self.floor {
            self.violate(
                2,
                format!(
                    "{what} left {capacity} healthy serving targets in live pools, below the floor of {}",
                    self.floor
                ),
            );
        }
    }

    /// Whether `pool` has a serving member that is healthy now.
    pub(super) fn pool_can_serve(&self, pool: &PoolName) -> bool {
        self.pool_has_serving(pool, |id| self.healthy(id))
    }

    /// Invariant 1 for one pool: it has a serving member that is [known
    /// healthy](Self::known_healthy).
    pub(super) fn pool_known_to_serve(&self, pool: &PoolName) -> bool {
        self.pool_has_serving(pool, |id| self.known_healthy(id))
    }

    fn pool_has_serving(&self, pool: &PoolName, healthy: impl Fn(&TargetId) -> bool) -> bool {
        self.pools
            .get(pool)
            .is_some_and(|members| members.iter().any(|(id, m)| m.state == MemberState::Serving && healthy(id)))
    }

    /// Invariant 3: stopping or changing `id` is only allowed once no pool sends it requests
    /// and its drain finished or timed out.
    pub(super) fn check_drained(&mut self, id: &TargetId, action: &str) {
        if !self.checking {
            return;
        }
        let in_flight = self.targets.get(id).map_or(0, |t| t.in_flight);
        let mut problems = Vec::new();
        for (pool, members) in &self.pools {
            if let Some(m) = members.get(id) {
                match (m.state, m.drain) {
                    (MemberState::Serving, _) => problems.push(format!("still serving in pool {pool}")),
                    (MemberState::Draining, Some((start, timeout))) if in_flight > 0 && start.elapsed() < timeout => {
                        problems.push(format!("still draining {in_flight} requests in pool {pool}"));
                    }
                    _ => {}
                }
            }
        }
        for p in problems {
            self.violate(3, format!("{action} target {id} while {p}"));
        }
    }

    /// Requests in flight to `id` are lost (it stopped, restarted or left its pool).
    pub(super) fn drop_in_flight(&mut self, id: &TargetId) {
        if let Some(t) = self.targets.get_mut(id) {
            self.stats.failed += t.in_flight;
            self.stats.dropped += t.in_flight;
            t.in_flight = 0;
            t.generation += 1;
        }
    }

    pub(super) fn new_target(
        &mut self,
        version: &Version,
        zone: Option<String>,
        tag: Option<String>,
        prefix: &str,
    ) -> Target {
        self.next_id += 1;
        let name = format!("{prefix}-{:03}", self.next_id);
        let address = match self.addressing.ipv4_from {
            Some((first, port)) => {
                let offset = u32::try_from(self.next_id - 1).unwrap_or(u32::MAX);
                format!("{}:{port}", std::net::Ipv4Addr::from(first.saturating_add(offset)))
            }
            None => format!("sim:{name}"),
        };
        let id = TargetId(if self.addressing.ids_are_addresses { address.clone() } else { name });
        let target = Target { address, id: id.clone(), zone, version: version.clone(), tag };
        self.targets.insert(
            id,
            SimTarget {
                target: target.clone(),
                started: Instant::now(),
                in_flight: 0,
                generation: 0,
                killed: false,
                passed_probe_at: None,
            },
        );
        target
    }

    pub(super) fn set_split(&mut self, split: Split) {
        let at = self.now();
        self.split = split.clone();
        self.split_history.push((at, split));
    }
}
