//! The executor end to end on the simulator: the scenarios of the core issue.

mod support;

use std::time::Duration;

use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::{
    BlueGreen, Canary, EventKind, FnAnalysis, FnHook, HookOutput, HookPoint, MemberState, OldUnhealthyPolicy, PoolName,
    RollbackPolicy, Rolling, ShiftStep, Spec, Split, Status, Strategy, TargetId, Verdict,
};
use support::*;

fn pool(name: &str) -> PoolName {
    PoolName::from(name)
}

#[tokio::test(start_paused = true)]
async fn a_30_minute_canary_runs_in_well_under_a_second_of_wall_time() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").capacity_floor(4).build();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let canary = Canary {
        steps: vec![ShiftStep { percent: 10, bake: mins(10) }, ShiftStep { percent: 50, bake: mins(20) }],
        ..Canary::default()
    };
    let wall = std::time::Instant::now();
    let outcome = executor.deploy(&quick(Spec::new("web", "v2", Strategy::Canary(canary)))).await.unwrap();
    let wall = wall.elapsed();

    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert!(outcome.elapsed >= mins(30), "virtual time {:?} should cover both bakes", outcome.elapsed);
    // Generous bound: the point is that virtual time, not wall time, carried the bakes.
    assert!(wall < Duration::from_secs(5), "wall time {wall:?}");
    assert_eq!(sim.split(), Split::new([("blue", 0), ("green", 100)]).unwrap());
    assert_eq!(outcome.serving_versions, vec!["v2".into()]);
    assert!(sim.members("blue").is_empty(), "old pool retired");
    let shifts: Vec<u32> = sim.split_history().iter().map(|(_, s)| s.weight(&pool("green"))).collect();
    assert_eq!(shifts, vec![0, 10, 50, 100]);
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn ten_targets_two_at_a_time_drain_before_update_and_never_below_eight() {
    let sim = Sim::builder()
        .pool("web", 10, "v1")
        .zones(["a", "b"])
        .update_time(secs(1))
        .traffic(200, Duration::from_millis(300))
        .capacity_floor(8)
        .build();
    let (builder, log) = executor(&sim);
    let mut spec = quick(Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))));
    spec.pools = vec![pool("web")];
    let outcome = builder.build().deploy(&spec).await.unwrap();

    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert!(sim.targets().iter().all(|t| t.version.as_str() == "v2"));
    assert!(sim.members("web").values().all(|s| *s == MemberState::Serving));
    assert_no_violations(&sim, &log);
    let traffic = sim.traffic();
    assert_eq!(traffic.failed, 0, "{traffic:?}");
    assert!(traffic.served.get(&"v2".into()).copied().unwrap_or(0) > 0);

    // Per target: drained, then updated, then healthy, then re-enabled.
    let events = log.events();
    for target in sim.targets() {
        let is = |id: &TargetId| *id == target.id;
        let drained =
            position(&events, |k| matches!(k, EventKind::TargetsDrained { targets, .. } if targets.iter().any(is)));
        let updated = position(&events, |k| matches!(k, EventKind::TargetUpdated { target, .. } if is(target)));
        let healthy = position(&events, |k| matches!(k, EventKind::TargetHealthy { target, .. } if is(target)));
        let enabled =
            position(&events, |k| matches!(k, EventKind::TargetsRegistered { targets, .. } if targets.iter().any(is)));
        let order = [drained, updated, healthy, enabled];
        assert!(order.iter().all(Option::is_some), "{}: {order:?}", target.id);
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{}: drain → update → healthy → enable, got {order:?}",
            target.id
        );
    }
    // Five batches, and the zones alternate inside each.
    let batches = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::StepStarted { step, .. } if step.starts_with("batch")))
        .count();
    assert_eq!(batches, 5);
}

#[tokio::test(start_paused = true)]
async fn blue_green_whose_green_never_passes_health_never_moves_traffic() {
    let sim = Sim::builder()
        .pool("blue", 3, "v1")
        .pool("green", 0, "v1")
        .version("v2", VersionBehaviour::never_healthy())
        .capacity_floor(3)
        .build();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let outcome = builder
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))))
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::RolledBack);
    assert!(outcome.reason.as_deref().unwrap_or("").contains("not healthy"), "{:?}", outcome.reason);
    assert_eq!(sim.split_history().len(), 1, "the split was never written: {:?}", sim.split_history());
    assert!(sim.targets().iter().all(|t| t.version.as_str() == "v1"), "green targets retired");
    assert_eq!(sim.snapshot(), before);
    assert_eq!(outcome.serving_versions, vec!["v1".into()]);
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn canary_whose_analysis_fails_at_25_percent_goes_back_to_100_0() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").capacity_floor(4).build();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let watched = sim.clone();
    let analysis = FnAnalysis::new("error-rate", move |_| {
        let green = watched.split().weight(&"green".into());
        async move {
            if green >= 25 {
                Verdict::Fail { reason: format!("error rate 7% at {green}%") }
            } else {
                Verdict::Pass
            }
        }
    });
    let canary = Canary {
        steps: vec![ShiftStep { percent: 5, bake: mins(5) }, ShiftStep { percent: 25, bake: mins(5) }],
        ..Canary::default()
    };
    let outcome = builder
        .analysis(analysis)
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::Canary(canary))))
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::RolledBack);
    assert!(outcome.reason.unwrap().contains("error rate 7% at 25%"));
    let greens: Vec<u32> = sim.split_history().iter().map(|(_, s)| s.weight(&pool("green"))).collect();
    assert_eq!(greens, vec![0, 5, 25, 0]);
    assert_eq!(sim.snapshot(), before, "split and membership restored (invariant 4)");
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn rollback_with_an_unhealthy_old_version_holds_by_default() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (builder, log) = executor(&sim);
    // The canary fails its bake, and by then the old version has died too.
    let killer = sim.clone();
    let analysis = FnAnalysis::new("alarm", move |_| {
        killer.set_behaviour("v1", VersionBehaviour::never_healthy());
        async { Verdict::Fail { reason: "alarm".into() } }
    });
    let canary = Canary { steps: vec![ShiftStep { percent: 10, bake: mins(5) }], ..Canary::default() };
    let outcome = builder
        .analysis(analysis)
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::Canary(canary))))
        .await
        .unwrap();

    assert_eq!(outcome.status, Status::RollbackFailed);
    assert_eq!(sim.split(), Split::new([("blue", 90), ("green", 10)]).unwrap(), "traffic held where it was");
    assert!(log.lines().iter().any(|l| l.starts_with("rollback blocked")), "{}", log.lines().join("\n"));
}

#[tokio::test(start_paused = true)]
async fn rollback_with_an_unhealthy_old_version_rolls_forward_when_configured() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (builder, log) = executor(&sim);
    let killer = sim.clone();
    let analysis = FnAnalysis::new("alarm", move |_| {
        killer.set_behaviour("v1", VersionBehaviour::never_healthy());
        async { Verdict::Fail { reason: "alarm".into() } }
    });
    let canary = Canary { steps: vec![ShiftStep { percent: 10, bake: mins(5) }], ..Canary::default() };
    let policy = RollbackPolicy { if_old_unhealthy: OldUnhealthyPolicy::RollForward, ..RollbackPolicy::default() };
    let spec = quick(Spec::new("web", "v2", Strategy::Canary(canary))).with_rollback(policy);
    let outcome = builder.analysis(analysis).build().deploy(&spec).await.unwrap();

    assert_eq!(outcome.status, Status::RolledForward, "{}", log.lines().join("\n"));
    assert_eq!(sim.split().weight(&pool("green")), 100);
    assert_eq!(outcome.serving_versions, vec!["v2".into()]);
}

#[tokio::test(start_paused = true)]
async fn control_pause_holds_and_resume_continues() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let control = executor.control();
    let canary = Canary { steps: vec![ShiftStep { percent: 10, bake: mins(10) }], ..Canary::default() };
    let spec = quick(Spec::new("web", "v2", Strategy::Canary(canary)));
    let deploy = tokio::spawn(async move { executor.deploy(&spec).await.unwrap() });

    tokio::time::sleep(mins(5)).await; // half-way through the bake
    control.pause();
    tokio::time::sleep(mins(60)).await;
    assert_eq!(sim.split().weight(&pool("green")), 10, "paused: no progress for an hour");
    assert!(!deploy.is_finished());
    control.resume();
    let outcome = deploy.await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    // The bake counted only unpaused time: 5 min before the pause and ~5 min after.
    assert!(outcome.elapsed >= mins(70), "{:?}", outcome.elapsed);
    assert!(outcome.elapsed < mins(72), "{:?}", outcome.elapsed);
    assert!(log.lines().iter().any(|l| l == "resumed"));
}

#[tokio::test(start_paused = true)]
async fn control_promote_skips_the_remaining_bakes() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let control = executor.control();
    let canary = Canary {
        steps: vec![ShiftStep { percent: 10, bake: mins(30) }, ShiftStep { percent: 50, bake: mins(30) }],
        ..Canary::default()
    };
    let spec = quick(Spec::new("web", "v2", Strategy::Canary(canary)));
    let deploy = tokio::spawn(async move { executor.deploy(&spec).await.unwrap() });
    tokio::time::sleep(mins(1)).await;
    control.promote();
    let outcome = deploy.await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(outcome.elapsed < mins(3), "promoted: {:?}", outcome.elapsed);
    assert!(log.lines().iter().any(|l| l.starts_with("promoted")));
    assert_eq!(sim.split().weight(&pool("green")), 100);
}

#[tokio::test(start_paused = true)]
async fn control_abort_rolls_back() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let executor = builder.build();
    let control = executor.control();
    let canary = Canary { steps: vec![ShiftStep { percent: 20, bake: mins(30) }], ..Canary::default() };
    let spec = quick(Spec::new("web", "v2", Strategy::Canary(canary)));
    let deploy = tokio::spawn(async move { executor.deploy(&spec).await.unwrap() });
    tokio::time::sleep(mins(2)).await;
    assert_eq!(sim.split().weight(&pool("green")), 20);
    control.abort();
    let outcome = deploy.await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack);
    assert_eq!(outcome.reason.as_deref(), Some("aborted by operator"));
    assert_eq!(sim.snapshot(), before);
    assert!(outcome.elapsed < mins(4));
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn hooks_run_at_their_points_with_the_deploy_facts_and_a_failing_hook_rolls_back() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (builder, log) = executor(&sim);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let observed = sim.clone();
    let migrate = FnHook::new("migrate", move |ctx| {
        // Before traffic: the new targets are up, but the split has not moved yet.
        record.lock().unwrap().push((
            ctx.point,
            ctx.previous_version.clone(),
            ctx.candidate_addresses.len(),
            observed.split(),
        ));
        async { Ok(HookOutput { output: "migrated 3 tables".into() }) }
    });
    let fail = FnHook::new("smoke-test", |_| async {
        Err(bluegreen_core::Error::Check { what: "smoke test".into(), reason: "GET /checkout returned 500".into() })
    });
    let executor = builder.hook(HookPoint::BeforeTraffic, migrate).hook(HookPoint::AfterSwitch, fail).build();
    let outcome =
        executor.deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, HookPoint::BeforeTraffic);
    assert_eq!(seen[0].1.as_deref(), Some("v1"));
    assert_eq!(seen[0].2, 2, "both green targets' addresses");
    assert_eq!(seen[0].3.weight(&pool("blue")), 100);
    assert_eq!(outcome.status, Status::RolledBack);
    assert!(outcome.reason.unwrap().contains("GET /checkout returned 500"));
    assert_eq!(sim.split().weight(&pool("blue")), 100);
    assert!(log.lines().iter().any(|l| l.contains("migrated 3 tables")));
}
