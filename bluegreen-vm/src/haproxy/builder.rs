//! [`HaproxyRouterBuilder`]: the router's configuration, checked once before any connection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result, TargetId};

use super::cli::{Cli, HaproxyEndpoint};
use super::router::{valid_name, HaproxyRouter, Inner};

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
            }),
        })
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
        }
    }
}
