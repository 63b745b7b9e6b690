//! Blue-green, canary and linear between two standing pools of a fixed inventory, on the
//! simulator (`SimBuilder::standing`): the idle pool is updated in place and takes the
//! traffic, the old pool stays warm on the old version, and going back is a traffic switch.

mod support;

use bluegreen_core::sim::{FleetOp, Sim, VersionBehaviour};
use bluegreen_core::{
    BlueGreen, Canary, Error, EventKind, MemberState, PoolName, ShiftStep, Spec, Split, Status, Strategy,
};
use support::*;

fn green(split: &Split) -> u32 {
    split.weight(&PoolName::from("green"))
}

/// Four blue hosts serving v1, four green hosts idle on v1, with traffic flowing.
fn standing_world() -> Sim {
    Sim::builder().pool("blue", 4, "v1").pool("green", 4, "v1").standing().traffic(200, secs(2)).build()
}

fn versions_of(sim: &Sim, prefix: &str) -> Vec<String> {
    sim.targets().iter().filter(|t| t.id.as_str().starts_with(prefix)).map(|t| t.version.to_string()).collect()
}

fn blue_green(version: &str) -> Spec {
    quick(Spec::new("web", version, Strategy::BlueGreen(BlueGreen::default())))
}

#[tokio::test(start_paused = true)]
async fn blue_green_updates_the_idle_pool_in_place_and_keeps_the_old_one_warm() {
    let sim = standing_world();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let plan = executor.plan(&blue_green("v2")).await.unwrap();
    assert!(plan.standing);
    let timeline = plan.timeline().to_string();
    assert!(timeline.contains("update 4 targets in pool green to v2"), "{timeline}");
    assert!(timeline.contains("blue 4 target(s), 4 serving, 100% of traffic"), "{timeline}");
    assert!(timeline.contains("a rollback switches traffic back to blue without updating any host"), "{timeline}");
    assert_eq!(plan.timeline().lowest_serving, 4, "updating the idle pool costs no serving capacity");

    let outcome = executor.deploy(&blue_green("v2")).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert_eq!(green(&sim.split()), 100);
    assert_eq!(versions_of(&sim, "green"), ["v2"; 4]);
    assert_eq!(versions_of(&sim, "blue"), ["v1"; 4], "the old pool keeps the old version");
    assert!(sim.members("blue").values().all(|s| *s == MemberState::Serving), "the old pool stays warm");
    assert_eq!((sim.calls_of(FleetOp::Provision), sim.calls_of(FleetOp::Retire)), (0, 0), "nothing started or stopped");
    assert_eq!(sim.calls_of(FleetOp::Update), 4);
    assert_eq!(sim.traffic().failed, 0);
    assert_no_violations(&sim, &log);

    // The same deploy again: green serves v2 already, so nothing changes.
    let again = executor.plan(&blue_green("v2")).await.unwrap();
    assert!(again.steps.is_empty(), "{:?}", again.steps);
    assert!(again.warnings.iter().any(|w| w.contains("pool green serves v2 already")), "{:?}", again.warnings);
    let writes = sim.writes();
    let outcome = executor.deploy(&blue_green("v2")).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    assert_eq!((sim.writes(), green(&sim.split())), (writes, 100), "a deploy of the serving version changed something");

    // Going back: the warm blue pool runs v1, so a deploy of v1 is a switch, no update.
    let back = executor.deploy(&blue_green("v1")).await.unwrap();
    assert_eq!(back.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert_eq!(green(&sim.split()), 0);
    assert_eq!(sim.calls_of(FleetOp::Update), 4, "no host was updated to go back");
    assert_eq!(versions_of(&sim, "green"), ["v2"; 4], "green stays warm on v2");
    assert_eq!(sim.traffic().failed, 0);
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn a_green_that_fails_its_health_gate_never_receives_traffic() {
    let sim = standing_world();
    sim.set_behaviour("v2", VersionBehaviour::never_healthy());
    let (builder, log) = executor(&sim);
    let outcome = builder.build().deploy(&blue_green("v2")).await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    assert!(sim.split_history().iter().all(|(_, s)| green(s) == 0), "{:?}", sim.split_history());
    assert_eq!(versions_of(&sim, "blue"), ["v1"; 4]);
    assert_eq!(sim.traffic().failed, 0);
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn a_canary_between_standing_pools_rolls_back_by_a_switch() {
    let sim = standing_world();
    let (builder, log) = executor(&sim);
    let watcher = sim.clone();
    // v2 falls ill during the 50 % bake: the rollback must switch back without updating blue
    // or reverting green (green carries no traffic once the split is restored).
    let analysis = bluegreen_core::FnAnalysis::new("ill at 50", move |_| {
        let verdict = if green(&watcher.split()) >= 50 {
            bluegreen_core::Verdict::Fail { reason: "errors at 50 %".into() }
        } else {
            bluegreen_core::Verdict::Pass
        };
        async move { verdict }
    });
    let executor = builder.analysis(analysis).build();
    let steps = [10, 50, 100].map(|percent| ShiftStep { percent, bake: secs(30) }).to_vec();
    let spec = quick(Spec::new("web", "v2", Strategy::Canary(Canary { steps, ..Canary::default() })));
    let outcome = executor.deploy(&spec).await.unwrap();

    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    let shares: Vec<u32> = sim.split_history().iter().map(|(_, s)| green(s)).collect();
    assert!(shares.contains(&10) && shares.contains(&50) && !shares.contains(&100), "{shares:?}");
    assert_eq!(green(&sim.split()), 0);
    assert_eq!(sim.calls_of(FleetOp::Update), 4, "the rollback updated no host");
    assert_eq!(versions_of(&sim, "blue"), ["v1"; 4]);
    let events = log.events();
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::RollbackStarted { .. })));
    assert_eq!(sim.traffic().failed, 0);
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn keep_old_for_drains_the_old_pool_afterwards_and_the_next_deploy_brings_it_back() {
    let sim = standing_world();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let keep = |version: &str| {
        let bg = BlueGreen { keep_old_for: Some(mins(5)), ..BlueGreen::default() };
        quick(Spec::new("web", version, Strategy::BlueGreen(bg)))
    };
    let outcome = executor.deploy(&keep("v2")).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert!(sim.members("blue").values().all(|s| *s != MemberState::Serving), "blue drained after 5 minutes");
    assert_eq!(versions_of(&sim, "blue"), ["v1"; 4], "drained, not updated");
    assert_eq!(sim.targets().len(), 8, "no host stopped");

    let outcome = executor.deploy(&keep("v3")).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert_eq!(green(&sim.split()), 0);
    assert_eq!(versions_of(&sim, "blue"), ["v3"; 4]);
    assert!(sim.members("green").values().all(|s| *s != MemberState::Serving));
    assert_eq!(sim.traffic().failed, 0);
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn a_smaller_idle_pool_is_refused_unless_replicas_accepts_it() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 2, "v1").standing().build();
    let (builder, _) = executor(&sim);
    let executor = builder.build();
    let err = executor.plan(&blue_green("v2")).await.unwrap_err();
    let Error::Invalid { field, reason } = &err else { panic!("{err:?}") };
    assert_eq!(field, "pools[1]");
    assert!(reason.contains("pool green has 2 host(s) but pool blue serves with 4") && reason.contains("replicas = 2"));
    let mut accepted = blue_green("v2");
    accepted.replicas = Some(2);
    let plan = executor.plan(&accepted).await.unwrap();
    assert_eq!(plan.capacity_floor, 2);
    accepted.replicas = Some(3);
    let err = executor.plan(&accepted).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "replicas"), "{err:?}");
    assert_eq!(sim.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_canary_step_finer_than_the_router_allows_is_refused_before_any_change() {
    let dns_like = bluegreen_core::Capabilities::load_balancer().with_weight_granularity(25);
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 4, "v1").standing().capabilities(dns_like).build();
    let (builder, _) = executor(&sim);
    let steps = vec![ShiftStep { percent: 10, bake: secs(30) }];
    let spec = quick(Spec::new("web", "v2", Strategy::Canary(Canary { steps, ..Canary::default() })));
    let err = builder.build().deploy(&spec).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "strategy.steps[0].percent"), "{err:?}");
    assert_eq!(sim.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_pool_that_carries_traffic_is_refused_before_any_change() {
    let split = Split::new([("blue", 50), ("green", 50)]).unwrap();
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 2, "v1").split(split).standing().build();
    let (builder, _) = executor(&sim);
    let err = builder.build().deploy(&blue_green("v2")).await.unwrap_err();
    let Error::Invalid { field, reason } = &err else { panic!("{err:?}") };
    assert_eq!(field, "pools");
    assert!(reason.contains("blue 50% / green 50%") && reason.contains("one of them idle"), "{reason}");
    assert_eq!(sim.writes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_step_a_router_weighting_by_target_count_cannot_express_with_the_hosts_is_refused() {
    // A DNS router that weights pools by record multiplicity, in steps of 25 %: 75/25 needs
    // three blue hosts and one green; the pools have two each.
    let dns_like =
        bluegreen_core::Capabilities::load_balancer().with_weight_granularity(25).with_weight_by_target_count(true);
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 2, "v1").standing().capabilities(dns_like).build();
    let (builder, _) = executor(&sim);
    let deployer = builder.build();
    let canary = |percents: &[u32]| {
        let steps = percents.iter().map(|&percent| ShiftStep { percent, bake: secs(30) }).collect();
        quick(Spec::new("web", "v2", Strategy::Canary(Canary { steps, ..Canary::default() })))
    };
    let err = deployer.deploy(&canary(&[50, 75, 100])).await.unwrap_err();
    let Error::Invalid { field, reason } = &err else { panic!("{err:?}") };
    assert_eq!(field, "strategy.steps[1].percent");
    assert!(!reason.contains("pool blue needs"), "blue has the one host it needs: {reason}");
    assert!(reason.contains("pool green needs 3 distinct targets and has 2"), "{reason}");
    assert!(reason.contains("it can express 50% on green"), "{reason}");
    assert_eq!(sim.writes(), 0, "refused before any change");

    // 50/50 needs one host a pool: planned.
    assert!(deployer.plan(&canary(&[50, 100])).await.is_ok());
    // A ramped rollback from 50 % in steps of 25 % would pass through 75/25: refused too.
    let mut ramped = canary(&[50, 100]);
    ramped.rollback.pace = bluegreen_core::RollbackPace::Ramp { percent: 25, interval: secs(10) };
    let err = deployer.plan(&ramped).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "rollback.pace.ramp.percent"), "{err:?}");
    assert!(err.to_string().contains("pool blue needs 3 distinct targets and has 2"), "{err}");

    // The same router weighting by weight alone (Route53, an ALB) expresses 75/25 with any hosts.
    let weighted = bluegreen_core::Capabilities::load_balancer().with_weight_granularity(25);
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 2, "v1").standing().capabilities(weighted).build();
    let (builder, _) = executor(&sim);
    assert!(builder.build().plan(&canary(&[50, 75, 100])).await.is_ok());
}

/// Over a DNS-like router (60 s TTL + margin), a standing blue-green waits the delay once, after
/// its switch: draining the idle pool's hosts (in no answer) waits nothing, and the hosts the
/// update just gated are not gated a second time (10 s each with this policy).
#[tokio::test(start_paused = true)]
async fn the_idle_pool_costs_no_propagation_wait_and_one_health_gate() {
    let dns_like = bluegreen_core::Capabilities::load_balancer().with_propagation_delay(secs(60));
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 2, "v1").standing().capabilities(dns_like).build();
    let (builder, log) = executor(&sim);
    let health = bluegreen_core::HealthPolicy { min_healthy_time: secs(10), ..quick_health() };
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())).with_health(health);
    let outcome = builder.build().deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    // One gate (10 s, plus the first probe's interval) and one propagation wait (60 s).
    assert!(outcome.elapsed >= secs(70) && outcome.elapsed < secs(80), "took {:?}", outcome.elapsed);
    let healthy = log.events().iter().filter(|e| matches!(e.kind, EventKind::TargetHealthy { .. })).count();
    assert_eq!(healthy, 2, "each green host gated once");
    assert_no_violations(&sim, &log);
}
