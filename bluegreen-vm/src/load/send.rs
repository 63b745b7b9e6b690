//! The sending loop: which request comes next (the [`Plan`]), the ticker and concurrency
//! slots that pace them, and how each one's outcome is counted.

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::report::LoadCounters;

pub(super) struct Plan {
    pub(super) base: String,
    pub(super) normal: String,
    pub(super) interval: Duration,
    pub(super) concurrency: usize,
    pub(super) long_share: f64,
    pub(super) long_durations: RangeInclusive<Duration>,
    pub(super) timeout: Duration,
    pub(super) max_duration: Duration,
    pub(super) max_requests: u64,
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

pub(super) async fn run(plan: Plan, counters: Arc<LoadCounters>, mut stop: watch::Receiver<bool>) {
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
