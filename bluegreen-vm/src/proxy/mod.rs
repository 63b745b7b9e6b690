//! [`LocalProxyRouter`]: an in-process HTTP/1.1 reverse proxy with weighted pools, per-target
//! drain and request counters.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::{Capabilities, DrainReport, Error, Member, PoolName, Result, Router, Split, Target, TargetId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod counters;
mod framing;
mod serve;
mod table;

pub use counters::{Counts, MemberStats, PoolStats, ProxyStats};
use serve::{Limits, Shared};
use table::Table;

/// An in-process HTTP/1.1 reverse proxy on a local address, driven as a [`Router`]: the
/// embedded default for local use, the examples and `bluegreen demo`.
///
/// - **Pools** have weights (the [`Split`]); each request goes to a pool chosen by smooth
///   weighted round-robin (deterministic: at 90/10 exactly every tenth request goes to the
///   10% pool), then to the pool's serving members in turn.
/// - **Members** are serving, draining or disabled. [`drain`](Router::drain) stops new requests
///   to a target at once and returns when its in-flight requests are done (observed through a
///   counter and a wake-up, not polled) or its timeout passed.
/// - **Counters** of in-flight, served and failed requests per pool and per member:
///   [`stats`](Self::stats). A request that finds no serving member in its pool is answered
///   `503` and counted failed; one whose target cannot be reached is answered `502`, one
///   whose target does not answer within the response timeout `504`, both counted failed,
///   with a generic body (the target's address and the error are logged at debug level, not
///   sent). Answers carry `x-bluegreen-pool` and `x-bluegreen-target` headers.
/// - **Untrusted clients**: the proxy listens on loopback only unless
///   [`allow_non_loopback`](LocalProxyRouterBuilder::allow_non_loopback) is set; a client
///   has [`header_read_timeout`](LocalProxyRouterBuilder::header_read_timeout) to send a
///   request's headers; at most [`max_connections`](LocalProxyRouterBuilder::max_connections)
///   are served at once; a request with both `Transfer-Encoding` and `Content-Length` is
///   answered `400` and its connection closed. Targets get one `X-Forwarded-For` field (the
///   value the request came with, then the client's address) and `X-Forwarded-Proto: http`.
/// - **Retries**: none by default, so the counters show exactly what a deploy caused. With
///   [`retry_connect_failures`](LocalProxyRouterBuilder::retry_connect_failures), a `GET`,
///   `HEAD` or `OPTIONS` request without a body whose connection to a target was refused is
///   sent once more, to another serving member of the same pool (it never reached the first).
///
/// Clones share one proxy. It stops accepting connections when the last clone is dropped
/// (open connections then finish their current request and close) or on
/// [`shutdown`](Self::shutdown).
///
/// ```no_run
/// # async fn example() -> bluegreen_core::Result<()> {
/// use bluegreen_vm::LocalProxyRouter;
/// let proxy = LocalProxyRouter::builder().listen("127.0.0.1:0").pool("blue").pool("green").build().await?;
/// println!("serving on http://{}", proxy.address());
/// # Ok(()) }
/// ```
///
/// # Guarantees (beyond the [`Router`] trait's)
/// - Every write is applied under one lock before the call returns, so the next request and
///   the next read see it; reads come from the same table the requests are routed by.
/// - A drained member receives no request after `drain` has started (the state change and the
///   in-flight count are taken under the lock the routing uses).
/// - [`members`](Router::members) reports each member's in-flight requests.
///
/// # Assumptions
/// - Targets speak HTTP/1.1 at `host:port` without TLS.
/// - The pools are fixed when the proxy is built (the [`Router`] trait has no call to add one).
///
/// # Errors
/// - [`Error::NotFound`] for an unknown pool, and in `drain` for a target that is not a member.
/// - [`Error::Invalid`] for a split not summing to 100 and a target address that is not
///   `host:port`. Both before anything changes.
/// - No call fails for backend reasons: the table is in memory.
#[derive(Clone)]
pub struct LocalProxyRouter {
    shared: Arc<Shared>,
    lifecycle: Arc<Lifecycle>,
}

/// Stops the accept loop when the last handle goes.
#[derive(Debug)]
struct Lifecycle {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
    grace: Duration,
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl fmt::Debug for LocalProxyRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProxyRouter")
            .field("address", &self.lifecycle.address)
            .field("split", &self.shared.table().split().to_string())
            .finish_non_exhaustive()
    }
}

/// Builds a [`LocalProxyRouter`]; see [`LocalProxyRouter::builder`].
#[derive(Debug, Clone)]
pub struct LocalProxyRouterBuilder {
    listen: String,
    pools: Vec<PoolName>,
    split: Option<Split>,
    connect_timeout: Duration,
    retry_connect_failures: bool,
    grace: Duration,
    header_read_timeout: Duration,
    response_timeout: Duration,
    max_connections: usize,
    allow_non_loopback: bool,
}

/// How long a client may take to send a request's headers, by default.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a target may take to answer a request (its status and headers), by default.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many client connections the proxy serves at once, by default.
const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl LocalProxyRouterBuilder {
    /// The address to listen on (`127.0.0.1:0` by default: a free loopback port). An address
    /// that is not loopback (`0.0.0.0`, a LAN address) is refused unless
    /// [`allow_non_loopback`](Self::allow_non_loopback) says otherwise.
    #[must_use]
    pub fn listen(mut self, address: impl Into<String>) -> Self {
        self.listen = address.into();
        self
    }

    /// Lets [`listen`](Self::listen) take an address that is not loopback, so that other
    /// machines can reach the proxy (off by default). The proxy speaks plain HTTP, without TLS
    /// or authentication: put it where only the clients you mean can reach it.
    #[must_use]
    pub fn allow_non_loopback(mut self, allow: bool) -> Self {
        self.allow_non_loopback = allow;
        self
    }

    /// How long a client may take to send a request's headers, from its first byte or from
    /// the end of the previous answer on a kept-alive connection; after that the connection
    /// is closed (30 s by default). This also closes idle
    /// kept-alive connections after as long. It bounds what a slow client ("slowloris") holds.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a target may take to answer a request with its status and headers, once
    /// connected; then the client is answered `504` and the request counted failed (60 s by
    /// default). A body the target is streaming is not cut.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How many client connections are served at once (512 by default; at
    /// least 1). Further connections wait in the listen
    /// backlog, unanswered, until one closes. Each served connection may hold a connection
    /// to a target too: keep twice the limit under the process's file descriptor limit.
    #[must_use]
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = limit.max(1);
        self
    }

    /// Adds a pool (adding one twice adds it once).
    #[must_use]
    pub fn pool(mut self, name: impl Into<PoolName>) -> Self {
        let name = name.into();
        if !self.pools.contains(&name) {
            self.pools.push(name);
        }
        self
    }

    /// The split served at start; by default all traffic goes to the first pool.
    #[must_use]
    pub fn split(mut self, split: Split) -> Self {
        self.split = Some(split);
        self
    }

    /// How long connecting to a target may take before the request fails (2 s by default).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends a body-less `GET`, `HEAD` or `OPTIONS` request whose connection to a target was
    /// refused once more, to another serving member of the same pool. Off by default.
    #[must_use]
    pub fn retry_connect_failures(mut self, retry: bool) -> Self {
        self.retry_connect_failures = retry;
        self
    }

    /// How long [`shutdown`](LocalProxyRouter::shutdown) waits for open client connections
    /// to finish their current request (10 s by default).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Binds the address and starts serving (needs a tokio runtime).
    ///
    /// # Errors
    /// [`Error::Invalid`] for no pool, an address that is not `ip:port`, or a split that does
    /// not sum to 100 or names a pool not added; a permanent [`Error::Backend`] when the
    /// address cannot be bound.
    pub async fn build(self) -> Result<LocalProxyRouter> {
        if self.pools.is_empty() {
            return Err(Error::invalid("pools", "the proxy needs at least one pool"));
        }
        let address: SocketAddr = self
            .listen
            .parse()
            .map_err(|e| Error::invalid("listen", format!("{:?} is not ip:port: {e}", self.listen)))?;
        if !address.ip().is_loopback() && !self.allow_non_loopback {
            return Err(Error::invalid(
                "listen",
                format!(
                    "{address} is not a loopback address: the proxy has no TLS and no authentication; \
                     to serve other machines all the same, call allow_non_loopback(true)"
                ),
            ));
        }
        let split = match self.split {
            Some(split) => {
                split.validate("split")?;
                if let Some((unknown, _)) = split.iter().find(|(p, _)| !self.pools.contains(p)) {
                    return Err(Error::invalid("split", format!("pool {unknown:?} is not one of the proxy's pools")));
                }
                split
            }
            None => Split::all_to(&self.pools[0]),
        };
        let listener = TcpListener::bind(address).await.map_err(|e| Error::Backend {
            backend: NAME.to_owned(),
            message: format!("cannot listen on {address}"),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        let bound = listener.local_addr().map_err(|e| Error::Backend {
            backend: NAME.to_owned(),
            message: "cannot read the bound address".to_owned(),
            retryable: false,
            source: Some(Box::new(e)),
        })?;
        let limits = Limits {
            header_read_timeout: self.header_read_timeout,
            response_timeout: self.response_timeout,
            max_connections: self.max_connections,
        };
        let shared = Arc::new(Shared::new(
            Table::new(&self.pools, &split),
            self.connect_timeout,
            self.retry_connect_failures,
            limits,
        ));
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(serve::accept_loop(listener, shared.clone(), stopped));
        tracing::debug!(address = %bound, %split, "local proxy: listening");
        Ok(LocalProxyRouter {
            shared,
            lifecycle: Arc::new(Lifecycle {
                address: bound,
                stop,
                accept: Mutex::new(Some(accept)),
                grace: self.grace,
            }),
        })
    }
}

const NAME: &str = "local-proxy";

impl LocalProxyRouter {
    /// A builder: listen on `127.0.0.1:0`, no pools yet, no retries, 2 s connect timeout,
    /// 30 s header-read timeout, 60 s response timeout, at most 512 client connections.
    pub fn builder() -> LocalProxyRouterBuilder {
        LocalProxyRouterBuilder {
            listen: "127.0.0.1:0".to_owned(),
            pools: Vec::new(),
            split: None,
            connect_timeout: Duration::from_secs(2),
            retry_connect_failures: false,
            grace: Duration::from_secs(10),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allow_non_loopback: false,
        }
    }

    /// The address the proxy listens on.
    pub fn address(&self) -> SocketAddr {
        self.lifecycle.address
    }

    /// `http://{address}`, the proxy's base URL (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.lifecycle.address)
    }

    /// A snapshot of the split, the members and the request counters.
    pub fn stats(&self) -> ProxyStats {
        self.shared.table().stats()
    }

    /// Stops accepting connections, asks open ones to close after their current request, and
    /// waits for them up to the shutdown grace period. Routing state stays readable and
    /// writable; no new request is served. Calling it again returns at once.
    pub async fn shutdown(&self) {
        self.lifecycle.stop.send_replace(true);
        let accept = self.lifecycle.accept.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(accept) = accept {
            let _ = accept.await;
        }
        let deadline = Instant::now() + self.lifecycle.grace;
        if !self.shared.connections_closed_by(deadline).await {
            tracing::warn!(address = %self.lifecycle.address, "local proxy: connections still open after the grace period");
        }
    }
}

#[async_trait]
impl Router for LocalProxyRouter {
    fn name(&self) -> &str {
        NAME
    }

    /// [`Capabilities::load_balancer`]: weighted (1% steps), per-target drain, atomic swap,
    /// no propagation delay, observes in-flight requests.
    fn capabilities(&self) -> Capabilities {
        Capabilities::load_balancer()
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        Ok(self.shared.table().pool_names())
    }

    async fn split(&self) -> Result<Split> {
        Ok(self.shared.table().split())
    }

    /// Takes effect for the next request; no request is lost or repeated by the change.
    async fn set_split(&self, split: &Split) -> Result<()> {
        self.shared.table().set_split(split)?;
        tracing::debug!(%split, "local proxy: split set");
        Ok(())
    }

    /// A member already present is re-enabled, and takes the target's address if it changed.
    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.shared.table().add(pool, targets)
    }

    /// Waits for each target's in-flight requests to end, woken by the request that ends last
    /// (no polling). When the timeout passes, the members are disabled all the same: their
    /// in-flight requests are not cut, they finish on their own.
    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        let started = Instant::now();
        let unique: Vec<TargetId> = targets.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let counters = self.shared.table().start_drain(pool, &unique)?;
        let in_flight = |counters: &[Arc<counters::Counters>]| counters.iter().map(|c| c.in_flight()).sum::<u64>();
        let at_start = in_flight(&counters);
        let deadline = started + timeout;
        let mut done = true;
        for member in &counters {
            if !member.wait_idle_until(deadline).await {
                done = false;
                break;
            }
        }
        let at_end = in_flight(&counters);
        self.shared.table().end_drain(pool, &counters);
        let report = DrainReport {
            in_flight_at_start: Some(at_start),
            in_flight_at_end: Some(at_end),
            timed_out: !done && at_end > 0,
            elapsed: started.elapsed(),
        };
        tracing::debug!(%pool, targets = ?unique, ?report, "local proxy: drained");
        Ok(report)
    }

    /// Removes members whatever their state; their in-flight requests still finish.
    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.shared.table().remove(pool, targets)
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.shared.table().members(pool)
    }
}
