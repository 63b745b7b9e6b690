//! The backend's servers read as pools: how much traffic each pool's ready weights serve, the
//! weights that serve a wanted split over the ready servers, the writes that get there
//! (raising before lowering), and the read-back of states and split after a change.

use std::collections::{BTreeMap, BTreeSet};

use bluegreen_core::{Error, PoolName, Split};

use super::error::HaproxyError;
use super::router::{Admin, HaproxyRouter};
use super::state::ServerState;
use super::weights::{self, PoolShare};

/// `set weight` writes to make: (server, weight).
pub(super) type WeightWrites = Vec<(String, u32)>;

impl HaproxyRouter {
    /// Sum of ready weights per configured pool; refuses a ready, weighted server outside
    /// every pool (its traffic could not be accounted for).
    pub(super) fn pool_weights(&self, servers: &[ServerState]) -> Result<BTreeMap<PoolName, u64>, HaproxyError> {
        let mut weights: BTreeMap<PoolName, u64> = self.inner.pools.iter().map(|p| (p.clone(), 0)).collect();
        for server in servers.iter().filter(|s| s.ready()) {
            match self.owner(&server.name) {
                Some((pool, _)) => *weights.entry(pool.clone()).or_default() += u64::from(server.uweight),
                None if server.uweight > 0 => {
                    return Err(HaproxyError::Drift {
                        what: format!(
                            "server {}/{} is ready with weight {} but belongs to no pool ({}): it takes traffic \
                             the split cannot account for; rename it <pool>{}<id>, name it on its host in the \
                             inventory (`server = \"{}\"`, with the host's `pool`), or set its weight to 0 or its \
                             state to maint",
                            self.inner.backend,
                            server.name,
                            server.uweight,
                            self.inner.pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", "),
                            self.inner.separator,
                            server.name,
                        ),
                    })
                }
                None => {}
            }
        }
        Ok(weights)
    }

    /// The split served by `servers`: pool → percent, or `None` when no ready server has
    /// weight (HAProxy then serves nothing from this backend).
    pub(super) fn served_split(
        &self,
        servers: &[ServerState],
    ) -> Result<Option<BTreeMap<PoolName, u32>>, HaproxyError> {
        let weights = self.pool_weights(servers)?;
        Ok(weights::pool_percents(weights.iter().map(|(p, w)| (p, *w))))
    }

    pub(super) fn to_split(percents: Option<&BTreeMap<PoolName, u32>>) -> Split {
        match percents {
            Some(p) => Split::new(p.iter().map(|(pool, w)| (pool.clone(), *w))).unwrap_or_default(),
            None => Split::default(),
        }
    }

    /// The weights that serve `wanted` over the `ready` servers of each pool. A pool with a
    /// share but no ready server loses its share to the others, proportionally (that is what
    /// HAProxy does with it anyway); with nothing left, no weight is set.
    pub(super) fn weights_for(
        &self,
        ready: &BTreeMap<PoolName, Vec<String>>,
        wanted: &BTreeMap<PoolName, u32>,
    ) -> Result<BTreeMap<String, u32>, HaproxyError> {
        let kept = self.inner.pools.iter().map(|p| {
            let has_servers = ready.get(p).is_some_and(|r| !r.is_empty());
            (p, if has_servers { u64::from(wanted.get(p).copied().unwrap_or(0)) } else { 0 })
        });
        let Some(percents) = weights::pool_percents(kept) else {
            // Nothing serves: zero weights keep a later re-enable from bringing back stale ones.
            return Ok(ready.values().flatten().map(|s| (s.clone(), 0)).collect());
        };
        let shares: Vec<PoolShare<'_>> = percents
            .iter()
            .map(|(pool, percent)| PoolShare {
                pool: pool.as_str(),
                percent: *percent,
                ready: ready.get(pool).map(|r| r.iter().map(String::as_str).collect()).unwrap_or_default(),
            })
            .collect();
        weights::spread(&shares).map_err(|what| HaproxyError::Drift { what })
    }

    /// Ready servers per pool after `change` (server → new admin state) is applied.
    pub(super) fn ready_after(
        &self,
        servers: &[ServerState],
        change: &BTreeMap<String, Admin>,
    ) -> BTreeMap<PoolName, Vec<String>> {
        let mut ready: BTreeMap<PoolName, Vec<String>> = BTreeMap::new();
        let mut names: BTreeSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        names.extend(change.keys().map(String::as_str));
        for name in names {
            let Some((pool, _)) = self.owner(name) else { continue };
            let now_ready = servers.iter().find(|s| s.name == name).is_some_and(ServerState::ready);
            let is_ready = change.get(name).map_or(now_ready, |a| *a == Admin::Ready);
            if is_ready {
                ready.entry(pool.clone()).or_default().push(name.to_owned());
            }
        }
        ready
    }

    /// Weight writes that raise (first) and lower (last) servers' weights towards `desired`.
    pub(super) fn weight_changes(
        servers: &[ServerState],
        desired: &BTreeMap<String, u32>,
        skip: &BTreeSet<String>,
    ) -> (WeightWrites, WeightWrites) {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (name, weight) in desired.iter().filter(|(n, _)| !skip.contains(*n)) {
            match servers.iter().find(|s| s.name == *name) {
                Some(s) if s.uweight < *weight => up.push((name.clone(), *weight)),
                Some(s) if s.uweight > *weight => down.push((name.clone(), *weight)),
                _ => {}
            }
        }
        (up, down)
    }

    /// Reads back the admin state of `names`: `expect(None)` for absent servers. Returns the
    /// servers read, for further checks on the same read.
    pub(super) async fn verify(
        &self,
        names: &[(String, Option<Admin>)],
        split: Option<&BTreeMap<PoolName, u32>>,
    ) -> Result<Vec<ServerState>, Error> {
        let servers = self.verify_in(&self.inner.backend, names).await?;
        if let Some(wanted) = split {
            let observed = Self::to_split(self.served_split(&servers)?.as_ref());
            let wanted = Self::to_split(Some(wanted));
            if !observed.same_traffic(&wanted) {
                return Err(Error::ReadBackMismatch {
                    what: format!("split of backend {}", self.inner.backend),
                    expected: wanted.to_string(),
                    observed: observed.to_string(),
                });
            }
        }
        Ok(servers)
    }

    /// The split that should hold after a membership change: the current one, or (nothing
    /// served yet) all traffic to `pool`, if it will have a ready server.
    pub(super) fn wanted_after(
        &self,
        current: Option<BTreeMap<PoolName, u32>>,
        ready: &BTreeMap<PoolName, Vec<String>>,
        pool: &PoolName,
    ) -> BTreeMap<PoolName, u32> {
        current.unwrap_or_else(|| {
            let mut all: BTreeMap<PoolName, u32> = self.inner.pools.iter().map(|p| (p.clone(), 0)).collect();
            if ready.get(pool).is_some_and(|r| !r.is_empty()) {
                all.insert(pool.clone(), 100);
            }
            all
        })
    }

    /// Reads back the admin state of `names` in `backend` (`None`: absent). Returns the
    /// servers read.
    pub(super) async fn verify_in(
        &self,
        backend: &str,
        names: &[(String, Option<Admin>)],
    ) -> Result<Vec<ServerState>, Error> {
        let servers = self.servers_in(backend).await?;
        for (name, expected) in names {
            let found = servers.iter().find(|s| s.name == *name);
            let observed = found.map(Admin::of);
            if observed != *expected {
                let word = |a: Option<Admin>| a.map_or("absent", Admin::word).to_owned();
                return Err(Error::ReadBackMismatch {
                    what: format!("server {backend}/{name}"),
                    expected: word(*expected),
                    observed: word(observed),
                });
            }
        }
        Ok(servers)
    }

    /// What the split reads after weights for `wanted` are applied over `ready`.
    pub(super) fn expected_split(
        &self,
        ready: &BTreeMap<PoolName, Vec<String>>,
        weights: &BTreeMap<String, u32>,
    ) -> Option<BTreeMap<PoolName, u32>> {
        let sums = self.inner.pools.iter().map(|p| {
            let sum = ready.get(p).into_iter().flatten().map(|s| u64::from(weights.get(s).copied().unwrap_or(0)));
            (p, sum.sum())
        });
        weights::pool_percents(sums)
    }
}
