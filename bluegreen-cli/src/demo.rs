//! `bluegreen demo`: a real local deploy under load, with no cloud, no root and no installs.
//!
//! Starts N local servers of v1 (this binary, serving as `bluegreen serve-target`) behind the
//! in-process proxy, sends them steady traffic, and runs three deploys: a blue-green switch to
//! v2, a rolling update to v3 two at a time, and a canary of a v4 that fails its health check
//! and is rolled back. It ends with the requests sent, failed and served per version, the
//! time per phase, and an SVG of the whole run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bluegreen_core::{
    BlueGreen, Canary, DeploymentRecord, DrainPolicy, Event, Executor, HealthPolicy, HttpProbe, MemorySink,
    MemoryStore, Outcome, Rolling, Router, ShiftStep, Spec, StateStore, Status, Strategy,
};
use bluegreen_vm::{LoadGenerator, LocalProcessFleet, LocalProxyRouter};
use clap::Args;

use crate::args::Output;
use crate::exit::{CliError, Code};
use crate::{progress, report};

/// Options of `bluegreen demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Servers per version.
    #[arg(long, default_value_t = 6)]
    pub(crate) targets: usize,
    /// Requests per second sent through the proxy while it runs.
    #[arg(long, default_value_t = 200.0)]
    pub(crate) rate: f64,
    /// How long each bake lasts.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) bake: Duration,
    /// Where the SVG report goes.
    #[arg(long, default_value = "bluegreen-demo.svg")]
    pub(crate) report: PathBuf,
}

/// The most servers per version the demo starts.
const MAX_TARGETS: usize = 64;
/// The highest request rate the demo sends through its proxy.
const DEMO_MAX_RATE: f64 = 20_000.0;
/// How long the demo's load runs at most (it is stopped when the deploys are done).
const LOAD_FOR: Duration = Duration::from_secs(600);
/// The longest bake the demo takes: its two bakes and the deploys fit in the load's run.
const MAX_BAKE: Duration = Duration::from_secs(120);

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::needs_human(format!("demo: {e}"))
}

struct Phase {
    name: &'static str,
    outcome: Outcome,
    record: DeploymentRecord,
    events: Vec<Event>,
    started: f64,
    took: Duration,
}

/// Runs the demo.
pub(crate) async fn run(args: &DemoArgs) -> Result<Code, CliError> {
    if args.targets < 2 {
        return Err(CliError::bad_input("--targets: the demo needs at least 2 servers (it updates 2 at a time)"));
    }
    if args.targets > MAX_TARGETS {
        return Err(CliError::bad_input(format!(
            "--targets: at most {MAX_TARGETS} servers per version (each is a local process)"
        )));
    }
    let (min, max) = (bluegreen_vm::MIN_RATE, DEMO_MAX_RATE);
    if !(args.rate.is_finite() && (min..=max).contains(&args.rate)) {
        return Err(CliError::bad_input(format!(
            "--rate: {} requests per second is not within {min}–{max}",
            args.rate
        )));
    }
    if args.bake > MAX_BAKE {
        return Err(CliError::bad_input(format!(
            "--bake: at most {} (the demo's load runs {} in all, its bakes included)",
            humantime::format_duration(MAX_BAKE),
            humantime::format_duration(LOAD_FOR)
        )));
    }
    let exe = std::env::current_exe().map_err(failed)?;
    let (fleet, first) = LocalProcessFleet::builder()
        .binary(exe)
        .leading_args(["serve-target"])
        .zones(["zone-a", "zone-b"])
        .start("v1", args.targets)
        .await
        .map_err(failed)?;
    fleet.set_version_args("v4", ["--fail-health"]);
    let proxy = LocalProxyRouter::builder().pool("blue").pool("green").build().await.map_err(failed)?;
    proxy.add_targets(&"blue".into(), &first).await.map_err(failed)?;
    let probe = HttpProbe::builder("/healthz").timeout(Duration::from_millis(200)).build().map_err(failed)?;
    let store = Arc::new(MemoryStore::new());
    println!(
        "bluegreen demo: {} local servers of v1 behind the proxy on {}, {:.0} requests/s (3% of them long)\n",
        args.targets,
        proxy.url(),
        args.rate
    );
    let load = LoadGenerator::builder(proxy.url())
        .rate(args.rate)
        .concurrency(128)
        .long_requests(0.03, Duration::from_millis(200)..=Duration::from_millis(1500))
        .max_duration(LOAD_FOR)
        .start()
        .map_err(failed)?;

    let health = HealthPolicy {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(4),
    };
    let spec = |version: &str, strategy: Strategy| {
        Spec::new("demo", version, strategy)
            .with_health(health.clone())
            .with_drain(DrainPolicy { timeout: Duration::from_secs(10) })
    };
    let deploys = [
        (
            "blue-green switch to v2",
            spec("v2", Strategy::BlueGreen(BlueGreen { bake: args.bake, ..BlueGreen::default() })),
        ),
        ("rolling update to v3, 2 at a time", spec("v3", Strategy::Rolling(Rolling::in_place(2)))),
        (
            "canary of v4, which fails its health check",
            spec(
                "v4",
                Strategy::Canary(Canary {
                    steps: vec![ShiftStep { percent: 20, bake: args.bake }],
                    ..Canary::default()
                }),
            ),
        ),
    ];
    // A moment of v1 alone, so the report and the counts show where traffic started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let mut phases = Vec::new();
    for (i, (name, spec)) in deploys.into_iter().enumerate() {
        println!("== {}. {name} ==", i + 1);
        let log = MemorySink::new();
        let (channel, events) = bluegreen_core::ChannelSink::new();
        let executor = Executor::builder(Arc::new(proxy.clone()), Arc::new(fleet.clone()), Arc::new(probe.clone()))
            .state_store(store.clone(), "demo")
            .sink(log.clone())
            .sink(channel)
            .build();
        let display = progress::start(events, Output::Text);
        let started = start.elapsed();
        let outcome = executor.deploy(&spec).await;
        drop(executor);
        display.finish().await;
        let outcome = outcome.map_err(failed)?;
        println!("-> {} in {:.1}s\n", outcome.status, outcome.elapsed.as_secs_f64());
        let record = store.load(&outcome.deployment_id).await.map_err(failed)?;
        phases.push(Phase {
            name,
            took: outcome.elapsed,
            outcome,
            record,
            events: log.events(),
            started: started.as_secs_f64(),
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = load.stop().await;

    println!("== summary ==");
    for (i, phase) in phases.iter().enumerate() {
        println!(
            "  {}. {:<44} {:<12} {:>5.1}s",
            i + 1,
            phase.name,
            phase.outcome.status.to_string(),
            phase.took.as_secs_f64()
        );
    }
    println!("  requests sent:   {}", load.sent);
    println!("  requests failed: {}", load.failed);
    let served: Vec<String> = load.served_by_version.iter().map(|(v, n)| format!("{v} {n}")).collect();
    println!("  served per version: {}", served.join(", "));
    println!("  latency: p50 {:.1} ms, p99 {:.1} ms", load.p50_ms, load.p99_ms);
    let parts = phases.iter().map(|p| report::timelines(&p.record, &p.events, p.started)).collect();
    let title = format!(
        "bluegreen demo: v1 → v2 (blue-green) → v3 (rolling) → v4 caught ({} requests, {} failed)",
        load.sent, load.failed
    );
    report::draw(&title, &report::merge(parts), &args.report)?;
    println!("  report: {}", args.report.display());

    fleet.shutdown().await;
    proxy.shutdown().await;
    let expected = [Status::Succeeded, Status::Succeeded, Status::RolledBack];
    let as_expected = phases.iter().map(|p| p.outcome.status).eq(expected);
    if load.failed > 0 || !as_expected {
        return Err(CliError::needs_human(format!(
            "the demo did not go as it should: {} failed requests, outcomes {:?}",
            load.failed,
            phases.iter().map(|p| p.outcome.status).collect::<Vec<_>>()
        )));
    }
    Ok(Code::Done)
}
