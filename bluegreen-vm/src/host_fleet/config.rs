//! [`HostFleetConfig`]: the serde settings of a [`HostFleet`] (the inventory and the updater
//! command of a deploy file's `[backend]`).

use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result, Target, TargetId, Version};
use serde::Deserialize;

use super::{HostFleet, Updater};

/// A fixed inventory of hosts updated in place by a shell command. Read with serde (unknown
/// keys are left to the caller, which may share the table with a router's settings), checked
/// by [`HostFleetConfig::build`]: the template's placeholders, each host's `host:port`, and
/// that every id and address can go into the command.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct HostFleetConfig {
    /// The shell command that updates one host (`ssh {host} 'deploy.sh {version}'`).
    pub updater: String,
    /// How long one update may take (default 10 minutes).
    #[serde(default = "default_update_timeout", with = "humantime_serde")]
    pub update_timeout: Duration,
    /// The inventory (`[[backend.hosts]]`).
    pub hosts: Vec<HostEntry>,
}

/// One host of a [`HostFleetConfig`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HostEntry {
    /// The host's id (unique).
    pub id: String,
    /// `host:port` (IPv6 as `[addr]:port`).
    pub address: String,
    /// The zone it is in.
    #[serde(default)]
    pub zone: Option<String>,
    /// The version it ran when it entered the inventory; once bluegreen deployed to it, the
    /// state store's record wins.
    pub version: String,
    /// The standing pool it belongs to (`blue`, `green`): set on every host or on none.
    /// With pools, blue-green, canary and linear switch between them.
    #[serde(default)]
    pub pool: Option<String>,
}

fn default_update_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Placeholders a command updater replaces (see [`Updater`]).
const PLACEHOLDERS: &[&str] = &["id", "host", "address", "version", "from_version"];

impl HostEntry {
    fn target(&self) -> Target {
        Target {
            id: self.id.as_str().into(),
            address: self.address.clone(),
            zone: self.zone.clone(),
            version: self.version.as_str().into(),
            tag: None,
        }
    }
}

impl HostFleetConfig {
    /// The fleet (nothing runs). `Error::Invalid` names the setting at fault (`updater`,
    /// `update_timeout`, `hosts[1].address`).
    pub fn build(&self) -> Result<HostFleet> {
        check_template(&self.updater)?;
        if self.update_timeout.is_zero() {
            return Err(Error::invalid("update_timeout", "must be longer than 0s"));
        }
        let updater = Updater::command(self.updater.as_str()).with_timeout(self.update_timeout);
        let mut targets = Vec::new();
        for (i, host) in self.hosts.iter().enumerate() {
            check_address(&host.address).map_err(|reason| Error::invalid(format!("hosts[{i}].address"), reason))?;
            let target = host.target();
            // Refuses ids and addresses that could not go into the command, before anything runs.
            updater.render(&target, &target.version).map_err(|e| {
                e.rename_field(|field| {
                    let key = match field.as_str() {
                        "updater.{id}" => "id",
                        "updater.{version}" | "updater.{from_version}" => "version",
                        _ => "address",
                    };
                    format!("hosts[{i}].{key}")
                })
            })?;
            targets.push(target);
        }
        let pools =
            self.hosts.iter().filter_map(|h| Some((TargetId::from(h.id.as_str()), PoolName::from(h.pool.as_deref()?))));
        HostFleet::new(targets, updater)?.with_standing_pools(pools)
    }

    /// Whether the hosts stand in pools (blue-green, canary and linear then switch between them).
    pub fn has_pools(&self) -> bool {
        self.hosts.iter().any(|h| h.pool.is_some())
    }

    /// Refuses pools that do not match `pools` (the spec's): a host with a pool and another
    /// without (`hosts[2].pool`), a host in a pool the spec does not name (`hosts[1].pool`), a
    /// pool of the spec with no host (`pools`). Nothing to check when no host names a pool.
    pub fn check_pools(&self, pools: &[PoolName]) -> Result<()> {
        if !self.has_pools() {
            return Ok(());
        }
        let names = pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", ");
        for (i, host) in self.hosts.iter().enumerate() {
            match host.pool.as_deref() {
                None => {
                    return Err(Error::invalid(
                        format!("hosts[{i}]"),
                        format!("host {} has no `pool`: give every host one ({names}), or none", host.id),
                    ))
                }
                Some(pool) if !pools.iter().any(|p| p.as_str() == pool) => {
                    return Err(Error::invalid(
                        format!("hosts[{i}].pool"),
                        format!(
                            "host {} is in pool {pool:?}, which is not one of the deploy's pools ({names})",
                            host.id
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(empty) = pools.iter().find(|p| !self.hosts.iter().any(|h| h.pool.as_deref() == Some(p.as_str()))) {
            return Err(Error::invalid(
                "pools",
                format!("pool {empty} has no host in the inventory: give it hosts (`pool = \"{empty}\"`)"),
            ));
        }
        Ok(())
    }

    /// Applies a router's own check to each host (`check(id, address)`, whose `Error::Invalid`
    /// names `id` or `address`), naming the host (`hosts[1].address`).
    pub fn check_hosts(&self, check: impl Fn(&str, &str) -> Result<()>) -> Result<()> {
        for (i, host) in self.hosts.iter().enumerate() {
            check(&host.id, &host.address).map_err(|e| e.within(&format!("hosts[{i}]")))?;
        }
        Ok(())
    }

    /// Refuses a version the updater command could not take (`Error::Invalid` on `version`,
    /// the spec's field), so a deploy to it fails while the settings are read, not after the
    /// first host was drained.
    pub fn check_version(&self, version: &Version) -> Result<()> {
        let Some(host) = self.hosts.first() else { return Ok(()) };
        let target = Target { zone: None, ..host.target() };
        Updater::command(self.updater.as_str())
            .render(&target, version)
            .map(drop)
            .map_err(|e| e.rename_field(|_| "version".to_owned()))
    }
}

/// Checks a host address is `host:port` (IPv6 as `[addr]:port`) with a port of 1–65535: the
/// probes and the router need the port.
fn check_address(address: &str) -> std::result::Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} has no port: write host:port (10.0.1.1:8080)"));
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(format!("{address:?} is not host:port (an IPv6 address is written [fd00::1]:8080)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{address:?}: the port {port:?} is not a number from 1 to 65535")),
    }
}

/// Refuses `{name}` placeholders the updater does not know (a typo would reach the shell).
fn check_template(template: &str) -> Result<()> {
    if template.trim().is_empty() {
        return Err(Error::invalid("updater", "must not be empty"));
    }
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let preceded_by_dollar = offset + open > 0 && template.as_bytes()[offset + open - 1] == b'$';
        if let Some(close) = after.find('}') {
            let name = &after[..close];
            let looks_like_one =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if looks_like_one && !preceded_by_dollar && !PLACEHOLDERS.contains(&name) {
                let known = PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ");
                return Err(Error::invalid("updater", format!("unknown placeholder {{{name}}}: use {known}")));
            }
        }
        offset += open + 1;
        rest = after;
    }
    Ok(())
}
