//! Random specs × fault schedules in the simulator: no invariant ever breaks, and every deploy
//! ends either fully on the new version or fully back on the old one.
//!
//! 1,000 cases by default; set `BLUEGREEN_PROPTEST_CASES=10000` for a nightly run.

mod support;

use std::time::Duration;

use bluegreen_core::layers::RouterOp;
use bluegreen_core::sim::{Fault, FleetOp, Op, Sim, VersionBehaviour};
use bluegreen_core::{
    Approval, BatchSize, BlueGreen, Canary, Executor, Linear, MemorySink, OnTimeout, PoolName, Rolling, RollingMode,
    ShiftStep, Spec, Stability, Status, Strategy as Deploy,
};
use proptest::prelude::*;
use support::quick_health;

fn strategy(size: usize) -> impl Strategy<Value = Deploy> {
    let secs = |max: u64| (0..=max).prop_map(Duration::from_secs);
    // Nobody approves in these runs: an approval times out into its action.
    let approval = proptest::option::of((1u64..120, any::<bool>()).prop_map(|(s, proceed)| Approval {
        timeout: Duration::from_secs(s),
        on_timeout: if proceed { OnTimeout::Proceed } else { OnTimeout::RollBack },
    }));
    prop_oneof![
        (secs(30), secs(60), secs(30), approval.clone()).prop_map(|(test_for, bake, keep_old_for, approve)| {
            Deploy::BlueGreen(BlueGreen { test_for, bake, keep_old_for: Some(keep_old_for), approve })
        }),
        (proptest::collection::btree_set(1u32..100, 1..4), secs(120), approval).prop_map(
            |(percents, bake, approve)| {
                let steps = percents.into_iter().map(|percent| ShiftStep { percent, bake }).collect();
                Deploy::Canary(Canary { steps, approve, ..Canary::default() })
            }
        ),
        (10u32..=60, 1u64..90)
            .prop_map(|(percent, s)| Deploy::Linear(Linear { percent, interval: Duration::from_secs(s) })),
        (1..=size, secs(30), any::<bool>()).prop_map(move |(batch, bake, blocking)| Deploy::Rolling(Rolling {
            bake_between_batches: bake,
            stability: if blocking { Stability::Blocking } else { Stability::Watched },
            ..Rolling::in_place(batch)
        })),
        (1..=size, 0..=size).prop_map(|(batch, surge)| {
            let surge = surge.min(batch);
            Deploy::Rolling(Rolling {
                mode: RollingMode::Replace,
                max_surge: Some(BatchSize::Count(surge)),
                max_unavailable: Some(BatchSize::Count(batch - surge)),
                ..Rolling::in_place(batch)
            })
        }),
    ]
}

fn behaviour() -> impl Strategy<Value = VersionBehaviour> {
    prop_oneof![
        3 => (0u64..20).prop_map(|s| VersionBehaviour::healthy().with_startup(Duration::from_secs(s))),
        1 => Just(VersionBehaviour::never_healthy()),
        1 => (1u64..200).prop_map(|s| VersionBehaviour::dies_after(Duration::from_secs(s))),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    let op = prop_oneof![
        Just(Op::Router(RouterOp::Split)),
        Just(Op::Router(RouterOp::SetSplit)),
        Just(Op::Router(RouterOp::AddTargets)),
        Just(Op::Router(RouterOp::Drain)),
        Just(Op::Router(RouterOp::RemoveTargets)),
        Just(Op::Router(RouterOp::Members)),
        Just(Op::Fleet(FleetOp::Provision)),
        Just(Op::Fleet(FleetOp::Update)),
        Just(Op::Fleet(FleetOp::Retire)),
        Just(Op::Fleet(FleetOp::List)),
    ];
    (op, 1u64..40, 1u32..4, any::<bool>()).prop_map(|(op, from_call, times, retryable)| {
        if retryable {
            Fault::transient(op, from_call, times)
        } else {
            Fault::permanent(op, from_call)
        }
    })
}

#[derive(Debug, Clone)]
struct Case {
    size: usize,
    strategy: Deploy,
    behaviour: VersionBehaviour,
    faults: Vec<Fault>,
    latency_ms: u64,
    zones: usize,
    /// `health.min_healthy_time`, in seconds: a rolling deploy watches it beside the next
    /// batches (or blocks on it).
    min_healthy_secs: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..8).prop_flat_map(|size| {
        let window = prop_oneof![2 => Just(0u64), 1 => 1u64..8];
        (strategy(size), behaviour(), proptest::collection::vec(fault(), 0..4), 0u64..30, 1usize..4, window).prop_map(
            move |(strategy, behaviour, faults, latency_ms, zones, min_healthy_secs)| Case {
                size,
                strategy,
                behaviour,
                faults,
                latency_ms,
                zones,
                min_healthy_secs,
            },
        )
    })
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let rolling = matches!(case.strategy, Deploy::Rolling(_));
        let mut builder = Sim::builder()
            .pool("blue", case.size, "v1")
            .zones(["a", "b", "c"].into_iter().take(case.zones))
            .version("v2", case.behaviour)
            .latency(Duration::from_millis(case.latency_ms));
        if !rolling {
            builder = builder.pool("green", 0, "v1");
        }
        let sim = builder.build();
        let before = sim.snapshot();
        let log = MemorySink::new();
        let exec =
            Executor::builder(sim.router(), sim.fleet(), sim.probe()).shared_sink(sim.sink()).sink(log.clone()).build();
        let mut spec = Spec::new("web", "v2", case.strategy.clone()).with_health(quick_health());
        spec.health.min_healthy_time = Duration::from_secs(case.min_healthy_secs);
        if rolling {
            spec.pools = vec![PoolName::from("blue")];
        }
        let plan = match exec.plan(&spec).await {
            Ok(plan) => plan,
            // Refused specs (a batch that empties the pool) must change nothing.
            Err(e) => {
                prop_assert!(matches!(e, bluegreen_core::Error::Invalid { .. }), "{e}");
                prop_assert_eq!(sim.writes(), 0);
                return Ok(());
            }
        };
        sim.set_capacity_floor(plan.capacity_floor);
        for fault in &case.faults {
            sim.inject(*fault);
        }
        let outcome = exec.run(&plan, "prop").await;
        let log_text = || log.lines().join("\n");

        let violations = sim.violations();
        prop_assert!(violations.is_empty(), "{violations:#?}\n{}", log_text());
        let after = sim.snapshot();
        let versions = |s: &bluegreen_core::Snapshot, v: &str| {
            s.pools.values().flatten().filter(|t| t.version.as_str() == v).count()
        };
        match outcome.status {
            Status::Succeeded => {
                prop_assert_eq!(&outcome.serving_versions, &vec!["v2".into()], "{}", log_text());
                prop_assert_eq!(versions(&after, "v1"), 0);
            }
            Status::RolledBack => {
                prop_assert_eq!(&after.split, &before.split, "{}", log_text());
                prop_assert_eq!(versions(&after, "v1"), case.size, "{}", log_text());
                prop_assert_eq!(sim.targets().len(), case.size, "no new target left running\n{}", log_text());
                prop_assert_eq!(&outcome.serving_versions, &vec!["v1".into()]);
            }
            // Only a backend that keeps failing permanently (one fault per whole rollback attempt)
            // may stop a rollback. Traffic then stays on a healthy version, unless the router
            // refused the attempts before any could move it: then the outcome says the rollback
            // was blocked (exit 3, a human is needed), and it is not hidden.
            Status::RollbackFailed => {
                let permanent = case.faults.iter().filter(|f| !f.retryable).count();
                prop_assert!(permanent >= 3, "rollback failed with {permanent} permanent faults\n{}", log_text());
                prop_assert!(
                    sim.traffic_is_healthy() || log_text().contains("rollback blocked"),
                    "traffic left on an unhealthy pool, and not said\n{}",
                    log_text()
                );
            }
            other => prop_assert!(false, "unexpected outcome {other:?}: {:?}\n{}", outcome.reason, log_text()),
        }
        Ok(())
    })
}

fn cases() -> u32 {
    std::env::var("BLUEGREEN_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_specs_and_faults_never_break_an_invariant(case in case()) {
        run(&case)?;
    }
}
