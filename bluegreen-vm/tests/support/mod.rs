//! The real-HAProxy test harness: a generated HAProxy in front of real `bluegreen-target`
//! processes, continuous load through it with every request recorded, and an updater that
//! restarts a host's process with the new version.

#![allow(dead_code, unreachable_pub, reason = "each test file uses part of the harness")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluegreen_core::{
    DrainPolicy, Event, EventKind, Fleet, HealthPolicy, HealthProbe, HttpProbe, MemorySink, Spec, Strategy, Target,
    TargetId,
};
use bluegreen_testkit::haproxy::{self, HaproxyProcess};
use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter, LocalProcessFleet, Updater};

pub const TARGET_BIN: &str = env!("CARGO_BIN_EXE_bluegreen-target");

// ---- HAProxy ----

/// `Some(haproxy)`, or `None` (skip) locally; fails in CI.
pub fn require_haproxy(test: &str) -> Option<PathBuf> {
    haproxy::require(test)
}

/// The servers a generated config declares.
pub type Declared = haproxy::Server;

pub use haproxy::CHECKS;

/// A running HAProxy (testkit's), with the routers the tests put over it.
pub struct Haproxy {
    process: HaproxyProcess,
    pub dir: PathBuf,
    pub frontend: u16,
}

impl Haproxy {
    /// Starts HAProxy with backend `web` holding `servers`, plus `extra` config at the end.
    pub async fn start(binary: &Path, servers: &[Declared], extra: &str) -> Self {
        Self::from(HaproxyProcess::start(binary, None, servers, extra))
    }

    /// Starts HAProxy in the backend-per-pool layout: backends `web_blue` and `web_green`
    /// holding `blue` and `green` (servers named by host id), and a frontend choosing between
    /// them by the map [`Self::split_map`], which starts with every entry on `web_blue`.
    /// `x-server` answers `<backend>/<server>`.
    pub async fn start_per_pool(binary: &Path, blue: &[Declared], green: &[Declared]) -> Self {
        Self::from(HaproxyProcess::start_per_pool(binary, None, &[("blue", blue.to_vec()), ("green", green.to_vec())]))
    }

    fn from(process: HaproxyProcess) -> Self {
        let (dir, frontend) = (process.dir().to_owned(), process.frontend());
        Self { process, dir, frontend }
    }

    pub fn socket(&self) -> PathBuf {
        self.process.socket()
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn router(&self) -> HaproxyRouter {
        HaproxyRouter::builder(HaproxyEndpoint::unix(self.socket()), "web")
            .pools(["blue", "green"])
            .server_options(CHECKS)
            .build()
            .expect("router")
    }

    /// The split map of [`Self::start_per_pool`], as its haproxy.cfg names it.
    pub fn split_map(&self) -> String {
        self.process.split_map()
    }

    /// The router of [`Self::start_per_pool`]: pools `blue` and `green`, backends `web_blue`
    /// and `web_green`.
    pub fn per_pool_router(&self) -> HaproxyRouter {
        HaproxyRouter::builder(HaproxyEndpoint::unix(self.socket()), "web")
            .backend_per_pool(self.split_map())
            .server_options(CHECKS)
            .build()
            .expect("router")
    }
}

pub fn declared(pool: &str, targets: &[Target], weight: u32) -> Vec<Declared> {
    targets.iter().map(|t| Declared::new(format!("{pool}.{}", t.id), t.address.clone(), weight)).collect()
}

/// Servers named by host id, as the backend-per-pool layout has them.
pub fn declared_by_id(targets: &[Target], weight: u32) -> Vec<Declared> {
    targets.iter().map(|t| Declared::new(t.id.to_string(), t.address.clone(), weight)).collect()
}

pub async fn local_fleet(prefix: &str, count: usize) -> (LocalProcessFleet, Vec<Target>) {
    LocalProcessFleet::builder()
        .binary(TARGET_BIN)
        .id_prefix(prefix)
        .zones(["zone-a", "zone-b"])
        .start("v1", count)
        .await
        .expect("start targets")
}

pub fn health() -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(150),
        timeout: Duration::from_millis(150),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(10),
    }
}

pub fn spec(version: &str, strategy: Strategy) -> Spec {
    Spec::new("web", version, strategy)
        .with_health(health())
        .with_drain(DrainPolicy { timeout: Duration::from_secs(10) })
}

pub fn probe() -> Arc<dyn HealthProbe> {
    Arc::new(HttpProbe::builder("/healthz").timeout(Duration::from_millis(150)).build().expect("probe"))
}

// ---- load ----

/// One request sent through HAProxy.
#[derive(Debug, Clone)]
pub struct Sample {
    pub start: Instant,
    pub end: Instant,
    /// The server that answered (`x-server`), if any did.
    pub server: Option<String>,
    pub version: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub long: bool,
}

pub type Log = Arc<Mutex<Vec<Sample>>>;

pub async fn send(client: &reqwest::Client, url: &str, pin: Option<&str>, log: &Log, long: bool) {
    let start = Instant::now();
    let mut request = client.get(url);
    if let Some(server) = pin {
        request = request.header("x-pin", server);
    }
    let result = request.send().await;
    let sample = match result {
        Ok(response) => {
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (server, version, status) = (header("x-server"), header("x-version"), response.status());
            let body = response.bytes().await;
            let ok = status.is_success() && body.is_ok();
            let error = (!ok).then(|| format!("status {status}, body {:?}", body.map(|b| b.len())));
            Sample { start, end: Instant::now(), server, version, ok, error, long }
        }
        Err(e) => Sample {
            start,
            end: Instant::now(),
            server: None,
            version: None,
            ok: false,
            error: Some(e.to_string()),
            long,
        },
    };
    log.lock().expect("log").push(sample);
}

/// `workers` loops of `GET /` through HAProxy, back to back, each on its keep-alive connection.
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub log: Log,
    /// Long requests started by [`PinBeforeDrain`] and not answered yet.
    pub pending: Arc<AtomicUsize>,
}

impl Load {
    pub fn start(url: &str, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Log = Arc::default();
        let tasks = (0..workers)
            .map(|_| {
                let (stop, log, url) = (stop.clone(), log.clone(), format!("{url}/"));
                tokio::spawn(async move {
                    let client = client();
                    while !stop.load(Ordering::Relaxed) {
                        send(&client, &url, None, &log, false).await;
                    }
                })
            })
            .collect();
        Self { stop, tasks, log, pending: Arc::default() }
    }

    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        // Long requests started by the pinning router finish within their duration.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.pending.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = self.log.lock().expect("log");
        log.clone()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(15)).no_proxy().build().expect("client")
}

pub fn summary(samples: &[Sample]) -> String {
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok).collect();
    let mut by_version: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.ok) {
        *by_version.entry(s.version.clone().unwrap_or_default()).or_default() += 1;
    }
    let long = samples.iter().filter(|s| s.long).count();
    let mut text =
        format!("{} requests ({long} long), {} failed, by version {by_version:?}", samples.len(), failed.len());
    for f in failed.iter().take(5) {
        text.push_str(&format!("\n  failed: server {:?}: {:?}", f.server, f.error));
    }
    text
}

/// Updater timings per host: when the update began and ended, and when the old process was
/// stopped (from then until the end, the host could not serve).
pub type UpdateMarks = Arc<Mutex<BTreeMap<TargetId, (Instant, Instant, Instant)>>>;

/// An updater that "installs" for `install` (a sleep), then restarts the host's local
/// process on its port with the new version; `fail` decides, per (host, version, n-th v2
/// update), to fail before touching the host.
pub fn restart_updater(
    local: &LocalProcessFleet,
    install: Duration,
    marks: UpdateMarks,
    fail: impl Fn(&Target, usize) -> bool + Send + Sync + 'static,
) -> Updater {
    let local = local.clone();
    let fail = Arc::new(fail);
    let counter = Arc::new(AtomicUsize::new(0));
    Updater::from_fn(move |host: Target, version| {
        let (local, marks, fail, counter) = (local.clone(), marks.clone(), fail.clone(), counter.clone());
        async move {
            let start = Instant::now();
            let n = if version.as_str() == "v2" { counter.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
            tokio::time::sleep(install).await;
            if fail(&host, n) {
                return Err(format!(
                    "fetching artifact web-{version}.tar.gz for {}: checksum mismatch (expected 9f2c…, got 0000…)\n\
                     deploy.sh: aborted, {} left on {}",
                    host.id, host.id, host.version
                ));
            }
            let stopping = Instant::now();
            local.update(&host.id, &version).await.map_err(|e| e.to_string())?;
            marks.lock().expect("marks").insert(host.id.clone(), (start, stopping, Instant::now()));
            Ok(format!("{} now runs {version}", host.id))
        }
    })
}

/// User + system CPU time of this process so far (Linux; zero elsewhere).
pub fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // After the command name (in parentheses) come: state ppid pgrp session tty_nr tpgid flags
    // minflt cminflt majflt cmajflt utime stime, the times in clock ticks (100 per second).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

pub fn kinds(events: &[Event]) -> Vec<&EventKind> {
    events.iter().map(|e| &e.kind).collect()
}

pub fn print_events(name: &str, sink: &MemorySink) {
    eprintln!("---- {name}: events");
    for event in sink.events() {
        eprintln!("{event}");
    }
}

/// Checks that no request was answered by a host while it was down (old process stopped,
/// new one not yet up): a request routed there could not have succeeded.
pub fn assert_no_traffic_to_stopped_hosts(samples: &[Sample], marks: &UpdateMarks, pool: &str) {
    let marks = marks.lock().expect("marks");
    for (id, (_, stopping, up)) in marks.iter() {
        let server = format!("{pool}.{id}");
        let hit = samples.iter().find(|s| s.server.as_deref() == Some(&server) && s.start > *stopping && s.start < *up);
        assert!(hit.is_none(), "a request went to {server} while it was stopped: {hit:?}");
    }
}

/// Every updater run: (host, version).
pub type Runs = Arc<Mutex<Vec<(TargetId, bluegreen_core::Version)>>>;

/// An updater that "installs" for 300 ms, then restarts the host's process with the new
/// version, and records each run.
pub fn counting_updater(local: &LocalProcessFleet, runs: Runs) -> Updater {
    let local = local.clone();
    Updater::from_fn(move |host: Target, version: bluegreen_core::Version| {
        let (local, runs) = (local.clone(), runs.clone());
        async move {
            runs.lock().expect("runs").push((host.id.clone(), version.clone()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            local.update(&host.id, &version).await.map_err(|e| e.to_string())?;
            Ok(format!("{} now runs {version}", host.id))
        }
    })
}

/// Clients sending 1.5 s requests through HAProxy back to back, recorded as long in a [`Load`]'s
/// log, so every switch has work in flight on the pool it leaves.
pub struct LongRequests {
    running: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LongRequests {
    /// `clients` of `url/sleep/1500`, logged into `load`.
    pub fn start(load: &Load, url: &str, clients: usize) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let tasks = (0..clients)
            .map(|_| {
                let (log, url, running) = (load.log.clone(), format!("{url}/sleep/1500"), running.clone());
                tokio::spawn(async move {
                    let client = client();
                    while running.load(Ordering::Relaxed) {
                        send(&client, &url, None, &log, true).await;
                    }
                })
            })
            .collect();
        Self { running, tasks }
    }

    /// Stops the clients once their request in flight is answered.
    pub async fn stop(self) {
        self.running.store(false, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
