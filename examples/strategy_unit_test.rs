//! Unit-testing your own release strategy, with no cloud account: the simulator for what the
//! deploy does over time (paused clock: a 7-minute canary runs in milliseconds), and mock
//! backends for what it must never do.
//!
//! The "strategy" is the team's policy as code, `release()`: a canary 5 % → 25 % → 100 % with
//! bakes and an error-budget analysis. The tests below pin it down; `cargo test -p
//! bluegreen --example strategy_unit_test` runs them (CI does, with every other test), and
//! `cargo run -p bluegreen --example strategy_unit_test` prints the plan and a run.

use std::time::Duration;

use bluegreen::sim::Sim;
use bluegreen::{Canary, Executor, FnAnalysis, HealthPolicy, ShiftStep, Spec, Strategy, Verdict};

/// The team's release policy: canary 5 % for 2 minutes, 25 % for 5 minutes, then everything.
pub fn release(service: &str, version: &str) -> Spec {
    let steps = vec![
        ShiftStep { percent: 5, bake: Duration::from_secs(120) },
        ShiftStep { percent: 25, bake: Duration::from_secs(300) },
        ShiftStep { percent: 100, bake: Duration::ZERO },
    ];
    let health = HealthPolicy {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::from_secs(10),
        deadline: Duration::from_secs(120),
    };
    Spec::new(service, version, Strategy::Canary(Canary { steps, ..Canary::default() })).with_health(health)
}

/// The team's analysis: fail a bake when the error budget is spent (here a closure; in real
/// life a query to the metrics store).
pub fn error_budget(errors_per_mille: fn() -> u32) -> FnAnalysis {
    FnAnalysis::new("error-budget", move |_| async move {
        let errors = errors_per_mille();
        if errors > 10 {
            Verdict::Fail { reason: format!("{errors}‰ errors, budget 10‰") }
        } else {
            Verdict::Pass
        }
    })
}

fn executor(sim: &Sim) -> Executor {
    Executor::builder(sim.router(), sim.fleet(), sim.probe())
        .analysis(error_budget(|| 2))
        .shared_sink(sim.sink())
        .build()
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
    let executor = executor(&sim);
    let spec = release("checkout", "v2");
    println!("{}\n", executor.plan(&spec).await.expect("plan").timeline());
    let outcome = executor.deploy(&spec).await.expect("deploy");
    println!("{} in {:?} of simulated time; splits:", outcome.status, outcome.elapsed);
    for (at, split) in sim.split_history() {
        println!("  {at:>8.1?}  {split}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use bluegreen::sim::VersionBehaviour;
    use bluegreen::{Capabilities, MockFleet, MockHealthProbe, MockRouter, PoolName, Split, Status, Target};

    fn green_percent(split: &Split) -> u32 {
        split.weight(&PoolName::from("green"))
    }

    #[tokio::test(start_paused = true)]
    async fn the_canary_moves_5_then_25_then_100_percent() {
        let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
        let outcome = executor(&sim).deploy(&release("checkout", "v2")).await.unwrap();
        assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
        let greens: Vec<u32> = sim.split_history().iter().map(|(_, s)| green_percent(s)).collect();
        assert_eq!(greens.iter().filter(|g| **g > 0).copied().collect::<Vec<_>>(), [5, 25, 100]);
        // Seven minutes of bakes, on the simulator's paused clock.
        assert!(outcome.elapsed >= Duration::from_secs(420), "{:?}", outcome.elapsed);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_that_dies_during_the_first_bake_never_gets_more_than_5_percent() {
        let sim = Sim::builder()
            .pool("blue", 4, "v1")
            .pool("green", 0, "v1")
            .version("v2", VersionBehaviour::dies_after(Duration::from_secs(90)))
            .build();
        let outcome = executor(&sim).deploy(&release("checkout", "v2")).await.unwrap();
        assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
        assert!(sim.split_history().iter().all(|(_, s)| green_percent(s) <= 5), "{:?}", sim.split_history());
        assert_eq!(green_percent(&sim.split()), 0, "all traffic is back on blue");
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_error_budget_rolls_back() {
        let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
        let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).analysis(error_budget(|| 42)).build();
        let outcome = executor.deploy(&release("checkout", "v2")).await.unwrap();
        assert_eq!(outcome.status, Status::RolledBack);
        assert!(outcome.reason.unwrap_or_default().contains("42‰ errors"));
    }

    /// On a router that moves traffic in steps of 10 % the policy's 5 % and 25 % cannot be
    /// served: the plan is refused after reading the backends, before any write. The mocks have
    /// no expectation for a write, so any write would fail the test.
    #[tokio::test]
    async fn a_router_with_coarser_weights_refuses_the_policy_before_any_write() {
        let mut router = MockRouter::new();
        router.expect_name().return_const("coarse".to_owned());
        router.expect_capabilities().returning(|| Capabilities::load_balancer().with_weight_granularity(10));
        router.expect_pools().returning(|| Ok(vec!["blue".into(), "green".into()]));
        router.expect_split().returning(|| Ok(Split::all_to(&"blue".into())));
        router.expect_members().returning(|pool| {
            let ids: &[&str] = if pool.as_str() == "blue" { &["b-1", "b-2"] } else { &[] };
            Ok(ids
                .iter()
                .map(|id| bluegreen::Member {
                    id: (*id).into(),
                    state: bluegreen::MemberState::Serving,
                    in_flight: None,
                })
                .collect())
        });
        let mut fleet = MockFleet::new();
        fleet.expect_name().return_const("fixed".to_owned());
        // A fleet that can start targets: the plan is a provisioning blue-green, not standing pools.
        fleet.expect_capabilities().return_const(bluegreen::FleetCapabilities::all());
        fleet.expect_list().returning(|| {
            Ok(["b-1", "b-2"]
                .iter()
                .map(|id| Target {
                    id: (*id).into(),
                    address: format!("{id}:80"),
                    zone: None,
                    version: "v1".into(),
                    tag: None,
                })
                .collect())
        });
        let executor = Executor::builder(Arc::new(router), Arc::new(fleet), Arc::new(MockHealthProbe::new())).build();
        let err = executor.deploy(&release("checkout", "v2")).await.expect_err("5 % is not a multiple of 10 %");
        assert!(err.to_string().contains("not a multiple of the router's 10% weight step"), "{err}");
    }
}
