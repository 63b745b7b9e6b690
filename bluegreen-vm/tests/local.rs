//! The local backends for real: `LocalProxyRouter` and `LocalProcessFleet` run core's
//! conformance suite, then drive whole deployments of real `bluegreen-target` processes
//! through the proxy under continuous load (loopback only), and count every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bluegreen_core::conformance::{fleet_suite, router_suite, FleetFixture, RouterFixture};
use bluegreen_core::{
    Canary, DrainPolicy, Event, EventKind, Executor, ExecutorBuilder, Fleet, HealthPolicy, HttpProbe, HttpSuccessRate,
    MemorySink, Outcome, PoolName, Rolling, Router, ShiftStep, Spec, Split, Status, Strategy, Target, TargetId,
};
use bluegreen_vm::{LoadGenerator, LoadReport, LocalProcessFleet, LocalProcessFleetBuilder, LocalProxyRouter};

const TARGET_BIN: &str = env!("CARGO_BIN_EXE_bluegreen-target");

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

fn fleet_builder() -> LocalProcessFleetBuilder {
    LocalProcessFleet::builder().binary(TARGET_BIN).zones(["zone-a", "zone-b"])
}

/// Short health policy: 2 passes 150 ms apart, no minimum healthy time.
fn health(deadline: Duration) -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(150),
        timeout: Duration::from_millis(150),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline,
    }
}

fn spec(version: &str, strategy: Strategy) -> Spec {
    Spec::new("web", version, strategy)
        .with_health(health(Duration::from_secs(10)))
        .with_drain(DrainPolicy { timeout: Duration::from_secs(10) })
}

/// A proxy with pools blue (all traffic) and green, and `count` targets of v1 serving in blue.
struct World {
    proxy: LocalProxyRouter,
    fleet: LocalProcessFleet,
    sink: MemorySink,
}

impl World {
    async fn new(count: usize, fleet: LocalProcessFleetBuilder) -> Self {
        let proxy = LocalProxyRouter::builder().pool("blue").pool("green").build().await.expect("proxy");
        let (fleet, initial) = fleet.start("v1", count).await.expect("initial targets");
        proxy.add_targets(&blue(), &initial).await.expect("register initial targets");
        Self { proxy, fleet, sink: MemorySink::new() }
    }

    fn executor(&self, configure: impl FnOnce(ExecutorBuilder) -> ExecutorBuilder) -> Executor {
        let probe = HttpProbe::builder("/healthz").timeout(Duration::from_secs(1)).build().expect("probe");
        let builder = Executor::builder(Arc::new(self.proxy.clone()), Arc::new(self.fleet.clone()), Arc::new(probe))
            .sink(self.sink.clone());
        configure(builder).build()
    }

    /// Steady load through the proxy: `rate` requests/s, 8% of them long (300 ms – 2 s).
    fn load(&self, rate: f64) -> LoadGenerator {
        LoadGenerator::builder(self.proxy.url())
            .rate(rate)
            .concurrency(96)
            .long_requests(0.08, Duration::from_millis(300)..=Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .max_duration(Duration::from_secs(60))
            .start()
            .expect("load generator")
    }

    async fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> =
            self.fleet.list().await.expect("list").into_iter().map(|t| t.version.to_string()).collect();
        versions.sort();
        versions
    }

    fn print(&self, name: &str, outcome: &Outcome, report: &LoadReport, took: Duration) {
        println!("== {name}: {} in {:.1}s (reason: {:?})", outcome.status, took.as_secs_f64(), outcome.reason);
        for event in self.sink.events() {
            println!("  {event}");
        }
        println!("  load: {report}");
        println!("  proxy: {:?}", self.proxy.stats().total);
    }
}

/// Lets the load run a little with the final state, then stops it.
async fn finish(load: LoadGenerator) -> LoadReport {
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.stop().await
}

fn position(events: &[Event], from: usize, matches: impl Fn(&EventKind) -> bool) -> Option<usize> {
    events.iter().skip(from).position(|e| matches(&e.kind)).map(|i| i + from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_proxy_conforms() {
    let proxy = LocalProxyRouter::builder().pool("blue").pool("green").build().await.unwrap();
    // Addresses need not answer: the suite sends no request.
    let targets = (1..=2)
        .map(|i| Target {
            id: format!("conformance-{i}").into(),
            address: format!("127.0.0.1:{}", 9 + i),
            zone: None,
            version: "v1".into(),
            tag: None,
        })
        .collect();
    router_suite(&proxy, &RouterFixture { pools: [blue(), green()], targets }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_process_fleet_conforms() {
    let fleet = fleet_builder().build().unwrap();
    let fixture = FleetFixture { version: "v1".into(), other_version: "v2".into(), tag: "conformance".into() };
    fleet_suite(&fleet, &fixture).await;
    assert!(fleet.list().await.unwrap().is_empty(), "the suite retires what it starts");
}

/// The seed's job: 10 servers, 2 at a time, in place, under continuous load with long
/// requests in flight when targets are drained. Nothing may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_ten_targets_two_at_a_time_under_load_drops_nothing() {
    let world = World::new(10, fleet_builder()).await;
    let executor = world.executor(|b| b);
    let load = world.load(400.0);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let outcome = executor.deploy(&spec("v2", Strategy::Rolling(Rolling::in_place(2)))).await.unwrap();
    let took = started.elapsed();
    let report = finish(load).await;
    world.print("rolling 10 × 2 in place", &outcome, &report, took);

    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert_eq!(world.versions().await, vec!["v2"; 10], "every target runs v2");
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.sent > 1500, "too little load to mean anything: {report}");
    assert!(report.long_sent > 50, "{report}");
    assert!(report.served_by_version.contains_key("v1") && report.served_by_version.contains_key("v2"), "{report}");
    let stats = world.proxy.stats();
    assert_eq!((stats.total.failed, stats.total.cancelled, stats.total.in_flight), (0, 0, 0), "{stats:?}");
    assert!(stats.pools[&blue()].members.values().all(|m| m.state == bluegreen_core::MemberState::Serving));

    // Per target: drained (in-flight observed, done before the timeout) → updated → healthy
    // → re-enabled, in that order.
    let events = world.sink.events();
    let mut observed_in_flight = 0;
    for target in world.fleet.list().await.unwrap() {
        let id = &target.id;
        let one = |ids: &[TargetId]| ids == std::slice::from_ref(id);
        let drained = position(&events, 0, |k| matches!(k, EventKind::TargetsDrained { targets, .. } if one(targets)))
            .unwrap_or_else(|| panic!("{id} was not drained on its own"));
        let EventKind::TargetsDrained { in_flight_at_start, in_flight_at_end, timed_out, .. } = &events[drained].kind
        else {
            unreachable!()
        };
        assert_eq!((*in_flight_at_end, *timed_out), (Some(0), false), "{id}: drain cut short");
        let at_start = in_flight_at_start.expect("the proxy counts in-flight requests");
        if at_start > 0 {
            observed_in_flight += 1;
        }
        let updated =
            position(&events, drained, |k| matches!(k, EventKind::TargetUpdated { target, .. } if target == id))
                .unwrap_or_else(|| panic!("{id} not updated after its drain"));
        let healthy =
            position(&events, updated, |k| matches!(k, EventKind::TargetHealthy { target, .. } if target == id))
                .unwrap_or_else(|| panic!("{id} not healthy after its update"));
        position(&events, healthy, |k| matches!(k, EventKind::TargetsRegistered { targets, .. } if one(targets)))
            .unwrap_or_else(|| panic!("{id} not re-enabled after it was healthy"));
    }
    assert!(observed_in_flight >= 5, "only {observed_in_flight} of 10 drains saw requests in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_under_load_drops_nothing() {
    let world = World::new(4, fleet_builder()).await;
    let executor = world.executor(|b| b);
    let load = world.load(150.0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let outcome = executor.deploy(&spec("v2", Strategy::BlueGreen(Default::default()))).await.unwrap();
    let took = started.elapsed();
    let report = finish(load).await;
    world.print("blue-green", &outcome, &report, took);

    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert!(world.proxy.split().await.unwrap().same_traffic(&Split::all_to(&green())));
    assert_eq!(world.versions().await, vec!["v2"; 4], "blue's targets are retired");
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.served_by_version.contains_key("v1") && report.served_by_version.contains_key("v2"), "{report}");
    assert_eq!(world.proxy.stats().total.failed, 0);
    assert!(world.proxy.members(&blue()).await.unwrap().is_empty(), "blue is empty after the switch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_step_canary_under_load_drops_nothing() {
    let world = World::new(3, fleet_builder()).await;
    let executor = world.executor(|b| b);
    let load = world.load(150.0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let bake = Duration::from_millis(800);
    let steps = vec![
        ShiftStep { percent: 10, bake },
        ShiftStep { percent: 50, bake },
        ShiftStep { percent: 100, bake: Duration::ZERO },
    ];
    let canary = Canary { steps, ..Canary::default() };
    let started = Instant::now();
    let outcome = executor.deploy(&spec("v2", Strategy::Canary(canary))).await.unwrap();
    let took = started.elapsed();
    let report = finish(load).await;
    world.print("3-step canary", &outcome, &report, took);

    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    let shifts: Vec<u32> = world
        .sink
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TrafficShifted { to, .. } => Some(to.weight(&green())),
            _ => None,
        })
        .collect();
    assert_eq!(shifts, [10, 50, 100], "the canary's steps, read back from the proxy");
    assert_eq!(world.versions().await, vec!["v2"; 3]);
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(world.proxy.stats().total.failed, 0);
}

/// The new version never passes its health check: the canary stops before any traffic
/// moves, the new targets are stopped, and no request fails or reaches v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_of_a_version_failing_health_rolls_back_without_traffic() {
    let world = World::new(3, fleet_builder().version_args("v2", ["--fail-health"])).await;
    let executor = world.executor(|b| b);
    let load = world.load(150.0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let canary = Canary { steps: vec![ShiftStep { percent: 10, bake: Duration::from_secs(1) }], ..Canary::default() };
    let spec = spec("v2", Strategy::Canary(canary)).with_health(health(Duration::from_secs(2)));
    let started = Instant::now();
    let outcome = executor.deploy(&spec).await.unwrap();
    let took = started.elapsed();
    let report = finish(load).await;
    world.print("canary failing health", &outcome, &report, took);

    assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
    assert!(outcome.split.same_traffic(&Split::all_to(&blue())), "{}", outcome.split);
    assert_eq!(world.versions().await, vec!["v1"; 3], "v2's targets are stopped");
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.served_by_version.keys().collect::<Vec<_>>(), ["v1"], "traffic reached v2: {report}");
    let stats = world.proxy.stats();
    assert_eq!(stats.total.failed, 0);
    assert_eq!(stats.pools[&green()].counts.served, 0, "green served requests: {stats:?}");
    assert!(
        !world.sink.events().iter().any(|e| matches!(e.kind, EventKind::TrafficShifted { .. })),
        "traffic was shifted"
    );
}

/// The new version fails half its requests: the HTTP success-rate analysis through the
/// proxy catches it during the first bake, and the deploy rolls back. Only v2 answered with
/// errors; no request was lost by the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_errors_is_caught_by_the_success_rate_and_rolled_back() {
    let world = World::new(3, fleet_builder().version_args("v2", ["--error-rate", "0.5"])).await;
    let analysis = HttpSuccessRate::new(format!("{}/", world.proxy.url()), 97.0, Duration::from_secs(10))
        .with_requests_per_check(10)
        .with_min_requests(40);
    let executor = world.executor(|b| b.analysis(analysis));
    let load = world.load(100.0);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let canary = Canary {
        steps: vec![
            ShiftStep { percent: 20, bake: Duration::from_secs(5) },
            ShiftStep { percent: 100, bake: Duration::ZERO },
        ],
        ..Canary::default()
    };
    let started = Instant::now();
    let outcome = executor.deploy(&spec("v2", Strategy::Canary(canary))).await.unwrap();
    let took = started.elapsed();
    let report = finish(load).await;
    world.print("canary with errors", &outcome, &report, took);

    assert_eq!(outcome.status, Status::RolledBack, "{:?}", outcome.reason);
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains("success rate"), "rolled back for another reason: {reason}");
    assert!(took < Duration::from_secs(5) + Duration::from_secs(3), "the bake was not cut short: {took:?}");
    assert!(outcome.split.same_traffic(&Split::all_to(&blue())), "{}", outcome.split);
    assert_eq!(world.versions().await, vec!["v1"; 3]);
    // The generator saw v2's errors and nothing else.
    assert!(report.failed > 0, "the load never met v2: {report}");
    assert_eq!(report.failed_by_version.keys().collect::<Vec<_>>(), ["v2"], "{report}");
    assert_eq!(report.failures.keys().collect::<Vec<_>>(), ["status 500"], "{report}");
    let stats = world.proxy.stats();
    assert_eq!(stats.total.failed, 0, "the proxy itself lost requests: {stats:?}");
    assert!(stats.pools[&green()].counts.server_errors > 0);
}
