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

use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::{Adoption, Capabilities, DrainReport, Member, PoolName, Result, Router, Split, Target, TargetId};

mod builder;
mod cli;
mod config;
mod drain;
mod error;
mod members;
mod pools;
mod probe;
mod router;
mod split;
mod state;
mod weights;

pub use builder::HaproxyRouterBuilder;
pub use cli::HaproxyEndpoint;
pub use config::HaproxyRouterConfig;
pub use probe::HaproxyCheckProbe;
pub use router::HaproxyRouter;

#[async_trait]
impl Router for HaproxyRouter {
    fn name(&self) -> &str {
        "haproxy"
    }

    /// Weighted at 1 % granularity, per-target drain with observed sessions, no propagation
    /// delay; not an atomic swap (a split is several `set weight` commands, ordered so that the
    /// backend always has a weighted ready server).
    fn capabilities(&self) -> Capabilities {
        Capabilities::load_balancer()
            .with_atomic_swap(false)
            .with_weight_granularity(1)
            .with_adopts(!self.inner.named.is_empty())
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        // Reading the backend proves it exists (NotFound otherwise).
        self.servers().await?;
        Ok(self.inner.pools.clone())
    }

    async fn split(&self) -> Result<Split> {
        let servers = self.servers().await?;
        Ok(Self::to_split(self.served_split(&servers)?.as_ref()))
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        self.apply_split(split).await
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.add_members(pool, targets).await
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.drain_members(pool, targets, timeout).await
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.remove_members(pool, targets).await
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.list_members(pool).await
    }

    /// The named servers ([`HaproxyRouterBuilder::server`]) the backend has: HAProxy keeps no
    /// record of who manages a server, so they are reported on every call (the executor
    /// leaves out those a recorded deployment adopted).
    async fn unmanaged(&self) -> Result<Vec<Adoption>> {
        let servers = self.servers().await?;
        Ok(servers
            .iter()
            .filter_map(|s| {
                let (pool, target) = self.inner.named.get(&s.name)?;
                let what = format!("server {}", self.server_ref(&s.name));
                Some(Adoption { pool: pool.clone(), target: target.clone(), what })
            })
            .collect())
    }
}
