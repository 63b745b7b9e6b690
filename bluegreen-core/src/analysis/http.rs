//! The HTTP success-rate analysis.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use reqwest::redirect::Policy;
use reqwest::{Client, Url};
use tokio::time::Instant;

use super::{Analysis, AnalysisContext, Verdict};

/// Sends HTTP GETs to a URL on each evaluation and fails when the share of successful
/// answers over a sliding window drops below a threshold.
///
/// - Each evaluation sends `requests_per_check` GETs at once (5 by default) and records their
///   results; results older than `window` are forgotten.
/// - A success is a 2xx or 3xx status (redirects are not followed) within `timeout` (2 s by
///   default). A refused connection, a timeout or any other status is a failure.
/// - The verdict is [`Verdict::Inconclusive`] while fewer than `min_requests` (10 by default)
///   results are in the window, then [`Verdict::Fail`] if the success rate is below
///   `min_success_percent`, else [`Verdict::Pass`].
/// - A URL that cannot be parsed fails every evaluation.
///
/// ```
/// use std::time::Duration;
/// use bluegreen_core::HttpSuccessRate;
/// let analysis = HttpSuccessRate::new("http://127.0.0.1:8080/", 99.0, Duration::from_secs(60))
///     .with_requests_per_check(10)
///     .with_min_requests(50);
/// ```
#[derive(Debug)]
pub struct HttpSuccessRate {
    url: String,
    min_success_percent: f64,
    window: Duration,
    requests_per_check: u32,
    min_requests: u32,
    timeout: Duration,
    /// The parsed URL and the client, or why there are none.
    setup: std::result::Result<(Url, Client), String>,
    /// When each result was recorded, and whether it was a success; oldest first.
    samples: Mutex<VecDeque<(Instant, bool)>>,
}

impl HttpSuccessRate {
    /// An analysis of `url` requiring `min_success_percent` over `window`.
    pub fn new(url: impl Into<String>, min_success_percent: f64, window: Duration) -> Self {
        let url = url.into();
        let setup = Url::parse(&url).map_err(|e| format!("invalid URL {url:?}: {e}")).and_then(|parsed| {
            Client::builder()
                .redirect(Policy::none())
                .no_proxy()
                .pool_max_idle_per_host(0)
                .user_agent(concat!("bluegreen-analysis/", env!("CARGO_PKG_VERSION")))
                .build()
                .map(|client| (parsed, client))
                .map_err(|e| format!("cannot set up the HTTP client: {e}"))
        });
        Self {
            url,
            min_success_percent,
            window,
            requests_per_check: 5,
            min_requests: 10,
            timeout: Duration::from_secs(2),
            setup,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Requests sent per evaluation.
    #[must_use]
    pub fn with_requests_per_check(mut self, n: u32) -> Self {
        self.requests_per_check = n;
        self
    }

    /// No verdict before this many requests are in the window.
    #[must_use]
    pub fn with_min_requests(mut self, n: u32) -> Self {
        self.min_requests = n;
        self
    }

    /// Timeout of one request.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one GET; whether it succeeded.
    async fn request(&self, client: &Client, url: &Url) -> bool {
        match tokio::time::timeout(self.timeout, client.get(url.clone()).send()).await {
            Ok(Ok(response)) => {
                let status = response.status();
                if !(status.is_success() || status.is_redirection()) {
                    tracing::debug!(url = %self.url, %status, "analysis request failed");
                }
                status.is_success() || status.is_redirection()
            }
            Ok(Err(error)) => {
                tracing::debug!(url = %self.url, %error, "analysis request failed");
                false
            }
            Err(_) => {
                tracing::debug!(url = %self.url, timeout = ?self.timeout, "analysis request timed out");
                false
            }
        }
    }

    /// Records `results` at `now`, forgets results older than the window, and judges.
    fn record(&self, now: Instant, results: &[bool]) -> Verdict {
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.extend(results.iter().map(|&ok| (now, ok)));
        while samples.front().is_some_and(|&(at, _)| now.duration_since(at) > self.window) {
            samples.pop_front();
        }
        let total = samples.len();
        let successes = samples.iter().filter(|&&(_, ok)| ok).count();
        drop(samples);

        if total == 0 || total < self.min_requests as usize {
            return Verdict::Inconclusive;
        }
        let rate = successes as f64 * 100.0 / total as f64;
        if rate < self.min_success_percent {
            let decimals = decimals(self.min_success_percent);
            Verdict::Fail {
                reason: format!(
                    "success rate {}% < {:.decimals$}% over {} ({successes}/{total})",
                    floor_percent(successes, total, decimals),
                    self.min_success_percent,
                    humantime::format_duration(self.window),
                ),
            }
        } else {
            Verdict::Pass
        }
    }
}

#[async_trait]
impl Analysis for HttpSuccessRate {
    fn name(&self) -> String {
        format!("http success rate of {} ≥ {}%", self.url, self.min_success_percent)
    }

    async fn evaluate(&self, _context: &AnalysisContext) -> Verdict {
        let (url, client) = match &self.setup {
            Ok(setup) => setup,
            Err(reason) => return Verdict::Fail { reason: reason.clone() },
        };
        let results = join_all((0..self.requests_per_check).map(|_| self.request(client, url))).await;
        self.record(Instant::now(), &results)
    }
}

/// Decimals needed to show `percent` exactly (1 to 4): `99.0` → 1, `99.95` → 2.
fn decimals(percent: f64) -> usize {
    (1..4)
        .find(|&d| {
            let scaled = percent * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(4)
}

/// `successes / total` in percent, rounded down to `decimals`, so that a rate below the
/// threshold never shows as equal to it.
fn floor_percent(successes: usize, total: usize, decimals: usize) -> String {
    let scale = 10u128.pow(decimals as u32);
    let scaled = successes as u128 * 100 * scale / total as u128;
    format!("{}.{:0decimals$}", scaled / scale, scaled % scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_formatting_never_rounds_up_to_the_threshold() {
        assert_eq!(decimals(99.0), 1);
        assert_eq!(decimals(99.95), 2);
        assert_eq!(floor_percent(41, 50, 1), "82.0");
        assert_eq!(floor_percent(19_997, 20_000, 2), "99.98");
        assert_eq!(floor_percent(2, 3, 1), "66.6");
        assert_eq!(floor_percent(0, 10, 1), "0.0");
    }
}
