//! The router suite: what every [`Router`] must do, and what its [`Capabilities`](crate::Capabilities) claim.

use std::time::Duration;

use super::ids::ids;
use crate::error::Error;
use crate::model::{MemberState, PoolName, Split, Target, TargetId};
use crate::router::Router;

/// What a router's conformance run may use.
#[derive(Debug, Clone)]
pub struct RouterFixture {
    /// Two pools the router knows. Their members and the split may be changed freely.
    pub pools: [PoolName; 2],
    /// At least two targets the router can register in either pool, none a member yet.
    pub targets: Vec<Target>,
}

/// Runs every router test.
pub async fn router_suite(router: &dyn Router, fixture: &RouterFixture) {
    capabilities_are_consistent(router);
    pools_are_listed(router, fixture).await;
    unknown_pool_is_refused(router, fixture).await;
    add_targets_serves_and_is_idempotent(router, fixture).await;
    members_of_reads_the_members_asked_for(router, fixture).await;
    split_reads_back(router, fixture).await;
    invalid_split_is_refused(router, fixture).await;
    splits_finer_than_claimed_are_refused(router, fixture).await;
    drain_stops_traffic_and_add_re_enables(router, fixture).await;
    per_target_drain_leaves_the_pool_serving(router, fixture).await;
    drain_lasts_the_propagation_delay(router, fixture).await;
    remove_targets_is_idempotent(router, fixture).await;
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

/// `members_of` answers what `members` says of the ids asked for, leaving out ids that are not
/// members.
pub async fn members_of_reads_the_members_asked_for(router: &dyn Router, fixture: &RouterFixture) {
    let pool = &fixture.pools[0];
    router.add_targets(pool, &fixture.targets[..1]).await.expect("add_targets failed");
    let absent = TargetId::from("bluegreen-conformance-not-a-member");
    let asked = [fixture.targets[0].id.clone(), absent];
    let some = router.members_of(pool, &asked).await.expect("members_of failed");
    let all = router.members(pool).await.expect("members failed");
    let expected: Vec<_> = all.into_iter().filter(|m| m.id == asked[0]).collect();
    let some_states: Vec<_> = some.iter().map(|m| (&m.id, m.state)).collect();
    let expected_states: Vec<_> = expected.iter().map(|m| (&m.id, m.state)).collect();
    assert_eq!(some_states, expected_states, "{}: members_of disagrees with members", router.name());
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
