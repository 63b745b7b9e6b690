//! The router's handle: its configuration, the backend's servers and statistics as HAProxy
//! reports them, the names of pools and servers, and the one-server writes (admin state,
//! weight) every operation is made of.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::{PoolName, Result, TargetId};

use super::cli::Cli;
use super::error::HaproxyError;
use super::state::{self, ServerStat, ServerState};

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
/// at weight 0: they are members (and `Serving` in [`members`]) but get no
/// load-balanced requests.
///
/// # The backend-per-pool layout
///
/// With [`HaproxyRouterBuilder::backend_per_pool`](super::HaproxyRouterBuilder::backend_per_pool)
/// each pool is its own backend (`web_blue`, `web_green`) whose servers are named by target
/// id, and the frontend chooses the backend per request by a map of 100 entries
/// (`use_backend %[rand(100),map_int(<map>)]`): a pool with `p` entries gets `p` % of the
/// requests, drawn at random per request. The router writes a split as a new version of the
/// whole map, committed at once (an atomic swap), reads it back with `show map`, and refuses
/// a map that has a missing key or an entry naming another backend ([`Error::Drift`]) before
/// any write. Membership and drains work on the pool's own backend; weights are not part of
/// the split (a server put into service with weight 0 gets weight 1).
///
/// # Runtime commands
///
/// `show servers state`, `show stat`, `show version`, `set server <b>/<s> state
/// ready|drain|maint`, `set server <b>/<s> weight <w>`, `set server <b>/<s> addr <ip> port <p>`,
/// `add server` + `enable health` (targets without a server, HAProxy 2.4+; 2.4 with
/// `experimental-mode on`), `del server` (removal, same versions); in the backend-per-pool
/// layout also `show map <map>`, `prepare map`, `add map @<ver> <map>` (the 100 entries as one
/// payload) and `commit map @<ver>` (HAProxy 2.4+). One command per connection (see
/// [`HaproxyEndpoint`]).
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
/// - [`drain`] sets `drain`, then polls `show stat` every
///   [`drain_poll_interval`] (25 ms by default) and
///   puts each server into `maint` as soon as its own sessions (`scur` + `qcur`) reach zero,
///   or all remaining ones when the timeout passes. The report gives the observed in-flight
///   counts at start and end.
/// - [`split`] and [`members`] are read from HAProxy on every
///   call, never from a cache.
///
/// # Assumptions
/// - The backend uses a dynamic load-balancing algorithm (`roundrobin`, `leastconn`,
///   `random`, or hashing with `hash-type consistent`), so weights can change at runtime.
/// - Only this router changes the pools' servers during a deployment; changes made by hand
///   between two calls are observed, not undone. Within one process, writes to the backend are
///   serialised.
/// - Target addresses are `ip:port` (HAProxy resolves no names at runtime for added servers).
/// - A target is put into service ([`add_targets`]) only after the
///   caller's own health probe passed: HAProxy reports a server `UP` as soon as it leaves
///   maintenance, before any check ran. [`HaproxyCheckProbe`] is a second opinion only.
///
/// # Errors
/// - [`Error::NotFound`]: unknown backend, pool, server, split map, or a target that is not a
///   member.
/// - [`Error::Invalid`]: a split that does not sum to 100, a target id HAProxy cannot take as
///   a server name, an address that is not `ip:port`.
/// - [`Error::Drift`]: a split giving traffic to a pool with no ready server; a ready
///   server of the backend that belongs to no pool and has weight (its traffic would not be
///   accounted for); a serving target registered at another address; a split map that is
///   not one entry per key 0 … 99 naming a pool's backend (a missing key, an entry naming
///   another backend).
/// - [`Error::Backend`]: the socket cannot be reached (retryable when refused or timed out,
///   not when the path is missing or access is denied), the socket is not `level admin`
///   (permanent), HAProxy refused a command (permanent, with its answer), or a command this
///   version lacks (permanent, saying what to do instead).
///
/// [`Capabilities::weight_granularity`]: bluegreen_core::Capabilities::weight_granularity
/// [`members`]: bluegreen_core::Router::members
/// [`HaproxyEndpoint`]: super::HaproxyEndpoint
/// [`Error::NotFound`]: bluegreen_core::Error::NotFound
/// [`Error::ReadBackMismatch`]: bluegreen_core::Error::ReadBackMismatch
/// [`drain`]: bluegreen_core::Router::drain
/// [`drain_poll_interval`]: super::HaproxyRouterBuilder::drain_poll_interval
/// [`split`]: bluegreen_core::Router::split
/// [`add_targets`]: bluegreen_core::Router::add_targets
/// [`HaproxyCheckProbe`]: super::HaproxyCheckProbe
/// [`Error::Invalid`]: bluegreen_core::Error::Invalid
/// [`Error::Drift`]: bluegreen_core::Error::Drift
/// [`Error::Backend`]: bluegreen_core::Error::Backend
#[derive(Debug, Clone)]
pub struct HaproxyRouter {
    pub(super) inner: Arc<Inner>,
}

/// What every clone of a router shares.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) cli: Cli,
    pub(super) backend: String,
    pub(super) pools: Vec<PoolName>,
    pub(super) separator: char,
    pub(super) server_options: String,
    pub(super) drain_poll: Duration,
    pub(super) delete_wait: Duration,
    /// Servers an operator named (`web-01`): server name → (pool, target).
    pub(super) named: BTreeMap<String, (PoolName, TargetId)>,
    /// The same, (pool, target) → server name.
    pub(super) names: BTreeMap<(PoolName, TargetId), String>,
    /// Serialises this process's writes to the backend (weights are computed from a read).
    pub(super) writes: tokio::sync::Mutex<()>,
    /// Where the pools are: servers of one backend, or one backend each.
    pub(super) layout: Layout,
    /// Backend per pool: write the split map's file after each split, so a reload keeps it.
    pub(super) save_map: bool,
}

/// How the pools are laid out in HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Layout {
    /// One backend (`Inner::backend`) holds every pool's servers, named `<pool><sep><id>`;
    /// the split is made of server weights.
    OneBackend,
    /// Each pool is its own backend, servers named by target id; the frontend chooses the
    /// backend per request by a map of 100 entries (`rand(100)` → backend name).
    PerPool {
        /// The map as `show map` names it (the file path in haproxy.cfg).
        map: String,
        /// Pool → its backend, for every pool.
        backends: BTreeMap<PoolName, String>,
    },
}

/// HAProxy accepts these characters in proxy and server names.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// A server's admin state as this router sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admin {
    Ready,
    Drain,
    Maint,
}

impl Admin {
    /// The admin state `server` is in.
    pub(super) fn of(server: &ServerState) -> Self {
        if server.in_maintenance() {
            Self::Maint
        } else if server.draining() {
            Self::Drain
        } else {
            Self::Ready
        }
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

impl HaproxyRouter {
    /// The HAProxy server name of `target` in `pool`: the one an operator named for it
    /// ([`HaproxyRouterBuilder::server`](super::HaproxyRouterBuilder::server)), else
    /// `<pool><separator><target>` (`blue.web-3`).
    ///
    /// In the backend-per-pool layout
    /// ([`HaproxyRouterBuilder::backend_per_pool`](super::HaproxyRouterBuilder::backend_per_pool)),
    /// a server is named by its target id (`web-3` in the pool's backend) unless an operator
    /// named it otherwise.
    pub fn server_name(&self, pool: &PoolName, target: &TargetId) -> String {
        match (self.inner.names.get(&(pool.clone(), target.clone())), &self.inner.layout) {
            (Some(name), _) => name.clone(),
            (None, Layout::OneBackend) => format!("{pool}{}{target}", self.inner.separator),
            (None, Layout::PerPool { .. }) => target.to_string(),
        }
    }

    /// The servers of `servers` that stand for `ids` in `pool` (ids with no server are left out).
    pub(super) fn present<'a>(
        &self,
        pool: &PoolName,
        ids: &[TargetId],
        servers: &'a [ServerState],
    ) -> Vec<&'a ServerState> {
        ids.iter()
            .filter_map(|id| {
                let name = self.server_name(pool, id);
                servers.iter().find(|s| s.name == name)
            })
            .collect()
    }

    /// The backend this router drives; in the backend-per-pool layout, the name the pools'
    /// backends were derived from (see [`pool_backend`](Self::pool_backend)).
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }

    /// The HAProxy backend holding `pool`'s servers: the one backend of the default layout,
    /// or the pool's own in the backend-per-pool layout. `None` for a pool the router does not
    /// have.
    pub fn pool_backend(&self, pool: &PoolName) -> Option<&str> {
        if !self.inner.pools.contains(pool) {
            return None;
        }
        match &self.inner.layout {
            Layout::OneBackend => Some(&self.inner.backend),
            Layout::PerPool { backends, .. } => backends.get(pool).map(String::as_str),
        }
    }

    /// The split map (the file path `show map` lists) of the backend-per-pool layout; `None`
    /// in the default layout.
    pub fn split_map(&self) -> Option<&str> {
        match &self.inner.layout {
            Layout::OneBackend => None,
            Layout::PerPool { map, .. } => Some(map),
        }
    }

    /// The running HAProxy's version (`show version`), e.g. `2.6.12-1+deb12u4`.
    ///
    /// # Errors
    /// [`Error::Backend`] when the runtime API cannot be reached or refuses.
    ///
    /// [`Error::Backend`]: bluegreen_core::Error::Backend
    pub async fn version(&self) -> Result<String> {
        Ok(self.inner.cli.run("show version").await?.trim().to_owned())
    }

    /// Sends one runtime-API command and returns HAProxy's answer, for whatever this router
    /// does not cover (`show info`, `show servers conn`, ...).
    ///
    /// # Errors
    /// [`Error::Backend`] when the socket cannot be reached or HAProxy denies the command;
    /// [`Error::NotFound`] when it answers "No such backend/server".
    ///
    /// [`Error::Backend`]: bluegreen_core::Error::Backend
    /// [`Error::NotFound`]: bluegreen_core::Error::NotFound
    pub async fn raw_command(&self, command: &str) -> Result<String> {
        Ok(self.inner.cli.run(command).await?)
    }

    // ---- reading ----

    pub(super) async fn servers(&self) -> Result<Vec<ServerState>, HaproxyError> {
        self.servers_in(&self.inner.backend).await
    }

    pub(super) async fn stats(&self) -> Result<Vec<ServerStat>, HaproxyError> {
        self.stats_in(&self.inner.backend).await
    }

    /// `show servers state` of `backend`.
    pub(super) async fn servers_in(&self, backend: &str) -> Result<Vec<ServerState>, HaproxyError> {
        let command = format!("show servers state {backend}");
        let answer = self.inner.cli.run(&command).await?;
        state::parse_servers_state(&command, &answer)
    }

    /// The server lines of `show stat` of `backend`.
    pub(super) async fn stats_in(&self, backend: &str) -> Result<Vec<ServerStat>, HaproxyError> {
        let command = format!("show stat {backend} 4 -1");
        let answer = self.inner.cli.run(&command).await?;
        state::parse_stat(&command, &answer)
    }

    /// The servers standing for `target` and their stats, in whichever pool: `(backend, stat)`.
    pub(super) async fn target_stats(&self, target: &TargetId) -> Result<Vec<(String, ServerStat)>, HaproxyError> {
        let mut found = Vec::new();
        match &self.inner.layout {
            Layout::OneBackend => {
                for stat in self.stats().await? {
                    if self.owner(&stat.name).is_some_and(|(_, id)| id == target.as_str()) {
                        found.push((self.inner.backend.clone(), stat));
                    }
                }
            }
            Layout::PerPool { backends, .. } => {
                for (pool, backend) in backends {
                    for stat in self.stats_in(backend).await? {
                        if self.owner_in(pool, &stat.name) == target.as_str() {
                            found.push((backend.clone(), stat));
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The target a server of `pool`'s own backend stands for (backend-per-pool layout): the
    /// one an operator named it for, else its name.
    pub(super) fn owner_in<'a>(&'a self, pool: &PoolName, server: &'a str) -> &'a str {
        match self.inner.named.get(server) {
            Some((named_pool, target)) if named_pool == pool => target.as_str(),
            _ => server,
        }
    }
    /// `(pool, target id)` of a server name, for configured pools only: a named server's, or
    /// the one its name spells.
    pub(super) fn owner<'a>(&'a self, server: &'a str) -> Option<(&'a PoolName, &'a str)> {
        if let Some((pool, target)) = self.inner.named.get(server) {
            return Some((pool, target.as_str()));
        }
        let (prefix, id) = server.split_once(self.inner.separator)?;
        let pool = self.inner.pools.iter().find(|p| p.as_str() == prefix)?;
        (!id.is_empty()).then_some((pool, id))
    }

    pub(super) fn check_pool(&self, pool: &PoolName) -> Result<(), HaproxyError> {
        if self.inner.pools.contains(pool) {
            return Ok(());
        }
        Err(HaproxyError::UnknownPool {
            pool: pool.to_string(),
            backend: self.describe(),
            known: self.inner.pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", "),
        })
    }
    pub(super) fn server_ref(&self, server: &str) -> String {
        format!("{}/{server}", self.inner.backend)
    }

    /// What the router drives, for messages: `backend web`, or `backends web_blue, web_green
    /// (map /etc/haproxy/split.map)`.
    pub(super) fn describe(&self) -> String {
        match &self.inner.layout {
            Layout::OneBackend => format!("backend {}", self.inner.backend),
            Layout::PerPool { map, backends } => {
                let names: Vec<&str> = backends.values().map(String::as_str).collect();
                format!("backends {} (split map {map})", names.join(", "))
            }
        }
    }

    /// Runs a command whose success answer is empty (`set server ... state|weight`, `enable health`).
    pub(super) async fn quiet(&self, command: String) -> Result<(), HaproxyError> {
        let answer = self.inner.cli.run(&command).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() })
        }
    }

    pub(super) async fn set_state(&self, server: &str, admin: Admin) -> Result<(), HaproxyError> {
        self.set_state_in(&self.inner.backend, server, admin).await
    }

    pub(super) async fn set_weight(&self, server: &str, weight: u32) -> Result<(), HaproxyError> {
        self.set_weight_in(&self.inner.backend, server, weight).await
    }

    pub(super) async fn set_state_in(&self, backend: &str, server: &str, admin: Admin) -> Result<(), HaproxyError> {
        self.quiet(format!("set server {backend}/{server} state {}", admin.word())).await
    }

    pub(super) async fn set_weight_in(&self, backend: &str, server: &str, weight: u32) -> Result<(), HaproxyError> {
        self.quiet(format!("set server {backend}/{server} weight {weight}")).await
    }
}
