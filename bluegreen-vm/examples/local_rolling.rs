//! The seed's job on one machine: ten local server processes behind the in-process proxy,
//! updated two at a time (drain → update → health → re-enable) under steady load, with the
//! plan printed first, the event log live, and the load and proxy counters at the end.
//!
//! ```text
//! cargo build -p bluegreen-vm --bin bluegreen-target
//! cargo run -p bluegreen-vm --example local_rolling
//! ```

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::{
    DrainPolicy, Event, EventSink, Executor, HealthPolicy, HttpProbe, Rolling, Router, Spec, Strategy,
};
use bluegreen_vm::{LoadGenerator, LocalProcessFleet, LocalProxyRouter};

/// Prints each event as one line.
#[derive(Debug)]
struct Print;

impl EventSink for Print {
    fn emit(&self, event: &Event) {
        println!("{event}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proxy = LocalProxyRouter::builder().pool("blue").pool("green").build().await?;
    let (fleet, targets) = LocalProcessFleet::builder().zones(["zone-a", "zone-b"]).start("v1", 10).await?;
    proxy.add_targets(&"blue".into(), &targets).await?;
    println!("proxy on {}, 10 targets of v1 from {}", proxy.url(), fleet.binary().display());

    let probe = HttpProbe::builder("/healthz").timeout(Duration::from_millis(200)).build()?;
    let executor =
        Executor::builder(Arc::new(proxy.clone()), Arc::new(fleet.clone()), Arc::new(probe)).sink(Print).build();
    let health = HealthPolicy {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        ..HealthPolicy::default()
    };
    let spec = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2)))
        .with_health(health)
        .with_drain(DrainPolicy { timeout: Duration::from_secs(10) });
    println!("{}", executor.plan(&spec).await?.timeline());

    let load = LoadGenerator::builder(proxy.url())
        .rate(300.0)
        .concurrency(64)
        .long_requests(0.05, Duration::from_millis(300)..=Duration::from_millis(1500))
        .max_duration(Duration::from_secs(120))
        .start()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = executor.deploy(&spec).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.stop().await;

    println!("\n{} in {:.1}s", outcome.status, outcome.elapsed.as_secs_f64());
    println!("load:  {report}");
    println!("proxy: {:?}", proxy.stats().total);
    fleet.shutdown().await;
    proxy.shutdown().await;
    if report.failed > 0 {
        return Err(format!("{} requests failed", report.failed).into());
    }
    Ok(())
}
