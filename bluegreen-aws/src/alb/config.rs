//! [`AlbRouterConfig`]: the serde settings of an [`AlbRouter`] (a deploy file's
//! `[backend.alb]`).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use bluegreen_core::{Error, PoolName, Result};
use serde::Deserialize;

use super::AlbRouter;

/// The listener (or rule) whose weighted forward action is the split, and each pool's target
/// group. Checked by [`AlbRouterConfig::build`] without any AWS call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AlbRouterConfig {
    /// The listener whose default action is weighted, or which holds `rule_arn`.
    pub listener_arn: String,
    /// A listener rule to weight instead of the default action (`/reporting*`).
    #[serde(default)]
    pub rule_arn: Option<String>,
    /// A test listener kept forwarding to the idle pool (pre-traffic checks on another port).
    #[serde(default)]
    pub test_listener_arn: Option<String>,
    /// Pool name → target group ARN.
    pub target_groups: BTreeMap<String, String>,
    /// How often a drain reads the targets' health (default 2 s).
    #[serde(default, with = "humantime_serde")]
    pub drain_poll: Option<Duration>,
}

impl AlbRouterConfig {
    /// The router for `pools` over `config`'s client (no call is made). `Error::Invalid` names
    /// the setting at fault (`listener_arn`, `target_groups`; `pools[…]` for the pools).
    pub fn build(&self, config: &SdkConfig, pools: &[PoolName]) -> Result<AlbRouter> {
        for pool in pools {
            if !self.target_groups.contains_key(pool.as_str()) {
                return Err(Error::invalid(
                    "target_groups",
                    format!("pool {pool} has no target group (name one for each of the spec's pools)"),
                ));
            }
        }
        let groups = self.target_groups.iter().map(|(pool, arn)| (pool.as_str(), arn.clone()));
        let mut router = AlbRouter::new(config, &self.listener_arn, groups).map_err(|e| {
            e.rename_field(|field| {
                if field == "pools" || field.starts_with("pools.") {
                    field.replacen("pools", "target_groups", 1)
                } else {
                    field
                }
            })
        })?;
        if let Some(rule) = &self.rule_arn {
            router = router.on_rule(rule)?;
        }
        if let Some(test) = &self.test_listener_arn {
            router = router.test_listener(test)?;
        }
        if let Some(every) = self.drain_poll {
            router = router.drain_poll_interval(every);
        }
        Ok(router)
    }

    /// A member's check for a fleet of hosts behind this router (`HostFleetConfig::check_hosts`
    /// of bluegreen-vm): the ALB knows an ip target by its address, so the id must be that
    /// address (or an instance id, `i-…:port`). `Error::Invalid` on `id`.
    pub fn check_member(id: &str, address: &str) -> Result<()> {
        if !id.starts_with("i-") && id != address {
            return Err(Error::invalid(
                "id",
                format!(
                    "{id:?}: an ALB ip target is named by its address, so the id must be {address:?} (or an instance id i-…:port)"
                ),
            ));
        }
        Ok(())
    }
}
