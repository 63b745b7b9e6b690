//! The conformance suite: public async test functions every backend runs against its own
//! [`Router`], [`Fleet`] and [`StateStore`] (enable the `conformance` feature in `dev-dependencies`).
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
use crate::events::{Event, EventKind};
use crate::fleet::{Fleet, ProvisionRequest};
use crate::model::{MemberState, PoolName, Split, Target, TargetId, Version};
use crate::plan::{Plan, Snapshot};
use crate::router::Router;
use crate::spec::{Spec, Strategy};
use crate::state::{Command, DeploymentRecord, ManualClock, Phase, StateStore};

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
    splits_finer_than_claimed_are_refused(router, fixture).await;
    drain_stops_traffic_and_add_re_enables(router, fixture).await;
    per_target_drain_leaves_the_pool_serving(router, fixture).await;
    drain_lasts_the_propagation_delay(router, fixture).await;
    remove_targets_is_idempotent(router, fixture).await;
}

/// Runs every fleet test: what the fleet's [`FleetCapabilities`](crate::FleetCapabilities)
/// claim, and that what they do not claim is refused with `Error::Invalid`, changing nothing.
/// A fleet that cannot provision is updated on a target it lists (at least one).
pub async fn fleet_suite(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let can = fleet.capabilities();
    if can.provisions {
        provision_is_ensure(fleet, fixture).await;
        retire_is_idempotent(fleet, fixture).await;
    } else {
        provision_is_refused(fleet, fixture).await;
    }
    if can.updates_in_place {
        update_in_place_reads_back(fleet, fixture).await;
        update_of_unknown_target_is_not_found(fleet, fixture).await;
    } else {
        update_is_refused(fleet, fixture).await;
    }
}

/// A target to update: a provisioned one, or the first listed by a fleet that cannot provision.
async fn target_to_update(fleet: &dyn Fleet, fixture: &FleetFixture, tag: &str) -> (Target, bool) {
    if fleet.capabilities().provisions {
        let request =
            ProvisionRequest { version: fixture.version.clone(), count: 1, zones: Vec::new(), tag: tag.to_owned() };
        (fleet.provision(&request).await.expect("provision failed").remove(0), true)
    } else {
        let listed = fleet.list().await.expect("list failed");
        let first = listed.into_iter().next();
        (
            first.unwrap_or_else(|| panic!("{}: a fleet that cannot provision needs a target to update", fleet.name())),
            false,
        )
    }
}

/// A fleet that does not provision refuses to, with `Invalid`, and lists the same targets after.
pub async fn provision_is_refused(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let before = ids(&fleet.list().await.expect("list failed"));
    let request =
        ProvisionRequest { version: fixture.version.clone(), count: 1, zones: Vec::new(), tag: fixture.tag.clone() };
    let err = fleet.provision(&request).await.expect_err("a fleet that does not provision must refuse to");
    assert!(matches!(err, Error::Invalid { .. }), "{}: provision refused with {err}, not Invalid", fleet.name());
    assert_eq!(
        ids(&fleet.list().await.expect("list failed")),
        before,
        "{}: a refused provision changed the fleet",
        fleet.name()
    );
}

/// A fleet that does not update in place refuses to move a target to another version, with
/// `Invalid`, and the target keeps its version.
pub async fn update_is_refused(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let (target, provisioned) = target_to_update(fleet, fixture, &format!("{}-no-update", fixture.tag)).await;
    let err = fleet.update(&target.id, &fixture.other_version).await.expect_err("an in-place update must be refused");
    assert!(matches!(err, Error::Invalid { .. }), "{}: update refused with {err}, not Invalid", fleet.name());
    let listed = fleet.list().await.expect("list failed");
    let seen = listed.iter().find(|t| t.id == target.id).expect("the target vanished");
    assert_eq!(seen.version, target.version, "{}: a refused update changed the version", fleet.name());
    if provisioned {
        fleet.retire(std::slice::from_ref(&target.id)).await.expect("retire failed");
    }
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

/// A split the router does not claim to express — any weighted one without `weighted_split`, or
/// one off its `weight_granularity` — is refused with `Invalid` and changes nothing.
pub async fn splits_finer_than_claimed_are_refused(router: &dyn Router, fixture: &RouterFixture) {
    let [a, b] = &fixture.pools;
    let caps = router.capabilities();
    let finer = if !caps.weighted_split {
        50
    } else if caps.weight_granularity > 1 {
        caps.weight_granularity / 2 + 1
    } else {
        return;
    };
    router.add_targets(a, &fixture.targets[..1]).await.expect("add_targets failed");
    router.add_targets(b, &fixture.targets[1..2]).await.expect("add_targets failed");
    router.set_split(&Split::all_to(a)).await.expect("set_split failed");
    let split = Split::between(a, b, finer);
    let err = router.set_split(&split).await.expect_err("a split finer than claimed must be refused");
    assert!(
        matches!(err, Error::Invalid { .. }),
        "{}: set_split({split}) refused with {err}, not Invalid",
        router.name()
    );
    let after = router.split().await.expect("split() failed");
    assert!(after.same_traffic(&Split::all_to(a)), "{}: a refused split changed traffic to {after}", router.name());
}

/// With `per_target_drain`, draining one target leaves the others of its pool serving and the
/// split as it was.
pub async fn per_target_drain_leaves_the_pool_serving(router: &dyn Router, fixture: &RouterFixture) {
    if !router.capabilities().per_target_drain {
        return;
    }
    let pool = &fixture.pools[0];
    let [first, second, ..] = fixture.targets.as_slice() else { panic!("the fixture needs two targets") };
    router.add_targets(pool, &[first.clone(), second.clone()]).await.expect("add_targets failed");
    router.set_split(&Split::all_to(pool)).await.expect("set_split failed");
    router.drain(pool, std::slice::from_ref(&first.id), Duration::from_secs(10)).await.expect("drain failed");
    let name = router.name();
    assert_eq!(
        state_of(router, pool, &second.id).await,
        Some(MemberState::Serving),
        "{name}: draining {} stopped {}",
        first.id,
        second.id
    );
    let split = router.split().await.expect("split() failed");
    assert!(split.same_traffic(&Split::all_to(pool)), "{name}: draining one target changed the split to {split}");
    router.add_targets(pool, std::slice::from_ref(first)).await.expect("re-enable failed");
}

/// A drained target stops serving and the report says the drain ended; adding it again
/// re-enables it.
pub async fn drain_stops_traffic_and_add_re_enables(router: &dyn Router, fixture: &RouterFixture) {
    let pool = &fixture.pools[0];
    let target = &fixture.targets[0];
    router.add_targets(pool, std::slice::from_ref(target)).await.expect("add_targets failed");
    let report =
        router.drain(pool, std::slice::from_ref(&target.id), Duration::from_secs(10)).await.expect("drain failed");
    assert!(!report.timed_out || report.in_flight_at_end.unwrap_or(0) > 0, "a drain with nothing in flight timed out");
    if router.capabilities().observes_in_flight {
        assert!(
            report.in_flight_at_start.is_some() && report.in_flight_at_end.is_some(),
            "{}: claims observes_in_flight but its drain report carries no counts: {report:?}",
            router.name()
        );
    }
    let state = state_of(router, pool, &target.id).await;
    assert!(matches!(state, Some(MemberState::Disabled | MemberState::Draining)), "drained target is {state:?}");
    router.drain(pool, std::slice::from_ref(&target.id), Duration::from_secs(10)).await.expect("drain again failed");
    router.add_targets(pool, std::slice::from_ref(target)).await.expect("re-enable failed");
    assert_eq!(state_of(router, pool, &target.id).await, Some(MemberState::Serving), "re-enabled target not serving");
}

/// A router with a propagation delay (DNS) never reports a target drained before the delay
/// has passed since its drain began — also when the drain call was cut short by its timeout,
/// so that a resumed run sees it still `Draining` — and a drain asked again waits the rest.
pub async fn drain_lasts_the_propagation_delay(router: &dyn Router, fixture: &RouterFixture) {
    let delay = router.capabilities().propagation_delay;
    if delay.is_zero() {
        return;
    }
    let name = router.name();
    let pool = &fixture.pools[0];
    let target = std::slice::from_ref(&fixture.targets[0]);
    let id = std::slice::from_ref(&fixture.targets[0].id);
    router.add_targets(pool, target).await.expect("add_targets failed");
    router.set_split(&Split::all_to(pool)).await.expect("set_split failed");
    let started = tokio::time::Instant::now();
    let report = router.drain(pool, id, delay / 4).await.expect("drain failed");
    let state = state_of(router, pool, &id[0]).await;
    if started.elapsed() < delay {
        assert!(
            report.timed_out,
            "{name}: a drain cut short of the propagation delay ({delay:?}) must say it timed out"
        );
        assert_eq!(
            state,
            Some(MemberState::Draining),
            "{name}: reported {state:?} {:?} after its drain began, before the propagation delay {delay:?}",
            started.elapsed()
        );
    }
    router.drain(pool, id, delay * 2).await.expect("drain again failed");
    assert!(
        started.elapsed() >= delay,
        "{name}: a drain asked again returned {:?} after the first began, before the propagation delay {delay:?}",
        started.elapsed()
    );
    assert_eq!(state_of(router, pool, &id[0]).await, Some(MemberState::Disabled), "{name}: drained after the delay");
    router.add_targets(pool, target).await.expect("re-enable failed");
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
    let (target, provisioned) = target_to_update(fleet, fixture, &format!("{}-update", fixture.tag)).await;
    let updated = fleet.update(&target.id, &fixture.other_version).await.expect("update failed");
    assert_eq!(updated.version, fixture.other_version, "{}: update returned the old version", fleet.name());
    let listed = fleet.list().await.expect("list failed");
    let seen = listed.iter().find(|t| t.id == target.id).expect("updated target vanished");
    assert_eq!(seen.version, fixture.other_version, "{}: list shows the old version after update", fleet.name());
    fleet.update(&target.id, &fixture.other_version).await.expect("update to the same version failed");
    if provisioned {
        fleet.retire(std::slice::from_ref(&target.id)).await.expect("retire failed");
    }
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

/// Runs every state-store test. `clock` must be the wall clock the store reads (give the
/// store [`ManualClock::clock`](crate::state::ManualClock::clock)), so lease expiry can be
/// tested without waiting. `prefix` keeps this run's services and ids apart from others'.
pub async fn state_store_suite(store: &dyn StateStore, clock: &ManualClock, prefix: &str) {
    records_round_trip_and_list_in_order(store, prefix).await;
    unknown_deployment_is_not_found(store, prefix).await;
    lock_is_exclusive_and_names_its_holder(store, prefix).await;
    expired_lock_is_stolen_and_the_stale_owner_is_fenced(store, clock, prefix).await;
    released_lock_is_free_with_a_higher_fence(store, prefix).await;
    queue_is_first_come_first_served(store, clock, prefix).await;
    commands_are_numbered_and_read_after_a_sequence(store, prefix).await;
    events_are_kept_in_order_and_fenced(store, prefix).await;
}

fn sample_plan(service: &str) -> Plan {
    let spec = Spec::new(service, "v2", Strategy::BlueGreen(crate::spec::BlueGreen::default()));
    let target =
        Target { id: "t-1".into(), address: "127.0.0.1:1".into(), zone: None, version: "v1".into(), tag: None };
    let before = Snapshot {
        split: Split::all_to(&"blue".into()),
        pools: [("blue".into(), vec![target]), ("green".into(), vec![])].into_iter().collect(),
        ..Snapshot::default()
    };
    Plan::compile(&spec, &before, &crate::router::Capabilities::load_balancer()).expect("the sample plan compiles")
}

const TTL: Duration = Duration::from_secs(30);

/// A saved record loads back equal; history lists a service's records oldest first; a
/// duplicate id is refused.
pub async fn records_round_trip_and_list_in_order(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-records");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let mut first = DeploymentRecord::new(format!("{prefix}-r1"), sample_plan(&service), "owner-a", 1_000);
    let second = DeploymentRecord::new(format!("{prefix}-r2"), sample_plan(&service), "owner-a", 2_000);
    store.create(&first, &lease).await.expect("create failed");
    store.create(&second, &lease).await.expect("create failed");
    let err = store.create(&first, &lease).await.expect_err("a duplicate id must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "duplicate create: {err}");
    first.completed_steps = 3;
    first.phase = Phase::RollingBack;
    first.failure = Some("analysis failed".into());
    store.save(&first, &lease).await.expect("save failed");
    assert_eq!(store.load(&first.id).await.expect("load failed"), first, "a record must load back as saved");
    let ids: Vec<String> = store.history(&service).await.expect("history failed").into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![first.id.clone(), second.id.clone()], "history must be oldest first");
    store.release(&lease).await.expect("release failed");
}

/// Loading or commanding an unknown deployment is `NotFound`.
pub async fn unknown_deployment_is_not_found(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}-no-such-deployment");
    let err = store.load(&id).await.expect_err("load of an unknown id must fail");
    assert!(matches!(err, Error::NotFound { .. }), "load(unknown): {err}");
    let err = store.send(&id, Command::Abort).await.expect_err("a command to an unknown id must fail");
    assert!(matches!(err, Error::NotFound { .. }), "send(unknown): {err}");
}

/// A live lock refuses another owner with a message naming the holder; the holder's owner name
/// may take it again, which is a takeover: a higher fence, and the first lease is then stale.
pub async fn lock_is_exclusive_and_names_its_holder(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-exclusive");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let err = store.acquire(&service, "owner-b", TTL).await.expect_err("a held lock must refuse another owner");
    match &err {
        Error::Conflict { what } => assert!(what.contains("owner-a"), "the conflict must name the holder: {what}"),
        other => panic!("acquire of a held lock: {other}"),
    }
    let record = DeploymentRecord::new(format!("{prefix}-taken-over"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create failed");
    let again = store.acquire(&service, "owner-a", TTL).await.expect("the holder may acquire again");
    assert!(
        again.fence > lease.fence,
        "re-acquiring one's own live lock takes it over with a higher fence: {} then {}",
        lease.fence,
        again.fence
    );
    assert_eq!(store.holder(&service).await.expect("holder failed").map(|l| l.owner), Some("owner-a".into()));
    let mut stale = record.clone();
    stale.completed_steps = 5;
    let err = store.save(&stale, &lease).await.expect_err("the taken-over lease's write must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "save under the taken-over lease: {err}");
    let err = store.renew(&lease, TTL).await.expect_err("the taken-over lease's renewal must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "renew under the taken-over lease: {err}");
    assert_eq!(
        store.load(&record.id).await.expect("load failed").completed_steps,
        0,
        "the taken-over lease's write changed the record"
    );
    store.release(&lease).await.expect("release under the taken-over lease is a no-op");
    assert_eq!(
        store.holder(&service).await.expect("holder failed").map(|l| l.fence),
        Some(again.fence),
        "releasing the taken-over lease must not free the lock"
    );
    store.save(&stale, &again).await.expect("the new lease may write");
    store.release(&again).await.expect("release failed");
}

/// After expiry another owner takes the lock with a higher fence, and the old owner's writes
/// and renewals are refused.
pub async fn expired_lock_is_stolen_and_the_stale_owner_is_fenced(
    store: &dyn StateStore,
    clock: &ManualClock,
    prefix: &str,
) {
    let service = format!("{prefix}-fencing");
    let old = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let record = DeploymentRecord::new(format!("{prefix}-fenced"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &old).await.expect("create failed");
    clock.advance(TTL + Duration::from_secs(1));
    let new = store.acquire(&service, "owner-b", TTL).await.expect("an expired lock must be taken over");
    assert!(new.fence > old.fence, "a new owner needs a higher fence: {} then {}", old.fence, new.fence);
    let mut stale = record.clone();
    stale.completed_steps = 5;
    let err = store.save(&stale, &old).await.expect_err("a stale owner's write must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "stale save: {err}");
    let err = store.renew(&old, TTL).await.expect_err("a stale owner's renewal must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "stale renew: {err}");
    assert_eq!(
        store.load(&record.id).await.expect("load failed").completed_steps,
        0,
        "the stale write changed the record"
    );
    store.save(&record, &new).await.expect("the new owner's write must succeed");
    store.release(&old).await.expect("releasing a lost lease is a no-op");
    assert_eq!(store.holder(&service).await.expect("holder failed").map(|l| l.owner), Some("owner-b".into()));
    store.release(&new).await.expect("release failed");
}

/// A deployment's events are kept in `seq` order across appends (more than one write's worth),
/// a retried append changes nothing, and an owner whose lease was taken over adds none.
pub async fn events_are_kept_in_order_and_fenced(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-events");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let record = DeploymentRecord::new(format!("{prefix}-logged"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create failed");
    assert!(store.events(&record.id).await.expect("events failed").is_empty(), "a new deployment has no events");
    let event = |seq: u64| Event {
        deployment_id: record.id.clone(),
        seq,
        at: Duration::from_millis(seq * 10),
        kind: EventKind::StepStarted { index: usize::try_from(seq).unwrap_or(0), step: format!("step {seq}") },
    };
    let first: Vec<Event> = (0..150).map(event).collect();
    store.append_events(&record.id, &first, &lease).await.expect("append failed");
    store.append_events(&record.id, &first[140..], &lease).await.expect("a retried append failed");
    store.append_events(&record.id, &[event(150)], &lease).await.expect("append failed");
    let read = store.events(&record.id).await.expect("events failed");
    assert_eq!(read.len(), 151, "{} events read back", read.len());
    assert!(read.iter().enumerate().all(|(i, e)| e.seq == i as u64), "not in seq order, or repeated");
    assert_eq!(read[150], event(150));

    let taken = store.acquire(&service, "owner-a", TTL).await.expect("takeover failed");
    let err = store.append_events(&record.id, &[event(151)], &lease).await.expect_err("a stale owner's events");
    assert!(matches!(err, Error::Conflict { .. }), "stale append: {err}");
    assert_eq!(store.events(&record.id).await.expect("events failed").len(), 151, "the stale append added events");
    store.release(&taken).await.expect("release failed");
}

/// A released lock is free at once, under a higher fence.
pub async fn released_lock_is_free_with_a_higher_fence(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-release");
    let first = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    store.release(&first).await.expect("release failed");
    assert_eq!(store.holder(&service).await.expect("holder failed"), None);
    let second = store.acquire(&service, "owner-b", TTL).await.expect("a released lock must be free");
    assert!(second.fence > first.fence);
    let renewed = store.renew(&second, TTL * 2).await.expect("renew failed");
    assert!(renewed.expires_at > second.expires_at);
    store.release(&renewed).await.expect("release failed");
}

/// Waiters are served in arrival order; entries that are not refreshed expire.
pub async fn queue_is_first_come_first_served(store: &dyn StateStore, clock: &ManualClock, prefix: &str) {
    let service = format!("{prefix}-queue");
    assert_eq!(store.enqueue(&service, "a", TTL).await.expect("enqueue failed"), vec!["a"]);
    assert_eq!(store.enqueue(&service, "b", TTL).await.expect("enqueue failed"), vec!["a", "b"]);
    assert_eq!(
        store.enqueue(&service, "a", TTL).await.expect("refresh failed"),
        vec!["a", "b"],
        "a refresh keeps the place"
    );
    store.dequeue(&service, "a").await.expect("dequeue failed");
    assert_eq!(store.enqueue(&service, "c", TTL).await.expect("enqueue failed"), vec!["b", "c"]);
    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(store.enqueue(&service, "c", TTL).await.expect("enqueue failed"), vec!["c"], "b expired");
    store.dequeue(&service, "c").await.expect("dequeue failed");
}

/// Commands are numbered from 1 and read after a sequence number.
pub async fn commands_are_numbered_and_read_after_a_sequence(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-commands");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let record = DeploymentRecord::new(format!("{prefix}-commanded"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create failed");
    assert_eq!(store.send(&record.id, Command::Pause).await.expect("send failed"), 1);
    assert_eq!(store.send(&record.id, Command::Promote).await.expect("send failed"), 2);
    let all: Vec<Command> =
        store.commands(&record.id, 0).await.expect("commands failed").into_iter().map(|c| c.command).collect();
    assert_eq!(all, vec![Command::Pause, Command::Promote]);
    let later = store.commands(&record.id, 1).await.expect("commands failed");
    assert_eq!(later.len(), 1);
    assert_eq!((later[0].seq, later[0].command), (2, Command::Promote));
    store.release(&lease).await.expect("release failed");
}
