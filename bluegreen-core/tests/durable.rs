//! Durable deployments in one process: the journal, resume, remote control through the store,
//! the concurrency policies, fencing of a stale owner, history and rollback to a past release.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::state::ManualClock;
use bluegreen_core::{
    BlueGreen, Canary, Command, ConcurrencyPolicy, Error, EventKind, Executor, MemorySink, MemoryStore, Phase,
    ShiftStep, Spec, StateStore, Status, Strategy, SupersedeWith,
};
use support::*;

fn canary(bake: Duration) -> Strategy {
    Strategy::Canary(Canary { steps: vec![ShiftStep { percent: 20, bake }], ..Canary::default() })
}

fn durable(sim: &Sim, store: &Arc<MemoryStore>, owner: &str) -> (Executor, MemorySink) {
    let log = MemorySink::new();
    let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe())
        .shared_sink(sim.sink())
        .sink(log.clone())
        .state_store(store.clone(), owner)
        .poll_interval(secs(1))
        .build();
    (exec, log)
}

fn two_pools() -> Sim {
    Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build()
}

#[tokio::test(start_paused = true)]
async fn every_step_is_recorded_and_the_lock_released() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let (exec, _) = durable(&sim, &store, "ci-1");
    let outcome = exec.deploy(&quick(Spec::new("shop", "v2", canary(mins(5))))).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    let record = store.load(&outcome.deployment_id).await.unwrap();
    assert_eq!(record.phase, Phase::Finished);
    assert_eq!(record.completed_steps, record.plan.steps.len());
    assert_eq!(
        record.steps.iter().map(|s| s.index).collect::<Vec<_>>(),
        (0..record.plan.steps.len()).collect::<Vec<_>>()
    );
    assert_eq!(record.outcome.unwrap().status, Status::Succeeded);
    assert_eq!(store.holder("shop").await.unwrap(), None, "the lock is released");
    let history = exec.history("shop").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].from_version.as_deref(), history[0].to_version.as_str()), (Some("v1"), "v2"));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_deployment_resumes_from_its_last_recorded_step() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let (exec, log) = durable(&sim, &store, "ci-1");
    let spec = quick(Spec::new("shop", "v2", canary(mins(10))));
    let task = {
        let exec = exec.clone();
        tokio::spawn(async move { exec.deploy(&spec).await })
    };
    tokio::time::sleep(mins(3)).await; // in the middle of the canary's bake
    task.abort();
    let _ = task.await;
    let id = log.events()[0].deployment_id.clone();
    let record = store.load(&id).await.unwrap();
    assert_eq!(record.phase, Phase::Running);
    let bake = record.plan.steps.iter().position(|s| s.to_string().starts_with("bake")).unwrap();
    assert_eq!(record.completed_steps, bake, "the store says exactly which step was last completed");
    assert_eq!(sim.split().weight(&"green".into()), 20, "the crash left the canary split");

    // Unknown ids are NotFound; the same owner resumes at once.
    assert!(matches!(exec.resume_deployment("no-such").await, Err(Error::NotFound { .. })));
    let outcome = exec.resume_deployment(&id).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded);
    assert!(log.lines().iter().any(|l| l == &format!("resumed the deployment at step {}", bake + 1)));
    assert_eq!(sim.split().weight(&"green".into()), 100);
    assert!(matches!(exec.resume_deployment(&id).await, Err(Error::Invalid { .. })), "a finished deploy");
    assert_no_violations(&sim, &log);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_deployment_resumed_by_another_runner_continues_one_event_log_in_the_store() {
    let sim = two_pools();
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::with_clock(clock.clock()));
    let (first, first_log) = durable(&sim, &store, "runner-1");
    let spec = quick(Spec::new("shop", "v2", canary(mins(10))));
    let task = tokio::spawn(async move { first.deploy(&spec).await });
    tokio::time::sleep(mins(3)).await; // in the bake, some events written with the last step
    task.abort();
    let _ = task.await;
    let id = first_log.events()[0].deployment_id.clone();
    let stored = store.events(&id).await.unwrap();
    assert!(!stored.is_empty(), "the log is in the store, not only in the runner's sinks");
    let crash_at = stored.last().unwrap().seq;

    // Another runner (another owner, after the lease) resumes it.
    clock.advance(mins(1));
    let (second, second_log) = durable(&sim, &store, "runner-2");
    assert_eq!(second.resume_deployment(&id).await.unwrap().status, Status::Succeeded);
    let resumed = second_log.events();
    assert!(matches!(resumed[0].kind, EventKind::DeploymentResumed { .. }), "{:?}", resumed[0].kind);
    assert_eq!(resumed[0].seq, crash_at + 1, "the sequence goes on after the last stored event");
    let crashed_at = stored.last().unwrap().at;
    assert!(resumed[0].at >= crashed_at, "the clock goes on: {:?} after {crashed_at:?}", resumed[0].at);

    let log = store.events(&id).await.unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..log.len() as u64).collect::<Vec<_>>(), "one numbering, no gap, no repeat");
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at), "time never goes back");
    let count = |f: fn(&EventKind) -> bool| log.iter().filter(|e| f(&e.kind)).count();
    assert_eq!(count(|k| matches!(k, EventKind::DeploymentStarted { .. })), 1);
    assert_eq!(count(|k| matches!(k, EventKind::DeploymentResumed { .. })), 1);
    assert_eq!(count(|k| matches!(k, EventKind::DeploymentFinished { .. })), 1);
    assert_eq!(log.last(), second_log.events().last(), "the store has the run's last event");
}

#[tokio::test(start_paused = true)]
async fn a_lock_whose_holder_is_gone_is_taken_over_at_once_and_said() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    // A runner on this host died holding the lock (its lease runs 30 s more).
    store.acquire("shop", "bluegreen-host-4242", secs(30)).await.unwrap();
    let spec = quick(Spec::new("shop", "v2", canary(secs(10))));
    let (respectful, _) = durable(&sim, &store, "bluegreen-host-77");
    assert!(matches!(respectful.deploy(&spec).await, Err(Error::Conflict { .. })), "a live lease is respected");
    assert_eq!(sim.writes(), 0);

    let log = MemorySink::new();
    let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe())
        .sink(log.clone())
        .state_store(store.clone(), "bluegreen-host-77")
        .holder_gone(|lease| lease.owner == "bluegreen-host-4242")
        .build();
    assert_eq!(exec.deploy(&spec).await.unwrap().status, Status::Succeeded);
    assert!(
        log.lines().iter().any(|l| l.contains("took over the lock of shop from bluegreen-host-4242")),
        "{:?}",
        log.lines()
    );
    // A holder the check does not call gone is respected.
    store.acquire("shop", "bluegreen-other-1", secs(30)).await.unwrap();
    assert!(matches!(exec.deploy(&spec).await, Err(Error::Conflict { .. })));
}

#[tokio::test(start_paused = true)]
async fn another_process_pauses_promotes_and_aborts_through_the_store() {
    for command in [Command::Pause, Command::Promote, Command::Abort] {
        let sim = two_pools();
        let store = Arc::new(MemoryStore::new());
        let (exec, log) = durable(&sim, &store, "ci-1");
        let spec = quick(Spec::new("shop", "v2", canary(mins(30))));
        let task = tokio::spawn(async move { exec.deploy(&spec).await.unwrap() });
        tokio::time::sleep(mins(2)).await;
        let id = log.events()[0].deployment_id.clone();
        // The "other process": only the store in common.
        let remote: Arc<dyn StateStore> = store.clone();
        remote.send(&id, command).await.unwrap();
        let reacted = |kind: &EventKind| match command {
            Command::Pause => matches!(kind, EventKind::Paused { .. }),
            Command::Promote => matches!(kind, EventKind::Promoted),
            _ => matches!(kind, EventKind::AbortRequested),
        };
        // Within one poll interval (1 s; the millisecond lets tasks due at the same instant run).
        tokio::time::sleep(secs(1) + Duration::from_millis(1)).await;
        let event = log.events().into_iter().find(|e| reacted(&e.kind));
        assert!(event.is_some(), "{command:?} not seen within a poll interval:\n{}", log.lines().join("\n"));
        match command {
            Command::Pause => {
                tokio::time::sleep(mins(60)).await;
                assert!(!task.is_finished(), "paused");
                remote.send(&id, Command::Resume).await.unwrap();
                assert_eq!(task.await.unwrap().status, Status::Succeeded);
            }
            Command::Promote => {
                let outcome = task.await.unwrap();
                assert_eq!(outcome.status, Status::Succeeded);
                assert!(outcome.elapsed < mins(5), "{:?}", outcome.elapsed);
            }
            _ => assert_eq!(task.await.unwrap().status, Status::RolledBack),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn refuse_lets_exactly_one_deployment_run() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let (first, _) = durable(&sim, &store, "pipeline-a");
    let (second, _) = durable(&sim, &store, "pipeline-b");
    let spec = quick(Spec::new("shop", "v2", canary(mins(10))));
    let running = {
        let spec = spec.clone();
        tokio::spawn(async move { first.deploy(&spec).await.unwrap() })
    };
    tokio::time::sleep(mins(1)).await;
    let writes = sim.writes();
    let err = second.deploy(&spec.clone().with_concurrency(ConcurrencyPolicy::Refuse)).await.unwrap_err();
    match &err {
        Error::Conflict { what } => assert!(what.contains("pipeline-a") && what.contains("until"), "{what}"),
        other => panic!("{other}"),
    }
    assert_eq!(sim.writes(), writes, "the refused deploy changed nothing");
    assert_eq!(running.await.unwrap().status, Status::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn queued_deployments_run_one_after_the_other_in_order() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    // One log shared by the three pipelines: it shows how their events interleave.
    let all = MemorySink::new();
    let pipeline = |owner: &str| {
        Executor::builder(sim.router(), sim.fleet(), sim.probe())
            .shared_sink(sim.sink())
            .sink(all.clone())
            .state_store(store.clone(), owner)
            .build()
    };
    let queue = |v: &str| quick(Spec::new("shop", v, canary(mins(5)))).with_concurrency(ConcurrencyPolicy::Queue);
    let mut tasks = Vec::new();
    for (owner, version) in [("pipeline-a", "v2"), ("pipeline-b", "v3"), ("pipeline-c", "v4")] {
        let (exec, spec) = (pipeline(owner), queue(version));
        tasks.push(tokio::spawn(async move { exec.deploy(&spec).await.unwrap() }));
        tokio::time::sleep(secs(10)).await;
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    assert!(outcomes.iter().all(|o| o.status == Status::Succeeded), "{outcomes:#?}");
    let history: Vec<String> =
        store.history("shop").await.unwrap().into_iter().map(|r| r.plan.spec.version.to_string()).collect();
    assert_eq!(history, ["v2", "v3", "v4"], "first come, first served");
    // Never interleaved: the shared log is three unbroken runs, one per deployment.
    let mut runs: Vec<String> = all.events().into_iter().map(|e| e.deployment_id).collect();
    runs.dedup();
    let ids: Vec<String> = outcomes.iter().map(|o| o.deployment_id.clone()).collect();
    assert_eq!(runs, ids, "the deployments' events interleaved");
    assert_eq!(outcomes[2].serving_versions, vec!["v4".into()]);
    assert_no_violations(&sim, &all);
}

#[tokio::test(start_paused = true)]
async fn supersede_ends_the_running_deployment_as_configured() {
    for (with, first_status) in
        [(SupersedeWith::Abort, Status::RolledBack), (SupersedeWith::Promote, Status::Succeeded)]
    {
        let sim = two_pools();
        let store = Arc::new(MemoryStore::new());
        let (first, _) = durable(&sim, &store, "pipeline-a");
        let (second, _) = durable(&sim, &store, "pipeline-b");
        let a =
            tokio::spawn(async move { first.deploy(&quick(Spec::new("shop", "v2", canary(mins(30))))).await.unwrap() });
        tokio::time::sleep(mins(2)).await;
        let spec = quick(Spec::new("shop", "v3", canary(mins(1)))).with_concurrency(ConcurrencyPolicy::Supersede(with));
        let b = second.deploy(&spec).await.unwrap();
        let a = a.await.unwrap();
        assert_eq!(a.status, first_status, "{with:?}");
        assert!(a.elapsed < mins(10), "{with:?}: superseded promptly, not after its 30-minute bake");
        assert_eq!(b.status, Status::Succeeded, "{with:?}");
        assert_eq!(b.serving_versions, vec!["v3".into()]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_owner_whose_lock_was_taken_over_changes_nothing_more() {
    let sim = two_pools();
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::with_clock(clock.clock()));
    let (stale, log) = durable(&sim, &store, "pipeline-a");
    let stale =
        tokio::spawn(async move { stale.deploy(&quick(Spec::new("shop", "v2", canary(mins(30))))).await.unwrap() });
    tokio::time::sleep(mins(2)).await;
    // pipeline-a's host froze past its lease; pipeline-b takes the lock over.
    clock.advance(mins(5));
    let lease = store.acquire("shop", "pipeline-b", secs(30)).await.unwrap();
    let writes = sim.writes();
    let outcome = stale.await.unwrap();
    assert_eq!(outcome.status, Status::Abandoned, "{}", log.lines().join("\n"));
    assert!(outcome.elapsed < mins(4), "noticed within a lease renewal, not after the bake: {:?}", outcome.elapsed);
    assert_eq!(sim.writes(), writes, "the stale owner made no backend change after losing the lock");
    assert_eq!(sim.split().weight(&"green".into()), 20, "traffic left for the new owner");
    assert!(lease.fence > 1);
}

#[tokio::test(start_paused = true)]
async fn history_lists_outcomes_and_a_deploy_goes_back_to_the_previous_good_version() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let (exec, _) = durable(&sim, &store, "ci");
    let bg = |v: &str| quick(Spec::new("shop", v, Strategy::BlueGreen(BlueGreen::default())));
    assert_eq!(exec.deploy(&bg("v2")).await.unwrap().status, Status::Succeeded);
    assert_eq!(exec.deploy(&bg("v3")).await.unwrap().status, Status::Succeeded);
    sim.set_behaviour("v4", bluegreen_core::sim::VersionBehaviour::never_healthy());
    assert_eq!(exec.deploy(&bg("v4")).await.unwrap().status, Status::RolledBack);

    let history = exec.history("shop").await.unwrap();
    let lines: Vec<(String, Option<Status>)> = history.iter().map(|h| (h.to_version.clone(), h.status)).collect();
    assert_eq!(
        lines,
        [
            ("v2".into(), Some(Status::Succeeded)),
            ("v3".into(), Some(Status::Succeeded)),
            ("v4".into(), Some(Status::RolledBack))
        ]
    );
    let back = exec.rollback_to("shop", None).await.unwrap();
    assert_eq!(back.status, Status::Succeeded);
    assert_eq!(back.serving_versions, vec!["v2".into()], "the good version before the current v3");
    let err = exec.rollback_to("shop", Some(&"v9".into())).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_version_installed_before_the_first_deploy_is_a_rollback_target() {
    // Terraform created the service at v86; bluegreen's first deploy took it to v87.
    let sim = Sim::builder().pool("blue", 2, "v86").pool("green", 0, "v86").build();
    let store = Arc::new(MemoryStore::new());
    let (exec, _) = durable(&sim, &store, "ci");
    let bg = |v: &str| quick(Spec::new("shop", v, Strategy::BlueGreen(BlueGreen::default())));
    assert_eq!(exec.deploy(&bg("v87")).await.unwrap().status, Status::Succeeded);

    let back = exec.rollback_to("shop", None).await.unwrap();
    assert_eq!(back.status, Status::Succeeded);
    assert_eq!(back.serving_versions, vec!["v86".into()], "the version the first deploy started from");
    let forward = exec.rollback_to("shop", Some(&"v87".into())).await.unwrap();
    assert_eq!(forward.serving_versions, vec!["v87".into()]);
    let again = exec.rollback_to("shop", Some(&"v86".into())).await.unwrap();
    assert_eq!(again.serving_versions, vec!["v86".into()], "--to a version known only as a `from`");
    let err = exec.rollback_to("shop", Some(&"v85".into())).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "to"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn after_a_first_deploy_that_rolled_back_nothing_earlier_is_serving_to_go_back_to() {
    let sim = Sim::builder().pool("blue", 2, "v86").pool("green", 0, "v86").build();
    sim.set_behaviour("v87", bluegreen_core::sim::VersionBehaviour::never_healthy());
    let store = Arc::new(MemoryStore::new());
    let (exec, _) = durable(&sim, &store, "ci");
    let bg = quick(Spec::new("shop", "v87", Strategy::BlueGreen(BlueGreen::default())));
    assert_eq!(exec.deploy(&bg).await.unwrap().status, Status::RolledBack);
    let writes = sim.writes();
    // v86 serves: going "back" to it would redeploy what serves.
    let err = exec.rollback_to("shop", None).await.unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "to"), "{err}");
    assert_eq!(sim.writes(), writes, "nothing was redeployed");
}

#[tokio::test(start_paused = true)]
async fn stop_leaves_a_resumable_deployment_and_frees_the_lock() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let (exec, log) = durable(&sim, &store, "terminal-1");
    let control = exec.control();
    let task =
        tokio::spawn(async move { exec.deploy(&quick(Spec::new("shop", "v2", canary(mins(30))))).await.unwrap() });
    tokio::time::sleep(mins(2)).await;
    let writes = sim.writes();
    control.stop();
    let outcome = task.await.unwrap();
    assert_eq!(outcome.status, Status::Interrupted, "{}", log.lines().join("\n"));
    assert!(outcome.elapsed < mins(3), "stopped at once, in the middle of the bake");
    assert_eq!(sim.writes(), writes, "nothing rolled back or changed");
    assert_eq!(sim.split().weight(&"green".into()), 20);
    let record = store.load(&outcome.deployment_id).await.unwrap();
    assert_eq!(record.phase, Phase::Running);
    assert_eq!(store.holder("shop").await.unwrap(), None, "the lock is free for whoever resumes");

    // Another terminal resumes it straight away.
    let (other, _) = durable(&sim, &store, "terminal-2");
    let resumed = other.resume_deployment(&outcome.deployment_id).await.unwrap();
    assert_eq!(resumed.status, Status::Succeeded);
    assert_eq!(sim.split().weight(&"green".into()), 100);
}

#[tokio::test(start_paused = true)]
async fn a_second_deploy_under_the_same_owner_name_is_refused_not_interleaved() {
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let (first, _) = durable(&sim, &store, "ci");
    let (second, _) = durable(&sim, &store, "ci");
    let running =
        tokio::spawn(async move { first.deploy(&quick(Spec::new("shop", "v2", canary(mins(10))))).await.unwrap() });
    tokio::time::sleep(mins(1)).await;
    let writes = sim.writes();
    let err = second.deploy(&quick(Spec::new("shop", "v3", canary(mins(10))))).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(sim.writes(), writes);
    assert_eq!(running.await.unwrap().status, Status::Succeeded, "the first one was not taken over");
}

#[tokio::test(start_paused = true)]
async fn a_lease_taken_over_while_planning_stops_the_deploy_before_any_change() {
    // Every backend call takes 10 s (virtual), so planning is slow.
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").latency(secs(10)).build();
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::with_clock(clock.clock()));
    let (exec, _) = durable(&sim, &store, "slow-planner");
    let deploy = tokio::spawn(async move { exec.deploy(&quick(Spec::new("shop", "v2", canary(mins(1))))).await });
    tokio::time::sleep(secs(5)).await;
    // The planner's lease lapses (its host froze, say) and another pipeline takes over.
    clock.advance(mins(2));
    store.acquire("shop", "other", mins(1)).await.unwrap();
    let err = deploy.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(sim.writes(), 0, "nothing changed");
    assert!(store.history("shop").await.unwrap().is_empty(), "no record under a lost lease");
}

/// A secret from a reference is kept in the store as that reference; a resume resolves it
/// again (the hook gets the value) and is refused, lock free and nothing changed, while the
/// reference cannot be resolved.
#[tokio::test]
async fn a_secret_is_stored_as_its_reference_and_a_resume_resolves_it_again_or_is_refused() {
    use bluegreen_core::secrets::Secrets;
    use bluegreen_core::{CommandHookSpec, HookPoint};

    const TOKEN: &str = "tok-s3cr3t-4e1a";
    const VARIABLE: &str = "BLUEGREEN_DURABLE_TEST_TOKEN";
    let dir = tempfile::tempdir().unwrap();
    let saw = dir.path().join("saw");
    let mut spec = Spec::new("shop", "v2", canary(Duration::from_secs(2)));
    spec.health.interval = Duration::from_millis(20);
    spec.health.timeout = Duration::from_millis(10);
    spec.health.healthy_threshold = 1;
    spec.health.min_healthy_time = Duration::ZERO;
    spec.hooks.push(CommandHookSpec {
        point: HookPoint::AfterSwitch,
        command: format!("printf %s '{TOKEN}' > '{}'", saw.display()),
        timeout: Duration::from_secs(10),
    });
    let secrets = Secrets::new();
    secrets.add_reference(TOKEN, &format!("${{env.{VARIABLE}}}"));
    let sim = two_pools();
    let store = Arc::new(MemoryStore::new());
    let runner = |secrets: Secrets| {
        Executor::builder(sim.router(), sim.fleet(), sim.probe())
            .state_store(store.clone(), "runner")
            .poll_interval(Duration::from_millis(50))
            .secrets(secrets)
            .build()
    };
    let exec = runner(secrets);
    let control = exec.control();
    let task = tokio::spawn(async move { exec.deploy(&spec).await.unwrap() });
    wait_for(|| sim.split().weight(&"green".into()) == 20).await;
    control.stop();
    let outcome = task.await.unwrap();
    assert_eq!(outcome.status, Status::Interrupted);
    let id = outcome.deployment_id;
    let record = store.load(&id).await.unwrap();
    let stored = serde_json::to_string(&(&record, store.events(&id).await.unwrap())).unwrap();
    assert!(!stored.contains(TOKEN), "the store holds the secret: {stored}");
    assert!(record.plan.spec.hooks[0].command.contains(&format!("'${{env.{VARIABLE}}}'")), "{stored}");

    // Another runner, which knows no secret: the reference must come from the environment.
    std::env::remove_var(VARIABLE);
    let writes = sim.writes();
    match runner(Secrets::new()).resume_deployment(&id).await {
        Err(Error::Invalid { field, reason }) => {
            assert_eq!(field, "deployment");
            assert!(reason.contains(VARIABLE), "{reason}");
        }
        other => panic!("expected the resume refused, got {other:?}"),
    }
    assert_eq!(store.holder("shop").await.unwrap(), None, "the lock is left free");
    assert_eq!(sim.writes(), writes, "nothing changed");

    std::env::set_var(VARIABLE, TOKEN);
    let resumed = runner(Secrets::new()).resume_deployment(&id).await.unwrap();
    assert_eq!(resumed.status, Status::Succeeded);
    assert_eq!(std::fs::read_to_string(&saw).unwrap(), TOKEN, "the hook ran with the value, resolved again");
}

/// Waits (real time) until `done` holds.
async fn wait_for(done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
