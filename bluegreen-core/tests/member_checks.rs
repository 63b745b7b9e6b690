//! Routers that health-check their members themselves (`Capabilities::checks_members`, an ALB):
//! their probe sees only registered targets, so the executor registers new and updated targets
//! (with no traffic) before their health gate. Without that order these deploys never pass.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, Capabilities, DrainReport, Executor, Health, HealthProbe, Member, MemberState, PoolName, Result,
    Rolling, Router, Spec, Split, Status, Strategy, Target, TargetId,
};
use support::*;

/// The simulator's router, claiming to health-check its members.
#[derive(Debug)]
struct Checking(Arc<dyn Router>);

#[async_trait]
impl Router for Checking {
    fn name(&self) -> &str {
        "checking"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities().with_checks_members(true)
    }
    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.0.pools().await
    }
    async fn split(&self) -> Result<Split> {
        self.0.split().await
    }
    async fn set_split(&self, split: &Split) -> Result<()> {
        self.0.set_split(split).await
    }
    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.0.add_targets(pool, targets).await
    }
    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.0.drain(pool, targets, timeout).await
    }
    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.0.remove_targets(pool, targets).await
    }
    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.0.members(pool).await
    }
}

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
    let router: Arc<dyn Router> = Arc::new(Checking(sim.router()));
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
