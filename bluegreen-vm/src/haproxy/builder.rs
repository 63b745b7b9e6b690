//! [`HaproxyRouterBuilder`]: the router's configuration, checked once before any connection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result, TargetId};

use super::cli::{Cli, HaproxyEndpoint};
use super::router::{valid_name, HaproxyRouter, Inner, Layout};

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
    named: Vec<(String, PoolName, TargetId)>,
    split_map: Option<String>,
    pool_backends: Vec<(PoolName, String)>,
}

impl HaproxyRouterBuilder {
    /// A server an operator named (`web-01` in an existing config) that stands for `target`
    /// in `pool`, instead of `<pool><separator><target>`. The router reports such servers as
    /// not managed yet ([`Router::unmanaged`](bluegreen_core::Router::unmanaged)): a deploy
    /// adopts them only when told to.
    #[must_use]
    pub fn server(mut self, name: impl Into<String>, pool: impl Into<PoolName>, target: impl Into<TargetId>) -> Self {
        self.named.push((name.into(), pool.into(), target.into()));
        self
    }

    /// The backend-per-pool layout: each pool is its own HAProxy backend (`<backend>_<pool>`,
    /// e.g. `web_blue`, unless [`pool_backend`](Self::pool_backend) names it), its servers
    /// named by target id, and the frontend chooses the backend per request through the map
    /// `split_map` (the path as haproxy.cfg writes it, which is how `show map` names it):
    ///
    /// ```text
    /// frontend www
    ///     use_backend %[rand(100),map_int(/etc/haproxy/bluegreen-split.map)]
    ///     default_backend web_blue
    /// ```
    ///
    /// The map has one entry per key `0` … `99`, each naming a pool's backend: a pool with `p`
    /// entries gets `p` % of the requests (drawn at random per request, so on average). The
    /// router writes a split as a new version of the whole map, committed at once (`prepare
    /// map`, `add map`, `commit map`; HAProxy 2.4+), and reads it back with `show map`; a map
    /// with a missing key, a key outside 0 … 99 or an entry naming another backend is
    /// [`Error::Drift`], before any write. Membership and drains work on the pool's own
    /// backend as in the default layout, without touching weights (a server put into
    /// service with weight 0 gets weight 1).
    ///
    /// ```
    /// use bluegreen_vm::{HaproxyEndpoint, HaproxyRouter};
    /// let router = HaproxyRouter::builder(HaproxyEndpoint::unix("/run/haproxy/admin.sock"), "web")
    ///     .backend_per_pool("/etc/haproxy/bluegreen-split.map")
    ///     .pool_backend("green", "web_next")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(router.pool_backend(&"blue".into()), Some("web_blue"));
    /// assert_eq!(router.pool_backend(&"green".into()), Some("web_next"));
    /// assert_eq!(router.server_name(&"green".into(), &"web-3".into()), "web-3");
    /// ```
    #[must_use]
    pub fn backend_per_pool(mut self, split_map: impl Into<String>) -> Self {
        self.split_map = Some(split_map.into());
        self
    }

    /// The backend of `pool` in the backend-per-pool layout (default `<backend>_<pool>`).
    #[must_use]
    pub fn pool_backend(mut self, pool: impl Into<PoolName>, backend: impl Into<String>) -> Self {
        self.pool_backends.push((pool.into(), backend.into()));
        self
    }

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

    /// How long [`remove_targets`] retries `del server` while HAProxy
    /// still holds connections to the server (idle keep-alive ones included). Default 5 s.
    ///
    /// [`remove_targets`]: bluegreen_core::Router::remove_targets
    #[must_use]
    pub fn delete_wait(mut self, wait: Duration) -> Self {
        self.delete_wait = wait;
        self
    }

    /// The router. Makes no connection.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a backend or pool name HAProxy cannot have, a separator that is
    /// not `.`, `-`, `_` or `:` or appears in a pool name, duplicate pools or no pool; in the
    /// backend-per-pool layout, a split map path HAProxy's CLI cannot take (empty, or with
    /// spaces), a pool backend for a pool the router does not have, given twice, shared by
    /// two pools or not a valid name (`pool_backends.<pool>`), and pool backends without
    /// the layout (`pool_backends`).
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
            // Pool names prefix server names in the default layout (backend names by default in
            // the backend-per-pool layout, where the separator plays no part).
            if !valid_name(name) || (self.split_map.is_none() && name.contains(self.separator)) {
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
        let layout = self.layout()?;
        let (mut named, mut names) = (BTreeMap::new(), BTreeMap::new());
        for (i, (name, pool, target)) in self.named.into_iter().enumerate() {
            let field = format!("servers[{i}]");
            if !valid_name(&name) {
                return Err(Error::invalid(field, format!("{name:?} is not a valid HAProxy server name")));
            }
            if !self.pools.contains(&pool) {
                return Err(Error::invalid(
                    field,
                    format!("server {name} is in pool {pool}, which the router does not have"),
                ));
            }
            if named.insert(name.clone(), (pool.clone(), target.clone())).is_some()
                || names.insert((pool, target), name.clone()).is_some()
            {
                return Err(Error::invalid(field, format!("server {name} is named twice")));
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
                named,
                names,
                writes: tokio::sync::Mutex::new(()),
                layout,
            }),
        })
    }

    /// The layout, checked.
    fn layout(&self) -> Result<Layout> {
        let Some(map) = &self.split_map else {
            if let Some((pool, _)) = self.pool_backends.first() {
                return Err(Error::invalid(
                    "pool_backends",
                    format!(
                        "a backend for pool {pool} is given, but the pools are servers of backend {}; pool \
                         backends need the backend-per-pool layout (with its split map)",
                        self.backend
                    ),
                ));
            }
            return Ok(Layout::OneBackend);
        };
        if map.is_empty() || map.chars().any(char::is_whitespace) {
            return Err(Error::invalid(
                "split_map",
                format!("{map:?} cannot be named on HAProxy's CLI (it must be non-empty, without spaces)"),
            ));
        }
        let mut backends: BTreeMap<PoolName, String> = BTreeMap::new();
        for (pool, backend) in &self.pool_backends {
            let field = format!("pool_backends.{pool}");
            if !self.pools.contains(pool) {
                let pools = self.pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", ");
                return Err(Error::invalid(field, format!("pool {pool} is not one of the router's pools ({pools})")));
            }
            if backends.insert(pool.clone(), backend.clone()).is_some() {
                return Err(Error::invalid(field, format!("pool {pool} is given a backend twice")));
            }
        }
        for pool in &self.pools {
            backends.entry(pool.clone()).or_insert_with(|| format!("{}_{pool}", self.backend));
        }
        let mut seen = BTreeMap::new();
        for (pool, backend) in &backends {
            let field = format!("pool_backends.{pool}");
            if !valid_name(backend) {
                return Err(Error::invalid(field, format!("{backend:?} is not a valid HAProxy backend name")));
            }
            if let Some(other) = seen.insert(backend.clone(), pool.clone()) {
                return Err(Error::invalid(
                    field,
                    format!("pools {other} and {pool} are both backend {backend}: each pool needs its own"),
                ));
            }
        }
        Ok(Layout::PerPool { map: map.clone(), backends })
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
            named: Vec::new(),
            delete_wait: Duration::from_secs(5),
            split_map: None,
            pool_backends: Vec::new(),
        }
    }
}
