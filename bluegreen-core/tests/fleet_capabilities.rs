//! A plan that needs what the fleet says it cannot do is refused by `plan` and `deploy` before
//! anything changes: a fixed inventory asked for blue-green with no standing pool to switch to,
//! a fleet that can neither start nor update targets, a fleet of task sets asked to update a
//! task in place.

use std::sync::Arc;

use bluegreen_core::sim::Sim;
use bluegreen_core::{BlueGreen, Error, Executor, FleetCapabilities, MockFleet, Rolling, RollingMode, Spec, Strategy};

/// The simulator's router and probe, and a fleet that lists the simulator's targets, claims
/// `can` and panics on any other call.
fn executor_over(sim: &Sim, can: FleetCapabilities) -> Executor {
    let mut fleet = MockFleet::new();
    fleet.expect_name().return_const("hosts".to_owned());
    fleet.expect_capabilities().return_const(can);
    let targets = sim.targets();
    fleet.expect_list().returning(move || Ok(targets.clone()));
    fleet.expect_standing_pools().returning(Default::default);
    Executor::builder(sim.router(), Arc::new(fleet), sim.probe()).build()
}

fn refusal(result: bluegreen_core::Result<impl std::fmt::Debug>) -> (String, String) {
    match result {
        Err(Error::Invalid { field, reason }) => (field, reason),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_fixed_inventory_with_no_idle_pool_refuses_blue_green_before_any_change() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
    let executor = executor_over(&sim, FleetCapabilities::all().with_provisions(false));
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
    let (field, reason) = refusal(executor.plan(&spec).await);
    assert_eq!(field, "pools[1]");
    assert!(reason.contains("pool green has no hosts") && reason.contains("rolling in place"), "{reason}");
    let (field, _) = refusal(executor.deploy(&spec).await);
    assert_eq!(field, "pools[1]");
    assert_eq!(sim.writes(), 0, "nothing changed: {:?}", sim.calls());
}

#[tokio::test(start_paused = true)]
async fn a_fleet_that_can_neither_start_nor_update_targets_refuses_blue_green() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
    let executor = executor_over(&sim, FleetCapabilities::all().with_provisions(false).with_updates_in_place(false));
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
    let (field, reason) = refusal(executor.deploy(&spec).await);
    assert_eq!(field, "strategy");
    assert!(reason.contains("fleet hosts cannot start targets"), "{reason}");
    assert_eq!(sim.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_fleet_that_cannot_update_in_place_refuses_a_rolling_update_in_place() {
    let sim = Sim::builder().pool("blue", 4, "v1").build();
    let executor = executor_over(&sim, FleetCapabilities::all().with_updates_in_place(false));
    let in_place = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2)));
    let (field, reason) = refusal(executor.deploy(&in_place).await);
    assert_eq!(field, "strategy.mode");
    assert!(reason.contains("cannot update targets in place"), "{reason}");
    assert_eq!(sim.writes(), 0);

    // A rolling replace starts new targets instead: the plan is accepted.
    let replace =
        Spec::new("web", "v2", Strategy::Rolling(Rolling { mode: RollingMode::Replace, ..Rolling::in_place(2) }));
    executor.plan(&replace).await.expect("a rolling replace needs no in-place update");
}
