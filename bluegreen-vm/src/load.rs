//! [`LoadGenerator`]: steady HTTP load that counts what happened to every request.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bluegreen_core::{Error, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

/// The lowest rate a generator takes: one request in 100 s (a slower one would not show a
/// deploy's effect, and its interval must fit a `Duration`).
pub const MIN_RATE: f64 = 0.01;
/// The highest rate a generator takes, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;

/// Sends GET requests to a URL at a steady rate until stopped, and counts what happened to
/// each: succeeded (a 2xx answer read to its end), failed (any other status, a connection
/// error, a broken body or a timeout), and which version served it (the `x-version` header).
///
/// - The rate is kept with a ticker; at most `concurrency` requests are in flight, and when
///   all slots are busy the generator waits (the rate drops; nothing is skipped silently, and
///   [`LoadReport::sent`] says what was actually sent).
/// - A share of requests can be long ones, `GET {base}/sleep/{ms}` with durations spread over
///   a range, to be in flight when a target is drained. Which requests are long is decided by
///   a hash of their number: the same every run, and not periodic.
/// - It stops by itself after [`max_duration`](LoadGeneratorBuilder::max_duration) (10 minutes
///   by default) or [`max_requests`](LoadGeneratorBuilder::max_requests).
/// - Dropping it without [`stop`](Self::stop) aborts it and its requests.
///
/// ```no_run
/// # async fn example() -> bluegreen_core::Result<()> {
/// use std::time::Duration;
/// use bluegreen_vm::LoadGenerator;
/// let load = LoadGenerator::builder("http://127.0.0.1:8080")
///     .rate(200.0)
///     .concurrency(64)
///     .long_requests(0.05, Duration::from_millis(300)..=Duration::from_secs(2))
///     .start()?;
/// // ... deploy ...
/// let report = load.stop().await;
/// assert_eq!(report.failed, 0, "{report}");
/// # Ok(()) }
/// ```
pub struct LoadGenerator {
    counters: Arc<LoadCounters>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    started: Instant,
}

/// Builds a [`LoadGenerator`]; see [`LoadGenerator::builder`].
#[derive(Debug, Clone)]
pub struct LoadGeneratorBuilder {
    base: String,
    path: String,
    rate: f64,
    concurrency: usize,
    long_share: f64,
    long_durations: RangeInclusive<Duration>,
    timeout: Duration,
    max_duration: Duration,
    max_requests: u64,
}

/// What a [`LoadGenerator`] saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LoadReport {
    /// Requests sent (every one ends as succeeded or failed once the generator has stopped).
    pub sent: u64,
    /// Of `sent`, long `/sleep/MS` requests.
    pub long_sent: u64,
    /// Answers with a 2xx status, read to their end.
    pub succeeded: u64,
    /// Everything else: another status, a connection error, a broken body, a timeout.
    pub failed: u64,
    /// Still in flight (0 after [`LoadGenerator::stop`] unless requests outlived its wait).
    pub in_flight: u64,
    /// Successful answers per version (the `x-version` header; `unknown` without one).
    pub served_by_version: BTreeMap<String, u64>,
    /// Failed answers that came with an `x-version` header, per version.
    pub failed_by_version: BTreeMap<String, u64>,
    /// Failures by reason: `status 503`, `connect`, `timeout`, `body`, `request`.
    pub failures: BTreeMap<String, u64>,
    /// Latency of short (not `/sleep`) successful requests: median, in milliseconds.
    pub p50_ms: f64,
    /// Latency of short successful requests: 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// Latency of short successful requests: the longest, in milliseconds.
    pub max_ms: f64,
    /// Time spent sending: from start to when sending stopped (or to the report, while it
    /// runs). [`rate`](Self::rate) is `sent` over it.
    #[serde(with = "humantime_serde_secs")]
    pub elapsed: Duration,
}

/// Serializes a duration as fractional seconds.
mod humantime_serde_secs {
    pub(super) fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl LoadReport {
    /// Requests per second actually sent.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent ({} long) in {:.1}s ({:.0}/s): {} succeeded, {} failed",
            self.sent,
            self.long_sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.succeeded,
            self.failed
        )?;
        if !self.failures.is_empty() {
            write!(f, " {:?}", self.failures)?;
        }
        write!(f, "; served by {:?}", self.served_by_version)?;
        if !self.failed_by_version.is_empty() {
            write!(f, ", failed by {:?}", self.failed_by_version)?;
        }
        write!(f, "; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", self.p50_ms, self.p99_ms, self.max_ms)?;
        if self.in_flight > 0 {
            write!(f, "; {} still in flight", self.in_flight)?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct LoadCounters {
    sent: AtomicU64,
    long_sent: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    tallies: Mutex<Tallies>,
    /// When sending stopped (by `stop`, or a bound), if it has.
    stopped_sending: Mutex<Option<Instant>>,
}

#[derive(Debug, Default)]
struct Tallies {
    served_by_version: BTreeMap<String, u64>,
    failed_by_version: BTreeMap<String, u64>,
    failures: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

impl LoadCounters {
    fn tallies(&self) -> std::sync::MutexGuard<'_, Tallies> {
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn succeeded(&self, version: String, latency: Option<Duration>) {
        self.succeeded.fetch_add(1, Ordering::SeqCst);
        let mut t = self.tallies();
        *t.served_by_version.entry(version).or_default() += 1;
        if let Some(latency) = latency {
            t.latencies_us.push(latency.as_micros() as u64);
        }
    }

    fn failed(&self, reason: String, version: Option<String>) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut t = self.tallies();
        *t.failures.entry(reason).or_default() += 1;
        if let Some(version) = version {
            *t.failed_by_version.entry(version).or_default() += 1;
        }
    }

    fn report(&self, started: Instant) -> LoadReport {
        let stopped = *self.stopped_sending.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = stopped.unwrap_or_else(Instant::now).duration_since(started);
        let sent = self.sent.load(Ordering::SeqCst);
        let succeeded = self.succeeded.load(Ordering::SeqCst);
        let failed = self.failed.load(Ordering::SeqCst);
        let t = self.tallies();
        let mut latencies = t.latencies_us.clone();
        latencies.sort_unstable();
        let pick = |q: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i] as f64 / 1000.0
        };
        LoadReport {
            sent,
            long_sent: self.long_sent.load(Ordering::SeqCst),
            succeeded,
            failed,
            in_flight: sent.saturating_sub(succeeded + failed),
            served_by_version: t.served_by_version.clone(),
            failed_by_version: t.failed_by_version.clone(),
            failures: t.failures.clone(),
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
            elapsed,
        }
    }
}

impl LoadGeneratorBuilder {
    /// The path of ordinary requests (`/` by default).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Requests per second (100 by default).
    #[must_use]
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = per_second;
        self
    }

    /// Most requests in flight at once (32 by default).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Makes `share` (0.0–1.0) of the requests long ones, `GET {base}/sleep/{ms}`, their
    /// durations spread uniformly over `durations`.
    #[must_use]
    pub fn long_requests(mut self, share: f64, durations: RangeInclusive<Duration>) -> Self {
        self.long_share = share;
        self.long_durations = durations;
        self
    }

    /// A request without a complete answer after this long fails as `timeout` (10 s by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Stops sending by itself after this long (10 minutes by default).
    #[must_use]
    pub fn max_duration(mut self, duration: Duration) -> Self {
        self.max_duration = duration;
        self
    }

    /// Stops sending by itself after this many requests (1,000,000 by default).
    #[must_use]
    pub fn max_requests(mut self, n: u64) -> Self {
        self.max_requests = n;
        self
    }

    /// Starts sending (needs a tokio runtime).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a base URL that is not `http://host:port[/prefix]`, a path not
    /// starting with `/`, a rate outside [`MIN_RATE`]–[`MAX_RATE`], a concurrency of 0, a share
    /// outside 0–1, or a zero timeout.
    pub fn start(self) -> Result<LoadGenerator> {
        let base = self.base.trim_end_matches('/').to_owned();
        let parsed: Uri = base.parse().map_err(|e| Error::invalid("url", format!("{:?}: {e}", self.base)))?;
        if parsed.scheme_str() != Some("http") || parsed.authority().is_none() || parsed.query().is_some() {
            return Err(Error::invalid("url", format!("{:?} is not http://host:port[/prefix]", self.base)));
        }
        if !self.path.starts_with('/') {
            return Err(Error::invalid("path", format!("{:?} must start with '/'", self.path)));
        }
        if !(self.rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&self.rate)) {
            return Err(Error::invalid(
                "rate",
                format!("{} requests per second is not within {MIN_RATE}–{MAX_RATE}", self.rate),
            ));
        }
        if self.concurrency == 0 {
            return Err(Error::invalid("concurrency", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.long_share) {
            return Err(Error::invalid("long_requests", format!("share {} is not within 0–1", self.long_share)));
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("timeout", "must be longer than 0s"));
        }
        let plan = Plan {
            normal: format!("{base}{}", self.path),
            base,
            interval: Duration::from_secs_f64(1.0 / self.rate),
            concurrency: self.concurrency,
            long_share: self.long_share,
            long_durations: self.long_durations,
            timeout: self.timeout,
            max_duration: self.max_duration,
            max_requests: self.max_requests,
        };
        let counters = Arc::new(LoadCounters::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(plan, counters.clone(), stopped));
        Ok(LoadGenerator { counters, stop, task: Some(task), started: Instant::now() })
    }
}

impl fmt::Debug for LoadGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadGenerator").field("report", &self.report()).finish_non_exhaustive()
    }
}

impl LoadGenerator {
    /// A builder for load on `base` (`http://127.0.0.1:8080`): 100 requests/s of `GET {base}/`,
    /// 32 at most in flight, no long requests, 10 s timeout.
    pub fn builder(base: impl Into<String>) -> LoadGeneratorBuilder {
        LoadGeneratorBuilder {
            base: base.into(),
            path: "/".to_owned(),
            rate: 100.0,
            concurrency: 32,
            long_share: 0.0,
            long_durations: Duration::from_millis(500)..=Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(600),
            max_requests: 1_000_000,
        }
    }

    /// What was seen so far, while it runs.
    pub fn report(&self) -> LoadReport {
        self.counters.report(self.started)
    }

    /// Stops sending, waits for the requests in flight to end (each is bounded by the
    /// timeout), and reports.
    pub async fn stop(mut self) -> LoadReport {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.report()
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Plan {
    base: String,
    normal: String,
    interval: Duration,
    concurrency: usize,
    long_share: f64,
    long_durations: RangeInclusive<Duration>,
    timeout: Duration,
    max_duration: Duration,
    max_requests: u64,
}

impl Plan {
    /// The `n`-th request's URL and whether it is a long one. Which requests are long and how
    /// long they last come from a hash of `n`: deterministic, but not periodic, so long
    /// requests do not line up with a round-robin over the targets behind a proxy.
    fn request(&self, n: u64) -> (String, bool) {
        let pick = unit(splitmix64(n));
        if pick >= self.long_share {
            return (self.normal.clone(), false);
        }
        let (low, high) = (self.long_durations.start().as_millis(), self.long_durations.end().as_millis());
        let span = high.saturating_sub(low) as f64;
        let ms = low as f64 + span * unit(splitmix64(n ^ 0x5eed));
        (format!("{}/sleep/{}", self.base, ms.round() as u64), true)
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finalizer).
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `bits` as a number in `[0, 1)`.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

type LoadClient = Client<HttpConnector, Empty<Bytes>>;

async fn run(plan: Plan, counters: Arc<LoadCounters>, mut stop: watch::Receiver<bool>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(plan.timeout));
    let client: LoadClient =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(plan.concurrency).build(connector);
    let slots = Arc::new(Semaphore::new(plan.concurrency));
    let mut requests = JoinSet::new();
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = Instant::now() + plan.max_duration;
    let mut n = 0u64;
    while n < plan.max_requests && Instant::now() < end {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot { Ok(slot) => slot, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (url, long) = plan.request(n);
        n += 1;
        counters.sent.fetch_add(1, Ordering::SeqCst);
        if long {
            counters.long_sent.fetch_add(1, Ordering::SeqCst);
        }
        let (client, counters, timeout) = (client.clone(), counters.clone(), plan.timeout);
        requests.spawn(async move {
            one_request(&client, &url, long, timeout, &counters).await;
            drop(slot);
        });
        // Reap finished requests so the set does not grow with the run.
        while requests.try_join_next().is_some() {}
    }
    *counters.stopped_sending.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    while requests.join_next().await.is_some() {}
}

async fn one_request(client: &LoadClient, url: &str, long: bool, timeout: Duration, counters: &LoadCounters) {
    let started = Instant::now();
    let Ok(uri) = url.parse::<Uri>() else {
        counters.failed("request".to_owned(), None);
        return;
    };
    let Ok(request) = Request::get(uri).body(Empty::<Bytes>::new()) else {
        counters.failed("request".to_owned(), None);
        return;
    };
    let outcome = tokio::time::timeout(timeout, async {
        let response = client.request(request).await.map_err(|e| (classify(&e), None))?;
        let status = response.status();
        let version = response.headers().get("x-version").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.into_body().collect().await;
        match (status.is_success(), body) {
            (true, Ok(_)) => Ok(version.unwrap_or_else(|| "unknown".to_owned())),
            (false, _) => Err((format!("status {}", status.as_u16()), version)),
            (true, Err(_)) => Err(("body".to_owned(), version)),
        }
    })
    .await;
    match outcome {
        Ok(Ok(version)) => counters.succeeded(version, (!long).then(|| started.elapsed())),
        Ok(Err((reason, version))) => {
            tracing::debug!(url, %reason, "load: request failed");
            counters.failed(reason, version);
        }
        Err(_) => {
            tracing::debug!(url, ?timeout, "load: request timed out");
            counters.failed("timeout".to_owned(), None);
        }
    }
}

fn classify(error: &hyper_util::client::legacy::Error) -> String {
    if error.is_connect() {
        "connect".to_owned()
    } else {
        "request".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(share: f64) -> Plan {
        Plan {
            base: "http://127.0.0.1:1".to_owned(),
            normal: "http://127.0.0.1:1/".to_owned(),
            interval: Duration::from_millis(10),
            concurrency: 1,
            long_share: share,
            long_durations: Duration::from_millis(300)..=Duration::from_millis(2000),
            timeout: Duration::from_secs(1),
            max_duration: Duration::from_secs(1),
            max_requests: 1,
        }
    }

    #[test]
    fn long_requests_have_their_share_and_durations_and_are_not_periodic() {
        let plan = plan(0.1);
        let long: Vec<u64> = (0..10_000).filter(|&n| plan.request(n).1).collect();
        assert!((900..1100).contains(&long.len()), "{} long of 10,000", long.len());
        // Spread over every residue of a 10-target round-robin.
        for residue in 0..10 {
            let hits = long.iter().filter(|&&n| n % 10 == residue).count();
            assert!(hits > 60, "residue {residue}: {hits}");
        }
        for n in long.iter().take(200) {
            let url = plan.request(*n).0;
            let ms: u64 = url.rsplit('/').next().unwrap().parse().unwrap();
            assert!((300..=2000).contains(&ms), "{url}");
        }
        assert!((0..1000).all(|n| !super::tests::plan(0.0).request(n).1));
    }
}
