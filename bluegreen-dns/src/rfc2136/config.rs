//! [`Rfc2136RouterConfig`]: the serde settings of an [`Rfc2136Router`] (a deploy file's
//! `[backend]` with `kind = "rfc2136"`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result};
use serde::Deserialize;

use super::tsig::{TsigAlgorithm, TsigKey};
use super::Rfc2136Router;
use crate::settings::{default_margin, default_ttl};

/// An [`Rfc2136Router`] over one DNS name, its updates signed with a TSIG key. Read with serde
/// (unknown keys are left to the caller, which may share the table with a fleet's settings),
/// checked by [`Rfc2136RouterConfig::build`]. Debug output hides the TSIG secret.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct Rfc2136RouterConfig {
    /// The primary that accepts updates (`ip:port`, DNS over TCP).
    pub server: SocketAddr,
    /// The zone (`example.test.`).
    pub zone: String,
    /// The name whose A records are the split (`www.example.test.`).
    pub name: String,
    /// The TTL of the records written (default 60 s).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Added to the TTL for resolvers that hold answers longer (default 5 s).
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
    /// The weight step of splits, in percent (must divide 100; default 50).
    #[serde(default = "default_granularity")]
    pub granularity: u32,
    /// The TSIG key's name, as the server knows it.
    pub tsig_key: String,
    /// The TSIG key's base64 secret (in a deploy file: `${env.NAME}`).
    pub tsig_secret: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// Longest wait for one DNS exchange.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Authoritative servers to wait for after each write: label → `ip:port`.
    #[serde(default)]
    pub authoritatives: BTreeMap<String, SocketAddr>,
    /// How long to wait for them (default 60 s).
    #[serde(default = "default_sync_timeout", with = "humantime_serde")]
    pub sync_timeout: Duration,
}

impl fmt::Debug for Rfc2136RouterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136RouterConfig")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("margin", &self.margin)
            .field("granularity", &self.granularity)
            .field("tsig_key", &self.tsig_key)
            .field("tsig_secret", &"<redacted>")
            .field("tsig_algorithm", &self.tsig_algorithm)
            .field("timeout", &self.timeout)
            .field("authoritatives", &self.authoritatives)
            .field("sync_timeout", &self.sync_timeout)
            .finish()
    }
}

fn default_granularity() -> u32 {
    50
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Rfc2136RouterConfig {
    /// The router for `pools` (nothing is sent). `Error::Invalid` names the setting at fault
    /// (`tsig_secret`, `granularity`, `name`; `pools[…]` for the pools).
    pub fn build(&self, pools: &[PoolName]) -> Result<Rfc2136Router> {
        self.build_describing(pools, [])
    }

    /// The router for `pools`, told of the inventory's hosts: `(target, pool, address)` (see
    /// [`Rfc2136RouterBuilder::host`](super::Rfc2136RouterBuilder::host): A records of theirs
    /// with no bookkeeping are read as their members and adopted when the deploy is told to).
    /// `Error::Invalid` as [`build`](Self::build), and on `hosts[i].…` for a host.
    pub fn build_describing(
        &self,
        pools: &[PoolName],
        hosts: impl IntoIterator<Item = (String, PoolName, String)>,
    ) -> Result<Rfc2136Router> {
        let key = TsigKey::new(&self.tsig_key, self.tsig_algorithm, &self.tsig_secret).map_err(|e| {
            e.rename_field(|field| if field == "tsig.secret" { "tsig_secret" } else { "tsig_key" }.to_owned())
        })?;
        let mut builder = Rfc2136Router::builder(self.server, &self.zone, &self.name)
            .tsig(key)
            .ttl(self.ttl)
            .resolver_margin(self.margin)
            .weight_granularity(self.granularity);
        for pool in pools {
            builder = builder.pool(pool.as_str());
        }
        for (target, pool, address) in hosts {
            builder = builder.host(target, pool.as_str(), address);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        if !self.authoritatives.is_empty() {
            builder = builder.authoritatives(
                self.authoritatives.iter().map(|(label, address)| (label.clone(), *address)),
                self.sync_timeout,
            );
        }
        builder.build().map_err(|e| {
            e.rename_field(|field| match field.as_str() {
                "weight_granularity" => "granularity".to_owned(),
                "tsig" | "tsig.name" => "tsig_key".to_owned(),
                "tsig.algorithm" => "tsig_algorithm".to_owned(),
                _ => field,
            })
        })
    }

    /// A member's check for a fleet that serves this router (`HostFleetConfig::check_hosts`
    /// of bluegreen-vm): DNS carries addresses only, so each needs an IPv4 address and port
    /// (its A record). `Error::Invalid` on `address`.
    pub fn check_member(_id: &str, address: &str) -> Result<()> {
        if address.parse::<std::net::SocketAddrV4>().is_err() {
            return Err(Error::invalid(
                "address",
                format!("{address:?} is not an IPv4 address and port (10.0.0.7:8080): the address becomes an A record"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsig_secret_stays_out_of_debug_and_a_bad_one_names_its_field() {
        let config: Rfc2136RouterConfig = serde_json::from_value(serde_json::json!({
            "server": "127.0.0.1:53", "zone": "example.test.", "name": "www.example.test.",
            "tsig_key": "k.", "tsig_secret": "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        }))
        .unwrap();
        assert!(!format!("{config:?}").contains("c2VjcmV0"), "{config:?}");
        let pools = [PoolName::from("blue"), PoolName::from("green")];
        config.build(&pools).unwrap();
        let bad = Rfc2136RouterConfig { tsig_secret: "not base64!".to_owned(), ..config };
        let error = bad.build(&pools).unwrap_err();
        assert_eq!(error.field(), Some("tsig_secret"));
        assert!(!error.to_string().contains("not base64!"), "{error}");
    }
}
