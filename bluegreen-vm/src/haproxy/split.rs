//! Changing the split: the weights that serve it, written so that the backend always keeps a
//! weighted ready server, then read back.

use std::collections::{BTreeMap, BTreeSet};

use bluegreen_core::{PoolName, Result, Split};

use super::error::HaproxyError;
use super::router::HaproxyRouter;

impl HaproxyRouter {
    /// [`Router::set_split`](bluegreen_core::Router::set_split).
    pub(super) async fn apply_split(&self, split: &Split) -> Result<()> {
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.check_pool(pool)?;
        }
        let wanted: BTreeMap<PoolName, u32> = self.inner.pools.iter().map(|p| (p.clone(), split.weight(p))).collect();
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers().await?;
        self.pool_weights(&servers)?;
        let ready = self.ready_after(&servers, &BTreeMap::new());
        for (pool, percent) in wanted.iter().filter(|(_, w)| **w > 0) {
            if ready.get(pool).is_none_or(Vec::is_empty) {
                return Err(HaproxyError::Drift {
                    what: format!(
                        "pool {pool} has no ready server in backend {}, so it cannot take {percent}% of the traffic",
                        self.inner.backend
                    ),
                }
                .into());
            }
        }
        let desired = self.weights_for(&ready, &wanted)?;
        let (up, down) = Self::weight_changes(&servers, &desired, &BTreeSet::new());
        for (name, weight) in up.into_iter().chain(down) {
            self.set_weight(&name, weight).await?;
        }
        self.verify(&[], Some(&wanted)).await?;
        Ok(())
    }
}
