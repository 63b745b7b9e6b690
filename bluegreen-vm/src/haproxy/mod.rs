//! The HAProxy runtime-API router.
//!
//! See [`HaproxyRouter`] for the pool model and `docs/haproxy.md` for the `haproxy.cfg` it
//! expects.
//!
//! Each module imports only from those below it:
//! - this one: the [`Router`] implementation, one call into the operations each;
//! - the operations: `split` (changing the split), `members` (adding, removing and listing
//!   servers), `drain`; and `builder` (the configuration), `probe` (HAProxy's checks);
//! - `pools`: the backend's servers read as pools (served split, weights for a wanted split,
//!   the order of weight writes, read-back);
//! - `router`: the handle, reading servers and stats, names, one-server writes;
//! - `cli` (the socket), `state` (parsing answers), `weights` (the arithmetic), `error`.
//!
//! The backend-per-pool layout has its own operations beside them: `split_map` (the split as
//! a map of 100 entries, written as one committed version) and `per_pool` (membership and
//! drains in a pool's own backend), over the same reads and writes.

use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::{Adoption, Capabilities, DrainReport, Member, PoolName, Result, Router, Split, Target, TargetId};

mod builder;
mod cli;
mod config;
mod drain;
mod error;
mod members;
mod per_pool;
mod pools;
mod probe;
mod router;
mod split;
mod split_map;
mod state;
mod weights;

pub use builder::HaproxyRouterBuilder;
pub use cli::HaproxyEndpoint;
pub use config::{HaproxyLayout, HaproxyRouterConfig};
pub use probe::HaproxyCheckProbe;
pub use router::HaproxyRouter;
use router::Layout;

#[async_trait]
impl Router for HaproxyRouter {
    fn name(&self) -> &str {
        "haproxy"
    }

    /// Weighted at 1 % granularity, per-target drain with observed sessions, no propagation
    /// delay. One backend: not an atomic swap (a split is several `set weight` commands,
    /// ordered so that the backend always has a weighted ready server). Backend per pool: an
    /// atomic swap (a split is one committed version of the split map).
    fn capabilities(&self) -> Capabilities {
        Capabilities::load_balancer()
            .with_atomic_swap(matches!(self.inner.layout, Layout::PerPool { .. }))
            .with_weight_granularity(1)
            .with_adopts(!self.inner.named.is_empty())
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        // Reading the backends (and the map) proves they exist (NotFound otherwise).
        match &self.inner.layout {
            Layout::OneBackend => {
                self.servers().await?;
            }
            Layout::PerPool { map, backends } => {
                for backend in backends.values() {
                    self.servers_in(backend).await?;
                }
                self.map_entries(map).await?;
            }
        }
        Ok(self.inner.pools.clone())
    }

    async fn split(&self) -> Result<Split> {
        match &self.inner.layout {
            Layout::OneBackend => {
                let servers = self.servers().await?;
                Ok(Self::to_split(self.served_split(&servers)?.as_ref()))
            }
            Layout::PerPool { map, backends } => Ok(Self::to_split(Some(&self.map_split(map, backends).await?))),
        }
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        match &self.inner.layout {
            Layout::OneBackend => self.apply_split(split).await,
            Layout::PerPool { map, backends } => self.apply_map_split(split, map, backends).await,
        }
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        match self.own_backend(pool)? {
            None => self.add_members(pool, targets).await,
            Some(backend) => self.add_to_backend(pool, &backend, targets).await,
        }
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        match self.own_backend(pool)? {
            None => self.drain_members(pool, targets, timeout).await,
            Some(backend) => self.drain_in_backend(pool, &backend, targets, timeout).await,
        }
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        match self.own_backend(pool)? {
            None => self.remove_members(pool, targets).await,
            Some(backend) => self.remove_from_backend(pool, &backend, targets).await,
        }
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        match self.own_backend(pool)? {
            None => self.list_members(pool).await,
            Some(backend) => self.members_of_backend(pool, &backend).await,
        }
    }

    /// The named servers ([`HaproxyRouterBuilder::server`]) HAProxy has: it keeps no record of
    /// who manages a server, so they are reported on every call (the executor leaves out
    /// those a recorded deployment adopted).
    async fn unmanaged(&self) -> Result<Vec<Adoption>> {
        let mut found = Vec::new();
        match &self.inner.layout {
            Layout::OneBackend => {
                for s in self.servers().await? {
                    if let Some((pool, target)) = self.inner.named.get(&s.name) {
                        let what = format!("server {}", self.server_ref(&s.name));
                        found.push(Adoption { pool: pool.clone(), target: target.clone(), what });
                    }
                }
            }
            Layout::PerPool { backends, .. } => {
                for (pool, backend) in backends {
                    for s in self.servers_in(backend).await? {
                        match self.inner.named.get(&s.name) {
                            Some((named_pool, target)) if named_pool == pool => {
                                let what = format!("server {backend}/{}", s.name);
                                found.push(Adoption { pool: pool.clone(), target: target.clone(), what });
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(found)
    }
}

impl HaproxyRouter {
    /// Checks `pool`; its own backend in the backend-per-pool layout, `None` in the default one.
    fn own_backend(&self, pool: &PoolName) -> Result<Option<String>> {
        self.check_pool(pool)?;
        Ok(match &self.inner.layout {
            Layout::OneBackend => None,
            Layout::PerPool { backends, .. } => backends.get(pool).cloned(),
        })
    }
}
