//! A simulated world shared by processes through a file: every operation loads the world
//! under an advisory lock, and saves it when done. This is what lets a test kill a process
//! running a simulated deploy and resume it in another one.
//!
//! Times are kept as wall-clock milliseconds in the file, so processes on real time agree on
//! targets' ages. (Request traffic is not simulated in a shared world.)

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::behaviour::{Fault, Op, VersionBehaviour};
use super::world::{Addressing, SimMember, SimTarget, World};
use super::{TrafficStats, Violation};
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};

/// The file behind a shared world.
#[derive(Debug)]
pub(super) struct SharedFile {
    pub(super) path: PathBuf,
}

/// The world locked for one operation; in a shared world, also the file's lock, and the world
/// is saved when this is dropped.
pub(super) struct WorldGuard<'a> {
    pub(super) world: MutexGuard<'a, World>,
    pub(super) file: Option<(&'a SharedFile, File)>,
}

impl Deref for WorldGuard<'_> {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl DerefMut for WorldGuard<'_> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Drop for WorldGuard<'_> {
    fn drop(&mut self) {
        if let Some((shared, lock)) = self.file.take() {
            // A simulation that cannot save has no way to report it but loudly.
            save(&shared.path, &self.world).unwrap_or_else(|e| panic!("cannot save the simulated world: {e}"));
            let _ = lock.unlock();
        }
    }
}

impl SharedFile {
    /// Creates the file from `world` when it does not exist, else checks that it holds a saved
    /// world (without changing `world`: every operation loads it).
    pub(super) fn open(&self, world: &mut World) -> crate::Result<()> {
        let shown = self.path.display();
        if !self.path.exists() {
            return save(&self.path, world)
                .map_err(|e| crate::Error::invalid("world", format!("cannot create {shown}: {e}")));
        }
        let bytes =
            fs::read(&self.path).map_err(|e| crate::Error::invalid("world", format!("cannot read {shown}: {e}")))?;
        serde_json::from_slice::<Saved>(&bytes).map(drop).map_err(|e| crate::Error::Corrupt {
            path: shown.to_string(),
            reason: format!("not a simulated world: {e}"),
        })
    }

    /// Locks the file and loads the world from it into `world`.
    pub(super) fn lock_and_load(&self, world: &mut World) -> std::io::Result<File> {
        let lock_path = self.path.with_extension("lock");
        let lock = crate::private_files::open_options().create(true).truncate(false).write(true).open(lock_path)?;
        lock.lock()?;
        let saved: Saved = serde_json::from_slice(&fs::read(&self.path)?)?;
        saved.restore(world);
        Ok(lock)
    }
}

fn wall_ms() -> u64 {
    crate::state::unix_millis(SystemTime::now())
}

fn to_wall(at: Instant) -> u64 {
    wall_ms().saturating_sub(u64::try_from(at.elapsed().as_millis()).unwrap_or(0))
}

fn from_wall(ms: u64) -> Instant {
    let ago = Duration::from_millis(wall_ms().saturating_sub(ms));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

#[derive(Serialize, Deserialize)]
struct SavedTarget {
    target: Target,
    started_ms: u64,
    generation: u64,
    killed: bool,
}

#[derive(Serialize, Deserialize)]
struct SavedMember {
    state: MemberState,
    drain: Option<(u64, Duration)>,
}

/// The world as the file holds it.
#[derive(Serialize, Deserialize)]
pub(super) struct Saved {
    epoch_ms: u64,
    targets: Vec<SavedTarget>,
    pools: BTreeMap<PoolName, BTreeMap<TargetId, SavedMember>>,
    split: Split,
    behaviours: BTreeMap<Version, VersionBehaviour>,
    next_id: u64,
    calls: BTreeMap<Op, u64>,
    faults: Vec<Fault>,
    violations: Vec<Violation>,
    floor: usize,
    checking: bool,
    stats: TrafficStats,
    split_history: Vec<(Duration, Split)>,
    #[serde(default)]
    addressing: Addressing,
}

impl Saved {
    fn of(w: &World) -> Self {
        Self {
            epoch_ms: to_wall(w.epoch),
            targets: w
                .targets
                .values()
                .map(|t| SavedTarget {
                    target: t.target.clone(),
                    started_ms: to_wall(t.started),
                    generation: t.generation,
                    killed: t.killed,
                })
                .collect(),
            pools: w
                .pools
                .iter()
                .map(|(p, members)| {
                    let members = members
                        .iter()
                        .map(|(id, m)| {
                            (id.clone(), SavedMember { state: m.state, drain: m.drain.map(|(at, t)| (to_wall(at), t)) })
                        })
                        .collect();
                    (p.clone(), members)
                })
                .collect(),
            split: w.split.clone(),
            behaviours: w.behaviours.clone(),
            next_id: w.next_id,
            calls: w.calls.clone(),
            faults: w.faults.clone(),
            violations: w.violations.clone(),
            floor: w.floor,
            checking: w.checking,
            stats: w.stats.clone(),
            split_history: w.split_history.clone(),
            addressing: w.addressing,
        }
    }

    fn restore(self, w: &mut World) {
        w.epoch = from_wall(self.epoch_ms);
        w.targets = self
            .targets
            .into_iter()
            .map(|t| {
                let target = SimTarget {
                    target: t.target,
                    started: from_wall(t.started_ms),
                    in_flight: 0,
                    generation: t.generation,
                    killed: t.killed,
                    // Probes are not shared between processes.
                    passed_probe_at: None,
                };
                (target.target.id.clone(), target)
            })
            .collect();
        w.pools = self
            .pools
            .into_iter()
            .map(|(p, members)| {
                let members = members
                    .into_iter()
                    .map(|(id, m)| (id, SimMember { state: m.state, drain: m.drain.map(|(at, t)| (from_wall(at), t)) }))
                    .collect();
                (p, members)
            })
            .collect();
        w.split = self.split;
        w.behaviours = self.behaviours;
        w.next_id = self.next_id;
        w.calls = self.calls;
        w.faults = self.faults;
        w.violations = self.violations;
        w.floor = self.floor;
        w.checking = self.checking;
        w.stats = self.stats;
        w.split_history = self.split_history;
        w.addressing = self.addressing;
    }
}

/// Writes the world: a new private temporary file beside it (random name, created
/// exclusively, 0600), fsync, rename (see [`crate::private_files::replace`]).
pub(super) fn save(path: &Path, world: &World) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&Saved::of(world))?;
    crate::private_files::replace(path, &bytes, false)
        .map_err(|e| std::io::Error::new(e.error.kind(), format!("cannot {} {}: {}", e.step, path.display(), e.error)))
}
