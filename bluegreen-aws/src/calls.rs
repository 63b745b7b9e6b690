//! The HTTP client every AWS client of one [`AwsConfig`](crate::AwsConfig) shares: a client-side
//! rate limit per AWS service, and a log of the calls made.
//!
//! Why here and not in each router or fleet: every SDK client built from one `SdkConfig` sends
//! through this one HTTP client, so a deploy that runs an ALB router, an ECS fleet and a DynamoDB
//! store (or many deploys in one process) stays under the account's API limits together, and
//! the SDK's own retries are limited too. The limit is a token bucket per service, refilled on
//! tokio's clock (so paused-clock tests see it); it is a few lines, and the well-known crates
//! (`governor`) keep their own clock, which paused-clock tests cannot drive.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use tokio::time::Instant;

/// Calls per second (and burst) allowed per service when nothing else is configured: Route53
/// allows five requests per second per account; the ELB, ECS and DynamoDB control APIs allow
/// more, but other tools in the same account share them.
pub(crate) const DEFAULT_LIMITS: &[(&str, f64, u32)] = &[("route53", 5.0, 5)];
/// The limit of a service not in [`DEFAULT_LIMITS`].
pub(crate) const DEFAULT_LIMIT: (f64, u32) = (20.0, 40);

/// Counts the AWS calls made through the clients of one [`AwsConfig`](crate::AwsConfig), by
/// `service:Operation` (`elasticloadbalancing:DescribeListeners`), retries included.
///
/// Cloning gives another handle on the same counts.
///
/// ```
/// let log = bluegreen_aws::CallLog::new();
/// let config = bluegreen_aws::AwsConfig::new().call_log(&log);
/// // ... deploy with clients built from `config.load().await` ...
/// assert_eq!(log.total(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn counts_mut(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The calls so far, by `service:Operation`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts_mut().clone()
    }

    /// How many calls so far, all services together.
    pub fn total(&self) -> u64 {
        self.counts_mut().values().sum()
    }

    /// How many calls so far whose operation does not start with `Describe`, `List` or `Get`
    /// (the ones that change something, and the few that only look but are named otherwise).
    pub fn writes(&self) -> u64 {
        self.counts_mut().iter().filter(|(name, _)| !is_read(name)).map(|(_, n)| n).sum()
    }

    /// Forgets every count.
    pub fn reset(&self) {
        self.counts_mut().clear();
    }

    fn record(&self, call: String) {
        *self.counts_mut().entry(call).or_default() += 1;
    }
}

/// Whether `service:Operation` only reads.
fn is_read(call: &str) -> bool {
    let operation = call.split_once(':').map_or(call, |(_, op)| op);
    ["Describe", "List", "Get", "Query", "Scan", "BatchGet"].iter().any(|p| operation.starts_with(p))
}

/// The longest wait for one token (at [`MIN_RATE_LIMIT`](crate::config::MIN_RATE_LIMIT)).
const MAX_TOKEN_WAIT: Duration = Duration::from_secs(100);

/// A token bucket: `per_second` tokens a second, at most `burst` saved.
#[derive(Debug)]
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { per_second, burst, tokens: burst, at: Instant::now() }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        // Bounded: rates are at least `MIN_RATE_LIMIT`, and a bucket never waits longer than
        // one token takes at that rate.
        Some(Duration::try_from_secs_f64((1.0 - self.tokens) / self.per_second).unwrap_or(MAX_TOKEN_WAIT))
    }
}

/// The rate limits of one configuration, by service.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    limits: BTreeMap<String, (f64, u32)>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl RateLimits {
    /// The default limits, with `overrides` (service → calls per second, burst) on top; a limit
    /// of 0 calls per second means none.
    pub(crate) fn new(overrides: &BTreeMap<String, (f64, u32)>) -> Self {
        let mut limits: BTreeMap<String, (f64, u32)> =
            DEFAULT_LIMITS.iter().map(|(s, r, b)| ((*s).to_owned(), (*r, *b))).collect();
        limits.extend(overrides.iter().map(|(s, l)| (s.clone(), *l)));
        Self { limits, buckets: Mutex::default() }
    }

    /// Waits until `service` may make one more call.
    async fn acquire(&self, service: &str) {
        let (per_second, burst) = self.limits.get(service).copied().unwrap_or(DEFAULT_LIMIT);
        if per_second <= 0.0 {
            return;
        }
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
                let bucket = buckets.entry(service.to_owned()).or_insert_with(|| Bucket::new(per_second, burst));
                bucket.take(Instant::now())
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }
}

/// The SDK's HTTPS client, with the rate limits and the call log in front of it.
#[derive(Clone)]
pub(crate) struct SharedCalls {
    inner: SharedHttpClient,
    limits: Arc<RateLimits>,
    log: Option<CallLog>,
}

impl fmt::Debug for SharedCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCalls").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl SharedCalls {
    /// Wraps the default HTTPS client (hyper 1, rustls with aws-lc, the same one the SDK
    /// picks when none is given).
    pub(crate) fn new(limits: RateLimits, log: Option<CallLog>) -> Self {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let inner =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc)).build_https();
        Self::around(inner, limits, log)
    }

    /// Wraps `inner` (tests wrap a scripted client).
    pub(crate) fn around(inner: SharedHttpClient, limits: RateLimits, log: Option<CallLog>) -> Self {
        Self { inner, limits: Arc::new(limits), log }
    }
}

impl HttpClient for SharedCalls {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            inner: self.inner.http_connector(settings, components),
            limits: self.limits.clone(),
            log: self.log.clone(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    inner: SharedHttpConnector,
    limits: Arc<RateLimits>,
    log: Option<CallLog>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let service = signing_service(&request).unwrap_or_else(|| "unknown".to_owned());
        if let Some(log) = &self.log {
            log.record(format!("{service}:{}", operation(&service, &request)));
        }
        let (inner, limits) = (self.inner.clone(), self.limits.clone());
        HttpConnectorFuture::new(async move {
            limits.acquire(&service).await;
            inner.call(request).await
        })
    }
}

/// The service a signed request is for, from its SigV4 credential scope
/// (`Credential=AKID/20260101/us-east-1/elasticloadbalancing/aws4_request`): right even when
/// every service is behind one endpoint (an emulator, a proxy).
fn signing_service(request: &HttpRequest) -> Option<String> {
    let authorization = request.headers().get("authorization")?;
    let scope = authorization.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    Some(parts.nth(3)?.to_owned())
}

/// The operation a request calls: from `X-Amz-Target` (JSON protocols: ECS, DynamoDB), the
/// `Action` parameter (query protocol: ELB), or the method and path (Route53's REST API).
fn operation(service: &str, request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let body = request.body().bytes().and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("");
    if let Some(action) = body.split('&').find_map(|pair| pair.strip_prefix("Action=")) {
        return action.to_owned();
    }
    if service == "route53" {
        if let Some(name) = route53_operation(request.method(), request.uri()) {
            return name.to_owned();
        }
    }
    let path = request.uri().split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
    format!("{} {}", request.method(), path.split('?').next().unwrap_or(path))
}

/// Route53's REST operations that bluegreen calls, by method and path.
fn route53_operation(method: &str, uri: &str) -> Option<&'static str> {
    let path = uri.split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..]))?;
    let path = path.split('?').next()?;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match (method, segments.as_slice()) {
        ("POST", [_, "hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", [_, "hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("GET", [_, "hostedzone", _]) => "GetHostedZone",
        ("GET", [_, "hostedzone"]) => "ListHostedZones",
        ("GET", [_, "hostedzonesbyname"]) => "ListHostedZonesByName",
        ("GET", [_, "change", _]) => "GetChange",
        ("POST", [_, "healthcheck"]) => "CreateHealthCheck",
        ("GET", [_, "healthcheck", _]) => "GetHealthCheck",
        ("GET", [_, "healthcheck", _, "status"]) => "GetHealthCheckStatus",
        ("DELETE", [_, "healthcheck", _]) => "DeleteHealthCheck",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_told_from_writes() {
        assert!(is_read("elasticloadbalancing:DescribeListeners"));
        assert!(is_read("route53:GetChange"));
        assert!(!is_read("elasticloadbalancing:ModifyRule"));
        assert!(!is_read("dynamodb:TransactWriteItems"));
    }

    #[test]
    fn route53_paths_name_their_operation() {
        let base = "https://route53.amazonaws.com/2013-04-01";
        assert_eq!(route53_operation("POST", &format!("{base}/hostedzone/Z1/rrset")), Some("ChangeResourceRecordSets"));
        assert_eq!(
            route53_operation("GET", &format!("{base}/hostedzone/Z1/rrset?name=a&type=A")),
            Some("ListResourceRecordSets")
        );
        assert_eq!(route53_operation("GET", &format!("{base}/change/C1")), Some("GetChange"));
        assert_eq!(route53_operation("PUT", &format!("{base}/change/C1")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_lets_a_burst_through_then_paces_calls() {
        let limits = RateLimits::new(&BTreeMap::from([("route53".to_owned(), (5.0, 5))]));
        let start = Instant::now();
        for _ in 0..5 {
            limits.acquire("route53").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst of 5 waits for nothing");
        for _ in 0..10 {
            limits.acquire("route53").await;
        }
        // Ten more calls at five a second: two seconds (to the millisecond, float rounding).
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1_999) && elapsed <= Duration::from_millis(2_010), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tiny_rate_waits_a_bounded_time_instead_of_panicking() {
        // 1e-300 calls a second: the wait for a token does not fit a Duration.
        let mut bucket = Bucket::new(1e-300, 1);
        assert_eq!(bucket.take(Instant::now()), None, "the burst");
        assert_eq!(bucket.take(Instant::now()), Some(MAX_TOKEN_WAIT));
        let config = crate::AwsConfig::new().rate_limit("route53", 1e-300, 1).rate_limit("ecs", f64::NAN, 1);
        assert_eq!(config.rate_limits["route53"].0, crate::MIN_RATE_LIMIT, "raised to the floor");
        assert_eq!(config.rate_limits["ecs"].0, 0.0, "not a number: no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn services_have_buckets_of_their_own_and_zero_means_unlimited() {
        let limits =
            RateLimits::new(&BTreeMap::from([("route53".to_owned(), (1.0, 1)), ("dynamodb".to_owned(), (0.0, 0))]));
        let start = Instant::now();
        limits.acquire("route53").await;
        for _ in 0..1_000 {
            limits.acquire("dynamodb").await;
        }
        limits.acquire("ecs").await;
        assert_eq!(start.elapsed(), Duration::ZERO, "DynamoDB and ECS did not wait for Route53's bucket");
        limits.acquire("route53").await;
        assert!(start.elapsed() >= Duration::from_millis(999), "{:?}", start.elapsed());
    }
}
