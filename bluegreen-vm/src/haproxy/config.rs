//! [`HaproxyRouterConfig`]: the serde settings of a [`HaproxyRouter`] (a deploy file's
//! `[backend]` with `kind = "haproxy"`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result, TargetId};
use serde::Deserialize;

use super::{HaproxyEndpoint, HaproxyRouter};

/// A [`HaproxyRouter`] over one HAProxy backend whose servers are named
/// `<pool><separator><host id>`. Read with serde (unknown keys are left to the caller, which
/// may share the table with a fleet's settings), checked by [`HaproxyRouterConfig::build`].
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct HaproxyRouterConfig {
    /// The runtime API's unix socket (`stats socket … level admin`).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// The runtime API on TCP (`stats socket ipv4@127.0.0.1:9999 level admin`), instead of `socket`.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// The HAProxy backend holding every pool's servers.
    pub haproxy_backend: String,
    /// Between pool and host id in server names (`.`, `-`, `_` or `:`; default `.`).
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
