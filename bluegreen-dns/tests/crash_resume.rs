//! A deploy over a real DNS server (knot, and BIND 9), killed with SIGKILL at every step index
//! and resumed by a new process: no host is updated or stopped before TTL + margin has passed
//! since the server last answered with its address (asserted from the server's own answers,
//! polled by this test, and the wall time of each fleet call), and the end state equals an
//! uninterrupted run's.
//!
//! The deploy runs in a child process: this test binary started again on the `crash_child` test
//! with its settings in `BLUEGREEN_CRASH_CHILD`. It drives the RFC 2136 router, a simulated
//! fleet shared through a world file (targets get IPv4 addresses), and a file state store; it
//! prints its events as JSON lines, so the parent knows when a step starts and kills it there.
#![cfg(feature = "rfc2136")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    BlueGreen, Executor, FileStore, Fleet, HealthPolicy, JsonLinesSink, MemberState, Phase, PoolName, ProvisionRequest,
    Result, Rolling, Router, Spec, Split, StateStore, Strategy, Target, TargetId, Version,
};
use bluegreen_dns::Rfc2136Router;
use common::bind::{bind_or_skip, Bind};
use common::{knot_or_skip, Knot, MARGIN, TTL};
use serde::{Deserialize, Serialize};

const CHILD: &str = "BLUEGREEN_CRASH_CHILD";
/// How long after a step started the child is killed: inside its TTL waits.
const KILL_AFTER: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Rolling,
    BlueGreen,
}

/// What the child process runs.
#[derive(Debug, Serialize, Deserialize)]
struct ChildRun {
    server: SocketAddr,
    kind: Kind,
    dir: PathBuf,
    resume: Option<String>,
}

fn wall_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn router(server: SocketAddr) -> Rfc2136Router {
    common::router_builder(server).build().unwrap()
}

fn sim(dir: &Path, kind: Kind) -> Sim {
    let blue = if kind == Kind::Rolling { 3 } else { 2 };
    Sim::builder()
        .pool("blue", blue, "v1")
        .pool("green", 0, "v1")
        .ipv4_addresses(Ipv4Addr::new(10, 9, 0, 1), 8080)
        .shared_file(dir.join("world.json"))
        .build()
}

fn spec(kind: Kind) -> Spec {
    let strategy = match kind {
        Kind::Rolling => Strategy::Rolling(Rolling::in_place(1)),
        Kind::BlueGreen => Strategy::BlueGreen(BlueGreen::default()),
    };
    Spec::new("www", "v2", strategy).with_health(HealthPolicy {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(40),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(20),
    })
}

/// The simulated fleet, writing `<wall ms> <update|stop> <address>` to `fleet.log` right
/// before each update or stop it is asked for.
#[derive(Debug)]
struct LoggedFleet {
    inner: Arc<dyn Fleet>,
    log: PathBuf,
}

impl LoggedFleet {
    async fn note(&self, what: &str, ids: &[TargetId]) -> Result<()> {
        let targets = self.inner.list().await?;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        for t in targets.iter().filter(|t| ids.contains(&t.id)) {
            writeln!(file, "{} {what} {}", wall_ms(), t.address).unwrap();
        }
        file.sync_data().unwrap();
        Ok(())
    }
}

#[async_trait]
impl Fleet for LoggedFleet {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        self.inner.provision(request).await
    }
    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target> {
        self.note("update", std::slice::from_ref(target)).await?;
        self.inner.update(target, version).await
    }
    async fn retire(&self, targets: &[TargetId]) -> Result<()> {
        self.note("stop", targets).await?;
        self.inner.retire(targets).await
    }
    async fn list(&self) -> Result<Vec<Target>> {
        self.inner.list().await
    }
}

/// The child: one deploy (or its resume), events on stdout, then exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(settings) = std::env::var(CHILD) else { return };
    let run: ChildRun = serde_json::from_str(&settings).unwrap();
    let sim = sim(&run.dir, run.kind);
    let fleet = LoggedFleet { inner: sim.fleet(), log: run.dir.join("fleet.log") };
    let store = Arc::new(FileStore::open(run.dir.join("state")).unwrap());
    let exec = Executor::builder(Arc::new(router(run.server)), Arc::new(fleet), sim.probe())
        .sink(JsonLinesSink::new(std::io::stdout()))
        .state_store(store, "crash-child")
        .poll_interval(Duration::from_millis(100))
        .build();
    let outcome = match &run.resume {
        Some(id) => exec.resume_deployment(id).await.unwrap(),
        None => exec.deploy(&spec(run.kind)).await.unwrap(),
    };
    println!("{}", serde_json::json!({ "outcome": outcome.status, "reason": outcome.reason }));
}

/// The addresses the server answers at the name, over time (wall ms).
type Answers = Arc<Mutex<Vec<(u64, BTreeSet<Ipv4Addr>)>>>;

fn poll_answers(server: SocketAddr) -> (Answers, tokio::task::JoinHandle<()>) {
    let answers: Answers = Arc::default();
    let log = answers.clone();
    let task = tokio::spawn(async move {
        let reader = router(server);
        loop {
            let asked = wall_ms();
            if let Ok(ips) = reader.served_addresses().await {
                log.lock().unwrap().push((asked, ips.into_iter().collect()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (answers, task)
}

fn spawn_child(run: &ChildRun) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, serde_json::to_string(run).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What one run left: the deployment id, how many steps started, the final outcome (none if
/// killed).
struct Watched {
    id: Option<String>,
    steps: usize,
    outcome: Option<String>,
    reason: Option<String>,
    /// The child's event lines.
    log: Vec<String>,
}

/// Reads the child's events; kills it `KILL_AFTER` after step `kill_at` starts.
fn watch(mut child: Child, kill_at: Option<usize>) -> Watched {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut watched = Watched { id: None, steps: 0, outcome: None, reason: None, log: Vec::new() };
    for line in stdout.lines().map_while(std::io::Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        watched.log.push(line.clone());
        if let Some(status) = v.get("outcome") {
            watched.outcome = status.as_str().map(str::to_owned);
            watched.reason = v["reason"].as_str().map(str::to_owned);
        }
        if let Some(id) = v["deployment_id"].as_str() {
            watched.id.get_or_insert_with(|| id.to_owned());
        }
        if v["event"] == "deployment_finished" {
            // Killed after its last step but before it printed its outcome: the outcome is in
            // the log.
            watched.outcome = v["status"].as_str().map(str::to_owned);
        }
        if v["event"] == "step_started" {
            watched.steps += 1;
            if v["index"].as_u64() == kill_at.map(|k| k as u64) {
                std::thread::sleep(KILL_AFTER);
                child.kill().unwrap(); // SIGKILL
                let _ = child.wait();
                return watched;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the child failed: {}", String::from_utf8_lossy(&out.stderr));
    watched
}

/// The end state to compare: the answer, the split, each pool's members and states, each
/// target's address and version.
type EndState =
    (BTreeSet<Ipv4Addr>, Split, BTreeMap<PoolName, Vec<(TargetId, MemberState)>>, BTreeSet<(String, String)>);

async fn end_state(server: SocketAddr, dir: &Path, kind: Kind) -> EndState {
    let r = router(server);
    let served = r.served_addresses().await.unwrap().into_iter().collect();
    let mut members = BTreeMap::new();
    for pool in ["blue", "green"].map(PoolName::from) {
        let mut list: Vec<_> = r.members(&pool).await.unwrap().into_iter().map(|m| (m.id, m.state)).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        members.insert(pool, list);
    }
    let targets = sim(dir, kind).targets().into_iter().map(|t| (t.address, t.version.to_string())).collect();
    (served, r.split().await.unwrap(), members, targets)
}

/// One deploy, killed at step `kill_at` (`None`: not killed) and resumed; checks every fleet
/// call against the server's answers. Returns the end state and how many steps the first run
/// started.
async fn run_once(
    server: &dyn Fn() -> (SocketAddr, Box<dyn std::any::Any>),
    kind: Kind,
    kill_at: Option<usize>,
) -> (EndState, usize) {
    let (addr, _server) = server();
    let dir = tempfile::Builder::new().prefix("bluegreen-crash-").tempdir().unwrap();
    // The starting point: the blue targets registered and serving all traffic.
    let world = sim(dir.path(), kind);
    let r = router(addr);
    r.add_targets(&"blue".into(), &world.targets()).await.unwrap();
    r.set_split(&Split::all_to(&"blue".into())).await.unwrap();
    let (answers, poller) = poll_answers(addr);

    let first = ChildRun { server: addr, kind, dir: dir.path().to_owned(), resume: None };
    let watched = tokio::task::spawn_blocking(move || watch(spawn_child(&first), kill_at)).await.unwrap();
    let steps = watched.steps;
    // Killed after the record said it had finished (but before the child said so): nothing
    // to resume, as `status` would tell an operator.
    let finished = match &watched.id {
        Some(id) => FileStore::open(dir.path().join("state")).unwrap().load(id).await.unwrap().phase == Phase::Finished,
        None => false,
    };
    if watched.outcome.is_none() && !finished {
        let id = watched.id.expect("the killed run had started a deployment");
        let again = ChildRun { server: addr, kind, dir: dir.path().to_owned(), resume: Some(id) };
        let resumed = tokio::task::spawn_blocking(move || watch(spawn_child(&again), None)).await.unwrap();
        assert_eq!(
            resumed.outcome.as_deref(),
            Some("succeeded"),
            "{kind:?} killed at step {kill_at:?}: {:?}\n{}",
            resumed.reason,
            resumed.log.join("\n")
        );
    } else if !finished {
        assert_eq!(watched.outcome.as_deref(), Some("succeeded"), "{kind:?} uninterrupted");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    poller.abort();

    // Every update and stop came TTL + margin after the server last answered with the address.
    let answers = answers.lock().unwrap().clone();
    let calls = std::fs::read_to_string(dir.path().join("fleet.log")).unwrap_or_default();
    let wait = u64::try_from((TTL + MARGIN).as_millis()).unwrap();
    let mut checked = 0;
    for line in calls.lines() {
        let [at, what, address] = line.split(' ').collect::<Vec<_>>()[..] else { panic!("fleet.log: {line}") };
        let at: u64 = at.parse().unwrap();
        let ip: Ipv4Addr = address.split(':').next().unwrap().parse().unwrap();
        let last_served = answers.iter().filter(|(t, ips)| *t < at && ips.contains(&ip)).map(|(t, _)| *t).max();
        let Some(last) = last_served else { continue };
        assert!(
            at >= last + wait,
            "{kind:?} killed at step {kill_at:?}: {what} of {ip} {} ms after the server last answered with it \
             (TTL + margin is {wait} ms)",
            at - last
        );
        checked += 1;
    }
    assert!(checked > 0, "{kind:?}: no update or stop of a served host was seen: {calls}");
    (end_state(addr, dir.path(), kind).await, steps)
}

async fn every_step(server: &dyn Fn() -> (SocketAddr, Box<dyn std::any::Any>)) {
    for kind in [Kind::Rolling, Kind::BlueGreen] {
        let (expected, steps) = run_once(server, kind, None).await;
        assert!(steps >= 3, "{kind:?}: {steps} steps");
        for kill_at in 0..steps {
            let (state, _) = run_once(server, kind, Some(kill_at)).await;
            assert_eq!(state, expected, "{kind:?} killed at step {kill_at}: the end state differs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_killed_at_every_step_and_resumed_never_cuts_a_ttl_wait() {
    if std::env::var(CHILD).is_ok() || !knot_or_skip("knot_killed_at_every_step_and_resumed_never_cuts_a_ttl_wait") {
        return;
    }
    every_step(&|| {
        let knot = Knot::start("ns1", &[], true);
        (knot.addr, Box::new(knot) as Box<dyn std::any::Any>)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind9_killed_at_every_step_and_resumed_never_cuts_a_ttl_wait() {
    if std::env::var(CHILD).is_ok() || !bind_or_skip("bind9_killed_at_every_step_and_resumed_never_cuts_a_ttl_wait") {
        return;
    }
    every_step(&|| {
        let bind = Bind::start("ns1", &[]);
        (bind.addr, Box::new(bind) as Box<dyn std::any::Any>)
    })
    .await;
}
