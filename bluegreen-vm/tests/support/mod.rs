//! The real-HAProxy test harness: a generated HAProxy in front of real `bluegreen-target`
//! processes, continuous load through it with every request recorded, and an updater that
//! restarts a host's process with the new version.

#![allow(dead_code, unreachable_pub, reason = "each test file uses part of the harness")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluegreen_core::{
    DrainPolicy, Event, EventKind, Fleet, HealthPolicy, HealthProbe, HttpProbe, MemorySink, Spec, Strategy, Target,
    TargetId,
};
use bluegreen_testkit::free_port;
use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter, LocalProcessFleet, Updater};
use tokio::process::{Child, Command};

pub const TARGET_BIN: &str = env!("CARGO_BIN_EXE_bluegreen-target");

// ---- HAProxy ----

/// `Some(haproxy)`, or `None` (skip) locally; fails in CI.
pub fn require_haproxy(test: &str) -> Option<PathBuf> {
    bluegreen_testkit::require_binary(
        "haproxy",
        "install it with `apt-get install -y haproxy` (scripts/test does this)",
        test,
    )
}

/// The servers a generated config declares in backend `web`.
pub struct Declared {
    pub name: String,
    pub address: String,
    pub weight: u32,
}

/// A running HAProxy; killed (SIGKILL, by its pid through `kill_on_drop`) and its directory
/// removed when dropped.
pub struct Haproxy {
    pub child: Child,
    pub dir: PathBuf,
    pub frontend: u16,
}

pub const CHECKS: &str = "check inter 200ms fall 2 rise 2";

impl Haproxy {
    /// Starts HAProxy with backend `web` holding `servers`, plus `extra` config at the end.
    pub async fn start(binary: &Path, servers: &[Declared], extra: &str) -> Self {
        Self::start_with(binary, |_, frontend| one_backend(frontend, servers, extra)).await
    }

    /// Starts HAProxy in the backend-per-pool layout: backends `web_blue` and `web_green`
    /// holding `blue` and `green` (servers named by host id), and a frontend choosing between
    /// them by the map [`Self::split_map`], which starts with every entry on `web_blue`.
    /// `x-server` answers `<backend>/<server>`.
    pub async fn start_per_pool(binary: &Path, blue: &[Declared], green: &[Declared]) -> Self {
        Self::start_with(binary, |dir, frontend| {
            let map = dir.join("bluegreen-split.map");
            let entries: String = (0..100).map(|key| format!("{key} web_blue\n")).collect();
            std::fs::write(&map, entries).expect("write the split map");
            let mut config = format!(
                "frontend fe\n\
                 \x20   bind 127.0.0.1:{frontend}\n\
                 \x20   use_backend %[rand(100),map_int({map})]\n\
                 \x20   default_backend web_blue\n",
                map = map.display()
            );
            for (backend, servers) in [("web_blue", blue), ("web_green", green)] {
                config.push_str(&format!("backend {backend}\n{}", backend_body("%[be_name]/%[srv_name]")));
                for s in servers {
                    config.push_str(&format!("    server {} {} weight {}\n", s.name, s.address, s.weight));
                }
            }
            config
        })
        .await
    }

    /// Starts HAProxy with the global and defaults sections and `body(dir, frontend port)`.
    pub async fn start_with(binary: &Path, body: impl Fn(&Path, u16) -> String) -> Self {
        // A free port can be taken by another test's server before HAProxy binds it: try another.
        for _ in 0..5 {
            if let Some(haproxy) = Self::try_start_with(binary, &body, free_port()).await {
                return haproxy;
            }
        }
        panic!("haproxy found its frontend port taken 5 times");
    }

    /// Starts HAProxy with its frontend on `frontend`; `None` if that port was taken meanwhile.
    pub async fn try_start(binary: &Path, servers: &[Declared], extra: &str, frontend: u16) -> Option<Self> {
        Self::try_start_with(binary, &|_: &Path, port| one_backend(port, servers, extra), frontend).await
    }

    async fn try_start_with(binary: &Path, body: &impl Fn(&Path, u16) -> String, frontend: u16) -> Option<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bluegreen-haproxy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut config = format!(
            "global\n\
             \x20   stats socket {dir}/admin.sock mode 600 level admin\n\
             \x20   stats socket {dir}/user.sock mode 600 level user\n\
             \x20   stats timeout 30s\n\
             \x20   maxconn 4096\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             \x20   # no retries: a request sent to a server that cannot take it must show as a failure\n\
             \x20   retries 0\n",
            dir = dir.display()
        );
        config.push_str(&body(&dir, frontend));
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &config).expect("write haproxy.cfg");
        let mut child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start haproxy");
        let socket = dir.join("admin.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::UnixStream::connect(&socket).await.is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", frontend)).await.is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut stderr).await;
                }
                if stderr.contains("cannot bind socket") {
                    return None;
                }
                panic!("haproxy exited ({status}) with this config:\n{config}\n{stderr}");
            }
            assert!(Instant::now() < deadline, "haproxy did not open its sockets within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Its warnings are not interesting once it runs.
        drop(child.stderr.take());
        Some(Self { child, dir, frontend })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.frontend)
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
        self.dir.join("bluegreen-split.map").display().to_string()
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

/// The frontend and backend `web` of [`Haproxy::start`].
fn one_backend(frontend: u16, servers: &[Declared], extra: &str) -> String {
    let mut config = format!(
        "frontend fe\n\
         \x20   bind 127.0.0.1:{frontend}\n\
         \x20   default_backend web\n\
         backend web\n{}",
        backend_body("%[srv_name]")
    );
    for s in servers {
        config.push_str(&format!("    server {} {} weight {}\n", s.name, s.address, s.weight));
    }
    config.push_str(extra);
    config
}

/// A backend's settings before its servers; `x-server` answers `server_header`.
fn backend_body(server_header: &str) -> String {
    format!(
        "\x20   balance roundrobin\n\
         \x20   option httpchk GET /healthz\n\
         \x20   # which server answered (for the tests' bookkeeping)\n\
         \x20   http-response set-header x-server {server_header}\n\
         \x20   # tests pin long requests to one server, to have them in flight when it drains\n\
         \x20   use-server %[req.hdr(x-pin)] if {{ req.hdr(x-pin) -m found }}\n\
         \x20   default-server {CHECKS}\n"
    )
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn declared(pool: &str, targets: &[Target], weight: u32) -> Vec<Declared> {
    targets.iter().map(|t| Declared { name: format!("{pool}.{}", t.id), address: t.address.clone(), weight }).collect()
}

/// Servers named by host id, as the backend-per-pool layout has them.
pub fn declared_by_id(targets: &[Target], weight: u32) -> Vec<Declared> {
    targets.iter().map(|t| Declared { name: t.id.to_string(), address: t.address.clone(), weight }).collect()
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
