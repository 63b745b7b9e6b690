//! What each target runs, as the recorded deployments left it: the memory of a fleet that
//! cannot ask its targets (a fixed inventory of hosts, whose file gives only the first versions).

use std::collections::{BTreeMap, BTreeSet};

use super::{DeploymentRecord, StateStore};
use crate::error::Result;
use crate::events::EventKind;
use crate::model::{TargetId, Version};

/// The version each of `wanted` runs as the deployments of `service` recorded in `store` left
/// it: the newest deployment that saw a target tells (its snapshot before it started, then its
/// `target_updated` events, rollbacks' included). Targets no deployment saw are left out.
///
/// Deployments are read newest first and only until every wanted target is known, so a long
/// history costs one record and one event log in the usual case.
///
/// # Errors
/// Store errors.
pub async fn recorded_versions(
    store: &dyn StateStore,
    service: &str,
    wanted: &BTreeSet<TargetId>,
) -> Result<BTreeMap<TargetId, Version>> {
    let mut known = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(known);
    }
    for record in store.history(service).await?.iter().rev() {
        let seen = left_by(store, record).await?;
        for (id, version) in seen {
            if wanted.contains(&id) {
                known.entry(id).or_insert(version);
            }
        }
        if known.len() == wanted.len() {
            break;
        }
    }
    Ok(known)
}

/// The versions one deployment left its targets on.
async fn left_by(store: &dyn StateStore, record: &DeploymentRecord) -> Result<BTreeMap<TargetId, Version>> {
    let mut versions: BTreeMap<TargetId, Version> =
        record.plan.before.pools.values().flatten().map(|t| (t.id.clone(), t.version.clone())).collect();
    for event in store.events(&record.id).await? {
        if let EventKind::TargetUpdated { target, to, .. } = event.kind {
            versions.insert(target, to);
        }
    }
    Ok(versions)
}
