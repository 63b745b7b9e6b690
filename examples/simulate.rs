//! Simulated deployments, printed the way an operator would watch them.
//!
//! Three deploys run against the in-process simulator, each with request traffic flowing
//! through the simulated router:
//!
//! 1. a canary, 5% → 25% → 100% with multi-minute bakes, over 6 targets;
//! 2. a rolling update of 10 servers in zones a and b, 2 at a time;
//! 3. a canary of a broken version that dies a minute after it starts: caught during the
//!    first bake and rolled back.
//!
//! For each: the plan's timeline (the dry run), the live event log as it happens, and a
//! summary. The clock is tokio's paused clock, so half an hour of virtual deploy time takes
//! well under a second of wall time.
//!
//! ```text
//! cargo run -p bluegreen --example simulate
//! ```

use std::time::{Duration, Instant};

use bluegreen::sim::{Sim, VersionBehaviour};
use bluegreen::{
    Canary, ChannelSink, Event, Executor, HealthPolicy, Outcome, Rolling, ShiftStep, Spec, Status, Strategy,
};

const fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A health policy that suits a demo: probe every 2 s, 2 passes, 4 s of proven health.
fn health() -> HealthPolicy {
    HealthPolicy {
        interval: secs(2),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: secs(4),
        deadline: mins(2),
    }
}

fn heading(title: &str) {
    println!();
    println!("{title}");
    println!("{}", "=".repeat(title.chars().count()));
}

fn subheading(title: &str) {
    println!();
    println!("-- {title} --");
}

/// Plans `spec` on `sim`, prints the timeline, runs it while printing each event as it
/// arrives, then prints a summary. Returns the outcome.
async fn run(title: &str, sim: Sim, spec: Spec) -> Outcome {
    heading(title);

    let (sink, mut events) = ChannelSink::new();
    let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).shared_sink(sim.sink()).sink(sink).build();

    let plan = match executor.plan(&spec).await {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("the plan was refused: {e}");
            std::process::exit(1);
        }
    };
    subheading("plan (dry run)");
    println!("{}", plan.timeline());

    subheading("event log");
    // The printer runs beside the deploy and shows each event as soon as it is sent. It ends
    // when the executor (holding the sending side) is dropped.
    let printer = tokio::spawn(async move {
        let mut count = 0_usize;
        while let Some(event) = events.recv().await {
            print_event(&event);
            count += 1;
        }
        count
    });

    let wall = Instant::now();
    let deployment_id = format!("{}-{}", spec.service, spec.version);
    let outcome = executor.run(&plan, &deployment_id).await;
    let wall = wall.elapsed();
    drop(executor);
    let event_count = printer.await.unwrap_or(0);

    subheading("summary");
    let traffic = sim.traffic();
    let violations = sim.violations();
    println!("status:               {}", outcome.status);
    if let Some(reason) = &outcome.reason {
        println!("reason:               {reason}");
    }
    println!("final split:          {}", outcome.split);
    let serving: Vec<String> = outcome.serving_versions.iter().map(ToString::to_string).collect();
    println!("serving versions:     {}", serving.join(", "));
    println!("steps completed:      {} of {}  ({event_count} events)", outcome.steps_completed, plan.steps.len());
    println!(
        "virtual duration:     {}  (wall time {:.0} ms)",
        humantime::format_duration(Duration::from_millis(outcome.elapsed.as_millis() as u64)),
        wall.as_secs_f64() * 1000.0
    );
    println!("requests sent:        {}", traffic.sent);
    println!("requests failed:      {}  (of which lost in flight: {})", traffic.failed, traffic.dropped);
    for (version, served) in &traffic.served {
        println!("requests served by {version}: {served}");
    }
    println!("invariant violations: {}", violations.len());
    for v in &violations {
        println!("  {v}");
    }
    outcome
}

fn print_event(event: &Event) {
    println!("{event}");
}

/// A canary over 6 targets, 5% → 25% → 100%, of checkout `version` behaving as `behaviour`.
async fn canary_of(title: &str, version: &str, behaviour: VersionBehaviour) -> Outcome {
    let sim = Sim::builder()
        .pool("blue", 6, "v1")
        .pool("green", 0, "v1")
        .zones(["a", "b", "c"])
        .latency(Duration::from_millis(50))
        .version(version, behaviour)
        .traffic(100, Duration::from_millis(80))
        .capacity_floor(6)
        .build();
    let canary = Canary {
        steps: vec![
            ShiftStep { percent: 5, bake: mins(5) },
            ShiftStep { percent: 25, bake: mins(10) },
            ShiftStep { percent: 100, bake: Duration::ZERO },
        ],
        bake: mins(5),
        ..Canary::default()
    };
    let spec = Spec::new("checkout", version, Strategy::Canary(canary)).with_health(health());
    run(title, sim, spec).await
}

/// Part 1: a canary over 6 targets, 5% → 25% → 100%.
async fn canary() -> Outcome {
    let v2 = VersionBehaviour::healthy().with_startup(secs(20));
    canary_of("1. Canary: checkout v1 → v2, 5% → 25% → 100% over 6 targets", "v2", v2).await
}

/// Part 2: the seed's rolling update, 10 servers 2 at a time, zones a and b.
async fn rolling() -> Outcome {
    let sim = Sim::builder()
        .pool("web", 10, "v1")
        .zones(["a", "b"])
        .latency(Duration::from_millis(50))
        .update_time(secs(5))
        .version("v2", VersionBehaviour::healthy().with_startup(secs(10)))
        .traffic(200, Duration::from_millis(300))
        .capacity_floor(8)
        .build();
    let mut spec = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2))).with_health(health());
    spec.pools = vec!["web".into()];
    run("2. Rolling: web v1 → v2, 10 servers in zones a/b, 2 at a time", sim, spec).await
}

/// Part 3: a canary of a version that passes its health gate, then dies a minute later.
async fn broken_canary() -> Outcome {
    let v3 = VersionBehaviour::dies_after(mins(1)).with_startup(secs(20));
    canary_of("3. Broken canary: checkout v1 → v3, where v3 dies a minute after start", "v3", v3).await
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let wall = Instant::now();
    let outcomes = runtime.block_on(async { [canary().await, rolling().await, broken_canary().await] });

    heading("All three");
    let expected = [Status::Succeeded, Status::Succeeded, Status::RolledBack];
    for ((name, outcome), want) in ["canary", "rolling", "broken canary"].iter().zip(&outcomes).zip(expected) {
        let mark = if outcome.status == want { "as expected" } else { "UNEXPECTED" };
        println!("{name:<14} {:<12} ({mark})", outcome.status.to_string());
    }
    println!("wall time {:.0} ms", wall.elapsed().as_secs_f64() * 1000.0);
    if outcomes.iter().zip(expected).any(|(o, want)| o.status != want) {
        std::process::exit(1);
    }
}
