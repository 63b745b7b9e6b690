//! Building a simulator: pools, zones, behaviours, faults, capabilities, traffic, a shared
//! world file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::shared::SharedFile;
use super::world::{Addressing, SimMember, World};
use super::{traffic, Fault, Sim, Traffic, TrafficStats, VersionBehaviour, Work, WriteHook};
use crate::error::Result;
use crate::model::{MemberState, PoolName, Split, Version};
use crate::router::Capabilities;

/// See [`SimBuilder::probe_grace`]: far longer than the few simulated calls between a floor
/// check and its change, far shorter than a probe interval a deployer could skip.
const DEFAULT_PROBE_GRACE: Duration = Duration::from_secs(1);

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
    probe_grace: Option<Duration>,
    unchecked: bool,
    traffic: Option<Traffic>,
    shared: Option<PathBuf>,
    on_write: Option<WriteHook>,
    addressing: Addressing,
    standing: bool,
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

    /// How long a passed probe vouches for a target in the floor check (default 1 s): a
    /// target that dies less than this after a probe found it healthy does not count against
    /// a change the deployer made in the meantime, since no deployer could have seen it die.
    /// Raise it with the latency of a slow simulated backend (the calls between a floor
    /// check and the change it allows take longer there).
    #[must_use]
    pub fn probe_grace(mut self, grace: Duration) -> Self {
        self.probe_grace = Some(grace);
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

    /// Makes the fleet a fixed inventory of hosts standing in pools: it cannot start targets,
    /// updates them in place, and each initial target stands in the pool it starts in (see
    /// [`Fleet::standing_pools`](crate::Fleet::standing_pools)). Blue-green, canary and linear
    /// then update the idle pool in place and switch to it; give both pools targets.
    #[must_use]
    pub fn standing(mut self) -> Self {
        self.standing = true;
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
            probe_grace: self.probe_grace.unwrap_or(DEFAULT_PROBE_GRACE),
            checking: !self.unchecked,
            stats: TrafficStats::default(),
            work: Work::default(),
            in_flight: Default::default(),
            cursors: BTreeMap::new(),
            pool_credit: BTreeMap::new(),
            split_history: Vec::new(),
            addressing: self.addressing,
        };
        let mut first_live = None;
        let mut standing = BTreeMap::new();
        for (pool, count, version) in &self.pools {
            let mut members = BTreeMap::new();
            for i in 0..*count {
                let zone = (!self.zones.is_empty()).then(|| self.zones[i % self.zones.len()].clone());
                let target = world.new_target(version, zone, None, pool.as_str());
                standing.insert(target.id.clone(), pool.clone());
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
            standing: self.standing.then(|| Arc::new(standing)),
        };
        if let Some(traffic) = self.traffic {
            traffic::start(Arc::downgrade(&sim.world), traffic);
        }
        Ok(sim)
    }
}
