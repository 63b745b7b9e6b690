//! [`Route53RouterBuilder`]: the router's settings, checked without any AWS call.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::Client;
use bluegreen_core::state::Clock;
use bluegreen_core::{Error, PoolName, Result};

use super::records::{check_name, normalize, Route53RecordType};
use super::{Inner, Route53Router, META};
use crate::bookkeeping::{self, WallClock};
use crate::settings;

/// Route53's own bound on a TTL.
const ROUTE53_MAX_TTL: u64 = 2_147_483_647;

/// Builds a [`Route53Router`]; see [`Route53Router::builder`].
#[derive(Debug, Clone)]
pub struct Route53RouterBuilder {
    pub(super) client: Client,
    pub(super) zone_id: String,
    pub(super) name: String,
    pub(super) record_type: Route53RecordType,
    pub(super) ttl: Duration,
    pub(super) any_ttl: bool,
    pub(super) margin: Duration,
    pub(super) pools: Vec<String>,
    pub(super) health_checks: Vec<(String, String)>,
    pub(super) change_timeout: Duration,
    pub(super) poll_interval: Duration,
    pub(super) clock: Option<WallClock>,
    pub(super) hosts: Vec<(String, String, String)>,
}

impl Route53RouterBuilder {
    /// `A` (default) or `AAAA` records.
    #[must_use]
    pub fn record_type(mut self, record_type: Route53RecordType) -> Self {
        self.record_type = record_type;
        self
    }

    /// The TTL of the records written (default 60 s): whole seconds, 1 s to 1 day unless
    /// [`allow_any_ttl`](Self::allow_any_ttl).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Accepts a TTL of 0 (resolvers ask Route53 on every lookup, which Route53 bills) or
    /// above one day (every traffic step then waits that long).
    #[must_use]
    pub fn allow_any_ttl(mut self) -> Self {
        self.any_ttl = true;
        self
    }

    /// Added to the TTL for resolvers and clients that keep answers a little longer than the
    /// TTL (default 5 s). The router's propagation delay is TTL + margin.
    #[must_use]
    pub fn resolver_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Adds a pool: a weighted record set whose `SetIdentifier` is the pool name (a DNS label:
    /// letters, digits and `-`, at most 63).
    #[must_use]
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pools.push(name.into());
        self
    }

    /// Attaches the Route53 health check `health_check_id` to `pool`'s record set: Route53 then
    /// leaves the set out of its answers while the check fails (and answers with every set when
    /// all fail). Without it, a health check already on the set is kept.
    #[must_use]
    pub fn health_check(mut self, pool: impl Into<String>, health_check_id: impl Into<String>) -> Self {
        self.health_checks.push((pool.into(), health_check_id.into()));
        self
    }

    /// How long a change may stay `PENDING` before the write fails with
    /// [`Error::Timeout`] (default 5 minutes; Route53 usually syncs within a minute).
    #[must_use]
    pub fn change_timeout(mut self, timeout: Duration) -> Self {
        self.change_timeout = timeout;
        self
    }

    /// The first pause between two `GetChange` calls (default 2 s); each later pause doubles,
    /// up to 4 times this, so a slow change costs few calls of the account's Route53 API rate
    /// while the step sees `INSYNC` at most 4 intervals late.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The wall clock a drain's `INSYNC` time is recorded with and read against (the time goes
    /// into the bookkeeping TXT record, so a resumed or other process honours the rest of the
    /// TTL wait). Default: the system time when the router is built, advanced by tokio's clock
    /// (so a paused tokio clock moves it too).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(WallClock(clock));
        self
    }

    /// A host of the inventory: `target` stands in `pool` at `address` (`10.0.0.11:8080`).
    /// When the name serves the host's address with no member record — in a simple
    /// (unweighted) record set that predates bluegreen, or in the pool's weighted set — the
    /// router reads it as that target serving in `pool` (`split` and `members` count it),
    /// reports it from [`unmanaged`](bluegreen_core::Router::unmanaged) and claims
    /// [`adopts`](bluegreen_core::Capabilities::adopts); [`adopt`](bluegreen_core::Router::adopt)
    /// writes its member record, changing no address record. A simple record set is replaced by
    /// the pools' weighted sets, in one batch, by the first change of the split or membership.
    #[must_use]
    pub fn host(mut self, target: impl Into<String>, pool: impl Into<String>, address: impl Into<String>) -> Self {
        self.hosts.push((target.into(), pool.into(), address.into()));
        self
    }

    /// Checks the settings (no AWS call is made) and builds the router. The hosted zone and the
    /// record name's place in it are checked on first use (see [`Route53Router::check`]). A
    /// wildcard name (`*.example.com`) keeps its bookkeeping under
    /// `_bluegreen-wildcard.example.com`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting: a hosted zone id that is not one, a record name
    /// that is not a domain name, a TTL of 0, above one day (without
    /// [`allow_any_ttl`](Self::allow_any_ttl)) or not whole seconds, no pool, a pool name that is
    /// not a DNS label or is listed twice (case aside: their bookkeeping names would be the
    /// same), a health check for a pool not listed, a zero change timeout or poll interval.
    pub fn build(self) -> Result<Route53Router> {
        let zone_id = self.zone_id.trim().trim_start_matches("/hostedzone/").to_owned();
        if zone_id.is_empty() || zone_id.len() > 32 || !zone_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::invalid(
                "hosted_zone_id",
                format!("{:?} is not a Route53 hosted zone id (Z…)", self.zone_id),
            ));
        }
        let name = check_name("record_name", &self.name)?;
        let ttl = settings::ttl_secs(self.ttl, self.any_ttl, " (or allow_any_ttl)")?;
        if ttl > ROUTE53_MAX_TTL {
            return Err(Error::invalid("ttl", format!("{ttl} s is above Route53's maximum of {ROUTE53_MAX_TTL} s")));
        }
        let pools = settings::pools(&self.pools)?;
        let hosts = bookkeeping::described_hosts(self.record_type.family(), &pools, &self.hosts)?;
        let mut health_checks = BTreeMap::new();
        for (pool, id) in &self.health_checks {
            let field = format!("health_checks.{pool}");
            let pool = PoolName::from(pool.as_str());
            if !pools.contains(&pool) {
                return Err(Error::invalid(field, format!("{pool} is not one of the pools")));
            }
            if id.is_empty() || id.len() > 64 {
                return Err(Error::invalid(field, format!("{id:?} is not a Route53 health check id")));
            }
            health_checks.insert(pool, id.clone());
        }
        if self.change_timeout.is_zero() {
            return Err(Error::invalid("change_timeout", "must be above 0"));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::invalid("poll_interval", "must be above 0"));
        }
        // The bookkeeping lives under the name; a wildcard must stay the leftmost label, so a
        // wildcard name keeps it next to the wildcard instead.
        let meta = match name.strip_prefix("*.") {
            Some(parent) => format!("{META}-wildcard.{parent}"),
            None => format!("{META}.{name}"),
        };
        check_name("record_name", &meta)?;
        let pool_meta: BTreeMap<PoolName, String> =
            pools.iter().map(|p| (p.clone(), normalize(&format!("pool-{p}.{meta}")))).collect();
        for n in pool_meta.values() {
            check_name("pools", n)?;
        }
        Ok(Route53Router {
            inner: Arc::new(Inner {
                client: self.client,
                zone_id,
                name,
                family: self.record_type.family(),
                ttl: i64::try_from(ttl).unwrap_or(i64::MAX),
                margin: self.margin,
                pools,
                meta,
                pool_meta,
                health_checks,
                change_timeout: self.change_timeout,
                poll_interval: self.poll_interval,
                zone_checked: tokio::sync::OnceCell::new(),
                write_lock: tokio::sync::Mutex::new(()),
                unsynced: std::sync::Mutex::new(None),
                batches_sent: AtomicU64::new(0),
                clock: WallClock::or_default(self.clock),
                hosts,
            }),
        })
    }
}
