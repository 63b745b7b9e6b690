//! The conformance suite: public async test functions every backend runs against its own
//! [`Router`] and [`Fleet`] (enable the `conformance` feature in `dev-dependencies`).
//!
//! Each function panics with a message naming the broken rule, like an `assert!`. Behaviour a
//! router does not claim in its [`Capabilities`] is skipped, not failed.
//!
//! ```no_run
//! # async fn example(router: &dyn bluegreen_core::Router, targets: Vec<bluegreen_core::Target>) {
//! use bluegreen_core::conformance::{router_suite, RouterFixture};
//! let fixture = RouterFixture { pools: ["blue".into(), "green".into()], targets };
//! router_suite(router, &fixture).await;
//! # }
//! ```

use std::time::Duration;

use crate::error::Error;
use crate::fleet::{Fleet, ProvisionRequest};
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};
use crate::router::Router;

/// What a router's conformance run may use.
#[derive(Debug, Clone)]
pub struct RouterFixture {
    /// Two pools the router knows. Their members and the split may be changed freely.
    pub pools: [PoolName; 2],
    /// At least two targets the router can register in either pool, none a member yet.
    pub targets: Vec<Target>,
}

/// What a fleet's conformance run may use.
#[derive(Debug, Clone)]
pub struct FleetFixture {
    /// A version the fleet can run.
    pub version: Version,
    /// Another version the fleet can update targets to.
    pub other_version: Version,
    /// A tag unique to this run.
    pub tag: String,
}

/// Runs every router test.
pub async fn router_suite(router: &dyn Router, fixture: &RouterFixture) {
    capabilities_are_consistent(router);
    pools_are_listed(router, fixture).await;
    unknown_pool_is_refused(router, fixture).await;
    add_targets_serves_and_is_idempotent(router, fixture).await;
    split_reads_back(router, fixture).await;
    invalid_split_is_refused(router, fixture).await;
    drain_stops_traffic_and_add_re_enables(router, fixture).await;
    remove_targets_is_idempotent(router, fixture).await;
}

/// Runs every fleet test.
pub async fn fleet_suite(fleet: &dyn Fleet, fixture: &FleetFixture) {
    provision_is_ensure(fleet, fixture).await;
    update_in_place_reads_back(fleet, fixture).await;
    update_of_unknown_target_is_not_found(fleet, fixture).await;
    retire_is_idempotent(fleet, fixture).await;
}

fn ids(targets: &[Target]) -> Vec<TargetId> {
    targets.iter().map(|t| t.id.clone()).collect()
}

async fn state_of(router: &dyn Router, pool: &PoolName, id: &TargetId) -> Option<MemberState> {
    let members = router.members(pool).await.unwrap_or_else(|e| panic!("members({pool}) failed: {e}"));
    members.into_iter().find(|m| m.id == *id).map(|m| m.state)
}

/// The weight granularity divides 100, and a router without weights needs no granularity.
pub fn capabilities_are_consistent(router: &dyn Router) {
    let caps = router.capabilities();
    assert!(caps.weight_granularity >= 1, "{}: weight granularity must be at least 1", router.name());
    assert_eq!(100 % caps.weight_granularity, 0, "{}: weight granularity must divide 100", router.name());
}

/// Both fixture pools are listed.
pub async fn pools_are_listed(router: &dyn Router, fixture: &RouterFixture) {
    let pools = router.pools().await.expect("pools() failed");
    for pool in &fixture.pools {
        assert!(pools.contains(pool), "{}: pools() does not list {pool}: {pools:?}", router.name());
    }
}

/// An unknown pool gives `NotFound` (or `Invalid`), and the split is unchanged.
pub async fn unknown_pool_is_refused(router: &dyn Router, fixture: &RouterFixture) {
    let unknown = PoolName::from("bluegreen-conformance-no-such-pool");
    let err = router.members(&unknown).await.expect_err("members() of an unknown pool must fail");
    assert!(matches!(err, Error::NotFound { .. } | Error::Invalid { .. }), "members(unknown): {err}");
    let before = router.split().await.expect("split() failed");
    let err = router.set_split(&Split::all_to(&unknown)).await.expect_err("a split to an unknown pool must fail");
    assert!(matches!(err, Error::NotFound { .. } | Error::Invalid { .. }), "set_split(unknown): {err}");
    let after = router.split().await.expect("split() failed");
    assert!(after.same_traffic(&before), "a refused split changed traffic: {before} → {after}");
    let err = router.add_targets(&unknown, &fixture.targets[..1]).await.expect_err("add to an unknown pool must fail");
    assert!(matches!(err, Error::NotFound { .. } | Error::Invalid { .. }), "add_targets(unknown): {err}");
}

/// Added targets serve; adding them again changes nothing.
pub async fn add_targets_serves_and_is_idempotent(router: &dyn Router, fixture: &RouterFixture) {
    let pool = &fixture.pools[0];
    let targets = &fixture.targets[..2];
    router.add_targets(pool, targets).await.expect("add_targets failed");
    router.add_targets(pool, targets).await.expect("add_targets again failed");
    let members = router.members(pool).await.expect("members failed");
    for t in targets {
        let count = members.iter().filter(|m| m.id == t.id).count();
        assert_eq!(count, 1, "{}: target {} listed {count} times in {pool}", router.name(), t.id);
        assert_eq!(state_of(router, pool, &t.id).await, Some(MemberState::Serving), "target {} not serving", t.id);
    }
}

/// A split reads back as written (weighted splits only where the router claims them).
pub async fn split_reads_back(router: &dyn Router, fixture: &RouterFixture) {
    let [a, b] = &fixture.pools;
    router.add_targets(a, &fixture.targets[..1]).await.expect("add_targets failed");
    router.add_targets(b, &fixture.targets[1..2]).await.expect("add_targets failed");
    let caps = router.capabilities();
    let mut splits = vec![Split::all_to(a), Split::between(a, b, 100), Split::all_to(a)];
    if caps.weighted_split {
        let step = caps.weight_granularity;
        splits.insert(1, Split::between(a, b, step.max(10) / step * step));
    }
    for split in splits {
        router.set_split(&split).await.unwrap_or_else(|e| panic!("set_split({split}) failed: {e}"));
        let read = router.split().await.expect("split() failed");
        assert!(read.same_traffic(&split), "{}: wrote {split}, read back {read}", router.name());
        router.set_split(&split).await.unwrap_or_else(|e| panic!("set_split({split}) again failed: {e}"));
    }
}

/// A split whose weights do not sum to 100 is refused and changes nothing.
pub async fn invalid_split_is_refused(router: &dyn Router, fixture: &RouterFixture) {
    let [a, b] = &fixture.pools;
    let before = router.split().await.expect("split() failed");
    let bad: Split = serde_json::from_value(serde_json::json!({ a.as_str(): 50, b.as_str(): 30 })).expect("json");
    let err = router.set_split(&bad).await.expect_err("a split summing to 80 must be refused");
    assert!(matches!(err, Error::Invalid { .. }), "set_split(80%): {err}");
    let after = router.split().await.expect("split() failed");
    assert!(after.same_traffic(&before), "a refused split changed traffic: {before} → {after}");
}

/// A drained target stops serving and the report says the drain ended; adding it again
/// re-enables it.
pub async fn drain_stops_traffic_and_add_re_enables(router: &dyn Router, fixture: &RouterFixture) {
    let pool = &fixture.pools[0];
    let target = &fixture.targets[0];
    router.add_targets(pool, std::slice::from_ref(target)).await.expect("add_targets failed");
    let report = router.drain(pool, std::slice::from_ref(&target.id), Duration::from_secs(10)).await.expect("drain failed");
    assert!(!report.timed_out || report.in_flight_at_end.unwrap_or(0) > 0, "a drain with nothing in flight timed out");
    let state = state_of(router, pool, &target.id).await;
    assert!(matches!(state, Some(MemberState::Disabled | MemberState::Draining)), "drained target is {state:?}");
    router.drain(pool, std::slice::from_ref(&target.id), Duration::from_secs(10)).await.expect("drain again failed");
    router.add_targets(pool, std::slice::from_ref(target)).await.expect("re-enable failed");
    assert_eq!(state_of(router, pool, &target.id).await, Some(MemberState::Serving), "re-enabled target not serving");
}

/// Removed targets are gone from the pool; removing them again succeeds.
pub async fn remove_targets_is_idempotent(router: &dyn Router, fixture: &RouterFixture) {
    for pool in &fixture.pools {
        let present: Vec<TargetId> = router
            .members(pool)
            .await
            .expect("members failed")
            .into_iter()
            .map(|m| m.id)
            .filter(|id| fixture.targets.iter().any(|t| t.id == *id))
            .collect();
        if !present.is_empty() {
            router.drain(pool, &present, Duration::from_secs(10)).await.expect("drain failed");
        }
        router.remove_targets(pool, &ids(&fixture.targets)).await.expect("remove_targets failed");
        router.remove_targets(pool, &ids(&fixture.targets)).await.expect("remove_targets again failed");
        for t in &fixture.targets {
            assert_eq!(state_of(router, pool, &t.id).await, None, "{} still a member of {pool}", t.id);
        }
    }
}

/// Provisioning by tag creates only what is missing.
pub async fn provision_is_ensure(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let request = |count| ProvisionRequest {
        version: fixture.version.clone(),
        count,
        zones: Vec::new(),
        tag: fixture.tag.clone(),
    };
    let first = fleet.provision(&request(2)).await.expect("provision failed");
    assert_eq!(first.len(), 2, "{}: provision(2) returned {}", fleet.name(), first.len());
    assert!(first.iter().all(|t| t.version == fixture.version && t.tag.as_deref() == Some(fixture.tag.as_str())));
    let again = fleet.provision(&request(2)).await.expect("provision again failed");
    let mut a = ids(&first);
    let mut b = ids(&again);
    a.sort();
    b.sort();
    assert_eq!(a, b, "{}: provisioning the same tag again created targets", fleet.name());
    let more = fleet.provision(&request(3)).await.expect("provision(3) failed");
    assert_eq!(more.len(), 3, "{}: provision(3) after 2 returned {}", fleet.name(), more.len());
    let listed = fleet.list().await.expect("list failed");
    for t in &more {
        assert!(listed.iter().any(|l| l.id == t.id), "{}: {} not listed", fleet.name(), t.id);
    }
    fleet.retire(&ids(&more)).await.expect("retire failed");
}

/// An in-place update reads back; updating to the same version again changes nothing.
pub async fn update_in_place_reads_back(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let request = ProvisionRequest {
        version: fixture.version.clone(),
        count: 1,
        zones: Vec::new(),
        tag: format!("{}-update", fixture.tag),
    };
    let target = fleet.provision(&request).await.expect("provision failed").remove(0);
    let updated = fleet.update(&target.id, &fixture.other_version).await.expect("update failed");
    assert_eq!(updated.version, fixture.other_version, "{}: update returned the old version", fleet.name());
    let listed = fleet.list().await.expect("list failed");
    let seen = listed.iter().find(|t| t.id == target.id).expect("updated target vanished");
    assert_eq!(seen.version, fixture.other_version, "{}: list shows the old version after update", fleet.name());
    fleet.update(&target.id, &fixture.other_version).await.expect("update to the same version failed");
    fleet.retire(std::slice::from_ref(&target.id)).await.expect("retire failed");
}

/// Updating a target that does not exist is `NotFound`.
pub async fn update_of_unknown_target_is_not_found(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let err = fleet
        .update(&TargetId::from("bluegreen-conformance-no-such-target"), &fixture.other_version)
        .await
        .expect_err("update of an unknown target must fail");
    assert!(matches!(err, Error::NotFound { .. }), "{}: update(unknown): {err}", fleet.name());
}

/// Retired targets leave the list; retiring them again succeeds.
pub async fn retire_is_idempotent(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let request = ProvisionRequest {
        version: fixture.version.clone(),
        count: 2,
        zones: Vec::new(),
        tag: format!("{}-retire", fixture.tag),
    };
    let targets = fleet.provision(&request).await.expect("provision failed");
    fleet.retire(&ids(&targets)).await.expect("retire failed");
    fleet.retire(&ids(&targets)).await.expect("retire again failed");
    let listed = fleet.list().await.expect("list failed");
    for t in &targets {
        assert!(!listed.iter().any(|l| l.id == t.id), "{}: retired {} still listed", fleet.name(), t.id);
    }
}
