//! The HTTP probe.

use std::error::Error as StdError;
use std::io;
use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, Url};

use super::tcp::{known_io_reason, timed_out};
use super::{Health, HealthProbe};
use crate::error::{Error, Result};
use crate::model::Target;

/// How much of a body is searched for [`HttpProbeBuilder::body_contains`].
const MAX_BODY: usize = 1024 * 1024;

/// Probes `{scheme}://{target.address}{path}` with a GET and expects a status in a range
/// (and, optionally, a string in the body).
///
/// - Redirects are not followed: a 3xx answer is judged by its status (the default range
///   `200..=399` accepts it).
/// - Each check opens a new connection (no pooling), so a check always reaches the target's
///   listener, and proxies from the environment (`HTTP_PROXY`, ...) are ignored.
/// - The timeout covers connecting, the answer and, with `body_contains`, reading the body.
///
/// Reasons given for [`Health::Unhealthy`]: `status 503`, `connection refused`,
/// `timed out after 2s`, `body does not contain "ok"`, or the underlying error's message.
///
/// ```
/// use std::time::Duration;
/// use bluegreen_core::HttpProbe;
/// let probe = HttpProbe::builder("/healthz")
///     .expect_status(200..=299)
///     .body_contains("ok")
///     .timeout(Duration::from_secs(1))
///     .header("Host", "web.example.com")
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HttpProbe {
    scheme: String,
    path: String,
    expect_status: RangeInclusive<u16>,
    body_contains: Option<String>,
    timeout: Duration,
    headers: HeaderMap,
    client: Client,
}

/// Builds an [`HttpProbe`]; see [`HttpProbe::builder`].
#[derive(Debug, Clone)]
pub struct HttpProbeBuilder {
    path: String,
    scheme: String,
    expect_status: RangeInclusive<u16>,
    body_contains: Option<String>,
    timeout: Duration,
    headers: Vec<(String, String)>,
    accept_invalid_certs: bool,
}

impl HttpProbe {
    /// A builder for a probe of `path` (starting with `/`, may carry a query) on each target.
    ///
    /// Defaults: scheme `http`, statuses `200..=399`, no body check, timeout 2 s, no headers.
    pub fn builder(path: impl Into<String>) -> HttpProbeBuilder {
        HttpProbeBuilder {
            path: path.into(),
            scheme: "http".to_owned(),
            expect_status: 200..=399,
            body_contains: None,
            timeout: Duration::from_secs(2),
            headers: Vec::new(),
            accept_invalid_certs: false,
        }
    }

    fn url(&self, target: &Target) -> String {
        format!("{}://{}{}", self.scheme, target.address, self.path)
    }

    /// One request, without the timeout.
    async fn attempt(&self, url: Url) -> std::result::Result<(), String> {
        let response =
            self.client.get(url).headers(self.headers.clone()).send().await.map_err(|e| describe(&e, self.timeout))?;
        let status = response.status().as_u16();
        if !self.expect_status.contains(&status) {
            return Err(format!("status {status}"));
        }
        match &self.body_contains {
            Some(needle) => self.search_body(response, needle).await,
            None => Ok(()),
        }
    }

    async fn search_body(&self, mut response: Response, needle: &str) -> std::result::Result<(), String> {
        let needle = needle.as_bytes();
        let mut seen: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e, self.timeout))? {
            // Search only where the new chunk can complete a match.
            let from = seen.len().saturating_sub(needle.len() - 1);
            seen.extend_from_slice(&chunk);
            if seen[from..].windows(needle.len()).any(|w| w == needle) {
                return Ok(());
            }
            if seen.len() >= MAX_BODY {
                return Err(format!(
                    "body does not contain {:?} in its first {} KiB",
                    String::from_utf8_lossy(needle),
                    MAX_BODY / 1024
                ));
            }
        }
        Err(format!("body does not contain {:?}", String::from_utf8_lossy(needle)))
    }
}

impl HttpProbeBuilder {
    /// `http` (the default) or `https`.
    #[must_use]
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// The statuses that count as healthy; `200..=399` by default.
    #[must_use]
    pub fn expect_status(mut self, range: RangeInclusive<u16>) -> Self {
        self.expect_status = range;
        self
    }

    /// Also requires the body to contain `text` (searched in the first MiB).
    #[must_use]
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    /// The time one check may take, from connecting to the end of the body; 2 s by default.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a request header (`Host` for a virtual host, an auth token, ...).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// With `https`, accepts any certificate (self-signed, expired, or not naming the target's
    /// address), as load balancers do for their target health checks. Off by default.
    #[must_use]
    pub fn accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// Builds the probe.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a path not starting with `/`, a scheme other than `http` or
    /// `https`, an empty status range or one outside `100..=599`, an empty `body_contains`, a
    /// zero timeout, or a malformed header; [`Error::Backend`] if the HTTP client cannot be
    /// set up (TLS initialisation).
    pub fn build(self) -> Result<HttpProbe> {
        if !self.path.starts_with('/') {
            return Err(Error::invalid("path", format!("must start with '/', got {:?}", self.path)));
        }
        if self.scheme != "http" && self.scheme != "https" {
            return Err(Error::invalid("scheme", format!("must be \"http\" or \"https\", got {:?}", self.scheme)));
        }
        // The path must make a URL with any address.
        if let Err(e) = Url::parse(&format!("{}://127.0.0.1{}", self.scheme, self.path)) {
            return Err(Error::invalid("path", format!("{:?} does not make a URL: {e}", self.path)));
        }
        let (low, high) = (*self.expect_status.start(), *self.expect_status.end());
        if low > high {
            return Err(Error::invalid("expect_status", format!("the range {low}..={high} is empty")));
        }
        if low < 100 || high > 599 {
            return Err(Error::invalid("expect_status", format!("HTTP statuses are 100..=599, got {low}..={high}")));
        }
        if self.body_contains.as_deref() == Some("") {
            return Err(Error::invalid("body_contains", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("timeout", "must be longer than 0s"));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::invalid("header", format!("{name:?} is not a valid header name")))?;
            let header_value = HeaderValue::from_str(value).map_err(|_| {
                Error::invalid(format!("header {name:?}"), format!("{value:?} is not a valid header value"))
            })?;
            headers.append(header_name, header_value);
        }
        let client = Client::builder()
            .redirect(Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .user_agent(concat!("bluegreen-probe/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(self.accept_invalid_certs)
            .build()
            .map_err(|e| Error::Backend {
                backend: "http".to_owned(),
                message: "cannot set up the HTTP client".to_owned(),
                retryable: false,
                source: Some(Box::new(e)),
            })?;
        Ok(HttpProbe {
            scheme: self.scheme,
            path: self.path,
            expect_status: self.expect_status,
            body_contains: self.body_contains,
            timeout: self.timeout,
            headers,
            client,
        })
    }
}

#[async_trait]
impl HealthProbe for HttpProbe {
    async fn check(&self, target: &Target) -> Health {
        let url = self.url(target);
        let url = match Url::parse(&url) {
            Ok(url) => url,
            Err(e) => return Health::unhealthy(format!("invalid URL {url:?}: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.attempt(url)).await {
            Ok(Ok(())) => Health::Healthy,
            Ok(Err(reason)) => Health::unhealthy(reason),
            Err(_) => Health::unhealthy(timed_out(self.timeout)),
        }
    }
}

/// A short reason for a failed request: `connection refused`, `timed out after 2s`, or the
/// innermost error's message.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return timed_out(timeout);
    }
    if let Some(reason) = find_io(error).and_then(|io| known_io_reason(io.kind())) {
        return reason.to_owned();
    }
    let root = root_cause(error);
    if error.is_connect() {
        format!("cannot connect: {root}")
    } else {
        root
    }
}

/// The first I/O error in `error`'s source chain, if any.
fn find_io<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// The innermost error's message (reqwest's outer messages repeat the URL).
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
