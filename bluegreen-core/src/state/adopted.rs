//! What the recorded deployments took over from a router (see [`Step::Adopt`](crate::Step::Adopt)).

use std::collections::BTreeSet;

use super::StateStore;
use crate::error::Result;
use crate::model::{PoolName, TargetId};

/// The members (pool, target) a deployment of `service` recorded in `store` adopted: its plan
/// began with an adoption step and that step completed. A router that keeps no bookkeeping of
/// its own (HAProxy) reports such members as unmanaged on every call; these are managed.
///
/// # Errors
/// Store errors.
pub async fn recorded_adoptions(store: &dyn StateStore, service: &str) -> Result<BTreeSet<(PoolName, TargetId)>> {
    let mut adopted = BTreeSet::new();
    for record in store.history(service).await? {
        if record.completed_steps > 0 {
            adopted.extend(record.plan.adoptions().iter().map(|a| (a.pool.clone(), a.target.clone())));
        }
    }
    Ok(adopted)
}
