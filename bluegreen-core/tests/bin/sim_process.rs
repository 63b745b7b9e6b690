//! A simulated deploy in its own process, for the crash and concurrency tests
//! (`tests/processes.rs`): the world lives in a shared file, the deployment in a file store.
//!
//! ```text
//! bluegreen-sim-process WORLD STATE_DIR STRATEGY deploy VERSION [--kill-at-write N | --kill-at-step I] [--concurrency P] [--events FILE] [--owner NAME]
//! bluegreen-sim-process WORLD STATE_DIR STRATEGY resume ID [--events FILE] [--owner NAME]
//! ```
//! STRATEGY is `blue-green`, `canary`, `rolling` or `slow-canary`. Prints the outcome's status
//! on the last line; exit 0 for an outcome, 4 for a lock conflict, 2 for other errors.

use std::fs::OpenOptions;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, Canary, ConcurrencyPolicy, Error, Event, EventKind, EventSink, Executor, FileStore, HealthPolicy,
    JsonLinesSink, Rolling, ShiftStep, Spec, Strategy, SupersedeWith,
};

fn usage() -> ! {
    eprintln!("usage: bluegreen-sim-process WORLD STATE_DIR STRATEGY (deploy VERSION | resume ID) [options]");
    std::process::exit(2)
}

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn strategy(name: &str) -> (Strategy, usize, bool) {
    let ms = Duration::from_millis;
    match name {
        "blue-green" => (
            Strategy::BlueGreen(BlueGreen { bake: ms(30), keep_old_for: Some(ms(20)), ..BlueGreen::default() }),
            3,
            true,
        ),
        "canary" => (
            Strategy::Canary(Canary {
                steps: vec![ShiftStep { percent: 10, bake: ms(20) }, ShiftStep { percent: 50, bake: ms(20) }],
                ..Canary::default()
            }),
            3,
            true,
        ),
        "slow-canary" => (
            Strategy::Canary(Canary { steps: vec![ShiftStep { percent: 20, bake: ms(1500) }], ..Canary::default() }),
            2,
            true,
        ),
        "rolling" => (Strategy::Rolling(Rolling::in_place(2)), 6, false),
        _ => usage(),
    }
}

/// A real SIGKILL, delivered while this process waits for `kill` to finish.
fn kill_self() {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
}

/// Kills the process when the plan's step `index` starts.
#[derive(Debug)]
struct KillAtStep(usize);

impl EventSink for KillAtStep {
    fn emit(&self, event: &Event) {
        if matches!(event.kind, EventKind::StepStarted { index, .. } if index == self.0) {
            kill_self();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        usage();
    }
    let (world, state, strategy_name, command, arg) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let (strategy, size, two_pools) = strategy(strategy_name);

    let kill_at = option(&args, "--kill-at-write").map(|n| n.parse::<u64>().unwrap_or_else(|_| usage()));
    let mut builder = Sim::builder().pool("blue", size, "v1").shared_file(world).on_write(move |n| {
        if Some(n) == kill_at {
            kill_self();
        }
    });
    if two_pools {
        builder = builder.pool("green", 0, "v1");
    }
    let sim = builder.build();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let code = rt.block_on(async {
        let store = Arc::new(FileStore::open(state).expect("state dir"));
        let mut exec = Executor::builder(sim.router(), sim.fleet(), sim.probe())
            .shared_sink(sim.sink())
            .state_store(
                store,
                option(&args, "--owner").unwrap_or_else(|| format!("sim-process-{}", std::process::id())),
            )
            .lease_ttl(Duration::from_secs(10))
            .poll_interval(Duration::from_millis(20));
        if let Some(step) = option(&args, "--kill-at-step") {
            exec = exec.sink(KillAtStep(step.parse().unwrap_or_else(|_| usage())));
        }
        if let Some(path) = option(&args, "--events") {
            let file = OpenOptions::new().create(true).append(true).open(path).expect("events file");
            exec = exec.sink(JsonLinesSink::new(file));
        }
        let exec = exec.build();
        let result = match command.as_str() {
            "deploy" => {
                let health = HealthPolicy {
                    interval: Duration::from_millis(10),
                    timeout: Duration::from_millis(10),
                    healthy_threshold: 1,
                    unhealthy_threshold: 2,
                    min_healthy_time: Duration::ZERO,
                    deadline: Duration::from_secs(10),
                };
                let mut spec = Spec::new("shop", arg.as_str(), strategy).with_health(health);
                if !two_pools {
                    spec.pools = vec!["blue".into()];
                }
                spec = match option(&args, "--concurrency").as_deref() {
                    Some("queue") => spec.with_concurrency(ConcurrencyPolicy::Queue),
                    Some("supersede-abort") => {
                        spec.with_concurrency(ConcurrencyPolicy::Supersede(SupersedeWith::Abort))
                    }
                    Some("supersede-promote") => {
                        spec.with_concurrency(ConcurrencyPolicy::Supersede(SupersedeWith::Promote))
                    }
                    _ => spec,
                };
                exec.deploy(&spec).await
            }
            "resume" => exec.resume_deployment(arg).await,
            _ => usage(),
        };
        match result {
            Ok(outcome) => {
                println!("{}", serde_json::to_string(&outcome.status).expect("json"));
                0
            }
            Err(e @ Error::Conflict { .. }) => {
                eprintln!("{e}");
                4
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        }
    });
    std::process::exit(code);
}
