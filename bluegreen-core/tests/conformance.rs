//! The conformance suite against the simulator's router and fleet (every backend crate runs
//! the same functions against its own).

use bluegreen_core::conformance::{
    fleet_suite, per_target_drain_leaves_the_pool_serving, router_suite, splits_finer_than_claimed_are_refused,
    FleetFixture, RouterFixture,
};
use bluegreen_core::layers::{FaultyRouter, RouterOp};
use bluegreen_core::sim::Sim;
use bluegreen_core::{Capabilities, ProvisionRequest, TargetId};

/// A simulator with two empty pools, blue and green, claiming `caps`, and a fixture of two
/// targets it provisioned (members of no pool yet).
async fn two_idle_targets(caps: Capabilities) -> (Sim, RouterFixture) {
    let sim = Sim::builder().pool("blue", 0, "v1").pool("green", 0, "v1").capabilities(caps).build();
    let targets = sim
        .fleet()
        .provision(&ProvisionRequest { version: "v1".into(), count: 2, zones: vec![], tag: "fixture".into() })
        .await
        .unwrap();
    (sim, RouterFixture { pools: ["blue".into(), "green".into()], targets })
}

/// What a suite function panicked with, run on its own task.
async fn failure_of(check: impl std::future::Future<Output = ()> + Send + 'static) -> String {
    let panic = tokio::spawn(check).await.expect_err("the suite must fail");
    panic.into_panic().downcast::<String>().map(|m| *m).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn the_simulated_router_conforms() {
    for caps in [Capabilities::load_balancer(), Capabilities::load_balancer().with_weight_granularity(25)] {
        let (sim, fixture) = two_idle_targets(caps).await;
        router_suite(sim.router().as_ref(), &fixture).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_simulated_fleet_conforms() {
    let sim = Sim::builder().build();
    let fixture = FleetFixture { version: "v1".into(), other_version: "v2".into(), tag: "conformance".into() };
    fleet_suite(sim.fleet().as_ref(), &fixture).await;
}

/// The suite catches a router that claims more than it does: coarser weights than it accepts,
/// or no weights at all while it takes a 50/50 split.
#[tokio::test(start_paused = true)]
async fn the_suite_fails_a_router_that_accepts_splits_it_does_not_claim() {
    for claim in [
        Capabilities::load_balancer().with_weight_granularity(25),
        Capabilities::load_balancer().with_weighted_split(false),
    ] {
        let (sim, fixture) = two_idle_targets(Capabilities::load_balancer()).await;
        let claimed = claim.clone();
        let liar = FaultyRouter::new(sim.router()).with_capabilities(move |_| claimed.clone());
        let message = failure_of(async move { splits_finer_than_claimed_are_refused(&liar, &fixture).await }).await;
        assert!(message.contains("must be refused"), "{claim:?}: {message}");
    }
}

/// And a router that claims per-target drains but stops the whole pool.
#[tokio::test(start_paused = true)]
async fn the_suite_fails_a_router_whose_per_target_drain_stops_the_pool() {
    let (sim, fixture) = two_idle_targets(Capabilities::load_balancer()).await;
    let all: Vec<TargetId> = fixture.targets.iter().map(|t| t.id.clone()).collect();
    let inner = sim.router();
    let whole_pool = FaultyRouter::new(sim.router()).before(RouterOp::Drain, move |request| {
        let (inner, all) = (inner.clone(), all.clone());
        async move {
            let pool = request.pool.expect("a drain names its pool");
            inner.drain(&pool, &all, std::time::Duration::from_secs(1)).await.map(drop)
        }
    });
    let message =
        failure_of(async move { per_target_drain_leaves_the_pool_serving(&whole_pool, &fixture).await }).await;
    assert!(message.contains("stopped"), "{message}");
}
