//! The simulator: an in-memory router, fleet and probe sharing one world, with programmable
//! start-up times, health behaviours, latency, injected faults and simulated request traffic,
//! and an invariant checker.
//!
//! Everything runs on tokio time, so a test with `#[tokio::test(start_paused = true)]` runs a
//! 30-minute canary in milliseconds.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use bluegreen_core::sim::{Sim, VersionBehaviour};
//! use bluegreen_core::{Canary, Executor, ShiftStep, Spec, Status, Strategy};
//!
//! let sim = Sim::builder()
//!     .pool("blue", 4, "v1")
//!     .pool("green", 0, "v1")
//!     .version("v2", VersionBehaviour::never_healthy())
//!     .build();
//! let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).shared_sink(sim.sink()).build();
//! let canary = Canary { steps: vec![ShiftStep { percent: 10, bake: Duration::from_secs(300) }], ..Canary::default() };
//! let outcome = executor.deploy(&Spec::new("web", "v2", Strategy::Canary(canary))).await.unwrap();
//! assert_eq!(outcome.status, Status::RolledBack);
//! assert_eq!(sim.split().weight(&"blue".into()), 100);
//! assert!(sim.violations().is_empty());
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventSink};
use crate::fleet::Fleet;
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};
use crate::plan::Snapshot;
use crate::probe::HealthProbe;
use crate::router::{Capabilities, Router};

mod behaviour;
mod builder;
mod fleet;
mod probe;
mod router;
mod shared;
mod traffic;
mod world;

pub use behaviour::{Fault, FleetOp, HealthBehaviour, Op, VersionBehaviour};
pub use builder::SimBuilder;
use shared::{SharedFile, WorldGuard};
use world::World;

/// Called after every successful write with the number of writes this process made so far.
pub type WriteHook = Arc<dyn Fn(u64) + Send + Sync>;

/// A broken invariant, as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant's number in DESIGN.md (1: traffic only to healthy pools, 2: capacity
    /// floor, 3: drain before retire or update).
    pub invariant: u8,
    /// Simulated time since the simulation was built.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {} broken at {:?}: {}", self.invariant, self.at, self.message)
    }
}

/// Simulated request traffic, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficStats {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered, per version.
    pub served: BTreeMap<Version, u64>,
    /// Requests that failed: no serving target, an unhealthy target, or lost in flight.
    pub failed: u64,
    /// Of the failed, those lost because their target stopped or left its pool mid-request.
    pub dropped: u64,
}

/// The work the deployer asked of the simulated backends, counted by what it touched: a
/// test that counts it per batch catches a batch whose cost grows with the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// Health probes answered.
    pub probes: u64,
    /// Pool members handed out by member reads (`members`, `members_of`).
    pub members_read: u64,
    /// Targets handed out by fleet reads (`list`, `targets`).
    pub fleet_read: u64,
}

impl std::ops::Sub for Work {
    type Output = Work;

    fn sub(self, earlier: Work) -> Work {
        Work {
            probes: self.probes - earlier.probes,
            members_read: self.members_read - earlier.members_read,
            fleet_read: self.fleet_read - earlier.fleet_read,
        }
    }
}

/// Request traffic the simulator sends through its router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Requests per second.
    pub per_second: u32,
    /// How long each request takes.
    pub latency: Duration,
}

/// A simulation: a shared world and handles onto it. Clones share the world.
#[derive(Clone)]
pub struct Sim {
    world: Arc<Mutex<World>>,
    shared: Option<Arc<SharedFile>>,
    writes_here: Arc<AtomicU64>,
    on_write: Option<WriteHook>,
    capabilities: Capabilities,
    latency: Duration,
    update_time: Duration,
    /// For a fixed inventory ([`SimBuilder::standing`]): each initial target's pool.
    standing: Option<Arc<BTreeMap<TargetId, PoolName>>>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim").field("capabilities", &self.capabilities).finish_non_exhaustive()
    }
}

impl Sim {
    /// A builder.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    fn lock(&self) -> WorldGuard<'_> {
        let mut world = self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = self.shared.as_deref().map(|shared| {
            let lock = shared
                .lock_and_load(&mut world)
                .unwrap_or_else(|e| panic!("cannot load the simulated world from {}: {e}", shared.path.display()));
            (shared, lock)
        });
        WorldGuard { world, file }
    }

    /// Counts a successful write and runs the write hook.
    fn wrote(&self) {
        let n = self.writes_here.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(hook) = &self.on_write {
            hook(n);
        }
    }

    /// The simulated router.
    pub fn router(&self) -> Arc<dyn Router> {
        Arc::new(router::SimRouter(self.clone()))
    }

    /// The simulated fleet.
    pub fn fleet(&self) -> Arc<dyn Fleet> {
        Arc::new(fleet::SimFleet(self.clone()))
    }

    /// A probe that answers with the simulated ground truth.
    pub fn probe(&self) -> Arc<dyn HealthProbe> {
        Arc::new(probe::SimProbe(self.clone()))
    }

    /// An event sink that checks the structural invariants after every event: every pool
    /// with traffic has a serving member (1), serving capacity stays at the floor (2).
    pub fn sink(&self) -> Arc<dyn EventSink> {
        Arc::new(InvariantSink(self.clone()))
    }

    /// Changes how targets of `version` behave from now on.
    pub fn set_behaviour(&self, version: impl Into<Version>, behaviour: VersionBehaviour) {
        self.lock().behaviours.insert(version.into(), behaviour);
    }

    /// Makes one target unhealthy for good, whatever its version does.
    pub fn kill(&self, target: impl Into<TargetId>) {
        if let Some(t) = self.lock().targets.get_mut(&target.into()) {
            t.killed = true;
        }
    }

    /// Sets the floor the invariant checker enforces.
    pub fn set_capacity_floor(&self, floor: usize) {
        self.lock().floor = floor;
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every invariant violation seen so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// Traffic counters.
    pub fn traffic(&self) -> TrafficStats {
        self.lock().stats.clone()
    }

    /// The split now.
    pub fn split(&self) -> Split {
        self.lock().split.clone()
    }

    /// Every split the router served, with the time it was set.
    pub fn split_history(&self) -> Vec<(Duration, Split)> {
        self.lock().split_history.clone()
    }

    /// Calls made per operation.
    pub fn calls(&self) -> BTreeMap<Op, u64> {
        self.lock().calls.clone()
    }

    /// Calls made of one operation (`sim.calls_of(RouterOp::SetSplit)`).
    pub fn calls_of(&self, op: impl Into<Op>) -> u64 {
        self.lock().calls.get(&op.into()).copied().unwrap_or(0)
    }

    /// The work done on the simulated backends so far.
    pub fn work(&self) -> Work {
        self.lock().work
    }

    /// Calls that change backend state.
    pub fn writes(&self) -> u64 {
        self.lock().calls.iter().filter(|(op, _)| op.is_write()).map(|(_, n)| n).sum()
    }

    /// Every target the fleet runs.
    pub fn targets(&self) -> Vec<Target> {
        self.lock().targets.values().map(|t| t.target.clone()).collect()
    }

    /// The members of `pool` and their states.
    pub fn members(&self, pool: impl Into<PoolName>) -> BTreeMap<TargetId, MemberState> {
        let pool = pool.into();
        self.lock()
            .pools
            .get(&pool)
            .map(|m| m.iter().map(|(id, m)| (id.clone(), m.state)).collect())
            .unwrap_or_default()
    }

    /// The split and each pool's member targets, as [`Executor::observe`](crate::Executor::observe) reads them.
    pub fn snapshot(&self) -> Snapshot {
        let world = self.lock();
        let pools = world
            .pools
            .iter()
            .map(|(p, members)| {
                (p.clone(), members.keys().filter_map(|id| world.targets.get(id)).map(|t| t.target.clone()).collect())
            })
            .collect();
        let disabled = world
            .pools
            .values()
            .flat_map(|members| {
                members.iter().filter(|(_, m)| m.state != MemberState::Serving).map(|(id, _)| id.clone())
            })
            .collect();
        Snapshot { split: world.split.clone(), pools, disabled }
    }

    /// Whether every pool with traffic has a healthy serving member now: traffic is on a
    /// healthy version.
    pub fn traffic_is_healthy(&self) -> bool {
        let world = self.lock();
        let split = world.split.clone();
        let healthy = split.live_pools().all(|p| world.pool_can_serve(p));
        healthy
    }

    /// Serving members in pools with traffic.
    pub fn serving_capacity(&self) -> usize {
        self.lock().serving_capacity()
    }

    pub(crate) async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[derive(Debug)]
struct InvariantSink(Sim);

impl EventSink for InvariantSink {
    fn emit(&self, event: &Event) {
        let mut world = self.0.lock();
        if !world.checking {
            return;
        }
        let split = world.split.clone();
        for pool in split.live_pools() {
            let serving = world.pools.get(pool).is_some_and(|m| m.values().any(|m| m.state == MemberState::Serving));
            if !serving {
                world.violate(
                    1,
                    format!(
                        "after event {} ({}), pool {pool} has traffic but no serving member",
                        event.seq, event.kind
                    ),
                );
            }
        }
        let (capacity, floor) = (world.serving_capacity(), world.floor);
        if capacity < floor {
            world.violate(
                2,
                format!("after event {} ({}), {capacity} serving below the floor of {floor}", event.seq, event.kind),
            );
        }
    }
}
