//! The router layers (`bluegreen_core::layers`): what each adds, asserted on the simulator's
//! router, and the conformance suite through each with nothing configured.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::conformance::{router_suite, RouterFixture};
use bluegreen_core::layers::{FaultyRouter, RateLimitedRouter, RecordingRouter, Request, Response, RouterOp};
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, Capabilities, Error, EventKind, Executor, PoolName, ProvisionRequest, Rolling, Router, Spec, Split,
    Status, Strategy, Target,
};
use support::*;

fn blue() -> PoolName {
    "blue".into()
}

fn green() -> PoolName {
    "green".into()
}

async fn provision(sim: &Sim, count: usize) -> Vec<Target> {
    let request = ProvisionRequest { version: "v1".into(), count, zones: vec![], tag: "layers".into() };
    sim.fleet().provision(&request).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_conformance_suite_passes_through_every_layer() {
    type Wrap = fn(Arc<dyn Router>) -> Arc<dyn Router>;
    let layers: [(&str, Wrap); 4] = [
        ("recording", |r| Arc::new(RecordingRouter::new(r))),
        ("faulty", |r| Arc::new(FaultyRouter::new(r))),
        ("rate-limited", |r| Arc::new(RateLimitedRouter::new(r, 5, Duration::from_secs(1)))),
        ("all three", |r| {
            let limited = Arc::new(RateLimitedRouter::new(r, 5, Duration::from_secs(1)).writes_only());
            Arc::new(RecordingRouter::new(Arc::new(FaultyRouter::new(limited))))
        }),
    ];
    for (name, wrap) in layers {
        let sim = Sim::builder().pool("blue", 0, "v1").pool("green", 0, "v1").build();
        let targets = provision(&sim, 2).await;
        let router = wrap(sim.router());
        assert_eq!(router.name(), "sim", "{name}: the inner router's name");
        assert_eq!(router.capabilities(), sim.router().capabilities(), "{name}");
        router_suite(router.as_ref(), &RouterFixture { pools: [blue(), green()], targets }).await;
    }
}

#[tokio::test(start_paused = true)]
async fn recording_keeps_every_call_in_order_with_its_answer_time_and_cost() {
    let sim = Sim::builder().pool("blue", 0, "v1").pool("green", 0, "v1").build();
    let targets = provision(&sim, 1).await;
    let counted = sim.clone();
    let router = RecordingRouter::new(sim.router()).with_counter(move || counted.writes());
    let recorder = router.recorder();
    let start = tokio::time::Instant::now();

    router.add_targets(&blue(), &targets).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let split = Split::all_to(&blue());
    router.set_split(&split).await.unwrap();
    let error = router.members(&"red".into()).await.unwrap_err();
    router.drain(&blue(), &[targets[0].id.clone()], Duration::from_secs(5)).await.unwrap();

    let calls = recorder.calls();
    let ops: Vec<RouterOp> = calls.iter().map(|c| c.op()).collect();
    assert_eq!(ops, [RouterOp::AddTargets, RouterOp::SetSplit, RouterOp::Members, RouterOp::Drain]);
    assert_eq!(
        calls[0].request,
        Request {
            op: RouterOp::AddTargets,
            pool: Some(blue()),
            targets: vec![targets[0].id.clone()],
            split: None,
            timeout: None
        }
    );
    assert_eq!(calls[0].result, Ok(Response::Done));
    assert_eq!(calls[0].started, start);
    assert_eq!(calls[1].request.split, Some(split));
    assert_eq!(calls[1].started, start + Duration::from_secs(1));
    assert_eq!(calls[2].request.pool, Some("red".into()));
    assert_eq!(calls[2].result, Err(error.to_string()), "the error, as displayed");
    assert_eq!(calls[3].request.timeout, Some(Duration::from_secs(5)));
    assert!(matches!(&calls[3].result, Ok(Response::Drained(report)) if !report.timed_out), "{:?}", calls[3]);
    let counted: Vec<Option<u64>> = calls.iter().map(|c| c.counted).collect();
    assert_eq!(counted, [Some(1), Some(1), Some(0), Some(1)], "one write each, none for the failed read");

    assert_eq!(recorder.count(RouterOp::SetSplit), 1);
    assert_eq!(recorder.calls_of(RouterOp::Members).len(), 1);
    recorder.clear();
    assert!(recorder.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_fault_fails_exactly_n_calls_then_passes_through() {
    let sim = Sim::builder().pool("blue", 1, "v1").pool("green", 0, "v1").build();
    let router = FaultyRouter::new(sim.router())
        .failing(RouterOp::SetSplit, 2, true)
        .failing(RouterOp::Pools, 1, false)
        .failing_with(RouterOp::Members, 1, || Error::not_found("pool \"blue\""));
    let split = Split::all_to(&green());
    for _ in 0..2 {
        let error = router.set_split(&split).await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert_eq!(error.to_string(), "sim: injected failure of set_split");
    }
    assert_eq!(sim.calls_of(RouterOp::SetSplit), 0, "failed calls do not reach the router");
    router.set_split(&split).await.unwrap();
    assert_eq!(sim.split().weight(&green()), 100);
    assert_eq!(sim.calls_of(RouterOp::SetSplit), 1);

    let error = router.pools().await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(router.pools().await.unwrap(), [blue(), green()]);
    assert!(matches!(router.members(&blue()).await, Err(Error::NotFound { .. })));
    assert_eq!(router.members(&blue()).await.unwrap().len(), 1);
}

/// A retryable fault is retried by the executor; a permanent one fails the step at once.
#[tokio::test(start_paused = true)]
async fn the_executor_retries_injected_transient_faults_only() {
    let spec = quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())));
    for (retryable, expected) in [(true, Status::Succeeded), (false, Status::RolledBack)] {
        let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
        let faulty = FaultyRouter::new(sim.router()).failing(RouterOp::SetSplit, 2, retryable);
        let router = RecordingRouter::new(Arc::new(faulty));
        let recorder = router.recorder();
        let executor = Executor::builder(Arc::new(router), sim.fleet(), sim.probe()).shared_sink(sim.sink()).build();
        let outcome = executor.deploy(&spec).await.unwrap();
        assert_eq!(outcome.status, expected, "{:?}", outcome.reason);
        let switches: Vec<(u32, bool)> = recorder
            .calls_of(RouterOp::SetSplit)
            .iter()
            .map(|c| (c.request.split.as_ref().unwrap().weight(&green()), c.result.is_ok()))
            .collect();
        // Retried: the third attempt switches. Permanent: the switch fails once, and the
        // rollback finds all traffic still on blue.
        let expected_switches: &[(u32, bool)] =
            if retryable { &[(100, false), (100, false), (100, true)] } else { &[(100, false)] };
        assert_eq!(switches, expected_switches);
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    }
}

/// Invariant 7 through the layer: every write the router acknowledges without applying makes
/// the executor's read-back fail, so the deploy does not report success.
#[tokio::test(start_paused = true)]
async fn an_ignored_write_fails_the_read_back_and_the_deploy() {
    let blue_green = Strategy::BlueGreen(BlueGreen::default());
    let rolling = Strategy::Rolling(Rolling::in_place(2));
    for (op, strategy, expected) in [
        (RouterOp::SetSplit, &blue_green, "read-back mismatch on split"),
        (RouterOp::AddTargets, &blue_green, "read-back mismatch on target"),
        (RouterOp::Drain, &rolling, "read-back mismatch"),
    ] {
        let sim = Sim::builder().pool("blue", 4, "v1").pool("green", 0, "v1").build();
        let router = Arc::new(FaultyRouter::new(sim.router()).ignoring(op));
        let (_, log) = executor(&sim);
        let executor = Executor::builder(router, sim.fleet(), sim.probe()).sink(log.clone()).build();
        let outcome = executor.deploy(&quick(Spec::new("web", "v2", strategy.clone()))).await.unwrap();
        assert_ne!(outcome.status, Status::Succeeded, "{op}");
        assert!(outcome.reason.as_deref().unwrap_or("").starts_with(expected), "{op}: {:?}", outcome.reason);
        assert!(!log.events().iter().any(|e| matches!(e.kind, EventKind::TrafficShifted { .. })), "{op}");
        assert_eq!(sim.split().weight(&blue()), 100, "{op}");
    }
}

#[tokio::test(start_paused = true)]
async fn capabilities_delays_and_hooks() {
    let sim = Sim::builder().pool("blue", 1, "v1").pool("green", 0, "v1").build();
    let hooked = Arc::new(AtomicUsize::new(0));
    let seen = hooked.clone();
    let router = FaultyRouter::new(sim.router())
        .with_capabilities(|caps| caps.with_checks_members(true).with_weight_granularity(25))
        .delaying(RouterOp::Split, Duration::from_secs(3))
        .before(RouterOp::Drain, move |request: Request| {
            let seen = seen.clone();
            async move {
                assert_eq!(request.pool, Some("blue".into()));
                match seen.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(Error::transient("hook", "not yet")),
                    _ => Ok(()),
                }
            }
        });
    let caps = router.capabilities();
    assert!(caps.checks_members && !sim.router().capabilities().checks_members);
    assert_eq!(caps, Capabilities::load_balancer().with_checks_members(true).with_weight_granularity(25));

    let start = tokio::time::Instant::now();
    router.split().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));

    let member = sim.targets()[0].id.clone();
    let error = router.drain(&blue(), std::slice::from_ref(&member), Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(error.to_string(), "hook: not yet", "the hook's error is the call's");
    assert_eq!(sim.calls_of(RouterOp::Drain), 0, "and the call went no further");
    router.drain(&blue(), &[member], Duration::from_secs(1)).await.unwrap();
    assert_eq!(hooked.load(Ordering::SeqCst), 2);
    assert_eq!(sim.calls_of(RouterOp::Drain), 1);
}

/// Ten calls at once through 4 a second: 4 start at once, 4 a second later, 2 a second after
/// that. Counted at instants on the paused clock, never timed.
#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_calls_by_the_window() {
    let sim = Sim::builder().pool("blue", 1, "v1").pool("green", 0, "v1").build();
    let recording = RecordingRouter::new(sim.router());
    let recorder = recording.recorder();
    let router = Arc::new(RateLimitedRouter::new(Arc::new(recording), 4, Duration::from_secs(1)));
    let start = tokio::time::Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { router.split().await })
        })
        .collect();
    let at = |millis| start + Duration::from_millis(millis);
    for (instant, done) in [(999, 4), (1_001, 8), (1_999, 8), (2_001, 10)] {
        tokio::time::sleep_until(at(instant)).await;
        assert_eq!(recorder.count(RouterOp::Split), done, "at {instant} ms");
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let starts: Vec<_> = recorder.calls().iter().map(|c| c.started).collect();
    for (i, started) in starts.iter().enumerate().skip(4) {
        assert!(*started >= starts[i - 4] + Duration::from_secs(1), "call {i} is in the window of call {}", i - 4);
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_only_limit_lets_reads_through() {
    let sim = Sim::builder().pool("blue", 1, "v1").pool("green", 0, "v1").build();
    let router = RateLimitedRouter::new(sim.router(), 1, Duration::from_secs(10)).writes_only();
    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        router.split().await.unwrap();
        router.members(&blue()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "reads are not limited");
    for weight in [0, 100, 0] {
        router.set_split(&Split::new([("blue", 100 - weight), ("green", weight)]).unwrap()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_secs(20), "one write per 10 s");
}
