//! The HAProxy runtime-API router.
//!
//! See [`HaproxyRouter`] for the pool model and `docs/haproxy.md` for the `haproxy.cfg` it
//! expects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::{
    Capabilities, DrainReport, Error, Member, MemberState, PoolName, Result, Router, Split, Target, TargetId,
};
use tokio::time::Instant;

mod cli;
mod error;
mod probe;
mod state;
mod weights;

pub use cli::HaproxyEndpoint;
pub use probe::HaproxyCheckProbe;

use cli::Cli;
use error::HaproxyError;
use state::{ServerStat, ServerState};
use weights::PoolShare;

/// Drives a real HAProxy through its runtime API (the stats socket, unix or TCP, at
/// `level admin`).
///
/// # The pool model
///
/// One HAProxy **backend** holds the servers of every pool. A server belongs to pool `P` and
/// stands for target `T` when it is named `P.T` (the separator is configurable): `blue.web-3`
/// is target `web-3` in pool `blue`. Membership is therefore read from HAProxy itself — the
/// router keeps no state between calls, and a deployer that restarts sees exactly what HAProxy
/// serves.
///
/// The **split** is realised with server weights: a pool's share of the traffic is the sum of
/// the weights of its *ready* servers (administrative state neither `drain` nor `maint`) over
/// the sum for all ready servers of the backend. Writing a split spreads each pool's share
/// over its ready servers with a common scale as large as HAProxy's 0–256 weights allow, so
/// any whole-percent split reads back exactly, whatever the pool sizes
/// ([`Capabilities::weight_granularity`] is 1). Whenever membership changes (a target added,
/// re-enabled, drained or removed), the pool's weight is spread again over its ready servers,
/// so the split between pools stays what it was. A split of 0 % leaves the pool's ready servers
/// at weight 0: they are members (and `Serving` in [`members`](Router::members)) but get no
/// load-balanced requests.
///
/// # Runtime commands
///
/// `show servers state`, `show stat`, `show version`, `set server <b>/<s> state
/// ready|drain|maint`, `set server <b>/<s> weight <w>`, `set server <b>/<s> addr <ip> port <p>`,
/// `add server` + `enable health` (targets without a server, HAProxy 2.4+; 2.4 with
/// `experimental-mode on`), `del server` (removal, same versions). One command per connection
/// (see [`HaproxyEndpoint`]).
///
/// # Guarantees
/// - Every operation first reads the backend and checks every name it was given; an unknown
///   backend, pool, server or non-member target is refused with [`Error::NotFound`] before any
///   write.
/// - Writes are ordered so that capacity is added before it is taken away: weight increases,
///   then servers entering service, then drains and weight decreases. The sum of weights of a
///   backend with a serving split therefore never drops to zero on the way.
/// - Every write is read back (`show servers state`) before the call returns; a difference is
///   [`Error::ReadBackMismatch`].
/// - [`drain`](Router::drain) sets `drain`, then polls `show stat` every
///   [`drain_poll_interval`](HaproxyRouterBuilder::drain_poll_interval) (25 ms by default) and
///   puts each server into `maint` as soon as its own sessions (`scur` + `qcur`) reach zero,
///   or all remaining ones when the timeout passes. The report gives the observed in-flight
///   counts at start and end.
/// - [`split`](Router::split) and [`members`](Router::members) are read from HAProxy on every
///   call, never from a cache.
///
/// # Assumptions
/// - The backend uses a dynamic load-balancing algorithm (`roundrobin`, `leastconn`,
///   `random`, or hashing with `hash-type consistent`), so weights can change at runtime.
/// - Only this router changes the pools' servers during a deployment; changes made by hand
///   between two calls are observed, not undone. Within one process, writes to the backend are
///   serialised.
/// - Target addresses are `ip:port` (HAProxy resolves no names at runtime for added servers).
/// - A target is put into service ([`add_targets`](Router::add_targets)) only after the
///   caller's own health probe passed: HAProxy reports a server `UP` as soon as it leaves
///   maintenance, before any check ran. [`HaproxyCheckProbe`] is a second opinion only.
///
/// # Errors
/// - [`Error::NotFound`]: unknown backend, pool, server, or a target that is not a member.
/// - [`Error::Invalid`]: a split that does not sum to 100, a target id HAProxy cannot take as
///   a server name, an address that is not `ip:port`.
/// - [`Error::Drift`]: a split giving traffic to a pool with no ready server; a ready
///   server of the backend that belongs to no pool and has weight (its traffic would not be
///   accounted for); a serving target registered at another address.
/// - [`Error::Backend`]: the socket cannot be reached (retryable when refused or timed out,
///   not when the path is missing or access is denied), the socket is not `level admin`
///   (permanent), HAProxy refused a command (permanent, with its answer), or a command this
///   version lacks (permanent, saying what to do instead).
#[derive(Debug, Clone)]
pub struct HaproxyRouter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cli: Cli,
    backend: String,
    pools: Vec<PoolName>,
    separator: char,
    server_options: String,
    drain_poll: Duration,
    delete_wait: Duration,
    /// Serialises this process's writes to the backend (weights are computed from a read).
    writes: tokio::sync::Mutex<()>,
}

/// Builds a [`HaproxyRouter`]; see [`HaproxyRouter::builder`].
#[derive(Debug, Clone)]
pub struct HaproxyRouterBuilder {
    endpoint: HaproxyEndpoint,
    backend: String,
    pools: Vec<PoolName>,
    separator: char,
    server_options: String,
    command_timeout: Duration,
    drain_poll: Duration,
    delete_wait: Duration,
}

impl HaproxyRouterBuilder {
    /// The pools (server-name prefixes) this router manages. Default: `blue` and `green`.
    #[must_use]
    pub fn pools<P: Into<PoolName>>(mut self, pools: impl IntoIterator<Item = P>) -> Self {
        self.pools = pools.into_iter().map(Into::into).collect();
        self
    }

    /// The character between pool and target id in server names. Default `.` (`blue.web-3`).
    /// One of `.`, `-`, `_`, `:`; pool names must not contain it (target ids may).
    #[must_use]
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// Keywords for servers this router creates with `add server` (no `default-server` applies
    /// to them), e.g. `"check inter 1s fall 2 rise 2"`. With `check`, health checks are enabled
    /// right after the server is created. Default: none.
    #[must_use]
    pub fn server_options(mut self, options: impl Into<String>) -> Self {
        self.server_options = options.into();
        self
    }

    /// Longest wait for one runtime-API command (connect, send, answer). Default 5 s.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How often a drain reads the servers' session counts. Default 25 ms.
    #[must_use]
    pub fn drain_poll_interval(mut self, every: Duration) -> Self {
        self.drain_poll = every.max(Duration::from_millis(1));
        self
    }

    /// How long [`remove_targets`](Router::remove_targets) retries `del server` while HAProxy
    /// still holds connections to the server (idle keep-alive ones included). Default 5 s.
    #[must_use]
    pub fn delete_wait(mut self, wait: Duration) -> Self {
        self.delete_wait = wait;
        self
    }

    /// The router. Makes no connection.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a backend or pool name HAProxy cannot have, a separator that is
    /// not `.`, `-`, `_` or `:` or appears in a pool name, duplicate pools or no pool.
    pub fn build(self) -> Result<HaproxyRouter> {
        if !valid_name(&self.backend) {
            return Err(Error::invalid("backend", format!("{:?} is not a valid HAProxy backend name", self.backend)));
        }
        if !matches!(self.separator, '.' | '-' | '_' | ':') {
            return Err(Error::invalid("separator", format!("{:?} is not one of . - _ :", self.separator)));
        }
        if self.pools.is_empty() {
            return Err(Error::invalid("pools", "at least one pool is needed"));
        }
        let mut seen = BTreeSet::new();
        for (i, pool) in self.pools.iter().enumerate() {
            let name = pool.as_str();
            if !valid_name(name) || name.contains(self.separator) {
                return Err(Error::invalid(
                    format!("pools[{i}]"),
                    format!(
                        "{name:?} cannot prefix server names: use letters, digits, '.', '-', '_', ':' but not the separator {:?}",
                        self.separator
                    ),
                ));
            }
            if !seen.insert(name) {
                return Err(Error::invalid(format!("pools[{i}]"), format!("pool {name:?} is listed twice")));
            }
        }
        Ok(HaproxyRouter {
            inner: Arc::new(Inner {
                cli: Cli { endpoint: self.endpoint, timeout: self.command_timeout },
                backend: self.backend,
                pools: self.pools,
                separator: self.separator,
                server_options: self.server_options,
                drain_poll: self.drain_poll,
                delete_wait: self.delete_wait,
                writes: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// HAProxy accepts these characters in proxy and server names.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// `set weight` writes to make: (server, weight).
type WeightWrites = Vec<(String, u32)>;

/// A server's admin state as this router sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admin {
    Ready,
    Drain,
    Maint,
}

impl Admin {
    /// The admin state `server` is in.
    fn of(server: &ServerState) -> Self {
        if server.in_maintenance() {
            Self::Maint
        } else if server.draining() {
            Self::Drain
        } else {
            Self::Ready
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

impl HaproxyRouter {
    /// A builder for a router over `backend`, reached at `endpoint`.
    ///
    /// ```
    /// use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter};
    /// let router = HaproxyRouter::builder(HaproxyEndpoint::unix("/run/haproxy/admin.sock"), "web")
    ///     .pools(["blue", "green"])
    ///     .server_options("check inter 1s fall 2 rise 2")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(router.server_name(&"green".into(), &"web-3".into()), "green.web-3");
    /// ```
    pub fn builder(endpoint: HaproxyEndpoint, backend: impl Into<String>) -> HaproxyRouterBuilder {
        HaproxyRouterBuilder {
            endpoint,
            backend: backend.into(),
            pools: vec![PoolName::from("blue"), PoolName::from("green")],
            separator: '.',
            server_options: String::new(),
            command_timeout: Duration::from_secs(5),
            drain_poll: Duration::from_millis(25),
            delete_wait: Duration::from_secs(5),
        }
    }

    /// The HAProxy server name of `target` in `pool` (`blue.web-3`).
    pub fn server_name(&self, pool: &PoolName, target: &TargetId) -> String {
        format!("{pool}{}{target}", self.inner.separator)
    }

    /// The backend this router drives.
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }

    /// HAProxy's own health checks of the backend's servers, as a [`HealthProbe`](bluegreen_core::HealthProbe).
    pub fn check_probe(&self) -> HaproxyCheckProbe {
        HaproxyCheckProbe::new(self.clone())
    }

    /// The running HAProxy's version (`show version`), e.g. `2.6.12-1+deb12u4`.
    ///
    /// # Errors
    /// [`Error::Backend`] when the runtime API cannot be reached or refuses.
    pub async fn version(&self) -> Result<String> {
        Ok(self.inner.cli.run("show version").await?.trim().to_owned())
    }

    /// Sends one runtime-API command and returns HAProxy's answer, for whatever this router
    /// does not cover (`show info`, `show servers conn`, ...).
    ///
    /// # Errors
    /// [`Error::Backend`] when the socket cannot be reached or HAProxy denies the command;
    /// [`Error::NotFound`] when it answers "No such backend/server".
    pub async fn raw_command(&self, command: &str) -> Result<String> {
        Ok(self.inner.cli.run(command).await?)
    }

    // ---- reading ----

    async fn servers(&self) -> Result<Vec<ServerState>, HaproxyError> {
        let command = format!("show servers state {}", self.inner.backend);
        let answer = self.inner.cli.run(&command).await?;
        state::parse_servers_state(&command, &answer)
    }

    pub(crate) async fn stats(&self) -> Result<Vec<ServerStat>, HaproxyError> {
        let command = format!("show stat {} 4 -1", self.inner.backend);
        let answer = self.inner.cli.run(&command).await?;
        state::parse_stat(&command, &answer)
    }

    /// `(pool, target id)` of a server name, for configured pools only.
    pub(crate) fn owner<'a>(&self, server: &'a str) -> Option<(&PoolName, &'a str)> {
        let (prefix, id) = server.split_once(self.inner.separator)?;
        let pool = self.inner.pools.iter().find(|p| p.as_str() == prefix)?;
        (!id.is_empty()).then_some((pool, id))
    }

    fn check_pool(&self, pool: &PoolName) -> Result<(), HaproxyError> {
        if self.inner.pools.contains(pool) {
            return Ok(());
        }
        Err(HaproxyError::UnknownPool {
            pool: pool.to_string(),
            backend: self.inner.backend.clone(),
            known: self.inner.pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", "),
        })
    }

    /// Sum of ready weights per configured pool; refuses a ready, weighted server outside
    /// every pool (its traffic could not be accounted for).
    fn pool_weights(&self, servers: &[ServerState]) -> Result<BTreeMap<PoolName, u64>, HaproxyError> {
        let mut weights: BTreeMap<PoolName, u64> = self.inner.pools.iter().map(|p| (p.clone(), 0)).collect();
        for server in servers.iter().filter(|s| s.ready()) {
            match self.owner(&server.name) {
                Some((pool, _)) => *weights.entry(pool.clone()).or_default() += u64::from(server.uweight),
                None if server.uweight > 0 => {
                    return Err(HaproxyError::Drift {
                        what: format!(
                            "server {}/{} is ready with weight {} but belongs to no pool ({}): it takes traffic \
                             the split cannot account for; rename it <pool>{}<id>, or set its weight to 0 or \
                             its state to maint",
                            self.inner.backend,
                            server.name,
                            server.uweight,
                            self.inner.pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", "),
                            self.inner.separator,
                        ),
                    })
                }
                None => {}
            }
        }
        Ok(weights)
    }

    /// The split served by `servers`: pool → percent, or `None` when no ready server has
    /// weight (HAProxy then serves nothing from this backend).
    fn served_split(&self, servers: &[ServerState]) -> Result<Option<BTreeMap<PoolName, u32>>, HaproxyError> {
        let weights = self.pool_weights(servers)?;
        Ok(weights::pool_percents(weights.iter().map(|(p, w)| (p, *w))))
    }

    fn to_split(percents: Option<&BTreeMap<PoolName, u32>>) -> Split {
        match percents {
            Some(p) => Split::new(p.iter().map(|(pool, w)| (pool.clone(), *w))).unwrap_or_default(),
            None => Split::default(),
        }
    }

    /// The weights that serve `wanted` over the `ready` servers of each pool. A pool with a
    /// share but no ready server loses its share to the others, proportionally (that is what
    /// HAProxy does with it anyway); with nothing left, no weight is set.
    fn weights_for(
        &self,
        ready: &BTreeMap<PoolName, Vec<String>>,
        wanted: &BTreeMap<PoolName, u32>,
    ) -> Result<BTreeMap<String, u32>, HaproxyError> {
        let kept = self.inner.pools.iter().map(|p| {
            let has_servers = ready.get(p).is_some_and(|r| !r.is_empty());
            (p, if has_servers { u64::from(wanted.get(p).copied().unwrap_or(0)) } else { 0 })
        });
        let Some(percents) = weights::pool_percents(kept) else {
            // Nothing serves: zero weights keep a later re-enable from bringing back stale ones.
            return Ok(ready.values().flatten().map(|s| (s.clone(), 0)).collect());
        };
        let shares: Vec<PoolShare<'_>> = percents
            .iter()
            .map(|(pool, percent)| PoolShare {
                pool: pool.as_str(),
                percent: *percent,
                ready: ready.get(pool).map(|r| r.iter().map(String::as_str).collect()).unwrap_or_default(),
            })
            .collect();
        weights::spread(&shares).map_err(|what| HaproxyError::Drift { what })
    }

    /// Ready servers per pool after `change` (server → new admin state) is applied.
    fn ready_after(
        &self,
        servers: &[ServerState],
        change: &BTreeMap<String, Admin>,
    ) -> BTreeMap<PoolName, Vec<String>> {
        let mut ready: BTreeMap<PoolName, Vec<String>> = BTreeMap::new();
        let mut names: BTreeSet<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        names.extend(change.keys().map(String::as_str));
        for name in names {
            let Some((pool, _)) = self.owner(name) else { continue };
            let now_ready = servers.iter().find(|s| s.name == name).is_some_and(ServerState::ready);
            let is_ready = change.get(name).map_or(now_ready, |a| *a == Admin::Ready);
            if is_ready {
                ready.entry(pool.clone()).or_default().push(name.to_owned());
            }
        }
        ready
    }

    // ---- writing ----

    fn server_ref(&self, server: &str) -> String {
        format!("{}/{server}", self.inner.backend)
    }

    /// Runs a command whose success answer is empty (`set server ... state|weight`, `enable health`).
    async fn quiet(&self, command: String) -> Result<(), HaproxyError> {
        let answer = self.inner.cli.run(&command).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() })
        }
    }

    async fn set_state(&self, server: &str, admin: Admin) -> Result<(), HaproxyError> {
        self.quiet(format!("set server {} state {}", self.server_ref(server), admin.word())).await
    }

    async fn set_weight(&self, server: &str, weight: u32) -> Result<(), HaproxyError> {
        self.quiet(format!("set server {} weight {weight}", self.server_ref(server))).await
    }

    /// Weight writes that raise (first) and lower (last) servers' weights towards `desired`.
    fn weight_changes(
        servers: &[ServerState],
        desired: &BTreeMap<String, u32>,
        skip: &BTreeSet<String>,
    ) -> (WeightWrites, WeightWrites) {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (name, weight) in desired.iter().filter(|(n, _)| !skip.contains(*n)) {
            match servers.iter().find(|s| s.name == *name) {
                Some(s) if s.uweight < *weight => up.push((name.clone(), *weight)),
                Some(s) if s.uweight > *weight => down.push((name.clone(), *weight)),
                _ => {}
            }
        }
        (up, down)
    }

    /// Which command prefix `add server` / `del server` need on this version, or why they
    /// cannot be used.
    async fn dynamic_servers(&self, command: &str) -> Result<&'static str, HaproxyError> {
        let version = self.inner.cli.run("show version").await?.trim().to_owned();
        let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        match (major, minor) {
            (0..=1, _) | (2, 0..=3) => Err(HaproxyError::Unsupported {
                version,
                command: command.to_owned(),
                what_instead: "it needs HAProxy 2.4 or later; declare the server in haproxy.cfg (or a \
                               server-template slot) and reload HAProxy"
                    .to_owned(),
            }),
            (2, 4) => Ok("experimental-mode on; "),
            _ => Ok(""),
        }
    }

    /// Reads back the admin state of `names`: `expect(None)` for absent servers. Returns the
    /// servers read, for further checks on the same read.
    async fn verify(
        &self,
        names: &[(String, Option<Admin>)],
        split: Option<&BTreeMap<PoolName, u32>>,
    ) -> Result<Vec<ServerState>, Error> {
        let servers = self.servers().await?;
        for (name, expected) in names {
            let found = servers.iter().find(|s| s.name == *name);
            let observed = found.map(Admin::of);
            if observed != *expected {
                let word = |a: Option<Admin>| a.map_or("absent", Admin::word).to_owned();
                return Err(Error::ReadBackMismatch {
                    what: format!("server {}", self.server_ref(name)),
                    expected: word(*expected),
                    observed: word(observed),
                });
            }
        }
        if let Some(wanted) = split {
            let observed = Self::to_split(self.served_split(&servers)?.as_ref());
            let wanted = Self::to_split(Some(wanted));
            if !observed.same_traffic(&wanted) {
                return Err(Error::ReadBackMismatch {
                    what: format!("split of backend {}", self.inner.backend),
                    expected: wanted.to_string(),
                    observed: observed.to_string(),
                });
            }
        }
        Ok(servers)
    }

    /// The split that should hold after a membership change: the current one, or (nothing
    /// served yet) all traffic to `pool`, if it will have a ready server.
    fn wanted_after(
        &self,
        current: Option<BTreeMap<PoolName, u32>>,
        ready: &BTreeMap<PoolName, Vec<String>>,
        pool: &PoolName,
    ) -> BTreeMap<PoolName, u32> {
        current.unwrap_or_else(|| {
            let mut all: BTreeMap<PoolName, u32> = self.inner.pools.iter().map(|p| (p.clone(), 0)).collect();
            if ready.get(pool).is_some_and(|r| !r.is_empty()) {
                all.insert(pool.clone(), 100);
            }
            all
        })
    }

    /// What the split reads after weights for `wanted` are applied over `ready`.
    fn expected_split(
        &self,
        ready: &BTreeMap<PoolName, Vec<String>>,
        weights: &BTreeMap<String, u32>,
    ) -> Option<BTreeMap<PoolName, u32>> {
        let sums = self.inner.pools.iter().map(|p| {
            let sum = ready.get(p).into_iter().flatten().map(|s| u64::from(weights.get(s).copied().unwrap_or(0)));
            (p, sum.sum())
        });
        weights::pool_percents(sums)
    }

    async fn drain_impl(&self, pool: &PoolName, ids: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        let started = Instant::now();
        self.check_pool(pool)?;
        let names: Vec<String> = ids.iter().map(|id| self.server_name(pool, id)).collect();
        let mut watch: Vec<String> = {
            let _writes = self.inner.writes.lock().await;
            let servers = self.servers().await?;
            for (id, name) in ids.iter().zip(&names) {
                if !servers.iter().any(|s| s.name == *name) {
                    return Err(HaproxyError::NotAMember {
                        target: id.to_string(),
                        pool: pool.to_string(),
                        backend: self.inner.backend.clone(),
                        server: name.clone(),
                    }
                    .into());
                }
            }
            let to_drain: Vec<&ServerState> = servers.iter().filter(|s| names.contains(&s.name) && s.ready()).collect();
            if !to_drain.is_empty() {
                let current = self.served_split(&servers)?;
                let change: BTreeMap<String, Admin> = to_drain.iter().map(|s| (s.name.clone(), Admin::Drain)).collect();
                let ready = self.ready_after(&servers, &change);
                let desired = match current {
                    Some(current) => self.weights_for(&ready, &current)?,
                    None => BTreeMap::new(),
                };
                let (up, down) = Self::weight_changes(&servers, &desired, &BTreeSet::new());
                for (name, weight) in up {
                    self.set_weight(&name, weight).await?;
                }
                for server in &to_drain {
                    self.set_state(&server.name, Admin::Drain).await?;
                }
                for (name, weight) in down {
                    self.set_weight(&name, weight).await?;
                }
                // Read back: draining, and the split between pools as it was.
                let expected = self.expected_split(&ready, &desired);
                let draining: Vec<(String, Option<Admin>)> =
                    to_drain.iter().map(|s| (s.name.clone(), Some(Admin::Drain))).collect();
                self.verify(&draining, expected.as_ref().filter(|_| !desired.is_empty())).await?;
            }
            servers.iter().filter(|s| names.contains(&s.name) && !s.in_maintenance()).map(|s| s.name.clone()).collect()
        };
        // Observe: each server goes to maintenance as soon as its own sessions are done.
        let deadline = started + timeout;
        let mut at_start: Option<u64> = None;
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut timed_out = false;
        while !watch.is_empty() {
            let stats = self.stats().await?;
            let mut done = Vec::new();
            for name in &watch {
                let in_flight = stats.iter().find(|s| s.name == *name).map_or(0, ServerStat::in_flight);
                last.insert(name.clone(), in_flight);
                if in_flight == 0 {
                    done.push(name.clone());
                }
            }
            at_start.get_or_insert_with(|| watch.iter().map(|n| last[n]).sum());
            for name in &done {
                self.set_state(name, Admin::Maint).await?;
            }
            watch.retain(|n| !done.contains(n));
            if watch.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                for name in &watch {
                    self.set_state(name, Admin::Maint).await?;
                }
                break;
            }
            tokio::time::sleep(self.inner.drain_poll.min(deadline - now)).await;
        }
        let in_flight_at_end = if timed_out { names.iter().filter_map(|n| last.get(n)).sum() } else { 0 };
        let expected: Vec<(String, Option<Admin>)> = names.iter().map(|n| (n.clone(), Some(Admin::Maint))).collect();
        self.verify(&expected, None).await?;
        Ok(DrainReport {
            in_flight_at_start: Some(at_start.unwrap_or(0)),
            in_flight_at_end: Some(in_flight_at_end),
            timed_out,
            elapsed: started.elapsed(),
        })
    }
}

/// A target's address as HAProxy takes it.
fn socket_address(index: usize, target: &Target) -> Result<SocketAddr, HaproxyError> {
    target.address.parse().map_err(|_| HaproxyError::Invalid {
        field: format!("targets[{index}].address"),
        reason: format!(
            "target {} has address {:?}; HAProxy servers added at runtime need ip:port",
            target.id, target.address
        ),
    })
}

#[async_trait]
impl Router for HaproxyRouter {
    fn name(&self) -> &str {
        "haproxy"
    }

    /// Weighted at 1 % granularity, per-target drain with observed sessions, no propagation
    /// delay; not an atomic swap (a split is several `set weight` commands, ordered so that the
    /// backend always has a weighted ready server).
    fn capabilities(&self) -> Capabilities {
        Capabilities::load_balancer().with_atomic_swap(false).with_weight_granularity(1)
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        // Reading the backend proves it exists (NotFound otherwise).
        self.servers().await?;
        Ok(self.inner.pools.clone())
    }

    async fn split(&self) -> Result<Split> {
        let servers = self.servers().await?;
        Ok(Self::to_split(self.served_split(&servers)?.as_ref()))
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.check_pool(pool)?;
        }
        let wanted: BTreeMap<PoolName, u32> = self.inner.pools.iter().map(|p| (p.clone(), split.weight(p))).collect();
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers().await?;
        self.pool_weights(&servers)?;
        let ready = self.ready_after(&servers, &BTreeMap::new());
        for (pool, percent) in wanted.iter().filter(|(_, w)| **w > 0) {
            if ready.get(pool).is_none_or(Vec::is_empty) {
                return Err(HaproxyError::Drift {
                    what: format!(
                        "pool {pool} has no ready server in backend {}, so it cannot take {percent}% of the traffic",
                        self.inner.backend
                    ),
                }
                .into());
            }
        }
        let desired = self.weights_for(&ready, &wanted)?;
        let (up, down) = Self::weight_changes(&servers, &desired, &BTreeSet::new());
        for (name, weight) in up.into_iter().chain(down) {
            self.set_weight(&name, weight).await?;
        }
        self.verify(&[], Some(&wanted)).await?;
        Ok(())
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.check_pool(pool)?;
        let mut wanted_addresses = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            let name = self.server_name(pool, &target.id);
            if !valid_name(target.id.as_str()) {
                return Err(Error::invalid(
                    format!("targets[{i}].id"),
                    format!("{:?} cannot be part of an HAProxy server name (letters, digits, . - _ : only)", target.id),
                ));
            }
            wanted_addresses.push((name, socket_address(i, target)?));
        }
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers().await?;
        let current = self.served_split(&servers)?;
        // Check everything before the first write.
        let mut to_create = Vec::new();
        let mut to_move = Vec::new();
        let mut to_enable = Vec::new();
        for (name, address) in &wanted_addresses {
            match servers.iter().find(|s| s.name == *name) {
                None => to_create.push((name.clone(), *address)),
                Some(s) => {
                    let same = s.address().parse::<SocketAddr>().ok() == Some(*address);
                    if !same && !s.in_maintenance() {
                        return Err(HaproxyError::Drift {
                            what: format!(
                                "server {} serves {} but the target is at {address}; drain it before moving it",
                                self.server_ref(name),
                                s.address()
                            ),
                        }
                        .into());
                    }
                    if !same {
                        to_move.push((name.clone(), *address));
                    }
                    if !s.ready() {
                        to_enable.push(name.clone());
                    }
                }
            }
        }
        let command_prefix = if to_create.is_empty() { "" } else { self.dynamic_servers("add server").await? };
        let change: BTreeMap<String, Admin> = to_create
            .iter()
            .map(|(n, _)| n.clone())
            .chain(to_enable.iter().cloned())
            .map(|n| (n, Admin::Ready))
            .collect();
        let ready = self.ready_after(&servers, &change);
        let wanted = self.wanted_after(current, &ready, pool);
        let desired = self.weights_for(&ready, &wanted)?;
        let expected = self.expected_split(&ready, &desired);

        // Writes: new servers (in maintenance), weights of the servers entering service,
        // raised weights, servers entering service, lowered weights.
        let checks = self.inner.server_options.split_whitespace().any(|w| w == "check");
        for (name, address) in &to_create {
            let weight = desired.get(name).copied().unwrap_or(0);
            let command = format!(
                "{command_prefix}add server {} {address} weight {weight} {}",
                self.server_ref(name),
                self.inner.server_options
            );
            let answer = self.inner.cli.run(command.trim_end()).await?;
            if !answer.contains("New server registered") {
                return Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() }.into());
            }
            if checks {
                self.quiet(format!("enable health {}", self.server_ref(name))).await?;
            }
        }
        for (name, address) in &to_move {
            let command = format!("set server {} addr {} port {}", self.server_ref(name), address.ip(), address.port());
            let answer = self.inner.cli.run(&command).await?;
            if !answer.contains("changed") && !answer.contains("no need to change") {
                return Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() }.into());
            }
        }
        let entering: BTreeSet<String> = change.keys().cloned().collect();
        for name in &to_enable {
            let weight = desired.get(name).copied().unwrap_or(0);
            if servers.iter().find(|s| s.name == *name).is_some_and(|s| s.uweight != weight) {
                self.set_weight(name, weight).await?;
            }
        }
        let (up, down) = Self::weight_changes(&servers, &desired, &entering);
        for (name, weight) in up {
            self.set_weight(&name, weight).await?;
        }
        for name in to_create.iter().map(|(n, _)| n).chain(&to_enable) {
            self.set_state(name, Admin::Ready).await?;
        }
        for (name, weight) in down {
            self.set_weight(&name, weight).await?;
        }
        let names: Vec<(String, Option<Admin>)> =
            wanted_addresses.iter().map(|(n, _)| (n.clone(), Some(Admin::Ready))).collect();
        let servers = self.verify(&names, expected.as_ref()).await?;
        for (name, address) in &wanted_addresses {
            let observed = servers.iter().find(|s| s.name == *name).map(ServerState::address).unwrap_or_default();
            if observed.parse::<SocketAddr>().ok() != Some(*address) {
                return Err(Error::ReadBackMismatch {
                    what: format!("address of server {}", self.server_ref(name)),
                    expected: address.to_string(),
                    observed,
                });
            }
        }
        Ok(())
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.drain_impl(pool, targets, timeout).await
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.check_pool(pool)?;
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers().await?;
        let present: Vec<&ServerState> = targets
            .iter()
            .filter_map(|id| {
                let name = self.server_name(pool, id);
                servers.iter().find(|s| s.name == name)
            })
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let prefix = self.dynamic_servers("del server").await?;
        let leaving: Vec<&ServerState> = present.iter().copied().filter(|s| s.ready()).collect();
        let mut expected = None;
        if !leaving.is_empty() {
            let current = self.served_split(&servers)?;
            let change: BTreeMap<String, Admin> = leaving.iter().map(|s| (s.name.clone(), Admin::Maint)).collect();
            let ready = self.ready_after(&servers, &change);
            if let Some(current) = current {
                let desired = self.weights_for(&ready, &current)?;
                let (up, _) = Self::weight_changes(&servers, &desired, &BTreeSet::new());
                for (name, weight) in up {
                    self.set_weight(&name, weight).await?;
                }
                expected = self.expected_split(&ready, &desired);
            }
        }
        for server in present.iter().filter(|s| !s.in_maintenance()) {
            self.set_state(&server.name, Admin::Maint).await?;
        }
        for server in &present {
            let command = format!("{prefix}del server {}", self.server_ref(&server.name));
            let deadline = Instant::now() + self.inner.delete_wait;
            loop {
                match self.inner.cli.run(&command).await {
                    Ok(answer) if answer.contains("Server deleted") => break,
                    Ok(answer) if answer.contains("connections") && Instant::now() < deadline => {
                        tokio::time::sleep(self.inner.drain_poll).await;
                    }
                    Ok(answer) if answer.contains("connections") => {
                        return Err(HaproxyError::Busy {
                            backend: self.inner.backend.clone(),
                            server: server.name.clone(),
                            after: self.inner.delete_wait,
                        }
                        .into())
                    }
                    Ok(answer) => return Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() }.into()),
                    // Deleted meanwhile: that is what was asked.
                    Err(HaproxyError::UnknownServer { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let names: Vec<(String, Option<Admin>)> = present.iter().map(|s| (s.name.clone(), None)).collect();
        self.verify(&names, expected.as_ref()).await?;
        Ok(())
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.check_pool(pool)?;
        let servers = self.servers().await?;
        let stats = self.stats().await?;
        Ok(servers
            .iter()
            .filter_map(|s| {
                let (owner, id) = self.owner(&s.name)?;
                (owner == pool).then(|| {
                    let state = match Admin::of(s) {
                        Admin::Maint => MemberState::Disabled,
                        Admin::Drain => MemberState::Draining,
                        Admin::Ready => MemberState::Serving,
                    };
                    let in_flight = stats.iter().find(|st| st.name == s.name).map(ServerStat::in_flight);
                    Member { id: TargetId::from(id), state, in_flight }
                })
            })
            .collect())
    }
}
