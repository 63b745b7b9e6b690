//! [`LoadReport`]: what a load generator saw, and the live counters it is read from.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// What a [`LoadGenerator`] saw.
///
/// [`LoadGenerator`]: super::LoadGenerator
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
    ///
    /// [`LoadGenerator::stop`]: super::LoadGenerator::stop
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
pub(super) struct LoadCounters {
    pub(super) sent: AtomicU64,
    pub(super) long_sent: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    tallies: Mutex<Tallies>,
    /// When sending stopped (by `stop`, or a bound), if it has.
    pub(super) stopped_sending: Mutex<Option<Instant>>,
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

    pub(super) fn succeeded(&self, version: String, latency: Option<Duration>) {
        self.succeeded.fetch_add(1, Ordering::SeqCst);
        let mut t = self.tallies();
        *t.served_by_version.entry(version).or_default() += 1;
        if let Some(latency) = latency {
            t.latencies_us.push(latency.as_micros() as u64);
        }
    }

    pub(super) fn failed(&self, reason: String, version: Option<String>) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut t = self.tallies();
        *t.failures.entry(reason).or_default() += 1;
        if let Some(version) = version {
            *t.failed_by_version.entry(version).or_default() += 1;
        }
    }

    pub(super) fn report(&self, started: Instant) -> LoadReport {
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
