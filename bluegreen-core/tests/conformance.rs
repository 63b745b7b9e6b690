//! The conformance suite against the simulator's router and fleet (every backend crate runs
//! the same functions against its own).

use bluegreen_core::conformance::{fleet_suite, router_suite, FleetFixture, RouterFixture};
use bluegreen_core::sim::Sim;
use bluegreen_core::{Capabilities, ProvisionRequest};

#[tokio::test(start_paused = true)]
async fn the_simulated_router_conforms() {
    for caps in [Capabilities::load_balancer(), Capabilities::load_balancer().with_weight_granularity(25)] {
        let sim = Sim::builder().pool("blue", 0, "v1").pool("green", 0, "v1").capabilities(caps).build();
        let targets = sim
            .fleet()
            .provision(&ProvisionRequest { version: "v1".into(), count: 2, zones: vec![], tag: "fixture".into() })
            .await
            .unwrap();
        router_suite(sim.router().as_ref(), &RouterFixture { pools: ["blue".into(), "green".into()], targets }).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_simulated_fleet_conforms() {
    let sim = Sim::builder().build();
    let fixture = FleetFixture { version: "v1".into(), other_version: "v2".into(), tag: "conformance".into() };
    fleet_suite(sim.fleet().as_ref(), &fixture).await;
}
