//! [`Route53RouterConfig`]: the serde settings of a [`Route53Router`] (a deploy file's
//! `[backend]` with `kind = "route53"`).

use std::time::Duration;

use aws_config::SdkConfig;
use bluegreen_core::{PoolName, Result};
use serde::Deserialize;

use super::{Route53RecordType, Route53Router};
use crate::settings::{default_margin, default_ttl};

/// A [`Route53Router`] on the weighted record sets of one name. Read with serde (unknown keys
/// are left to the caller, which may share the table with a fleet's settings), checked by
/// [`Route53RouterConfig::build`]; where the client connects is the caller's `SdkConfig`
/// (bluegreen-aws's `AwsSettings`).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Route53RouterConfig {
    /// The hosted zone's id (`Z0123456789ABC`).
    pub hosted_zone_id: String,
    /// The name the pools' weighted records share (`www.example.com.`).
    pub name: String,
    /// `A` (default) or `AAAA`.
    #[serde(default)]
    pub record_type: Route53RecordType,
    /// The records' TTL (1 s to 1 day; default 60 s).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Added to the TTL for resolvers that keep answers longer (default 5 s).
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
    /// Longest wait for a change to be `INSYNC`.
    #[serde(default, with = "humantime_serde")]
    pub change_timeout: Option<Duration>,
}

impl Route53RouterConfig {
    /// The router for `pools` over `config`'s client (no call is made). `Error::Invalid`
    /// names the setting at fault (`ttl`, `hosted_zone_id`, `name`; `pools[…]` for the pools).
    pub fn build(&self, config: &SdkConfig, pools: &[PoolName]) -> Result<Route53Router> {
        self.build_describing(config, pools, [])
    }

    /// The router for `pools`, told of the inventory's hosts: `(target, pool, address)` (see
    /// [`Route53RouterBuilder::host`](super::Route53RouterBuilder::host): address records of
    /// theirs with no bookkeeping are read as their members and adopted when the deploy is told
    /// to). `Error::Invalid` as [`build`](Self::build), and on `hosts[i].…` for a host.
    pub fn build_describing(
        &self,
        config: &SdkConfig,
        pools: &[PoolName],
        hosts: impl IntoIterator<Item = (String, PoolName, String)>,
    ) -> Result<Route53Router> {
        let mut builder = Route53Router::builder(config, &self.hosted_zone_id, &self.name)
            .record_type(self.record_type)
            .ttl(self.ttl)
            .resolver_margin(self.margin);
        for pool in pools {
            builder = builder.pool(pool.as_str());
        }
        for (target, pool, address) in hosts {
            builder = builder.host(target, pool.as_str(), address);
        }
        if let Some(timeout) = self.change_timeout {
            builder = builder.change_timeout(timeout);
        }
        builder.build().map_err(|e| {
            e.rename_field(|field| match field.as_str() {
                "zone" => "hosted_zone_id".to_owned(),
                "record_name" => "name".to_owned(),
                _ => field,
            })
        })
    }
}
