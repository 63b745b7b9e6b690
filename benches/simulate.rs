//! Benchmarks of the engine on the simulator, on tokio's paused (virtual) clock.
//!
//! - `rolling_10k`: plan (observe + compile) and run a rolling in-place update of 10,000
//!   targets in batches of 10%.
//! - `blue_green_1k_concurrent`: 1,000 blue-green deploys of 4 targets, each on its own
//!   simulator, run concurrently on one runtime.
//! - `compile_rolling_10k`: `Plan::compile` alone for 10,000 targets.
//!
//! ```text
//! cargo bench -p bluegreen --bench simulate
//! ```
//!
//! The workloads match `examples/scale.rs`, which measures CPU time and peak RSS.

// `criterion_group!` defines a public function without a doc comment.
#![allow(missing_docs)]

use std::time::Duration;

use bluegreen::{BatchSize, Capabilities, Plan, Status};
use criterion::{criterion_group, criterion_main, BatchSize as Setup, Criterion, SamplingMode};

#[path = "support/workloads.rs"]
mod workloads;
use workloads::{blue_greens, paused_runtime, rolling, rolling_sim, rolling_spec};

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate");
    // Ten samples of equal size (flat sampling: the deploy benches take ~0.25 s an iteration).
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(10));

    group.bench_function("rolling_10k", |b| {
        b.iter(|| {
            let outcome = paused_runtime().block_on(rolling(10_000, BatchSize::Percent(10)));
            assert_eq!(outcome.status, Status::Succeeded);
            outcome
        });
    });

    group.bench_function("blue_green_1k_concurrent", |b| {
        b.iter(|| {
            let outcomes = paused_runtime().block_on(blue_greens(1_000));
            assert!(outcomes.iter().all(|o| o.status == Status::Succeeded));
            outcomes
        });
    });

    let spec = rolling_spec(BatchSize::Percent(10));
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
