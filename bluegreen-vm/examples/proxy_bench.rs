//! The in-process proxy against HAProxy on the same targets: four `bluegreen-target` servers
//! (run by this example itself, `proxy_bench serve-target …`), reached directly, through a
//! [`LocalProxyRouter`] and through a real `haproxy`, each driven by the same closed-loop load
//! (the [`LoadGenerator`] at a rate it cannot reach, so the concurrency is the limit).
//!
//! ```text
//! cargo run --release -p bluegreen-vm --example proxy_bench [-- SECONDS [ROUNDS [CONCURRENCY ...]]]
//! ```
//!
//! Defaults: 5 s per run (after a 1 s warm-up that is not counted), 3 rounds, concurrency 32
//! and 128. Each round runs every setup at every concurrency; the table at the end gives the
//! median of the rounds. Setups, for each concurrency:
//! - `direct`: four generators, one per target, each with a quarter of the concurrency (the
//!   rows' p50/p99 are the four generators' values averaged, weighted by their requests);
//! - `local proxy (own process)`: a `LocalProxyRouter` in a child process of its own (a tokio
//!   runtime with one worker per core), as HAProxy is;
//! - `local proxy (in-process)`: the `LocalProxyRouter` on the load generator's runtime, as it
//!   runs embedded in a deployer or `bluegreen demo`;
//! - `haproxy`: HAProxy with a generated config (frontend and backend on 127.0.0.1 high ports,
//!   round-robin, no checks, default threads); skipped with a notice when it is not installed.
//!
//! Everything (targets, proxies, load) shares the machine, so the figures are for one box; the
//! load average is printed before, during and after, and each run reports the CPU that
//! processes other than the benchmark's used meanwhile (a background build shows there).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bluegreen_core::{Router, Target};
use bluegreen_testkit::haproxy::HaproxyProcess;
use bluegreen_vm::{LoadGenerator, LoadReport, LocalProcessFleet, LocalProxyRouter};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const TARGETS: usize = 4;
const WARM_UP: Duration = Duration::from_secs(1);

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // A target process (what `bluegreen-target` runs), started by the fleet below.
        Some("serve-target") => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::process::exit(runtime.block_on(bluegreen_vm::target::serve(&args[1..])));
        }
        // The local proxy in a process of its own, in front of the addresses given.
        Some("serve-proxy") => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve_proxy(&args[1..]))
        }
        _ => {
            let seconds: f64 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(5.0);
            let rounds: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
            let mut concurrencies: Vec<usize> = args.iter().skip(2).map(|s| s.parse()).collect::<Result<_, _>>()?;
            if concurrencies.is_empty() {
                concurrencies = vec![32, 128];
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(bench(Duration::from_secs_f64(seconds), rounds.max(1), &concurrencies))
        }
    }
}

/// `serve-proxy ADDR…`: a `LocalProxyRouter` with one pool holding the addresses; prints
/// `listening on ADDR` and serves until its stdin closes (the parent went away).
async fn serve_proxy(addresses: &[String]) -> BoxResult<()> {
    let proxy = LocalProxyRouter::builder().pool("blue").build().await?;
    proxy.add_targets(&"blue".into(), &targets_at(addresses)).await?;
    println!("listening on {}", proxy.address());
    // (tokio's `io-std` is not enabled for this crate: read stdin on a blocking thread.)
    let _ = tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())).await;
    proxy.shutdown().await;
    Ok(())
}

fn targets_at(addresses: &[String]) -> Vec<Target> {
    addresses
        .iter()
        .enumerate()
        .map(|(i, address)| Target {
            id: format!("web-{:02}", i + 1).into(),
            address: address.clone(),
            zone: None,
            version: "v1".into(),
            tag: None,
        })
        .collect()
}

/// One measured run of one setup.
struct Row {
    concurrency: usize,
    setup: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    sent: u64,
    /// CPU used during the run by processes other than the benchmark's own (this one, the
    /// targets, the proxy process, HAProxy), in % of the whole machine.
    other_cpu: f64,
}

async fn bench(duration: Duration, rounds: usize, concurrencies: &[usize]) -> BoxResult<()> {
    let exe = std::env::current_exe()?;
    println!("load average before: {}", load_average());
    println!("{} CPUs; {}", std::thread::available_parallelism().map_or(0, |n| n.get()), haproxy_version());
    let (fleet, targets) =
        LocalProcessFleet::builder().binary(&exe).leading_args(["serve-target"]).start("v1", TARGETS).await?;
    let addresses: Vec<String> = targets.iter().map(|t| t.address.clone()).collect();
    println!("{TARGETS} targets: {}", addresses.join(", "));

    let own = ProxyProcess::start(&exe, &addresses).await?;
    let mut pids = vec![std::process::id()];
    for target in &targets {
        pids.extend(fleet.pid(&target.id).await);
    }
    pids.extend(own.child.id());
    let embedded = LocalProxyRouter::builder().pool("blue").build().await?;
    embedded.add_targets(&"blue".into(), &targets).await?;
    let haproxy = match bluegreen_testkit::find_binary("haproxy") {
        Some(binary) => Some(start_haproxy(&binary, &addresses)),
        None => {
            println!(
                "NOTICE: haproxy is not installed (not on PATH, not in /usr/sbin): its rows are skipped; \
                 install it with `apt-get install -y haproxy`"
            );
            None
        }
    };

    if let Some(haproxy) = &haproxy {
        pids.push(haproxy.pid());
    }
    let mut rows = Vec::new();
    for (round, &concurrency) in (1..=rounds).flat_map(|round| concurrencies.iter().map(move |c| (round, c))) {
        println!("-- round {round} of {rounds}");
        let direct: Vec<String> = addresses.iter().map(|a| format!("http://{a}")).collect();
        rows.push(measure(concurrency, "direct", &direct, duration, &pids).await?);
        rows.push(
            measure(concurrency, "local proxy (own process)", std::slice::from_ref(&own.url), duration, &pids).await?,
        );
        rows.push(measure(concurrency, "local proxy (in-process)", &[embedded.url()], duration, &pids).await?);
        if let Some(haproxy) = &haproxy {
            rows.push(measure(concurrency, "haproxy", &[haproxy.url()], duration, &pids).await?);
        }
    }
    println!("load average after: {}", load_average());

    // Per concurrency and setup: the median of the rounds for each figure, and the range of
    // requests/s; the added p99 is the median p99 minus the direct one's.
    let median = |mut values: Vec<f64>| -> f64 {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let mut setups: Vec<(usize, &str)> = Vec::new();
    for row in &rows {
        if !setups.contains(&(row.concurrency, row.setup)) {
            setups.push((row.concurrency, row.setup));
        }
    }
    let of = |c: usize, setup: &str| -> Vec<&Row> {
        rows.iter().filter(|r| r.concurrency == c && r.setup == setup).collect()
    };
    println!();
    println!("medians of {rounds} round(s) of {:.0} s each (requests/s: median, min–max)", duration.as_secs_f64());
    println!(
        "| concurrency | setup | requests/s | p50 | p99 | p99 added vs direct | failed | other processes' CPU (max) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &(concurrency, setup) in &setups {
        let runs = of(concurrency, setup);
        let rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
        let (low, high) = (rps.iter().copied().fold(f64::MAX, f64::min), rps.iter().copied().fold(0.0, f64::max));
        let p99 = median(runs.iter().map(|r| r.p99_ms).collect());
        let direct_p99 = median(of(concurrency, "direct").iter().map(|r| r.p99_ms).collect());
        let added = if setup == "direct" { "—".to_owned() } else { format!("{:+.2} ms", p99 - direct_p99) };
        println!(
            "| {concurrency} | {setup} | {} ({}–{}) | {:.2} ms | {p99:.2} ms | {added} | {} of {} | {:.1} % |",
            thousands(median(rps.clone())),
            thousands(low),
            thousands(high),
            median(runs.iter().map(|r| r.p50_ms).collect()),
            runs.iter().map(|r| r.failed).sum::<u64>(),
            thousands(runs.iter().map(|r| r.sent as f64).sum()),
            runs.iter().map(|r| r.other_cpu).fold(0.0, f64::max)
        );
    }

    embedded.shutdown().await;
    drop(own);
    drop(haproxy);
    fleet.shutdown().await;
    let failed: u64 = rows.iter().map(|r| r.failed).sum();
    if failed > 0 {
        return Err(format!("{failed} requests failed").into());
    }
    Ok(())
}

/// A warm-up, then `duration` of closed-loop load spread over `urls` (the concurrency split
/// evenly between them); the generators run together.
async fn measure(
    concurrency: usize,
    setup: &'static str,
    urls: &[String],
    duration: Duration,
    pids: &[u32],
) -> BoxResult<Row> {
    let each = (concurrency / urls.len()).max(1);
    let _ = run(urls, each, WARM_UP).await?;
    let before = CpuSnapshot::take(pids);
    let reports = run(urls, each, duration).await?;
    let other_cpu = CpuSnapshot::take(pids).other_share_since(&before);
    let succeeded: u64 = reports.iter().map(|r| r.succeeded).sum();
    let weighted = |value: fn(&LoadReport) -> f64| -> f64 {
        reports.iter().map(|r| value(r) * r.succeeded as f64).sum::<f64>() / succeeded.max(1) as f64
    };
    let seconds = reports.iter().map(|r| r.elapsed.as_secs_f64()).fold(0.0, f64::max);
    let row = Row {
        concurrency,
        setup,
        rps: succeeded as f64 / seconds.max(f64::EPSILON),
        p50_ms: weighted(|r| r.p50_ms),
        p99_ms: weighted(|r| r.p99_ms),
        failed: reports.iter().map(|r| r.failed).sum(),
        sent: reports.iter().map(|r| r.sent).sum(),
        other_cpu,
    };
    println!(
        "concurrency {concurrency:>3}, {setup:<26}: {:>9.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} failed; \
         other processes {:.1} % CPU, load average {}",
        row.rps,
        row.p50_ms,
        row.p99_ms,
        row.failed,
        row.other_cpu,
        load_average()
    );
    for report in reports.iter().filter(|r| r.failed > 0) {
        println!("  {report}");
    }
    Ok(row)
}

async fn run(urls: &[String], concurrency: usize, duration: Duration) -> BoxResult<Vec<LoadReport>> {
    let generators = urls
        .iter()
        .map(|url| {
            LoadGenerator::builder(url.clone())
                // Far above what the box can serve: each generator keeps `concurrency` requests
                // in flight, back to back (closed loop).
                .rate(1_000_000.0)
                .concurrency(concurrency)
                .max_requests(u64::MAX)
                .max_duration(duration + Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    tokio::time::sleep(duration).await;
    Ok(futures::future::join_all(generators.into_iter().map(LoadGenerator::stop)).await)
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU time (clock ticks) of the whole machine and of the benchmark's processes.
struct CpuSnapshot {
    at: std::time::Instant,
    machine_busy: u64,
    ours: u64,
}

impl CpuSnapshot {
    fn take(pids: &[u32]) -> Self {
        // /proc/stat's `cpu` line: user nice system idle iowait irq softirq steal …; user + nice
        // + system is what processes' utime + stime add up to (interrupts are nobody's).
        let machine_busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?.to_owned();
                Some(line.split_whitespace().skip(1).take(3).filter_map(|f| f.parse::<u64>().ok()).sum())
            })
            .unwrap_or(0);
        // utime + stime of each process (all its threads), fields 14 and 15 of /proc/PID/stat.
        let ours = pids
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .map(|stat| {
                let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest).to_owned();
                let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
                fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
            })
            .sum();
        Self { at: std::time::Instant::now(), machine_busy, ours }
    }

    /// CPU used by other processes since `before`, in % of all cores (ticks of 10 ms).
    fn other_share_since(&self, before: &Self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let other =
            self.machine_busy.saturating_sub(before.machine_busy) as f64 - self.ours.saturating_sub(before.ours) as f64;
        let ticks = self.at.duration_since(before.at).as_secs_f64() * 100.0 * cores;
        (other.max(0.0) / ticks * 100.0).min(100.0)
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Reads `listening on ADDR` from a child's stdout.
async fn listening_on(child: &mut Child) -> BoxResult<String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(address) = line.strip_prefix("listening on ") {
                return Ok::<_, std::io::Error>(Some(address.trim().to_owned()));
            }
        }
        Ok(None)
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(Some(address))) => Ok(address),
        other => Err(format!("the proxy process did not say where it listens: {other:?}").into()),
    }
}

/// `serve-proxy` in a child process; killed when dropped.
struct ProxyProcess {
    child: Child,
    url: String,
}

impl ProxyProcess {
    async fn start(exe: &Path, addresses: &[String]) -> BoxResult<Self> {
        let mut child = Command::new(exe)
            .arg("serve-proxy")
            .args(addresses)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let address = listening_on(&mut child).await?;
        Ok(Self { child, url: format!("http://{address}") })
    }
}

fn haproxy_version() -> String {
    let Some(binary) = bluegreen_testkit::find_binary("haproxy") else { return "haproxy not installed".to_owned() };
    std::process::Command::new(binary)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "haproxy version unknown".to_owned())
}

/// HAProxy (testkit's generated global and defaults sections) in front of the targets, round
/// robin with no health checks: only the proxying is measured.
fn start_haproxy(binary: &Path, addresses: &[String]) -> HaproxyProcess {
    HaproxyProcess::start_with(binary, None, |_, frontend| {
        let mut config = format!(
            "frontend fe\n\
             \x20   bind 127.0.0.1:{frontend}\n\
             \x20   default_backend web\n\
             backend web\n\
             \x20   balance roundrobin\n"
        );
        for (i, address) in addresses.iter().enumerate() {
            config.push_str(&format!("    server web-{:02} {address}\n", i + 1));
        }
        config
    })
}
