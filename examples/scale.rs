//! The scale run: CPU time, wall time and peak RSS of two large simulated workloads.
//!
//! - `rolling`: a rolling in-place update of 10,000 targets in batches of 10%, on the
//!   virtual clock (goal: < 1 s CPU, < 100 MiB peak RSS).
//! - `blue-green`: 1,000 blue-green deploys of 4 targets each, each on its own simulator,
//!   all running concurrently on one paused current-thread runtime (goal: < 5 s).
//!
//! Without an argument, each workload runs in a child process of its own, so that each peak
//! RSS (`VmHWM`) is the workload's own and not the larger of the two.
//!
//! ```text
//! cargo run --release -p bluegreen --example scale              # both
//! cargo run --release -p bluegreen --example scale -- rolling 2000   # one, smaller
//! cargo run --release -p bluegreen --example scale -- rolling 10000 100   # batches of 100
//! ```
//!
//! CPU time is utime + stime from `/proc/self/stat` (all threads, in clock ticks of 10 ms)
//! and, more finely, the main thread's run time from `/proc/self/schedstat`; peak RSS is
//! `VmHWM` from `/proc/self/status`. Linux only.

use std::time::{Duration, Instant};

use bluegreen::{BatchSize, Status};

#[path = "../benches/support/workloads.rs"]
mod workloads;
use workloads::{blue_green, blue_greens, paused_runtime, rolling};

/// Clock ticks per second of `/proc/self/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// CPU seconds of the whole process (all threads), from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after it are well-formed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// The main thread's time on a CPU in seconds (nanosecond resolution), from `/proc/self/schedstat`.
fn main_thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let nanos: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanos / 1e9)
}

/// A `kB` line of `/proc/self/status`, in MiB.
fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Measured {
    wall: Duration,
    cpu: Option<f64>,
    thread_cpu: Option<f64>,
    virtual_time: Duration,
}

/// Runs `work` on a fresh paused runtime and measures it.
fn measure<T>(work: impl std::future::Future<Output = T>, virtual_time: impl FnOnce(&T) -> Duration) -> (T, Measured) {
    let runtime = paused_runtime();
    let (cpu0, thread0) = (cpu_seconds(), main_thread_cpu_seconds());
    let wall = Instant::now();
    let out = runtime.block_on(work);
    let wall = wall.elapsed();
    let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let thread_cpu = main_thread_cpu_seconds().zip(thread0).map(|(b, a)| b - a);
    let virtual_time = virtual_time(&out);
    drop(runtime);
    (out, Measured { wall, cpu, thread_cpu, virtual_time })
}

fn report(name: &str, goal: &str, m: &Measured) {
    let fmt = |v: Option<f64>, unit: &str| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} {unit}"));
    println!("{name}");
    println!("  goal:             {goal}");
    println!("  wall time:        {:.3} s", m.wall.as_secs_f64());
    println!("  CPU time:         {}  (utime+stime, 10 ms ticks)", fmt(m.cpu, "s"));
    println!("  main-thread CPU:  {}  (schedstat)", fmt(m.thread_cpu, "s"));
    println!("  peak RSS:         {}  (VmHWM, whole process)", fmt(status_mib("VmHWM:"), "MiB"));
    println!("  virtual time:     {}", humantime::format_duration(Duration::from_secs(m.virtual_time.as_secs())));
}

fn run_rolling(targets: usize, batch: BatchSize) -> bool {
    let (outcome, m) = measure(rolling(targets, batch), |o| o.elapsed);
    report(
        &format!("rolling update of {targets} targets in batches of {batch} ({:?})", outcome.status),
        "< 1 s CPU and < 100 MiB peak RSS (for 10,000 targets)",
        &m,
    );
    println!("  steps completed:  {}", outcome.steps_completed);
    println!("  deploy future:    {} bytes", std::mem::size_of_val(&rolling(1, BatchSize::Count(1))));
    outcome.status == Status::Succeeded
}

fn run_blue_green(deploys: usize) -> bool {
    let (outcomes, m) = measure(blue_greens(deploys), |os| os.iter().map(|o| o.elapsed).max().unwrap_or_default());
    let succeeded = outcomes.iter().filter(|o| o.status == Status::Succeeded).count();
    report(
        &format!("{deploys} concurrent blue-green deploys of 4 targets each ({succeeded} succeeded)"),
        "< 5 s (for 1,000 deploys)",
        &m,
    );
    println!("  deploy future:    {} bytes each", std::mem::size_of_val(&blue_green()));
    succeeded == deploys
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next();
    let size: Option<usize> = args.next().and_then(|n| n.parse().ok());
    // The batch: a count (`50`) or a share (`10%`).
    let batch = args.next().map_or(BatchSize::Percent(10), |b| match b.strip_suffix('%') {
        Some(p) => BatchSize::Percent(p.parse().expect("a percentage")),
        None => BatchSize::Count(b.parse().expect("a count")),
    });
    println!("baseline RSS before the workload: {:.1} MiB", status_mib("VmRSS:").unwrap_or(f64::NAN));
    let ok = match which.as_deref() {
        Some("rolling") => run_rolling(size.unwrap_or(10_000), batch),
        Some("blue-green") => run_blue_green(size.unwrap_or(1_000)),
        None => {
            // Each workload in a child process, so that each peak RSS is its own.
            let exe = std::env::current_exe().expect("the path of this program");
            ["rolling", "blue-green"].iter().all(|which| {
                println!();
                let status = std::process::Command::new(&exe).arg(which).status().expect("the child runs");
                status.success()
            })
        }
        Some(other) => {
            eprintln!("unknown workload {other:?}: expected `rolling [targets [batch]]` or `blue-green [deploys]`");
            false
        }
    };
    if !ok {
        std::process::exit(1);
    }
}
