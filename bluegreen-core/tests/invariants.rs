//! One test per invariant of DESIGN.md, each able to fail when the invariant breaks.
//! (Invariant 6, one deploy per service, needs the state store's lock; invariant 8, bad input,
//! is `invalid_specs.rs`.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::layers::{FaultyRouter, RouterOp};
use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::{
    BlueGreen, Canary, DrainPolicy, Error, EventKind, Executor, FnAnalysis, FnHook, HookOutput, HookPoint, Linear,
    MemberState, PoolName, Rolling, RollingMode, ShiftStep, Spec, Split, Status, Strategy, Verdict,
};
use support::*;

fn green(split: &Split) -> u32 {
    split.weight(&PoolName::from("green"))
}

/// Invariant 1: the green targets pass their gate, then die before the switch. The executor
/// must notice and not send them traffic (the simulated router records a violation if it does).
#[tokio::test(start_paused = true)]
async fn invariant_1_no_traffic_to_a_pool_without_a_healthy_target() {
    let sim = Sim::builder().pool("blue", 3, "v1").pool("green", 0, "v1").build();
    let (builder, log) = executor(&sim);
    let killer = sim.clone();
    let kill_green = FnHook::new("kill green", move |_| {
        for t in killer.targets().into_iter().filter(|t| t.version.as_str() == "v2") {
            killer.kill(t.id);
        }
        async { Ok(HookOutput::default()) }
    });
    let executor = builder.hook(HookPoint::BeforeTraffic, kill_green).build();
    let outcome =
        executor.deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))).await.unwrap();

    assert_eq!(outcome.status, Status::RolledBack);
    assert!(outcome.reason.unwrap().contains("no healthy serving target"));
    assert!(sim.split_history().iter().all(|(_, s)| green(s) == 0), "{:?}", sim.split_history());
    assert_no_violations(&sim, &log);
}

/// Invariant 2: one old target outside the first batch is dead, so draining a batch of 2
/// would leave 7 healthy of 10, below the floor of 8. The executor must wait, then give up
/// without draining; the simulator records a violation if capacity drops below 8.
#[tokio::test(start_paused = true)]
async fn invariant_2_capacity_never_below_the_floor() {
    let sim = Sim::builder().pool("web", 10, "v1").capacity_floor(8).build();
    sim.kill("web-010");
    let (builder, log) = executor(&sim);
    let mut spec = quick(Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))));
    spec.pools = vec![PoolName::from("web")];
    let outcome = builder.build().deploy(&spec).await.unwrap();

    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    assert!(outcome.reason.unwrap().contains("below the floor of 8"));
    assert!(!log.events().iter().any(|e| matches!(e.kind, EventKind::TargetsDrained { .. })));
    assert!(sim.targets().iter().all(|t| t.version.as_str() == "v1"));
    assert_no_violations(&sim, &log);
}

/// Invariant 1, the race it cannot close: the new version dies 118 s after it starts, just
/// after the check before the last shift of a linear deploy saw the green pool healthy. The
/// deployer could not have known, so the simulator must not count it (found by `proptest_sim`).
#[tokio::test(start_paused = true)]
async fn invariant_1_a_pool_dying_after_the_check_is_not_the_deployers_doing() {
    let sim = Sim::builder()
        .pool("blue", 5, "v1")
        .pool("green", 0, "v1")
        .version("v2", VersionBehaviour::dies_after(secs(118)))
        .latency(Duration::from_millis(28))
        .build();
    let (builder, log) = executor(&sim);
    let linear = Linear { percent: 34, interval: secs(58) };
    builder.build().deploy(&quick(Spec::new("web", "v2", Strategy::Linear(linear)))).await.unwrap();
    assert_no_violations(&sim, &log);
}

/// Invariant 2, the race it cannot close: the new version dies 3 s after it starts, and the
/// first new target dies in the few milliseconds between the floor check before the second
/// drain (which saw it healthy) and the drain itself. The deployer could not have known, so the
/// simulator must not count it (found by `proptest_sim` at 65e95ff). Draining while the
/// deployer's own probe says a target is dead is still a violation (the next test).
#[tokio::test(start_paused = true)]
async fn invariant_2_a_target_dying_after_the_floor_check_is_not_the_deployers_doing() {
    let sim = Sim::builder()
        .pool("blue", 2, "v1")
        .version("v2", VersionBehaviour::dies_after(secs(3)))
        .latency(Duration::from_millis(29))
        .build();
    let (builder, log) = executor(&sim);
    let exec = builder.build();
    let rolling = Rolling {
        mode: RollingMode::Replace,
        max_surge: Some(bluegreen_core::BatchSize::Count(1)),
        max_unavailable: Some(bluegreen_core::BatchSize::Count(0)),
        ..Rolling::in_place(1)
    };
    let mut spec = quick(Spec::new("web", "v2", Strategy::Rolling(rolling)));
    spec.pools = vec![PoolName::from("blue")];
    let plan = exec.plan(&spec).await.unwrap();
    assert_eq!(plan.capacity_floor, 2);
    sim.set_capacity_floor(plan.capacity_floor);
    exec.run(&plan, "race").await;
    assert_no_violations(&sim, &log);
}

/// Invariants 1 and 2 in the simulator: the grace above covers only the moment between a
/// check and its change. A deployer that probed a target healthy, then moves traffic or drains
/// ten seconds after it died, broke the invariant.
#[tokio::test(start_paused = true)]
async fn invariants_1_and_2_acting_on_stale_knowledge_is_a_violation() {
    let sim = Sim::builder().pool("blue", 3, "v1").pool("green", 1, "v1").capacity_floor(2).build();
    let probe = sim.probe();
    for t in sim.targets() {
        assert!(probe.check(&t).await.is_healthy());
    }
    sim.kill("blue-003");
    sim.kill("green-004");
    tokio::time::sleep(secs(10)).await;
    let router = sim.router();
    router.drain(&PoolName::from("blue"), &["blue-001".into()], secs(1)).await.unwrap();
    router.set_split(&Split::new([("blue", 50), ("green", 50)]).unwrap()).await.unwrap();
    let violations: Vec<u8> = sim.violations().iter().map(|v| v.invariant).collect();
    assert_eq!(violations, [2, 1], "{:?}", sim.violations());
}

/// Invariant 3: old targets serve long requests during a blue-green switch; each one is
/// stopped only after its drain finished, and no request is lost.
#[tokio::test(start_paused = true)]
async fn invariant_3_targets_are_stopped_only_after_draining() {
    let sim =
        Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").traffic(100, secs(5)).capacity_floor(4).build();
    let (builder, log) = executor(&sim);
    let spec = quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))
        .with_drain(DrainPolicy { timeout: secs(30) });
    let outcome = builder.build().deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));

    let events = log.events();
    let drained: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TargetsDrained { in_flight_at_start, timed_out, .. } => Some((*in_flight_at_start, *timed_out)),
            _ => None,
        })
        .collect();
    assert_eq!(drained.len(), 4, "one drain per target");
    assert!(drained.iter().all(|(start, timed_out)| start.unwrap_or(0) > 0 && !timed_out), "{drained:?}");
    let last_drain = events.iter().rposition(|e| matches!(e.kind, EventKind::TargetsDrained { .. })).unwrap();
    let stop = position(&events, |k| matches!(k, EventKind::TargetsStopped { .. })).unwrap();
    assert!(last_drain < stop);
    let traffic = sim.traffic();
    assert_eq!((traffic.failed, traffic.dropped), (0, 0), "{traffic:?}");
    assert_no_violations(&sim, &log);
}

/// Invariant 3, the timeout half: a drain that cannot finish ends at its timeout, says so,
/// and only then is the target stopped.
#[tokio::test(start_paused = true)]
async fn invariant_3_a_drain_ends_at_its_timeout_and_says_so() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").traffic(50, mins(10)).build();
    let (builder, log) = executor(&sim);
    let spec = quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))
        .with_drain(DrainPolicy { timeout: secs(20) });
    let outcome = builder.build().deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    let timed_out =
        log.events().iter().filter(|e| matches!(e.kind, EventKind::TargetsDrained { timed_out: true, .. })).count();
    assert_eq!(timed_out, 2);
    assert!(log.lines().iter().any(|l| l.ends_with("(drain timeout passed)")));
    assert_no_violations(&sim, &log);
}

/// Invariant 4: whichever strategy and wherever it fails, the rollback restores the
/// pre-deploy split and serving membership.
#[tokio::test(start_paused = true)]
async fn invariant_4_rollback_restores_split_and_membership() {
    let failing_after = |sim: &Sim, percent: u32| {
        let watched = sim.clone();
        FnAnalysis::new("fails late", move |_| {
            let now = watched.split().weight(&"green".into());
            async move {
                if now >= percent {
                    Verdict::Fail { reason: format!("bad at {now}%") }
                } else {
                    Verdict::Pass
                }
            }
        })
    };
    // Blue-green, failing in the bake after the switch.
    let sim = Sim::builder().pool("blue", 3, "v1").pool("green", 0, "v1").zones(["a", "b"]).build();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let bg = BlueGreen { bake: mins(5), ..BlueGreen::default() };
    let outcome = builder
        .analysis(failing_after(&sim, 100))
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(bg))))
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::RolledBack);
    assert_eq!(sim.snapshot(), before, "blue-green");
    assert_no_violations(&sim, &log);

    // Rolling in place, failing in the bake after the second batch: both batches go back.
    let sim = Sim::builder().pool("web", 6, "v1").zones(["a", "b"]).capacity_floor(4).build();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let batches_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = batches_done.clone();
    let analysis = FnAnalysis::new("fails after batch 2", move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if n >= 1 {
                Verdict::Fail { reason: "p99 latency doubled".into() }
            } else {
                Verdict::Pass
            }
        }
    });
    let rolling = Rolling { bake_between_batches: secs(1), ..Rolling::in_place(2) };
    let mut spec = quick(Spec::new("web", "v2", Strategy::Rolling(rolling)));
    spec.pools = vec![PoolName::from("web")];
    let outcome = builder.analysis(analysis).build().deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    let updated = log.events().iter().filter(|e| matches!(e.kind, EventKind::TargetUpdated { .. })).count();
    assert_eq!(updated, 8, "4 targets forward, the same 4 back");
    assert_eq!(sim.snapshot(), before, "rolling in place");
    assert_no_violations(&sim, &log);

    // Rolling replace, failing after the first batch: retired targets are replaced by new
    // targets of the old version, so membership is restored by version and count.
    let sim = Sim::builder().pool("web", 4, "v1").capacity_floor(3).build();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let rolling = Rolling {
        mode: RollingMode::Replace,
        max_surge: Some(bluegreen_core::BatchSize::Count(1)),
        max_unavailable: Some(bluegreen_core::BatchSize::Count(1)),
        bake_between_batches: secs(1),
        ..Rolling::in_place(2)
    };
    let mut spec = quick(Spec::new("web", "v2", Strategy::Rolling(rolling)));
    spec.pools = vec![PoolName::from("web")];
    let fail = FnAnalysis::new("fails", |_| async { Verdict::Fail { reason: "bad".into() } });
    let outcome = builder.analysis(fail).build().deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    let after = sim.snapshot();
    assert_eq!(after.split, before.split);
    let versions = |s: &bluegreen_core::Snapshot| {
        s.targets(&"web".into()).iter().map(|t| t.version.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(versions(&after), versions(&before));
    assert!(sim.members("web").values().all(|s| *s == MemberState::Serving));
    assert_eq!(sim.targets().len(), 4, "no v2 target left running");
    assert_no_violations(&sim, &log);
}

/// The end state a deploy converges to: the split, and per pool the member versions.
fn end_state(sim: &Sim) -> (Split, Vec<(String, Vec<String>, usize)>) {
    let snap = sim.snapshot();
    let pools = snap
        .pools
        .iter()
        .map(|(p, ts)| {
            let mut versions: Vec<String> = ts.iter().map(|t| t.version.to_string()).collect();
            versions.sort();
            let serving = sim.members(p.clone()).values().filter(|s| **s == MemberState::Serving).count();
            (p.to_string(), versions, serving)
        })
        .collect();
    (snap.split, pools)
}

/// Invariant 5: a deploy interrupted at every step (the task is dropped mid-step, as a crash
/// would) and resumed at its first uncompleted step ends where an uninterrupted one does.
#[tokio::test(start_paused = true)]
async fn invariant_5_interrupted_at_every_step_and_resumed_converges() {
    let strategies = [
        (
            "blue-green",
            Strategy::BlueGreen(BlueGreen { bake: secs(30), keep_old_for: Some(secs(10)), ..BlueGreen::default() }),
            2,
        ),
        (
            "canary",
            Strategy::Canary(Canary {
                steps: vec![ShiftStep { percent: 10, bake: secs(20) }, ShiftStep { percent: 50, bake: secs(20) }],
                ..Canary::default()
            }),
            2,
        ),
        ("rolling", Strategy::Rolling(Rolling::in_place(2)), 1),
    ];
    for (name, strategy, pools) in strategies {
        let build = || {
            let b = Sim::builder().pool("blue", 4, "v1").latency(Duration::from_millis(7)).update_time(secs(1));
            let b = if pools == 2 { b.pool("green", 0, "v1") } else { b };
            b.traffic(20, Duration::from_millis(500)).build()
        };
        let mut spec = quick(Spec::new("web", "v2", strategy.clone()));
        if pools == 1 {
            spec.pools = vec![PoolName::from("blue")];
        }
        // The uninterrupted run, for the expected end state and the steps' start times.
        let sim = build();
        let (builder, log) = executor(&sim);
        let exec = builder.build();
        let plan = exec.plan(&spec).await.unwrap();
        assert_eq!(exec.run(&plan, "straight").await.status, Status::Succeeded);
        let expected = end_state(&sim);
        let starts: Vec<Duration> =
            log.events().iter().filter(|e| matches!(e.kind, EventKind::StepStarted { .. })).map(|e| e.at).collect();
        assert_eq!(starts.len(), plan.steps.len());

        for (index, start) in starts.iter().enumerate() {
            for offset in [Duration::from_millis(3), Duration::from_millis(12)] {
                let sim = build();
                let (builder, log) = executor(&sim);
                let exec = builder.build();
                let plan = exec.plan(&spec).await.unwrap();
                let crashed = {
                    let exec = exec.clone();
                    let plan = plan.clone();
                    tokio::spawn(async move { exec.run(&plan, "crashy").await })
                };
                tokio::time::sleep(*start + offset).await;
                crashed.abort();
                let _ = crashed.await;
                let completed =
                    log.events().iter().filter(|e| matches!(e.kind, EventKind::StepCompleted { .. })).count();
                let outcome = exec.resume(&plan, "crashy", completed).await;
                assert_eq!(
                    outcome.status,
                    Status::Succeeded,
                    "{name}: cut in step {index} +{offset:?}\n{}",
                    log.lines().join("\n")
                );
                assert_eq!(end_state(&sim), expected, "{name}: cut in step {index} +{offset:?}");
                assert_eq!(sim.targets().len(), 4, "{name}: no target left over");
                assert_no_violations(&sim, &log);
            }
        }
    }
}

/// Invariant 7: a router that acknowledges a write it did not apply makes the step fail;
/// the deploy never reports success.
#[tokio::test(start_paused = true)]
async fn invariant_7_no_success_before_the_router_serves_what_was_asked() {
    // A router that accepts writes and then serves something else.
    for (ignored, expected) in
        [(RouterOp::SetSplit, "read-back mismatch on split"), (RouterOp::AddTargets, "read-back mismatch on target")]
    {
        let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
        let router = Arc::new(FaultyRouter::new(sim.router()).ignoring(ignored));
        let log = bluegreen_core::MemorySink::new();
        let exec = Executor::builder(router, sim.fleet(), sim.probe()).sink(log.clone()).build();
        let outcome =
            exec.deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))).await.unwrap();
        assert_ne!(outcome.status, Status::Succeeded);
        assert!(outcome.reason.as_deref().unwrap_or("").starts_with(expected), "{:?}", outcome.reason);
        assert!(!log.events().iter().any(|e| matches!(e.kind, EventKind::TrafficShifted { .. })));
        assert_eq!(sim.split().weight(&"blue".into()), 100);
    }
}

/// Retryable backend errors are retried with backoff; permanent ones fail at once.
#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_and_permanent_ones_fail_fast() {
    use bluegreen_core::sim::Fault;
    let sim = Sim::builder()
        .pool("blue", 2, "v1")
        .pool("green", 0, "v1")
        .fault(Fault::transient(RouterOp::SetSplit, 1, 2))
        .build();
    let (builder, log) = executor(&sim);
    let outcome = builder
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))))
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    let retries: Vec<_> = log.events().into_iter().filter(|e| matches!(e.kind, EventKind::Retrying { .. })).collect();
    assert_eq!(retries.len(), 2);
    assert_eq!(sim.calls_of(RouterOp::SetSplit), 3);

    let sim = Sim::builder()
        .pool("blue", 2, "v1")
        .pool("green", 0, "v1")
        .fault(Fault::permanent(RouterOp::SetSplit, 1))
        .build();
    let (builder, log) = executor(&sim);
    let outcome = builder
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))))
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::RolledBack);
    assert!(!log.events().iter().any(|e| matches!(e.kind, EventKind::Retrying { .. })));
    assert!(sim.targets().iter().all(|t| t.version.as_str() == "v1"));
    let _ = Error::Aborted; // the error type is re-exported for callers matching on it
}
