//! Loading the AWS configuration every client of this crate shares.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::calls::{CallLog, RateLimits, SharedCalls};

/// The lowest rate limit [`AwsConfig::rate_limit`] sets: one call in 100 s.
pub const MIN_RATE_LIMIT: f64 = 0.01;

/// Where and how the AWS clients connect: the SDK's default chain plus explicit overrides.
///
/// Everything left unset comes from the SDK's default provider chain: `AWS_REGION` /
/// `AWS_PROFILE` / `AWS_ENDPOINT_URL` and the other environment variables, the shared config and
/// credentials files, web identity tokens, the ECS container and EC2 instance metadata
/// endpoints.
///
/// Every client built from one loaded configuration sends through one HTTP client, which keeps
/// a client-side rate limit per AWS service (Route53 5 calls a second, any other service 20, in
/// bursts of up to 5 and 40; see [`rate_limit`](Self::rate_limit)) and, when asked, a
/// [`CallLog`] of the calls made.
///
/// ```no_run
/// # async fn example() {
/// use bluegreen_aws::AwsConfig;
/// let sdk = AwsConfig::new().region("eu-west-1").profile("deploy").load().await;
/// let store = bluegreen_aws::DynamoDbStore::new(&sdk, "bluegreen-state");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct AwsConfig {
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<Credentials>,
    max_attempts: Option<u32>,
    operation_timeout: Option<Duration>,
    pub(crate) rate_limits: BTreeMap<String, (f64, u32)>,
    call_log: Option<CallLog>,
}

impl AwsConfig {
    /// The SDK's default chain, with nothing overridden.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `region` (`eu-west-1`) instead of the one the default chain finds.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Reads region and credentials from this profile of the shared config files.
    #[must_use]
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Sends every request to `url` (an emulator such as moto, a VPC endpoint) instead of the
    /// service's regional endpoint.
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Signs with these static keys instead of the default credential chain (tests, emulators).
    #[must_use]
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials =
            Some(Credentials::new(access_key_id, secret_access_key, None, None, "bluegreen-static-credentials"));
        self
    }

    /// How many times one call is attempted in the SDK's standard retry mode (exponential
    /// backoff with jitter and a client-side retry quota; throttling, 5xx and transient
    /// network errors are retried). Default 3.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Bounds one call, retries included. Default: no bound beyond the SDK's connect timeout.
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Allows `service` (the SigV4 signing name: `route53`, `elasticloadbalancing`, `ecs`,
    /// `dynamodb`) `per_second` calls a second in bursts of up to `burst`, shared by every
    /// client of this configuration; SDK retries count too. `per_second` 0 (or anything not a
    /// positive number) turns the limit off; a positive rate below [`MIN_RATE_LIMIT`] is raised
    /// to it, so a wait for a token stays bounded (100 s).
    #[must_use]
    pub fn rate_limit(mut self, service: impl Into<String>, per_second: f64, burst: u32) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 { per_second.max(MIN_RATE_LIMIT) } else { 0.0 };
        self.rate_limits.insert(service.into(), (per_second, burst));
        self
    }

    /// Counts every call of this configuration's clients in `log` (retries included).
    #[must_use]
    pub fn call_log(mut self, log: &CallLog) -> Self {
        self.call_log = Some(log.clone());
        self
    }

    /// Resolves the configuration: explicit settings first, then the default chain.
    pub async fn load(&self) -> SdkConfig {
        let calls = SharedCalls::new(RateLimits::new(&self.rate_limits), self.call_log.clone());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts.unwrap_or(3)))
            .http_client(calls);
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        if let Some(timeout) = self.operation_timeout {
            loader = loader.timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build());
        }
        loader.load().await
    }
}
