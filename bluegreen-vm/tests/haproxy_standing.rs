//! Standing environments behind a real HAProxy: five blue and five green servers declared in
//! one backend (`blue.web-1` … with weight 1, `green.web-6` … with weight 0, as an operator
//! writes it), a fixed inventory of real `bluegreen-target` processes with each host in its
//! pool, under continuous load with long requests. Blue-green updates the idle pool in place
//! and switches; `rollback` switches back without running the updater; a 10 → 50 → 100
//! canary shifts in steps; a new version that fails its health gate never gets traffic.
//!
//! Without `haproxy` the test fails when `CI` is set and is skipped otherwise.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::{
    BlueGreen, Canary, EventKind, Executor, Fleet, MemberState, MemorySink, MemoryStore, PoolName, Rolling, Router,
    ShiftStep, Split, Status, Strategy, Target, TargetId, Version,
};
use bluegreen_vm::{HostFleet, Updater};
use support::*;

/// The inventory as a deploy file gives it: every host on v1 (the file's first record), the
/// first five in blue, the rest in green.
fn inventory(targets: &[Target], updater: Updater) -> Arc<HostFleet> {
    let pools =
        targets.iter().enumerate().map(|(i, t)| (t.id.clone(), PoolName::from(if i < 5 { "blue" } else { "green" })));
    Arc::new(HostFleet::new(targets.to_vec(), updater).expect("inventory").with_standing_pools(pools).expect("pools"))
}

fn green(split: &Split) -> u32 {
    split.weight(&PoolName::from("green"))
}

async fn versions(fleet: &HostFleet, ids: &[Target]) -> Vec<String> {
    let list = fleet.list().await.expect("list");
    ids.iter().map(|t| list.iter().find(|l| l.id == t.id).expect("host").version.to_string()).collect()
}

fn runs_since(runs: &Runs, from: usize) -> Vec<(TargetId, Version)> {
    runs.lock().expect("runs")[from..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_blue_green_rollback_and_canary_under_load_drop_nothing() {
    let Some(binary) = require_haproxy("standing_blue_green_rollback_and_canary_under_load_drop_nothing") else {
        return;
    };
    let (local, targets) = local_fleet("web", 10).await;
    let (blue, green_hosts) = targets.split_at(5);
    let mut servers = declared("blue", blue, 1);
    servers.extend(declared("green", green_hosts, 0));
    let haproxy = Haproxy::start(&binary, &servers, "").await;
    let router = Arc::new(haproxy.router());
    let runs: Runs = Arc::default();
    let store = Arc::new(MemoryStore::new());
    let sink = MemorySink::new();
    // Each deploy runs as a fresh process would: a new inventory read from the "file" (every
    // host on v1) and an executor over the same state store, which tells the inventory what
    // the earlier deploys left each host on.
    let fresh = || {
        let hosts = inventory(&targets, counting_updater(&local, runs.clone()));
        let executor = Executor::builder(router.clone(), hosts.clone(), probe())
            .state_store(store.clone(), "standing-test")
            .sink(sink.clone())
            .build();
        (hosts, executor)
    };

    let load = Load::start(&haproxy.url(), 6);
    // Long requests all along, so every switch has work in flight on the pool it leaves.
    let long = LongRequests::start(&load, &haproxy.url(), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bake = Duration::from_millis(1500);

    // 1. Blue-green v1 → v2: green is updated in place, takes the traffic; blue stays warm on v1.
    let (hosts, executor) = fresh();
    let bg = |version: &str| spec(version, Strategy::BlueGreen(BlueGreen { bake, ..BlueGreen::default() }));
    let plan = executor.plan(&bg("v2")).await.expect("plan");
    assert!(plan.standing, "{plan:?}");
    let timeline = plan.timeline().to_string();
    eprintln!("{timeline}");
    assert!(timeline.contains("update 5 targets in pool green to v2"), "{timeline}");
    assert!(timeline.contains("green 5 target(s), 5 serving, 0% of traffic"), "{timeline}");
    let outcome = executor.deploy(&bg("v2")).await.expect("deploy v2");
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert_eq!(green(&router.split().await.expect("split")), 100);
    assert_eq!(versions(&hosts, green_hosts).await, ["v2"; 5]);
    assert_eq!(versions(&hosts, blue).await, ["v1"; 5]);
    let first: Vec<(TargetId, Version)> = runs_since(&runs, 0);
    assert_eq!(first.len(), 5, "{first:?}");
    assert!(first.iter().all(|(id, v)| green_hosts.iter().any(|t| t.id == *id) && v.as_str() == "v2"), "{first:?}");
    let blue_members = router.members(&"blue".into()).await.expect("members");
    assert!(blue_members.len() == 5 && blue_members.iter().all(|m| m.state == MemberState::Serving), "warm");

    // 2. The same deploy file again, rolling, from a fresh process: the state store says green
    //    runs v2 already, so no host is updated.
    let (_, executor) = fresh();
    let again = executor.deploy(&spec("v2", Strategy::Rolling(Rolling::in_place(1)))).await.expect("again");
    assert_eq!(again.status, Status::Succeeded, "{again:?}");
    assert_eq!(runs_since(&runs, 5), [], "a host already on v2 was updated again");

    // 3. `bluegreen rollback`: the warm blue pool runs v1, so going back is a traffic switch.
    let (hosts, executor) = fresh();
    let back = executor.rollback_to("web", None).await.expect("rollback");
    assert_eq!(back.status, Status::Succeeded, "{back:?}");
    assert_eq!(green(&router.split().await.expect("split")), 0);
    assert_eq!(runs_since(&runs, 5), [], "the rollback ran the updater");
    assert_eq!(versions(&hosts, green_hosts).await, ["v2"; 5], "green stays warm on v2");

    // 4. A 10 → 50 → 100 canary of v3 onto green (idle again, on v2).
    let (hosts, executor) = fresh();
    let steps =
        [10, 50, 100].map(|percent| ShiftStep { percent, bake: if percent < 100 { bake } else { Duration::ZERO } });
    let canary = spec("v3", Strategy::Canary(Canary { steps: steps.to_vec(), ..Canary::default() }));
    let shifted_before = sink.events().len();
    let outcome = executor.deploy(&canary).await.expect("canary");
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    let shares: Vec<u32> = sink.events()[shifted_before..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrafficShifted { to, .. } => Some(green(to)),
            _ => None,
        })
        .collect();
    assert_eq!(shares, [10, 50, 100]);
    assert_eq!(versions(&hosts, green_hosts).await, ["v3"; 5]);
    assert_eq!(versions(&hosts, blue).await, ["v1"; 5]);
    assert_eq!(runs_since(&runs, 5).len(), 5);

    // 5. v4 fails its health check: blue (idle) is updated, fails its gate, and never gets
    //    traffic; green keeps serving v3.
    local.set_version_args("v4", ["--fail-health"]);
    let (_, executor) = fresh();
    let quick_gate = bluegreen_core::HealthPolicy { deadline: Duration::from_secs(3), ..health() };
    let shifted_before = sink.events().len();
    let failing = executor.deploy(&bg("v4").with_health(quick_gate)).await.expect("v4");
    assert_eq!(failing.status, Status::RolledBack, "{failing:?}");
    let shifted = sink.events()[shifted_before..].iter().any(|e| matches!(e.kind, EventKind::TrafficShifted { .. }));
    assert!(!shifted, "traffic moved during the failed deploy");
    assert_eq!(green(&router.split().await.expect("split")), 100);

    long.stop().await;
    let samples = load.stop().await;
    eprintln!("load: {}", summary(&samples));
    assert!(samples.iter().all(|s| s.ok), "failed requests: {}", summary(&samples));
    assert!(samples.len() >= 50_000, "too little load to mean anything: {}", summary(&samples));
    assert!(samples.iter().filter(|s| s.long).count() >= 20, "{}", summary(&samples));
    let on_v4 = samples.iter().filter(|s| s.version.as_deref() == Some("v4")).count();
    assert_eq!(on_v4, 0, "a request reached the failing v4");
    local.shutdown().await;
}
