//! Target ids, as the suites pass them to routers and fleets.

use crate::model::{Target, TargetId};

pub(super) fn ids(targets: &[Target]) -> Vec<TargetId> {
    targets.iter().map(|t| t.id.clone()).collect()
}
