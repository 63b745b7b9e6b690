//! The scale workloads, shared by `benches/simulate.rs` (criterion) and `examples/scale.rs`
//! (CPU time and peak RSS): the simulators run `unchecked`, so only the engine's work counts.

use std::time::Duration;

use bluegreen::sim::{Sim, VersionBehaviour};
use bluegreen::{BatchSize, BlueGreen, Executor, HealthPolicy, Outcome, Rolling, Spec, Strategy};

/// Probe every 5 s, 2 passes, no minimum healthy time.
pub(crate) fn health() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(300),
    }
}

/// Every simulated router and fleet call takes this long (virtual time).
pub(crate) const CALL_LATENCY: Duration = Duration::from_millis(10);

/// A current-thread runtime on a paused clock.
pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a tokio runtime")
}

/// Rolling in place over one pool, in batches of `batch`.
pub(crate) fn rolling_spec(batch: BatchSize) -> Spec {
    let rolling = Rolling { batch, ..Rolling::in_place(1) };
    let mut spec = Spec::new("web", "v2", Strategy::Rolling(rolling)).with_health(health());
    spec.pools = vec!["web".into()];
    spec
}

/// `targets` targets of v1 in one pool over 3 zones; each in-place update takes 20 s.
pub(crate) fn rolling_sim(targets: usize) -> Sim {
    Sim::builder()
        .pool("web", targets, "v1")
        .zones(["a", "b", "c"])
        .latency(CALL_LATENCY)
        .update_time(Duration::from_secs(20))
        .unchecked()
        .build()
}

/// Rolling in place over `targets` targets in batches of `batch`.
pub(crate) async fn rolling(targets: usize, batch: BatchSize) -> Outcome {
    let sim = rolling_sim(targets);
    let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
    executor.deploy(&rolling_spec(batch)).await.expect("the rolling deploy starts")
}

/// One blue-green deploy of 4 targets on its own simulator: the new version starts in 15 s,
/// traffic switches at once, then a 1-minute bake.
pub(crate) async fn blue_green() -> Outcome {
    let sim = Sim::builder()
        .pool("blue", 4, "v1")
        .pool("green", 0, "v1")
        .zones(["a", "b"])
        .latency(CALL_LATENCY)
        .version("v2", VersionBehaviour::healthy().with_startup(Duration::from_secs(15)))
        .unchecked()
        .build();
    let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
    let bg = BlueGreen { bake: Duration::from_secs(60), ..BlueGreen::default() };
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(bg)).with_health(health());
    executor.deploy(&spec).await.expect("the blue-green deploy starts")
}

/// `deploys` blue-green deploys at once on one runtime, each a task of its own, as a service
/// embedding the engine runs them. (One `join_all` over the thousands of deploy futures made
/// the whole set a single task, and its wake-ups cost more the more deploys it held: 8,000
/// took 16.3 s of CPU that way, 2.7 s as tasks.)
pub(crate) async fn blue_greens(deploys: usize) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..deploys).map(|_| tokio::spawn(blue_green())).collect();
    let mut outcomes = Vec::with_capacity(deploys);
    for task in tasks {
        outcomes.push(task.await.expect("a deploy task panicked"));
    }
    outcomes
}
