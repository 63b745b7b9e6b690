//! Benchmarks of the engine on the simulator, on tokio's paused (virtual) clock.
//!
//! - `rolling_10k`: plan (observe + compile) and run a rolling in-place update of 10,000
//!   targets in batches of 10%.
//! - `blue_green_1k_concurrent`: 1,000 blue-green deploys of 4 targets, each on its own
//!   simulator, run concurrently on one runtime.
//! - `compile_rolling_10k`: `Plan::compile` alone for 10,000 targets.
//!
//! ```text
//! cargo bench -p bluegreen-core --bench simulate
//! ```
//!
//! The workloads match `examples/scale.rs`, which measures CPU time and peak RSS.

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::time::Duration;

use bluegreen_core::sim::{Sim, VersionBehaviour};
use bluegreen_core::{
    BatchSize, BlueGreen, Capabilities, Executor, HealthPolicy, Outcome, Plan, Rolling, Spec, Status, Strategy,
};
use criterion::{criterion_group, criterion_main, BatchSize as Setup, Criterion, SamplingMode};

/// Probe every 5 s, 2 passes, no minimum healthy time.
fn health() -> HealthPolicy {
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
const CALL_LATENCY: Duration = Duration::from_millis(10);

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a tokio runtime")
}

fn rolling_spec() -> Spec {
    let rolling = Rolling { batch: BatchSize::Percent(10), ..Rolling::in_place(1) };
    let mut spec = Spec::new("web", "v2", Strategy::Rolling(rolling)).with_health(health());
    spec.pools = vec!["web".into()];
    spec
}

fn rolling_sim(targets: usize) -> Sim {
    Sim::builder()
        .pool("web", targets, "v1")
        .zones(["a", "b", "c"])
        .latency(CALL_LATENCY)
        .update_time(Duration::from_secs(20))
        .unchecked()
        .build()
}

/// Rolling in place over `targets` targets, batches of 10%.
async fn rolling(targets: usize) -> Outcome {
    let sim = rolling_sim(targets);
    let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
    executor.deploy(&rolling_spec()).await.expect("the rolling deploy starts")
}

/// One blue-green deploy of 4 targets on its own simulator, with a 1-minute bake.
async fn blue_green() -> Outcome {
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

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate");
    // Ten samples of equal size (flat sampling: the deploy benches take ~0.25 s an iteration).
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(10));

    group.bench_function("rolling_10k", |b| {
        b.iter(|| {
            let outcome = paused_runtime().block_on(rolling(10_000));
            assert_eq!(outcome.status, Status::Succeeded);
            outcome
        });
    });

    group.bench_function("blue_green_1k_concurrent", |b| {
        b.iter(|| {
            let outcomes = paused_runtime().block_on(futures::future::join_all((0..1_000).map(|_| blue_green())));
            assert!(outcomes.iter().all(|o| o.status == Status::Succeeded));
            outcomes
        });
    });

    let spec = rolling_spec();
    let capabilities = Capabilities::load_balancer();
    group.bench_function("compile_rolling_10k", |b| {
        b.iter_batched(
            || rolling_sim(10_000).snapshot(),
            |before| Plan::compile(&spec, &before, &capabilities).expect("the plan compiles"),
            Setup::LargeInput,
        );
    });

    group.finish();
}

criterion_group!(simulate, benches);
criterion_main!(simulate);
