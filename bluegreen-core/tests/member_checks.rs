//! Routers that health-check their members themselves (`Capabilities::checks_members`, an ALB):
//! their probe sees only registered targets, so the executor registers new and updated targets
//! (with no traffic) before their health gate. Without that order these deploys never pass.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use bluegreen_core::layers::FaultyRouter;
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, Executor, Health, HealthProbe, MemberState, Rolling, Router, Spec, Status, Strategy, Target,
};
use support::*;

/// Healthy only if the simulator says so *and* the router has the target as a serving member
/// of some pool (what `AlbTargetHealth` answers).
#[derive(Debug)]
struct RouterView {
    router: Arc<dyn Router>,
    inner: Arc<dyn HealthProbe>,
}

#[async_trait]
impl HealthProbe for RouterView {
    async fn check(&self, target: &Target) -> Health {
        for pool in self.router.pools().await.unwrap_or_default() {
            let members = self.router.members(&pool).await.unwrap_or_default();
            if members.iter().any(|m| m.id == target.id && m.state == MemberState::Serving) {
                return self.inner.check(target).await;
            }
        }
        Health::unhealthy("not registered")
    }
}

fn executor(sim: &Sim) -> Executor {
    // The simulator's router, claiming to health-check its members.
    let router: Arc<dyn Router> =
        Arc::new(FaultyRouter::new(sim.router()).with_capabilities(|caps| caps.with_checks_members(true)));
    let probe = Arc::new(RouterView { router: router.clone(), inner: sim.probe() });
    Executor::builder(router, sim.fleet(), probe).shared_sink(sim.sink()).build()
}

#[tokio::test(start_paused = true)]
async fn a_blue_green_registers_the_new_pool_at_no_traffic_then_gates_it() {
    let sim = Sim::builder().pool("blue", 3, "v1").pool("green", 0, "v1").build();
    let outcome =
        executor(&sim).deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_re_registers_each_target_then_gates_it() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
    let outcome =
        executor(&sim).deploy(&quick(Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))))).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}
