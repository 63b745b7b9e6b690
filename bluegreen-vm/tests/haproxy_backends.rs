//! The backend-per-pool layout against a real HAProxy: pools `blue` and `green` are backends
//! `web_blue` and `web_green` (servers named by host id, as operators write them), and the
//! frontend chooses the backend per request by `use_backend %[rand(100),map_int(<map>)]`
//! over a map of 100 entries that the router rewrites with `prepare`/`add`/`commit map`.
//!
//! - the router conformance suite in this layout;
//! - the split as `show map` has it, real traffic following it, and a map with an entry
//!   naming another backend or a missing entry reported as drift before any write;
//! - standing pools under continuous load with long requests: blue-green v1 → v2, a
//!   rollback that is a switch (no updater run), a 10 → 50 → 100 canary of v3, 0 failed.
//!
//! Without `haproxy` the tests fail when `CI` is set and are skipped otherwise.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bluegreen_core::conformance::{router_suite, RouterFixture};
use bluegreen_core::{
    BlueGreen, Canary, Error, EventKind, Executor, Fleet, HealthProbe, MemberState, MemorySink, MemoryStore, PoolName,
    Router, ShiftStep, Split, Status, Strategy, Target,
};
use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter, HostFleet};
use support::*;

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

/// `show map` of the router's split map, as `(key, backend)` lines.
async fn show_map(router: &HaproxyRouter) -> Vec<(u32, String)> {
    let map = router.split_map().expect("a split map");
    let answer = router.raw_command(&format!("show map {map}")).await.expect("show map");
    answer
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            Some((words.next()?.parse().ok()?, words.next()?.to_owned()))
        })
        .collect()
}

fn entries_of(map: &[(u32, String)], backend: &str) -> usize {
    map.iter().filter(|(_, b)| b == backend).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_per_pool_router_conforms() {
    let Some(binary) = require_haproxy("backend_per_pool_router_conforms") else { return };
    let (local, targets) = local_fleet("conf", 2).await;
    let haproxy = Haproxy::start_per_pool(&binary, &[], &[]).await;
    let router = haproxy.per_pool_router();
    assert!(router.capabilities().atomic_swap, "a split is one committed map version");
    let fixture = RouterFixture { pools: [blue(), green()], targets: targets.clone() };
    router_suite(&router, &fixture).await;

    // The members are servers of the pool's own backend, named by host id.
    router.add_targets(&green(), &targets[..1]).await.expect("add");
    let state = router.raw_command("show servers state web_green").await.expect("state");
    assert!(state.contains(&format!(" {} ", targets[0].id)), "{state}");
    let members = router.members(&green()).await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].id.clone(), members[0].state), (targets[0].id.clone(), MemberState::Serving));
    assert!(router.members(&blue()).await.expect("members").is_empty());
    // HAProxy's checks as a second opinion, found in the pool's backend.
    let checks = router.check_probe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !checks.check(&targets[0]).await.is_healthy() {
        assert!(Instant::now() < deadline, "HAProxy's check never passed: {:?}", checks.check(&targets[0]).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A map HAProxy does not have is NotFound, naming the maps it has.
    let wrong = HaproxyRouter::builder(HaproxyEndpoint::unix(haproxy.socket()), "web")
        .backend_per_pool("/etc/haproxy/no-such.map")
        .build()
        .expect("router");
    let error = wrong.split().await.expect_err("an unknown map");
    assert!(matches!(error, Error::NotFound { .. }), "{error}");
    assert!(error.to_string().contains(&haproxy.split_map()), "{error}");
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_map_reads_back_serves_and_drift_is_refused_before_any_write() {
    let Some(binary) = require_haproxy("split_map_reads_back_serves_and_drift_is_refused_before_any_write") else {
        return;
    };
    let (local, targets) = local_fleet("map", 2).await;
    let haproxy =
        Haproxy::start_per_pool(&binary, &declared_by_id(&targets[..1], 1), &declared_by_id(&targets[1..], 1)).await;
    let router = haproxy.per_pool_router();
    assert!(router.split().await.expect("split").same_traffic(&Split::all_to(&blue())));

    // 10 % to green: 10 entries of 100 name web_green, the split reads back from them, and
    // real requests follow it.
    router.set_split(&Split::between(&blue(), &green(), 10)).await.expect("10 %");
    let map = show_map(&router).await;
    assert_eq!((map.len(), entries_of(&map, "web_green"), entries_of(&map, "web_blue")), (100, 10, 90));
    assert!(router.split().await.expect("split").same_traffic(&Split::between(&blue(), &green(), 10)));
    let client = client();
    let mut to_green = 0;
    for _ in 0..2000 {
        let response = client.get(format!("{}/", haproxy.url())).send().await.expect("request");
        let server = response.headers().get("x-server").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(response.status().is_success(), "{server}: {}", response.status());
        if server.starts_with("web_green/") {
            to_green += 1;
        }
    }
    // Binomial(2000, 0.1): mean 200, standard deviation 13.4.
    eprintln!("at 10 %: {to_green} of 2000 requests reached green");
    assert!((140..=260).contains(&to_green), "{to_green} of 2000 requests reached green at 10 %");
    // Writing the same split again writes nothing (the map's entries keep their references).
    let before = router.raw_command(&format!("show map {}", haproxy.split_map())).await.expect("show map");
    router.set_split(&Split::between(&blue(), &green(), 10)).await.expect("again");
    let after = router.raw_command(&format!("show map {}", haproxy.split_map())).await.expect("show map");
    assert_eq!(before, after, "an unchanged split rewrote the map");

    // An entry naming a backend that is no pool's: drift, and nothing is written.
    let map_path = haproxy.split_map();
    router.raw_command(&format!("set map {map_path} 95 web_old")).await.expect("set map");
    let error = router.split().await.expect_err("an entry naming web_old");
    assert!(matches!(error, Error::Drift { .. }), "{error}");
    assert!(error.to_string().contains("\"web_old\""), "{error}");
    let error = router.set_split(&Split::all_to(&green())).await.expect_err("a write over a drifted map");
    assert!(matches!(error, Error::Drift { .. }), "{error}");
    let map = show_map(&router).await;
    assert_eq!((entries_of(&map, "web_green"), entries_of(&map, "web_old")), (9, 1), "the refused split wrote");

    // A missing entry: drift naming the key, and nothing is written.
    router.raw_command(&format!("set map {map_path} 95 web_green")).await.expect("set map");
    router.raw_command(&format!("del map {map_path} 42")).await.expect("del map");
    let error = router.split().await.expect_err("a missing key");
    assert!(matches!(error, Error::Drift { .. }) && error.to_string().contains("(42)"), "{error}");
    let error = router.set_split(&Split::all_to(&green())).await.expect_err("a write over a drifted map");
    assert!(matches!(error, Error::Drift { .. }), "{error}");
    let map = show_map(&router).await;
    assert_eq!((map.len(), entries_of(&map, "web_green")), (99, 10), "the refused split wrote");

    // Repaired by hand, the map is a split again.
    router.raw_command(&format!("add map {map_path} 42 web_blue")).await.expect("add map");
    assert!(router.split().await.expect("split").same_traffic(&Split::between(&blue(), &green(), 10)));

    // Saving the map's file: what HAProxy reads on a reload is the split it serves.
    let saving = HaproxyRouter::builder(HaproxyEndpoint::unix(haproxy.socket()), "web")
        .backend_per_pool(haproxy.split_map())
        .save_split_map(true)
        .build()
        .expect("router");
    saving.set_split(&Split::between(&blue(), &green(), 30)).await.expect("30 %");
    let file = std::fs::read_to_string(haproxy.split_map()).expect("map file");
    let lines: Vec<&str> = file.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 100, "{file}");
    assert_eq!(lines.iter().filter(|l| l.ends_with(" web_green")).count(), 30, "{file}");
    assert_eq!(entries_of(&show_map(&router).await, "web_green"), 30);

    // A pool whose backend has no ready server gets no share, and nothing is written.
    router.drain(&green(), &[targets[1].id.clone()], Duration::from_secs(5)).await.expect("drain");
    router.set_split(&Split::all_to(&blue())).await.expect("all to blue");
    let error = router.set_split(&Split::between(&blue(), &green(), 50)).await.expect_err("green cannot serve");
    assert!(matches!(error, Error::Drift { .. }) && error.to_string().contains("web_green"), "{error}");
    assert_eq!(entries_of(&show_map(&router).await, "web_green"), 0);
    local.shutdown().await;
}

// ---- standing pools under load ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_blue_green_rollback_and_canary_between_two_backends_under_load_drop_nothing() {
    let Some(binary) =
        require_haproxy("standing_blue_green_rollback_and_canary_between_two_backends_under_load_drop_nothing")
    else {
        return;
    };
    let started = Instant::now();
    let (local, targets) = local_fleet("web", 6).await;
    let (blue_hosts, green_hosts) = targets.split_at(3);
    // As an operator writes it: every server at weight 1 in its pool's backend; the map
    // sends everything to web_blue.
    let haproxy =
        Haproxy::start_per_pool(&binary, &declared_by_id(blue_hosts, 1), &declared_by_id(green_hosts, 1)).await;
    let router = Arc::new(haproxy.per_pool_router());
    let runs: Runs = Arc::default();
    let store = Arc::new(MemoryStore::new());
    let sink = MemorySink::new();
    // Each deploy as a fresh process: the inventory as the file gives it (every host on v1),
    // the versions since from the state store.
    let fresh = || {
        let pools = targets.iter().enumerate().map(|(i, t)| (t.id.clone(), if i < 3 { blue() } else { green() }));
        let hosts = Arc::new(
            HostFleet::new(targets.clone(), counting_updater(&local, runs.clone()))
                .expect("inventory")
                .with_standing_pools(pools)
                .expect("pools"),
        );
        let executor = Executor::builder(router.clone(), hosts.clone(), probe())
            .state_store(store.clone(), "two-backends-test")
            .sink(sink.clone())
            .build();
        (hosts, executor)
    };
    let versions = |hosts: Arc<HostFleet>, ids: Vec<Target>| async move {
        let list = hosts.list().await.expect("list");
        ids.iter().map(|t| list.iter().find(|l| l.id == t.id).expect("host").version.to_string()).collect::<Vec<_>>()
    };
    let green_share = || async { router.split().await.expect("split").weight(&green()) };

    let load = Load::start(&haproxy.url(), 6);
    let long = LongRequests::start(&load, &haproxy.url(), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bake = Duration::from_millis(1500);
    let bg = |version: &str| spec(version, Strategy::BlueGreen(BlueGreen { bake, ..BlueGreen::default() }));

    // 1. Blue-green v1 → v2: green (idle, 0 entries) is updated in place and takes the map.
    let (hosts, executor) = fresh();
    let plan = executor.plan(&bg("v2")).await.expect("plan");
    assert!(plan.standing, "{plan:?}");
    let outcome = executor.deploy(&bg("v2")).await.expect("deploy v2");
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert_eq!(green_share().await, 100);
    assert_eq!(entries_of(&show_map(&router).await, "web_green"), 100);
    assert_eq!(versions(hosts.clone(), green_hosts.to_vec()).await, ["v2"; 3]);
    assert_eq!(versions(hosts, blue_hosts.to_vec()).await, ["v1"; 3]);
    assert_eq!(runs.lock().expect("runs").len(), 3);
    let warm = router.members(&blue()).await.expect("members");
    assert!(warm.len() == 3 && warm.iter().all(|m| m.state == MemberState::Serving), "blue warm: {warm:?}");

    // 2. Rollback: blue runs v1, so it is a switch of the map, no updater run.
    let (_, executor) = fresh();
    let back = executor.rollback_to("web", None).await.expect("rollback");
    assert_eq!(back.status, Status::Succeeded, "{back:?}");
    assert_eq!(green_share().await, 0);
    assert_eq!(runs.lock().expect("runs").len(), 3, "the rollback ran the updater");

    // 3. A 10 → 50 → 100 canary of v3 onto green (idle again).
    let (hosts, executor) = fresh();
    let steps =
        [10, 50, 100].map(|percent| ShiftStep { percent, bake: if percent < 100 { bake } else { Duration::ZERO } });
    let canary = spec("v3", Strategy::Canary(Canary { steps: steps.to_vec(), ..Canary::default() }));
    let before = sink.events().len();
    let outcome = executor.deploy(&canary).await.expect("canary");
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    let shares: Vec<u32> = sink.events()[before..]
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrafficShifted { to, .. } => Some(to.weight(&green())),
            _ => None,
        })
        .collect();
    assert_eq!(shares, [10, 50, 100]);
    assert_eq!(versions(hosts.clone(), green_hosts.to_vec()).await, ["v3"; 3]);
    assert_eq!(versions(hosts, blue_hosts.to_vec()).await, ["v1"; 3]);
    assert_eq!(runs.lock().expect("runs").len(), 6);

    long.stop().await;
    let samples = load.stop().await;
    eprintln!("load: {} in {:.1?}", summary(&samples), started.elapsed());
    assert!(samples.iter().all(|s| s.ok), "failed requests: {}", summary(&samples));
    assert!(samples.len() >= 20_000, "too little load to mean anything: {}", summary(&samples));
    assert!(samples.iter().filter(|s| s.long).count() >= 10, "{}", summary(&samples));
    // Both backends answered, each only with its own servers.
    for s in samples.iter().filter_map(|s| s.server.as_deref()) {
        let (backend, server) = s.split_once('/').expect("backend/server");
        let pool = if blue_hosts.iter().any(|t| t.id.as_str() == server) { "web_blue" } else { "web_green" };
        assert_eq!(backend, pool, "{s}");
    }
    let by_backend = |b: &str| samples.iter().filter(|s| s.server.as_deref().is_some_and(|x| x.starts_with(b))).count();
    assert!(by_backend("web_blue/") > 1000 && by_backend("web_green/") > 1000, "{}", summary(&samples));
    let on_v3 = samples.iter().filter(|s| s.version.as_deref() == Some("v3")).count();
    assert!(on_v3 > 0, "v3 never answered");
    local.shutdown().await;
}
