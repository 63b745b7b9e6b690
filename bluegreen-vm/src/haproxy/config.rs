//! [`HaproxyRouterConfig`]: the serde settings of a [`HaproxyRouter`] (a deploy file's
//! `[backend]` with `kind = "haproxy"`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result, TargetId};
use serde::Deserialize;

use super::{HaproxyEndpoint, HaproxyRouter};

/// A [`HaproxyRouter`] over one HAProxy backend whose servers are named
/// `<pool><separator><host id>` (the default layout), or over one backend per pool with a
/// split map (`layout = "backend-per-pool"`). Read with serde (unknown keys are left to the
/// caller, which may share the table with a fleet's settings), checked by
/// [`HaproxyRouterConfig::build`].
///
/// ```toml
/// socket = "/run/haproxy/admin.sock"
/// haproxy_backend = "web"
/// layout = "backend-per-pool"                      # pools web_blue and web_green
/// split_map = "/etc/haproxy/bluegreen-split.map"   # as haproxy.cfg's map_int(…) writes it
/// pool_backends = { green = "web_next" }           # optional: a pool's backend by name
/// ```
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct HaproxyRouterConfig {
    /// The runtime API's unix socket (`stats socket … level admin`).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The runtime API on TCP (`stats socket ipv4@127.0.0.1:9999 level admin`), instead of `socket`.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// The HAProxy backend holding every pool's servers; in the backend-per-pool layout, the
    /// name the pools' backends are derived from (`<haproxy_backend>_<pool>`).
    pub haproxy_backend: String,
    /// Where the pools are (default: one backend).
    #[serde(default)]
    pub layout: HaproxyLayout,
    /// The backend-per-pool layout's split map, as haproxy.cfg names it in `map_int(…)` (and
    /// `show map` lists it). Required in that layout, refused in the other.
    #[serde(default)]
    pub split_map: Option<String>,
    /// The backend-per-pool layout's backends by pool, for pools whose backend is not
    /// `<haproxy_backend>_<pool>`. Refused in the default layout.
    #[serde(default)]
    pub pool_backends: BTreeMap<String, String>,
    /// The backend-per-pool layout: write the split map's file after each split (it must be
    /// on this machine), so a reload of HAProxy keeps the split. Default false.
    #[serde(default)]
    pub save_split_map: bool,
    /// Between pool and host id in server names (`.`, `-`, `_` or `:`; default `.`). The
    /// backend-per-pool layout names servers by host id and refuses another separator.
    #[serde(default = "default_separator")]
    pub separator: char,
    /// Keywords for servers the router creates (`check inter 2s fall 3 rise 2`).
    #[serde(default)]
    pub server_options: String,
    /// Longest wait for one runtime-API command.
    #[serde(default, with = "humantime_serde")]
    pub command_timeout: Option<Duration>,
}

fn default_separator() -> char {
    '.'
}

/// How the pools are laid out in HAProxy (`layout` of [`HaproxyRouterConfig`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HaproxyLayout {
    /// `"one-backend"`: one backend holds every pool's servers (`blue.web-01`); the split is
    /// server weights.
    #[default]
    OneBackend,
    /// `"backend-per-pool"`: each pool is its own backend, servers named by host id; the
    /// split is a map of 100 entries the frontend draws from
    /// ([`HaproxyRouterBuilder::backend_per_pool`](super::HaproxyRouterBuilder::backend_per_pool)).
    BackendPerPool,
}

impl HaproxyRouterConfig {
    /// The router for `pools` (no connection is made). `Error::Invalid` names the setting at
    /// fault (`address`, `separator`, the empty field for the settings as a whole; `pools[…]`
    /// for the pools).
    pub fn build(&self, pools: &[PoolName]) -> Result<HaproxyRouter> {
        self.build_naming(pools, [])
    }

    /// The router for `pools`, with servers an operator named (server name, pool, target; see
    /// [`HaproxyRouterBuilder::server`](super::HaproxyRouterBuilder::server)).
    pub fn build_naming(
        &self,
        pools: &[PoolName],
        servers: impl IntoIterator<Item = (String, PoolName, TargetId)>,
    ) -> Result<HaproxyRouter> {
        let endpoint = match (&self.socket, self.address) {
            (Some(path), None) => HaproxyEndpoint::unix(path.clone()),
            (None, Some(address)) => HaproxyEndpoint::tcp(address),
            (Some(_), Some(_)) => return Err(Error::invalid("address", "give either `socket` or `address`, not both")),
            (None, None) => {
                return Err(Error::invalid(
                    "",
                    "missing `socket` (the runtime API's unix socket) or `address` (its TCP address)",
                ));
            }
        };
        let mut builder = HaproxyRouter::builder(endpoint, self.haproxy_backend.as_str())
            .pools(pools.iter().cloned())
            .separator(self.separator)
            .server_options(self.server_options.as_str());
        match (self.layout, &self.split_map) {
            (HaproxyLayout::OneBackend, Some(_)) => {
                return Err(Error::invalid(
                    "split_map",
                    "a split map is the backend-per-pool layout's: add layout = \"backend-per-pool\", or leave it out",
                ));
            }
            (HaproxyLayout::OneBackend, None) if self.save_split_map => {
                return Err(Error::invalid(
                    "save_split_map",
                    "there is no split map to save without layout = \"backend-per-pool\": leave it out",
                ));
            }
            (HaproxyLayout::OneBackend, None) if !self.pool_backends.is_empty() => {
                return Err(Error::invalid(
                    "pool_backends",
                    "pool backends are the backend-per-pool layout's: add layout = \"backend-per-pool\" and \
                     split_map, or leave them out",
                ));
            }
            (HaproxyLayout::OneBackend, None) => {}
            (HaproxyLayout::BackendPerPool, None) => {
                return Err(Error::invalid(
                    "split_map",
                    "missing: layout = \"backend-per-pool\" needs the map the frontend chooses backends by, as \
                     haproxy.cfg's map_int(…) names it",
                ));
            }
            (HaproxyLayout::BackendPerPool, Some(_)) if self.separator != default_separator() => {
                return Err(Error::invalid(
                    "separator",
                    "layout = \"backend-per-pool\" names servers by host id, without a pool prefix: leave `separator` out",
                ));
            }
            (HaproxyLayout::BackendPerPool, Some(map)) => {
                builder = builder.backend_per_pool(map.as_str()).save_split_map(self.save_split_map);
                for (pool, backend) in &self.pool_backends {
                    builder = builder.pool_backend(pool.as_str(), backend.as_str());
                }
            }
        }
        for (name, pool, target) in servers {
            builder = builder.server(name, pool, target);
        }
        if let Some(timeout) = self.command_timeout {
            builder = builder.command_timeout(timeout);
        }
        builder
            .build()
            .map_err(|e| e.rename_field(|field| if field == "backend" { "haproxy_backend".to_owned() } else { field }))
    }
}
