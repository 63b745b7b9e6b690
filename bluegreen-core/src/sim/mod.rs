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
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Result;
use crate::events::{Event, EventSink};
use crate::fleet::Fleet;
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};
use crate::plan::Snapshot;
use crate::probe::HealthProbe;
use crate::router::{Capabilities, Router};

mod behaviour;
mod fleet;
mod probe;
mod router;
mod shared;
mod traffic;
mod world;

pub use behaviour::{Fault, HealthBehaviour, Op, VersionBehaviour};
use shared::{SharedFile, WorldGuard};
use world::{Addressing, SimMember, World};

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
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim").field("capabilities", &self.capabilities).finish_non_exhaustive()
    }
}

/// Builds a [`Sim`].
#[derive(Default)]
pub struct SimBuilder {
    pools: Vec<(PoolName, usize, Version)>,
    zones: Vec<String>,
    split: Option<Split>,
    behaviours: BTreeMap<Version, VersionBehaviour>,
    faults: Vec<Fault>,
    capabilities: Option<Capabilities>,
    latency: Duration,
    update_time: Duration,
    floor: usize,
    unchecked: bool,
    traffic: Option<Traffic>,
    shared: Option<PathBuf>,
    on_write: Option<WriteHook>,
    addressing: Addressing,
}

impl fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBuilder").field("pools", &self.pools).field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl SimBuilder {
    /// A pool with `count` serving targets of `version` (`count` may be 0 for an idle pool).
    #[must_use]
    pub fn pool(mut self, name: impl Into<PoolName>, count: usize, version: impl Into<Version>) -> Self {
        self.pools.push((name.into(), count, version.into()));
        self
    }

    /// Zones the initial targets are spread over, round-robin.
    #[must_use]
    pub fn zones(mut self, zones: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    /// The initial split (default: all traffic to the first pool with targets).
    #[must_use]
    pub fn split(mut self, split: Split) -> Self {
        self.split = Some(split);
        self
    }

    /// How targets of `version` behave (default: healthy at once).
    #[must_use]
    pub fn version(mut self, version: impl Into<Version>, behaviour: VersionBehaviour) -> Self {
        self.behaviours.insert(version.into(), behaviour);
        self
    }

    /// Injects a fault.
    #[must_use]
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// What the simulated router claims it can do (default: a load balancer).
    #[must_use]
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Some(capabilities);
        self
    }

    /// Latency of every router and fleet call.
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// How long an in-place update takes.
    #[must_use]
    pub fn update_time(mut self, update_time: Duration) -> Self {
        self.update_time = update_time;
        self
    }

    /// The capacity floor the invariant checker enforces (serving targets in live pools).
    #[must_use]
    pub fn capacity_floor(mut self, floor: usize) -> Self {
        self.floor = floor;
        self
    }

    /// Turns the invariant checks off (for scale benchmarks: they cost O(targets) per change).
    #[must_use]
    pub fn unchecked(mut self) -> Self {
        self.unchecked = true;
        self
    }

    /// Shares the world with other processes through `path`: if the file exists, the world
    /// is loaded from it (the builder's pools are ignored); every operation then loads and
    /// saves it under an advisory lock. Use real time (not a paused clock) in every process
    /// sharing a world; request traffic is not simulated.
    #[must_use]
    pub fn shared_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.shared = Some(path.into());
        self
    }

    /// Calls `hook` after every successful write with the number of writes this process made
    /// (a crash test kills its own process at the n-th write).
    #[must_use]
    pub fn on_write(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.on_write = Some(Arc::new(hook));
        self
    }

    /// Sends request traffic through the router from [`build`](Self::build) on (which must
    /// then run inside a tokio runtime).
    #[must_use]
    pub fn traffic(mut self, per_second: u32, latency: Duration) -> Self {
        self.traffic = Some(Traffic { per_second, latency });
        self
    }

    /// Gives targets consecutive IPv4 addresses from `first` on `port` (`10.1.0.1:8080`,
    /// `10.1.0.2:8080`, … in creation order) instead of `sim:<id>`: for real routers that need
    /// addresses (DNS records, ALB `ip` targets) driven with the simulated fleet.
    #[must_use]
    pub fn ipv4_addresses(mut self, first: std::net::Ipv4Addr, port: u16) -> Self {
        self.addressing.ipv4_from = Some((u32::from(first), port));
        self
    }

    /// Names each target by its address (an ALB knows an `ip` target by `ip:port` only); use
    /// with [`ipv4_addresses`](Self::ipv4_addresses).
    ///
    /// ```
    /// use bluegreen_core::sim::Sim;
    /// let sim = Sim::builder().pool("blue", 2, "v1").ipv4_addresses([10, 1, 0, 1].into(), 8080).named_by_address().build();
    /// let ids: Vec<String> = sim.targets().iter().map(|t| t.id.as_str().to_owned()).collect();
    /// assert_eq!(ids, ["10.1.0.1:8080", "10.1.0.2:8080"]);
    /// assert!(sim.targets().iter().all(|t| t.address == t.id.as_str()));
    /// ```
    #[must_use]
    pub fn named_by_address(mut self) -> Self {
        self.addressing.ids_are_addresses = true;
        self
    }

    /// The simulation.
    pub fn build(self) -> Sim {
        self.try_build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the simulator like [`build`](Self::build), reporting a shared world file that
    /// cannot be created or read instead of panicking.
    ///
    /// # Errors
    /// [`Error::Corrupt`](crate::Error::Corrupt) for a shared world file that is not a saved world (truncated, edited,
    /// another file); [`Error::Invalid`](crate::Error::Invalid) when it cannot be created or read.
    pub fn try_build(self) -> Result<Sim> {
        let mut world = World {
            epoch: Instant::now(),
            targets: BTreeMap::new(),
            pools: BTreeMap::new(),
            split: Split::default(),
            behaviours: self.behaviours,
            next_id: 0,
            calls: BTreeMap::new(),
            faults: self.faults,
            violations: Vec::new(),
            floor: self.floor,
            checking: !self.unchecked,
            stats: TrafficStats::default(),
            in_flight: Default::default(),
            cursors: BTreeMap::new(),
            pool_credit: BTreeMap::new(),
            split_history: Vec::new(),
            addressing: self.addressing,
        };
        let mut first_live = None;
        for (pool, count, version) in &self.pools {
            let mut members = BTreeMap::new();
            for i in 0..*count {
                let zone = (!self.zones.is_empty()).then(|| self.zones[i % self.zones.len()].clone());
                let target = world.new_target(version, zone, None, pool.as_str());
                members.insert(target.id, SimMember { state: MemberState::Serving, drain: None });
            }
            if *count > 0 && first_live.is_none() {
                first_live = Some(pool.clone());
            }
            world.pools.insert(pool.clone(), members);
        }
        let split = self.split.or_else(|| first_live.map(|p| Split::all_to(&p))).unwrap_or_default();
        world.set_split(split);
        let shared = match self.shared {
            Some(path) => {
                let file = SharedFile { path };
                file.open(&mut world)?;
                Some(Arc::new(file))
            }
            None => None,
        };
        let sim = Sim {
            world: Arc::new(Mutex::new(world)),
            shared,
            writes_here: Arc::default(),
            on_write: self.on_write,
            capabilities: self.capabilities.unwrap_or_else(Capabilities::load_balancer),
            latency: self.latency,
            update_time: self.update_time,
        };
        if let Some(traffic) = self.traffic {
            traffic::start(Arc::downgrade(&sim.world), traffic);
        }
        Ok(sim)
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
