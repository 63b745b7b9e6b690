//! The guards around traffic and capacity in harder cases: a ramped rollback away from a dead
//! pool, a switch that would leave too little capacity, a router that acknowledges a drain it
//! did not apply, a manual pause ended by a plain resume, and Ctrl-C while waiting in line.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::layers::{FaultyRouter, RouterOp};
use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::StateStore as _;
use bluegreen_core::{
    BlueGreen, ConcurrencyPolicy, Error, Executor, FnHook, HookOutput, HookPoint, Linear, MemoryStore, PoolName,
    RollbackPace, RollbackPolicy, Rolling, Spec, Split, Status, Step, Strategy, TargetId,
};
use support::*;

fn green(split: &Split) -> u32 {
    split.weight(&PoolName::from("green"))
}

/// The new version dies at 60 %; a ramped rollback must still walk traffic back to the old
/// pool (moving traffic away from a dead pool needs no health), not hold it on the dead one.
#[tokio::test(start_paused = true)]
async fn a_ramped_rollback_moves_traffic_off_a_dead_pool() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").capacity_floor(4).build();
    sim.set_behaviour("v2", VersionBehaviour::dies_after(Duration::from_secs(150)));
    let (builder, log) = executor(&sim);
    let linear = Linear { percent: 30, interval: mins(1) };
    let ramp =
        RollbackPolicy { pace: RollbackPace::Ramp { percent: 20, interval: secs(10) }, ..RollbackPolicy::default() };
    let spec = quick(Spec::new("web", "v2", Strategy::Linear(linear))).with_rollback(ramp);
    let outcome = builder.build().deploy(&spec).await.unwrap();

    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    let greens: Vec<u32> = sim.split_history().iter().map(|(_, s)| green(s)).collect();
    // Up 30 % a minute; green dies in the 90 % bake; back down 20 % at a time.
    assert_eq!(greens, vec![0, 30, 60, 90, 70, 50, 30, 10, 0]);
    assert_no_violations(&sim, &log);
}

/// Three of four green targets die after their gate: switching all traffic to green would
/// leave 1 healthy of a floor of 4, so the switch must not happen.
#[tokio::test(start_paused = true)]
async fn a_switch_that_would_leave_capacity_below_the_floor_does_not_happen() {
    let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").capacity_floor(4).build();
    let (builder, log) = executor(&sim);
    let killer = sim.clone();
    let kill_three = FnHook::new("kill three", move |_| {
        let mut v2: Vec<TargetId> =
            killer.targets().into_iter().filter(|t| t.version.as_str() == "v2").map(|t| t.id).collect();
        v2.sort();
        for id in v2.into_iter().take(3) {
            killer.kill(id);
        }
        async { Ok(HookOutput::default()) }
    });
    let outcome = builder
        .hook(HookPoint::BeforeTraffic, kill_three)
        .build()
        .deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))))
        .await
        .unwrap();
    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    assert!(outcome.reason.unwrap().contains("below the floor of 4"));
    assert!(sim.split_history().iter().all(|(_, s)| green(s) == 0), "{:?}", sim.split_history());
    assert_no_violations(&sim, &log);
}

/// Invariants 3 and 7: an in-place update reads the drain back before restarting a target.
#[tokio::test(start_paused = true)]
async fn an_update_never_restarts_a_target_the_router_still_serves() {
    let sim = Sim::builder().pool("blue", 4, "v1").capacity_floor(2).build();
    // A router that acknowledges a drain without applying it.
    let router = Arc::new(FaultyRouter::new(sim.router()).ignoring(RouterOp::Drain));
    let exec = Executor::builder(router, sim.fleet(), sim.probe()).shared_sink(sim.sink()).build();
    let outcome = exec.deploy(&quick(Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))))).await.unwrap();
    assert_ne!(outcome.status, Status::Succeeded);
    assert!(outcome.reason.unwrap().contains("read-back mismatch"));
    assert!(sim.targets().iter().all(|t| t.version.as_str() == "v1"), "no target was restarted");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// A manual pause step ends on a plain resume (without a pause before it).
#[tokio::test(start_paused = true)]
async fn a_manual_pause_ends_on_resume() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let (builder, _log) = executor(&sim);
    let exec = builder.build();
    let mut plan = exec.plan(&quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))).await.unwrap();
    let switch = plan.steps.iter().position(|s| matches!(s, Step::ShiftTraffic { .. })).unwrap();
    plan.steps.insert(switch, Step::Pause { duration: None, reason: "approve the switch".into() });
    let control = exec.control();
    let run = tokio::spawn(async move { exec.run(&plan, "manual").await });
    tokio::time::sleep(mins(30)).await;
    assert!(!run.is_finished(), "waits for the operator");
    assert_eq!(green(&sim.split()), 0);
    control.resume();
    assert_eq!(run.await.unwrap().status, Status::Succeeded);
}

/// Ctrl-C (stop) while waiting in line for the lock: the deploy leaves the queue and changes
/// nothing, even once the lock frees.
#[tokio::test(start_paused = true)]
async fn a_stop_while_queued_leaves_the_queue_without_deploying() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let store = Arc::new(MemoryStore::new());
    let holder = store.acquire("shop", "someone-else", mins(60)).await.unwrap();
    let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe()).state_store(store.clone(), "me").build();
    let control = exec.control();
    let spec = quick(Spec::new("shop", "v2", Strategy::BlueGreen(BlueGreen::default())))
        .with_concurrency(ConcurrencyPolicy::Queue);
    let queued = tokio::spawn(async move { exec.deploy(&spec).await });
    tokio::time::sleep(mins(5)).await;
    control.stop();
    store.release(&holder).await.unwrap();
    let result = queued.await.unwrap();
    assert!(matches!(result, Err(Error::Stopped)), "{result:?}");
    assert_eq!(sim.writes(), 0, "nothing deployed");
    assert!(store.history("shop").await.unwrap().is_empty());
    assert_eq!(store.enqueue("shop", "probe", secs(1)).await.unwrap(), vec!["probe"], "it left the queue");
}

/// Members an operator took out of service before the deploy stay out: a rolling update skips
/// them (and counts its floor over the serving ones), and a rollback does not re-enable them.
#[tokio::test(start_paused = true)]
async fn members_out_of_service_before_the_deploy_stay_out() {
    use bluegreen_core::{FnAnalysis, MemberState, Verdict};
    // Rolling: 5 members, one in maintenance; batches of 2 over the 4 serving ones.
    let sim = Sim::builder().pool("blue", 5, "v1").build();
    sim.router().drain(&"blue".into(), &["blue-005".into()], secs(1)).await.unwrap();
    let (builder, log) = executor(&sim);
    let outcome =
        builder.build().deploy(&quick(Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))))).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    let versions: Vec<(String, String)> =
        sim.targets().into_iter().map(|t| (t.id.to_string(), t.version.to_string())).collect();
    assert!(versions.iter().filter(|(id, _)| id != "blue-005").all(|(_, v)| v == "v2"), "{versions:?}");
    assert!(versions.contains(&("blue-005".into(), "v1".into())), "the disabled member was left alone");
    assert_eq!(sim.members("blue")[&TargetId::from("blue-005")], MemberState::Disabled);

    // Blue-green failing after the switch: the rollback restores blue but not the member
    // that was out of service.
    let sim = Sim::builder().pool("blue", 3, "v1").pool("green", 0, "v1").build();
    sim.router().drain(&"blue".into(), &["blue-003".into()], secs(1)).await.unwrap();
    let before = sim.snapshot();
    let (builder, log) = executor(&sim);
    let fail = FnAnalysis::new("alarm", |_| async { Verdict::Fail { reason: "alarm".into() } });
    let bg = BlueGreen { bake: mins(1), ..BlueGreen::default() };
    let outcome =
        builder.analysis(fail).build().deploy(&quick(Spec::new("web", "v2", Strategy::BlueGreen(bg)))).await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack, "{}", log.lines().join("\n"));
    assert_eq!(sim.snapshot(), before, "split and membership restored, the disabled member still disabled");
    assert_no_violations(&sim, &log);
}
