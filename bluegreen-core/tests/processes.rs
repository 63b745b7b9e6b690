//! Real processes: a simulated deploy is killed with SIGKILL at every backend write of a
//! blue-green, a canary and a rolling plan and resumed in a new process; and two processes
//! deploy one service at once under each concurrency policy.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bluegreen_core::sim::Sim;
use bluegreen_core::{Event, EventKind, FileStore, MemberState, Phase, Split, StateStore};

const CHILD: &str = env!("CARGO_BIN_EXE_bluegreen-sim-process");

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("bluegreen-proc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    fn world(&self) -> PathBuf {
        self.0.join("world.json")
    }
    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    fn events(&self) -> PathBuf {
        self.0.join("events.jsonl")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn child(dir: &Dir, strategy: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(CHILD);
    cmd.arg(dir.world()).arg(dir.state()).arg(strategy).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run(dir: &Dir, strategy: &str, args: &[&str]) -> Output {
    child(dir, strategy, args).output().expect("the child process starts")
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_owned()
}

/// The world a shared file holds, opened read-only in this process.
fn world(path: &Path) -> Sim {
    Sim::builder().shared_file(path).build()
}

/// What a finished deploy leaves: the split and, per pool, the member versions and how many serve.
fn end_state(sim: &Sim) -> (Split, Vec<(String, Vec<String>, usize)>) {
    let snap = sim.snapshot();
    let pools = snap
        .pools
        .iter()
        .map(|(p, targets)| {
            let mut versions: Vec<String> = targets.iter().map(|t| t.version.to_string()).collect();
            versions.sort();
            let serving = sim.members(p.clone()).values().filter(|s| **s == MemberState::Serving).count();
            (p.to_string(), versions, serving)
        })
        .collect();
    (snap.split, pools)
}

fn writes(sim: &Sim) -> u64 {
    sim.writes()
}

async fn only_deployment(dir: &Dir) -> bluegreen_core::DeploymentRecord {
    let store = FileStore::open(dir.state()).unwrap();
    let mut history = store.history("shop").await.unwrap();
    assert_eq!(history.len(), 1, "one deployment recorded");
    history.remove(0)
}

#[tokio::test]
async fn killed_at_every_step_and_every_write_and_resumed_in_a_new_process_converges() {
    for strategy in ["blue-green", "canary", "rolling"] {
        // The uninterrupted run: its end state, and how many writes it makes.
        let straight = Dir::new(&format!("{strategy}-straight"));
        let out = run(&straight, strategy, &["deploy", "v2"]);
        assert_eq!(last_line(&out), "\"succeeded\"", "{strategy}: {}", String::from_utf8_lossy(&out.stderr));
        let expected = end_state(&world(&straight.world()));
        let total = writes(&world(&straight.world()));
        assert!(total >= 5, "{strategy}: only {total} writes");

        let steps = only_deployment(&straight).await.plan.steps.len();
        // Every step's start, and every backend write (the middle of the steps that write).
        let cuts = (0..steps).map(|i| ("--kill-at-step", i as u64)).chain((1..=total).map(|n| ("--kill-at-write", n)));
        for (how, at) in cuts {
            let dir = Dir::new(&format!("{strategy}-{how}-{at}"));
            let at = at.to_string();
            // The same owner (a CI job's id, say) resumes at once, without waiting out the lease.
            let out = run(&dir, strategy, &["deploy", "v2", how, &at, "--owner", "job-1"]);
            assert_eq!(out.status.signal(), Some(9), "{strategy}: killed {how} {at}: {out:?}");

            // The store still says which step was last completed, and the deploy is unfinished.
            let record = only_deployment(&dir).await;
            assert_ne!(record.phase, Phase::Finished, "{strategy} {how} {at}");
            assert!(record.completed_steps < record.plan.steps.len(), "{strategy} {how} {at}");
            assert_eq!(record.steps.len(), record.completed_steps, "{strategy} {how} {at}");
            if how == "--kill-at-step" {
                assert_eq!(
                    record.completed_steps.to_string(),
                    at,
                    "{strategy}: steps before the killed one are recorded"
                );
            }

            let out = run(&dir, strategy, &["resume", &record.id, "--owner", "job-1"]);
            assert_eq!(
                last_line(&out),
                "\"succeeded\"",
                "{strategy}: resume after a kill {how} {at}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let sim = world(&dir.world());
            assert_eq!(end_state(&sim), expected, "{strategy}: killed {how} {at}, resumed");
            assert!(sim.violations().is_empty(), "{strategy} {how} {at}: {:#?}", sim.violations());
            assert_eq!(only_deployment(&dir).await.phase, Phase::Finished);
        }
    }
}

fn events(dir: &Dir) -> Vec<Event> {
    std::fs::read_to_string(dir.events())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn with_refuse_exactly_one_of_two_processes_runs() {
    let dir = Dir::new("refuse");
    let events = dir.events();
    let ev = events.to_str().unwrap();
    let a = child(&dir, "slow-canary", &["deploy", "v2", "--events", ev]).spawn().unwrap();
    let b = child(&dir, "slow-canary", &["deploy", "v3", "--events", ev]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(4)], "one runs, one is refused: {a:?} {b:?}");
    let refused = if a.status.code() == Some(4) { &a } else { &b };
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is locked by sim-process-"), "{refused:?}");
    let store = FileStore::open(dir.state()).unwrap();
    assert_eq!(store.history("shop").await.unwrap().len(), 1);
}

#[tokio::test]
async fn with_queue_two_processes_finish_in_order_without_interleaving() {
    let dir = Dir::new("queue");
    let ev = dir.events();
    let ev = ev.to_str().unwrap();
    let a = child(&dir, "slow-canary", &["deploy", "v2", "--concurrency", "queue", "--events", ev]).spawn().unwrap();
    let b = child(&dir, "slow-canary", &["deploy", "v3", "--concurrency", "queue", "--events", ev]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!((last_line(&a), last_line(&b)), ("\"succeeded\"".into(), "\"succeeded\"".into()), "{a:?} {b:?}");
    let mut runs: Vec<String> = events(&dir).into_iter().map(|e| e.deployment_id).collect();
    runs.dedup();
    assert_eq!(runs.len(), 2, "the two deployments' events interleaved: {runs:?}");
    let store = FileStore::open(dir.state()).unwrap();
    let history = store.history("shop").await.unwrap();
    assert_eq!(history.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), runs, "in the order they took the lock");
    let sim = world(&dir.world());
    assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
    assert_eq!(end_state(&sim).0.weight(&"blue".into()) + end_state(&sim).0.weight(&"green".into()), 100);
}

#[tokio::test]
async fn with_supersede_the_first_process_ends_as_configured() {
    for (policy, first) in [("supersede-abort", "\"rolled_back\""), ("supersede-promote", "\"succeeded\"")] {
        let dir = Dir::new(policy);
        let ev = dir.events();
        let ev = ev.to_str().unwrap();
        let a = child(&dir, "slow-canary", &["deploy", "v2", "--events", ev]).spawn().unwrap();
        // Wait until the first one is baking.
        let started = std::time::Instant::now();
        while !events(&dir).iter().any(|e| matches!(e.kind, EventKind::BakeStarted { .. })) {
            assert!(started.elapsed().as_secs() < 20, "the first deploy never started baking");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let b = child(&dir, "canary", &["deploy", "v3", "--concurrency", policy, "--events", ev]).output().unwrap();
        let a = a.wait_with_output().unwrap();
        assert_eq!(last_line(&a), first, "{policy}: {a:?}");
        assert_eq!(last_line(&b), "\"succeeded\"", "{policy}: {b:?}");
        let sim = world(&dir.world());
        assert!(sim.violations().is_empty(), "{policy}: {:#?}", sim.violations());
        assert!(sim.targets().iter().all(|t| t.version.as_str() == "v3"), "{policy}: only v3 is left");
    }
}
