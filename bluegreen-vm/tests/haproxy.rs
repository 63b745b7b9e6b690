//! `HaproxyRouter` and `HostFleet` against a real HAProxy: each test starts its own `haproxy`
//! with a generated config (frontend and backend on 127.0.0.1 high ports, stats sockets in a
//! temporary directory) in front of real `bluegreen-target` processes, and counts every request
//! sent through it.
//!
//! Without `haproxy` on PATH (or in /usr/sbin) the tests fail when `CI` is set and are skipped
//! with a notice otherwise; `scripts/test` installs it.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluegreen_core::conformance::{router_suite, RouterFixture};
use bluegreen_core::layers::{FaultyRouter, Recorder, RecordingRouter, Request, Response, RouterOp};
use bluegreen_core::{
    BlueGreen, Canary, DrainReport, Error, Event, EventKind, Executor, Fleet, Health, HealthPolicy, HealthProbe,
    Member, MemberState, MemorySink, PoolName, Rolling, Router, ShiftStep, Spec, Split, Stability, Status, Step,
    Strategy, Target, TargetId,
};
use bluegreen_testkit::free_port;
use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter, HostFleet};
use support::*;

// ---- a router that puts long requests in flight on a target just before draining it ----

/// Before each drain of a [`HaproxyRouter`], sends `per_target` long requests (`/sleep/long_ms`)
/// through HAProxy pinned to each target's server and waits until HAProxy counts them as
/// sessions — so every drain has work in flight to wait for.
#[derive(Debug)]
struct PinBeforeDrain {
    url: String,
    long_ms: u64,
    per_target: u64,
    log: Log,
    pending: Arc<AtomicUsize>,
}

/// The router of [`PinBeforeDrain::around`]: the pinning runs as a hook before each drain, and
/// a recording below it keeps when each drain began and what it reported, for the overhead
/// measurement.
struct Pinned {
    router: Arc<dyn Router>,
    recorder: Recorder,
    setup: Arc<Mutex<BTreeMap<TargetId, Duration>>>,
}

#[derive(Debug, Default)]
struct Marks {
    /// Per target: time spent putting the long requests in flight (test set-up, not deploy work).
    setup: BTreeMap<TargetId, Duration>,
    /// Per target: when its drain began (after set-up) and what it reported.
    drains: BTreeMap<TargetId, (Instant, DrainReport)>,
}

impl PinBeforeDrain {
    fn around(self, inner: HaproxyRouter) -> Pinned {
        let recording = RecordingRouter::new(Arc::new(inner.clone()));
        let recorder = recording.recorder();
        let setup: Arc<Mutex<BTreeMap<TargetId, Duration>>> = Arc::default();
        let (pin, marks) = (Arc::new(self), setup.clone());
        let router = FaultyRouter::new(Arc::new(recording)).before(RouterOp::Drain, move |request| {
            let (pin, inner, marks) = (pin.clone(), inner.clone(), marks.clone());
            async move { pin.pin(&inner, request, &marks).await }
        });
        Pinned { router: Arc::new(router), recorder, setup }
    }

    async fn pin(
        &self,
        inner: &HaproxyRouter,
        request: Request,
        marks: &Mutex<BTreeMap<TargetId, Duration>>,
    ) -> bluegreen_core::Result<()> {
        let (Some(pool), targets) = (request.pool, request.targets) else { return Ok(()) };
        let setup_start = Instant::now();
        for id in &targets {
            let server = inner.server_name(&pool, id);
            for _ in 0..self.per_target {
                let (log, url, server) =
                    (self.log.clone(), format!("{}/sleep/{}", self.url, self.long_ms), server.clone());
                let pending = self.pending.clone();
                pending.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    send(&client(), &url, Some(&server), &log, true).await;
                    pending.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
        // Generous: on a loaded 2-core CI machine a request can take seconds to reach its
        // server, and the assertions need both in flight when the drain begins (set-up time is
        // not counted as the deploy's).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let members = inner.members(&pool).await?;
            let pinned = |id: &TargetId| members.iter().find(|m| m.id == *id).and_then(|m| m.in_flight).unwrap_or(0);
            if targets.iter().all(|id| pinned(id) >= self.per_target) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let setup = setup_start.elapsed();
        let mut marks = marks.lock().expect("marks");
        for id in targets {
            marks.insert(id, setup);
        }
        Ok(())
    }
}

impl Pinned {
    /// Per target: the set-up time, and when its (successful) drain began and what it reported.
    fn marks(&self) -> Marks {
        let mut drains = BTreeMap::new();
        for call in self.recorder.calls_of(RouterOp::Drain) {
            let Ok(Response::Drained(report)) = call.result else { continue };
            for id in call.request.targets {
                drains.insert(id, (call.started.into_std(), report.clone()));
            }
        }
        Marks { setup: self.setup.lock().expect("marks").clone(), drains }
    }
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_router_conforms() {
    let Some(binary) = require_haproxy("haproxy_router_conforms") else { return };
    let (local, targets) = local_fleet("conf", 2).await;
    let haproxy = Haproxy::start(&binary, &[], "").await;
    let router = haproxy.router();
    let fixture = RouterFixture { pools: ["blue".into(), "green".into()], targets: targets.clone() };
    router_suite(&router, &fixture).await;

    // HAProxy's own checks, as a second opinion.
    let checks = router.check_probe();
    router.add_targets(&"blue".into(), &targets[..1]).await.expect("add");
    wait_for(&checks, &targets[0], true, "HAProxy's check to pass").await;
    local.kill(&targets[0].id).await.expect("kill");
    wait_for(&checks, &targets[0], false, "HAProxy's check to fail").await;
    let Health::Unhealthy { reason } = checks.check(&targets[0]).await else { unreachable!() };
    assert!(reason.contains("DOWN") || reason.contains("UP 1/2"), "{reason}");
    let Health::Unhealthy { reason } = checks.check(&targets[1]).await else { panic!("not a member, but healthy") };
    assert!(reason.contains("no server"), "{reason}");
    local.shutdown().await;
}

async fn wait_for(probe: &dyn HealthProbe, target: &Target, healthy: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while probe.check(target).await.is_healthy() != healthy {
        assert!(Instant::now() < deadline, "waited 5 s for {what}: {:?}", probe.check(target).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The health policy of the seed's job: the tests' quick one, or with
/// `BLUEGREEN_HAPROXY_HEALTH=default` the library's defaults (5 s interval, 3 passes, a 10 s
/// window; the stability window watched beside the next batch) and `default-blocking` the same
/// with each window waited out (`stability = "blocking"`), for the benchmark's side-by-side.
fn job_spec() -> Spec {
    let choice = std::env::var("BLUEGREEN_HAPROXY_HEALTH").unwrap_or_default();
    let stability = if choice == "default-blocking" { Stability::Blocking } else { Stability::Watched };
    let spec = spec("v2", Strategy::Rolling(Rolling { stability, ..Rolling::in_place(2) }));
    match choice.as_str() {
        "default" | "default-blocking" => spec.with_health(HealthPolicy::default()),
        _ => spec,
    }
}

/// The seed's job: 10 servers behind HAProxy, 2 at a time, under continuous load, with long
/// requests put in flight on each server just before it drains; the updater installs for 1 s
/// and restarts the server's process on the same port with the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_ten_servers_two_at_a_time_under_load_drops_nothing() {
    let Some(binary) = require_haproxy("rolling_ten_servers_two_at_a_time_under_load_drops_nothing") else { return };
    let (local, targets) = local_fleet("web", 10).await;
    let haproxy = Haproxy::start(&binary, &declared("blue", &targets, 1), "").await;
    let update_marks: UpdateMarks = Arc::default();
    let updater = restart_updater(&local, Duration::from_secs(1), update_marks.clone(), |_, _| false);
    let hosts = Arc::new(HostFleet::new(targets.clone(), updater).expect("inventory"));
    // `BLUEGREEN_HAPROXY_LOAD_WORKERS=0` runs the deploy without background load, to measure
    // the deployer's own CPU time (the load generator runs in this process).
    let workers = std::env::var("BLUEGREEN_HAPROXY_LOAD_WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(6);
    let load = Load::start(&haproxy.url(), workers);
    let pinned = PinBeforeDrain {
        url: haproxy.url(),
        long_ms: 2000,
        per_target: 2,
        log: load.log.clone(),
        pending: load.pending.clone(),
    }
    .around(haproxy.router());
    let router = pinned.router.clone();
    let sink = MemorySink::new();
    let executor = Executor::builder(router.clone(), hosts.clone(), probe()).sink(sink.clone()).build();
    let spec = job_spec();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let plan = executor.plan(&spec).await.expect("plan");
    let cpu_before = cpu_time();
    let outcome = executor.run(&plan, "rolling-haproxy").await;
    let cpu = cpu_time().saturating_sub(cpu_before);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = load.stop().await;
    print_events("rolling", &sink);
    eprintln!("load: {}", summary(&samples));

    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok).collect();
    assert!(failed.is_empty(), "failed requests: {}", summary(&samples));
    assert_eq!(samples.iter().filter(|s| s.long).count(), 20, "two long requests per server");
    // The bar: at least 50,000 requests through the deploy, none failed.
    assert!(workers == 0 || samples.len() >= 50_000, "too little load to mean anything: {}", samples.len());
    assert_no_traffic_to_stopped_hosts(&samples, &update_marks, "blue");

    // Every server runs v2, serves, and answers v2 itself.
    let list = hosts.list().await.expect("list");
    assert!(list.iter().all(|t| t.version.as_str() == "v2"), "{list:?}");
    let members = router.members(&"blue".into()).await.expect("members");
    assert_eq!(members.len(), 10);
    assert!(members.iter().all(|m| m.state == MemberState::Serving), "{members:?}");
    for target in &targets {
        let answer = client().get(format!("http://{}/", target.address)).send().await.expect("direct request");
        assert_eq!(answer.headers()["x-version"], "v2", "{}", target.id);
    }
    assert_eq!(router.split().await.expect("split"), Split::new([("blue", 100), ("green", 0)]).unwrap());

    // The log shows, per server: drained with the observed sessions, updated, healthy, re-enabled.
    let events = sink.events();
    for target in &targets {
        let id = &target.id;
        let at = |f: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| f(&e.kind));
        let drained = at(
            &|k| matches!(k, EventKind::TargetsDrained { targets, in_flight_at_start: Some(n), in_flight_at_end: Some(0), timed_out: false, .. } if targets.contains(id) && *n >= 2),
        );
        let updated = at(&|k| matches!(k, EventKind::TargetUpdated { target, .. } if target == id));
        let healthy = at(&|k| matches!(k, EventKind::TargetHealthy { target, .. } if target == id));
        let enabled = events
            .iter()
            .rposition(|e| matches!(&e.kind, EventKind::TargetsRegistered { targets, .. } if targets.contains(id)));
        match (drained, updated, healthy, enabled) {
            (Some(d), Some(u), Some(h), Some(r)) => assert!(d < u && u < h && h < r, "{id}: out of order"),
            other => panic!("{id}: missing drain with sessions / update / healthy / re-enable: {other:?}"),
        }
    }

    overhead_report(&plan, &outcome, &pinned.marks(), &update_marks, &samples, &events);
    eprintln!(
        "CPU time of this test process during the deploy: {cpu:.3?} ({} load workers in the same process)",
        workers
    );
    local.shutdown().await;
}

/// Orchestration overhead: the deploy's wall time against its critical path, i.e. what the
/// deployer adds to the waits it cannot avoid. Per target, the unavoidable part is: its
/// drain (until the last request in flight on it when draining began had finished) and its
/// update (the updater's own run, which returns once the server listens: it answers its first
/// probe at once). A batch's critical path is its slowest target; the deploy's is the sum over
/// batches plus one stability window (`HealthPolicy::fastest_pass`: the passes and
/// `min_healthy_time` of the last batch, which a deployer that catches a death inside the
/// window must watch before it says "succeeded"). The time the test spends putting long
/// requests in flight before each drain is set-up and is taken out.
fn overhead_report(
    plan: &bluegreen_core::Plan,
    outcome: &bluegreen_core::Outcome,
    marks: &Marks,
    updates: &UpdateMarks,
    samples: &[Sample],
    events: &[Event],
) {
    let updates = updates.lock().expect("marks");
    let mut critical = Duration::ZERO;
    let mut setup = Duration::ZERO;
    let mut rows = Vec::new();
    for step in &plan.steps {
        let Step::UpdateBatch { batch, targets, .. } = step else { continue };
        let mut slowest = Duration::ZERO;
        let mut batch_setup = Duration::ZERO;
        for id in targets {
            let (began, _) = &marks.drains[id];
            let server = format!("blue.{id}");
            let last_end = samples
                .iter()
                .filter(|s| s.server.as_deref() == Some(&server) && s.start < *began)
                .map(|s| s.end)
                .max()
                .unwrap_or(*began);
            let drain = last_end.saturating_duration_since(*began);
            let (start, _, end) = updates[id];
            let update = end - start;
            let gate = events
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::TargetHealthy { target, after } if target == id => Some(*after),
                    _ => None,
                })
                .unwrap_or_default();
            let path = drain + update;
            rows.push(format!(
                "  batch {batch} {id}: drain {drain:.3?} + update {update:.3?} = {path:.3?} (its gate passed after {gate:.3?})"
            ));
            slowest = slowest.max(path);
            batch_setup = batch_setup.max(marks.setup[id]);
        }
        critical += slowest;
        setup += batch_setup;
    }
    let window = plan.spec.health.fastest_pass();
    critical += window;
    rows.push(format!("  the last batch's stability window: {window:.3?}"));
    let wall = outcome.elapsed.saturating_sub(setup);
    let overhead = wall.saturating_sub(critical);
    eprintln!("---- overhead (10 servers, 2 at a time, drain ~2 s, update ~1 s)");
    for row in rows {
        eprintln!("{row}");
    }
    eprintln!(
        "wall {wall:.3?} (deploy {:.3?} minus {setup:.3?} test set-up), critical path {critical:.3?}, \
         overhead {overhead:.3?} = {:.2}%, wall / critical path = {:.3}",
        outcome.elapsed,
        overhead.as_secs_f64() / wall.as_secs_f64() * 100.0,
        wall.as_secs_f64() / critical.as_secs_f64()
    );
}

/// Blue-green between two pools of one backend under load: the green servers are added at
/// runtime (`add server`), traffic switches, the blue servers (declared in haproxy.cfg) are
/// drained and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_between_two_pools_under_load_drops_nothing() {
    let Some(binary) = require_haproxy("blue_green_between_two_pools_under_load_drops_nothing") else { return };
    let (fleet, blue) = local_fleet("web", 4).await;
    let haproxy = Haproxy::start(&binary, &declared("blue", &blue, 1), "").await;
    let router = Arc::new(haproxy.router());
    let sink = MemorySink::new();
    let executor = Executor::builder(router.clone(), Arc::new(fleet.clone()), probe()).sink(sink.clone()).build();
    let load = Load::start(&haproxy.url(), 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spec = spec("v2", Strategy::BlueGreen(BlueGreen { bake: Duration::from_millis(500), ..BlueGreen::default() }));
    let outcome = executor.deploy(&spec).await.expect("deploy");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let samples = load.stop().await;
    print_events("blue-green", &sink);
    eprintln!("load: {}", summary(&samples));

    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert!(samples.iter().all(|s| s.ok), "failed requests: {}", summary(&samples));
    assert_eq!(router.split().await.expect("split"), Split::new([("blue", 0), ("green", 100)]).unwrap());
    assert!(router.members(&"blue".into()).await.expect("members").is_empty(), "blue servers are deleted");
    let green = router.members(&"green".into()).await.expect("members");
    assert_eq!(green.len(), 4);
    let last = samples.iter().max_by_key(|s| s.start).expect("samples");
    assert_eq!(last.version.as_deref(), Some("v2"));
    assert!(last.server.as_deref().is_some_and(|s| s.starts_with("green.")), "{last:?}");
    fleet.shutdown().await;
}

/// A 3-step canary (10 %, 50 %, 100 %): while the 10 % step bakes, the traffic HAProxy sends to
/// the new version is about 10 %, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weights_split_real_traffic() {
    let Some(binary) = require_haproxy("canary_weights_split_real_traffic") else { return };
    let (fleet, blue) = local_fleet("web", 3).await;
    let haproxy = Haproxy::start(&binary, &declared("blue", &blue, 1), "").await;
    let router = Arc::new(haproxy.router());
    let sink = MemorySink::new();
    let executor = Executor::builder(router.clone(), Arc::new(fleet.clone()), probe()).sink(sink.clone()).build();
    let load = Load::start(&haproxy.url(), 4);
    let bake = Duration::from_millis(1500);
    let steps =
        [10, 50, 100].map(|percent| ShiftStep { percent, bake: if percent < 100 { bake } else { Duration::ZERO } });
    let spec = spec("v2", Strategy::Canary(Canary { steps: steps.to_vec(), ..Canary::default() })).with_replicas(2);
    let outcome = executor.deploy(&spec).await.expect("deploy");
    let samples = load.stop().await;
    print_events("canary", &sink);
    eprintln!("load: {}", summary(&samples));
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert!(samples.iter().all(|s| s.ok), "failed requests: {}", summary(&samples));

    // The 10 % bake: from the shift to 10 % until the shift to 50 %.
    let events = sink.events();
    let shifts: Vec<Duration> =
        events.iter().filter(|e| matches!(e.kind, EventKind::TrafficShifted { .. })).map(|e| e.at).collect();
    assert_eq!(shifts.len(), 3, "{:?}", kinds(&events));
    // Requests of the middle 80 % of the bake; it begins when v2 first answers.
    let window: Vec<&Sample> = {
        let v2_first = samples.iter().filter(|s| s.version.as_deref() == Some("v2")).map(|s| s.start).min().unwrap();
        let from = v2_first + bake / 10;
        let to = v2_first + bake * 9 / 10;
        samples.iter().filter(|s| s.start >= from && s.end <= to).collect()
    };
    let on_v2 = window.iter().filter(|s| s.version.as_deref() == Some("v2")).count();
    let share = on_v2 as f64 / window.len().max(1) as f64 * 100.0;
    eprintln!("during the 10% bake: {on_v2} of {} requests on v2 ({share:.1}%)", window.len());
    assert!(window.len() > 200, "too few requests in the bake window: {}", window.len());
    assert!((7.0..=13.0).contains(&share), "the 10% step sent {share:.1}% to v2");
    fleet.shutdown().await;
}

/// A canary (10 %, 50 %, 100 %) of a version whose servers fail their health check
/// (`--fail-health`), under load through HAProxy: the new servers never pass the gate, the
/// deploy rolls back before any traffic moves, no request fails or reaches v2, blue serves
/// 100 % again, and no green server is left in HAProxy (the executor gates new targets before
/// registering them; one registered and weighted before its gate would answer `x-version: v2`).
/// A watcher reads the split back through the router all along, so a shift to green is caught
/// even if HAProxy's own checks kept the requests away from the failing servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_whose_new_servers_fail_health_rolls_back_without_a_failed_request() {
    let Some(binary) = require_haproxy("canary_whose_new_servers_fail_health_rolls_back_without_a_failed_request")
    else {
        return;
    };
    let (fleet, blue) = local_fleet("web", 3).await;
    // The servers the executor starts for v2 answer `GET /` but fail `/healthz`.
    fleet.set_version_args("v2", ["--fail-health"]);
    let haproxy = Haproxy::start(&binary, &declared("blue", &blue, 1), "").await;
    let router = Arc::new(haproxy.router());
    let sink = MemorySink::new();
    let executor = Executor::builder(router.clone(), Arc::new(fleet.clone()), probe()).sink(sink.clone()).build();
    let load = Load::start(&haproxy.url(), 4);
    // The highest weight green had in any split read back while the deploy ran.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = tokio::spawn({
        let (router, watching) = (router.clone(), watching.clone());
        async move {
            let (mut reads, mut green_max) = (0usize, 0u32);
            while watching.load(Ordering::Relaxed) {
                if let Ok(split) = router.split().await {
                    reads += 1;
                    green_max = green_max.max(split.weight(&"green".into()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (reads, green_max)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bake = Duration::from_millis(500);
    let steps =
        [10, 50, 100].map(|percent| ShiftStep { percent, bake: if percent < 100 { bake } else { Duration::ZERO } });
    let spec = spec("v2", Strategy::Canary(Canary { steps: steps.to_vec(), ..Canary::default() }))
        .with_replicas(2)
        .with_health(HealthPolicy { deadline: Duration::from_secs(3), ..health() });
    let outcome = executor.deploy(&spec).await.expect("deploy");
    tokio::time::sleep(Duration::from_millis(200)).await;
    watching.store(false, Ordering::Relaxed);
    let (reads, green_max) = watcher.await.expect("watcher");
    let samples = load.stop().await;
    print_events("canary failing health", &sink);
    eprintln!("load: {}", summary(&samples));
    eprintln!("split read back {reads} times during the deploy, green's highest weight {green_max}");

    assert_eq!(outcome.status, Status::RolledBack, "{outcome:?}");
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("not healthy within"), "rolled back for another reason than the health gate: {reason}");
    let events = sink.events();
    // The health gate stopped it: the new targets were started and found unhealthy, and no
    // split was ever written or read back with traffic on green.
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::TargetUnhealthy { .. })),
        "no target failed its gate: {:?}",
        kinds(&events)
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TrafficShifted { to, .. } if to.weight(&"green".into()) > 0)),
        "traffic was shifted to green: {:?}",
        kinds(&events)
    );
    assert!(reads > 10, "the split was read back only {reads} times");
    assert_eq!(green_max, 0, "HAProxy gave green a share of the traffic during the deploy");
    // Under load: nothing failed, and no answer came from v2.
    assert!(samples.len() > 500, "too little load to mean anything: {}", summary(&samples));
    assert!(samples.iter().all(|s| s.ok), "failed requests: {}", summary(&samples));
    let on_v2: Vec<&Sample> = samples.iter().filter(|s| s.version.as_deref() != Some("v1")).collect();
    assert!(on_v2.is_empty(), "answers not from v1: {:?}", &on_v2[..on_v2.len().min(5)]);
    assert!(
        samples.iter().all(|s| s.server.as_deref().is_some_and(|s| s.starts_with("blue."))),
        "{}",
        summary(&samples)
    );

    // Afterwards: blue serves 100 %, read back through the router; green has no server left in
    // HAProxy, and v2's processes are stopped.
    assert_eq!(router.split().await.expect("split"), Split::new([("blue", 100), ("green", 0)]).unwrap());
    let members = router.members(&"blue".into()).await.expect("members");
    assert!(members.len() == 3 && members.iter().all(|m| m.state == MemberState::Serving), "{members:?}");
    assert!(router.members(&"green".into()).await.expect("members").is_empty(), "green servers are deleted");
    let servers = router.raw_command("show servers state web").await.expect("show servers state");
    assert!(!servers.contains("green."), "a green server is still in HAProxy:\n{servers}");
    let list = fleet.list().await.expect("list");
    assert!(list.len() == 3 && list.iter().all(|t| t.version.as_str() == "v1"), "{list:?}");
    let last = samples.iter().max_by_key(|s| s.start).expect("samples");
    assert_eq!(last.version.as_deref(), Some("v1"));
    fleet.shutdown().await;
}

/// The updater fails on the third batch (before touching its host): the deploy stops, the two
/// batches already updated are updated back, the failed host is re-enabled on its old version,
/// nothing fails, and the host's output is in the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updater_failing_on_the_third_batch_rolls_back() {
    let Some(binary) = require_haproxy("updater_failing_on_the_third_batch_rolls_back") else { return };
    let (local, targets) = local_fleet("web", 10).await;
    let haproxy = Haproxy::start(&binary, &declared("blue", &targets, 1), "").await;
    let update_marks: UpdateMarks = Arc::default();
    // Batches run their two updates concurrently: v2 updates 5 and 6 are the third batch.
    let updater = restart_updater(&local, Duration::from_millis(200), update_marks.clone(), |_, n| n == 5);
    let hosts = Arc::new(HostFleet::new(targets.clone(), updater).expect("inventory"));
    let router = Arc::new(haproxy.router());
    let sink = MemorySink::new();
    let executor = Executor::builder(router.clone(), hosts.clone(), probe()).sink(sink.clone()).build();
    let load = Load::start(&haproxy.url(), 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = executor.deploy(&spec("v2", Strategy::Rolling(Rolling::in_place(2)))).await.expect("deploy");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let samples = load.stop().await;
    print_events("failing updater", &sink);
    eprintln!("load: {}", summary(&samples));

    assert_eq!(outcome.status, Status::RolledBack, "{outcome:?}");
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("checksum mismatch") && reason.contains("deploy.sh: aborted"), "{reason}");
    let events = sink.events();
    let rollback = events.iter().find_map(|e| match &e.kind {
        EventKind::RollbackStarted { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(rollback.is_some_and(|r| r.contains("checksum mismatch")), "the host's output is in the event log");
    // Only two batches were updated before the failure: batches 4 and 5 never started.
    let updated_to_v2 =
        events.iter().filter(|e| matches!(&e.kind, EventKind::TargetUpdated { to, .. } if to.as_str() == "v2")).count();
    assert!((4..=5).contains(&updated_to_v2), "{updated_to_v2} targets updated to v2");
    assert!(samples.iter().all(|s| s.ok), "failed requests: {}", summary(&samples));
    assert_no_traffic_to_stopped_hosts(&samples, &update_marks, "blue");
    let list = hosts.list().await.expect("list");
    assert!(list.iter().all(|t| t.version.as_str() == "v1"), "{list:?}");
    let members = router.members(&"blue".into()).await.expect("members");
    assert!(members.len() == 10 && members.iter().all(|m| m.state == MemberState::Serving), "{members:?}");
    for target in &targets {
        let answer = client().get(format!("http://{}/", target.address)).send().await.expect("direct request");
        assert_eq!(answer.headers()["x-version"], "v1", "{}", target.id);
    }
    local.shutdown().await;
}

/// What a backend looks like, to prove that refused calls wrote nothing.
async fn state_of(router: &HaproxyRouter) -> (Split, Vec<Member>, Vec<Member>) {
    let split = router.split().await.expect("split");
    let blue = router.members(&"blue".into()).await.expect("members");
    let green = router.members(&"green".into()).await.expect("members");
    (split, blue, green)
}

/// Unknown backend, pool, server; an unreachable socket; a socket without admin level; an
/// answer that is an error: typed errors, and the backend is as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_typed_errors_and_no_write() {
    let Some(binary) = require_haproxy("bad_input_is_refused_with_typed_errors_and_no_write") else { return };
    let (fleet, targets) = local_fleet("web", 3).await;
    let extra = format!(
        "backend fixed\n    balance static-rr\n    server blue.s1 {} weight 1\n    server green.s2 {} weight 1\n",
        targets[0].address, targets[1].address
    );
    let haproxy = Haproxy::start(&binary, &declared("blue", &targets[..2], 1), &extra).await;
    let router = haproxy.router();
    let (blue, green) = (PoolName::from("blue"), PoolName::from("green"));
    let before = state_of(&router).await;
    let all_green = Split::all_to(&green);
    let two = &targets[..2];
    let ids: Vec<TargetId> = two.iter().map(|t| t.id.clone()).collect();

    // Unknown backend: NotFound from every call, nothing written.
    let nowhere = HaproxyRouter::builder(HaproxyEndpoint::unix(haproxy.socket()), "no-such-backend").build().unwrap();
    let not_found = |r: bluegreen_core::Result<()>, what: &str| match r {
        Err(Error::NotFound { what: w }) => assert!(w.contains("no-such-backend"), "{what}: {w}"),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    };
    not_found(nowhere.pools().await.map(|_| ()), "pools");
    not_found(nowhere.split().await.map(|_| ()), "split");
    not_found(nowhere.set_split(&Split::all_to(&blue)).await, "set_split");
    not_found(nowhere.add_targets(&blue, two).await, "add_targets");
    not_found(nowhere.drain(&blue, &ids, Duration::from_secs(1)).await.map(|_| ()), "drain");
    not_found(nowhere.remove_targets(&blue, &ids).await, "remove_targets");
    not_found(nowhere.members(&blue).await.map(|_| ()), "members");

    // Unknown pool, a target that is not a member: NotFound, nothing written.
    let err = router.set_split(&Split::all_to(&"red".into())).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { what } if what.contains("red")), "{err}");
    let err = router.add_targets(&"red".into(), two).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let mut mixed = ids.clone();
    mixed.push("web-99".into());
    let err = router.drain(&blue, &mixed, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { what } if what.contains("web-99")), "{err}");
    // HAProxy's own "No such server." is a typed NotFound naming the server.
    let err = router.raw_command("set server web/blue.web-99 state ready").await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { what } if what.contains("web/blue.web-99")), "{err}");
    // A split to a pool without a ready server is a conflict, refused before any write.
    let err = router.set_split(&all_green).await.unwrap_err();
    assert!(matches!(&err, Error::Drift { what } if what.contains("pool green has no ready server")), "{err}");
    // Target ids HAProxy cannot take, addresses that are not ip:port: Invalid.
    let mut odd = targets[2].clone();
    odd.id = "web 3".into();
    assert!(matches!(router.add_targets(&green, &[odd]).await, Err(Error::Invalid { .. })));
    let mut named = targets[2].clone();
    named.address = "web-3.internal:8080".into();
    let err = router.add_targets(&green, &[named]).await.unwrap_err();
    assert_eq!(err.field(), Some("targets[0].address"), "{err}");
    assert_eq!(state_of(&router).await, before, "a refused call changed the backend");

    // Unreachable sockets: Backend errors; a missing path is not retryable, a closed port is.
    let missing = HaproxyRouter::builder(HaproxyEndpoint::unix(haproxy.dir.join("nope.sock")), "web").build().unwrap();
    let err = missing.set_split(&Split::all_to(&blue)).await.unwrap_err();
    assert!(matches!(err, Error::Backend { retryable: false, .. }), "{err}");
    assert!(err.to_string().contains("nope.sock"), "{err}");
    let closed = format!("127.0.0.1:{}", free_port()).parse::<SocketAddr>().unwrap();
    let refused = HaproxyRouter::builder(HaproxyEndpoint::tcp(closed), "web").build().unwrap();
    let err = refused.drain(&blue, &ids, Duration::from_secs(1)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    // A socket at level user: permission denied on the first write, which is refused whole.
    let user = HaproxyRouter::builder(HaproxyEndpoint::unix(haproxy.dir.join("user.sock")), "web").build().unwrap();
    assert_eq!(user.split().await.expect("reading is allowed at level user"), before.0);
    let err = user.set_split(&Split::all_to(&blue)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { retryable: false, message, .. } if message.contains("level admin")),
        "{err}"
    );
    let err = user.drain(&blue, &ids[..1], Duration::from_secs(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { retryable: false, message, .. } if message.contains("level admin")),
        "{err}"
    );
    assert_eq!(state_of(&router).await, before, "a refused call changed the backend");

    // HAProxy answering with an error: a static algorithm takes no weight but 0 and 100 %.
    let fixed = HaproxyRouter::builder(HaproxyEndpoint::unix(haproxy.socket()), "fixed").build().unwrap();
    let err = fixed.set_split(&Split::between(&blue, &green, 50)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { retryable: false, message, .. } if message.contains("static")),
        "the error names HAProxy's answer: {err}"
    );
    fleet.shutdown().await;
}
