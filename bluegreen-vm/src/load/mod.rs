//! [`LoadGenerator`]: steady HTTP load that counts what happened to every request.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::{Error, Result};
use hyper::Uri;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod report;
mod send;

use report::LoadCounters;
pub use report::LoadReport;
use send::{run, Plan};

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
