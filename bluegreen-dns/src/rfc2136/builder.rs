//! [`Rfc2136RouterBuilder`]: the router's settings, checked without sending any message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::state::Clock;
use bluegreen_core::{Error, Result};
use hickory_proto::rr::Name;

use super::propagation::PropagationCheck;
use super::tsig::TsigKey;
use super::{Inner, Rfc2136Router, META};
use crate::bookkeeping::{self, Family, WallClock};
use crate::settings;

/// Builds an [`Rfc2136Router`]; see [`Rfc2136Router::builder`].
#[derive(Debug, Clone)]
pub struct Rfc2136RouterBuilder {
    pub(super) server: SocketAddr,
    pub(super) zone: String,
    pub(super) name: String,
    pub(super) key: Option<TsigKey>,
    pub(super) ttl: Duration,
    pub(super) margin: Duration,
    pub(super) granularity: u32,
    pub(super) pools: Vec<String>,
    pub(super) timeout: Duration,
    pub(super) authoritatives: Vec<(String, SocketAddr)>,
    pub(super) sync_timeout: Duration,
    pub(super) clock: Option<WallClock>,
    pub(super) hosts: Vec<(String, String, String)>,
}

impl Rfc2136RouterBuilder {
    /// The wall clock a drain's time is recorded with and read against (the time goes into the
    /// bookkeeping TXT record, so a resumed or other process honours the rest of the TTL wait).
    /// Default: the system time when the router is built, advanced by tokio's clock.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(WallClock(clock));
        self
    }

    /// The TSIG key that signs every UPDATE (required).
    #[must_use]
    pub fn tsig(mut self, key: TsigKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The TTL of the records written (default 60 s; whole seconds, 1 s to 1 day).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Added to the TTL for resolvers and clients that hold answers a little longer
    /// (default 5 s). The router's propagation delay is TTL + margin.
    #[must_use]
    pub fn resolver_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The weight step splits must use, in percent (default 50: 0/50/100). It must divide
    /// 100; 100 turns weighted splits off (blue-green only). A pool needs as many distinct
    /// addresses as its share in steps of the split's common divisor (see `docs/dns.md`).
    #[must_use]
    pub fn weight_granularity(mut self, percent: u32) -> Self {
        self.granularity = percent;
        self
    }

    /// A host of the inventory: `target` stands in `pool` at `address` (`10.0.0.11:8080` or
    /// `10.0.0.11`). When the name serves the host's address with no member record (A records
    /// that predate bluegreen), the router reads it as that target serving in `pool`
    /// ([`split`](bluegreen_core::Router::split) and [`members`](bluegreen_core::Router::members)
    /// count it), reports it from [`unmanaged`](bluegreen_core::Router::unmanaged) and claims
    /// [`adopts`](bluegreen_core::Capabilities::adopts); [`adopt`](bluegreen_core::Router::adopt)
    /// writes its member record, changing no A record. An address served that neither a member
    /// nor a host has stays [`Error::Drift`](bluegreen_core::Error::Drift).
    #[must_use]
    pub fn host(mut self, target: impl Into<String>, pool: impl Into<String>, address: impl Into<String>) -> Self {
        self.hosts.push((target.into(), pool.into(), address.into()));
        self
    }

    /// Adds a pool (a DNS label: letters, digits and `-`).
    #[must_use]
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pools.push(name.into());
        self
    }

    /// How long one DNS exchange may take (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After every write, waits (up to `sync_timeout`) until each of these authoritative
    /// servers serves the new records, so that the TTL wait starts only once every server is
    /// in sync. Without it only the primary is read back.
    #[must_use]
    pub fn authoritatives(
        mut self,
        servers: impl IntoIterator<Item = (String, SocketAddr)>,
        sync_timeout: Duration,
    ) -> Self {
        self.authoritatives.extend(servers);
        self.sync_timeout = sync_timeout;
        self
    }

    /// Checks the settings (no message is sent) and builds the router.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting: a zone or name that is not a domain name, a name
    /// outside the zone, a TTL of 0, above one day or not whole seconds, no TSIG key, no pool or
    /// a pool name that is not a DNS label, a granularity that does not divide 100.
    pub fn build(self) -> Result<Rfc2136Router> {
        let zone = fqdn(&self.zone, "zone")?;
        let name = fqdn(&self.name, "name")?;
        if !zone.zone_of(&name) {
            return Err(Error::invalid("name", format!("{name} is outside the zone {zone}")));
        }
        let ttl = u32::try_from(settings::ttl_secs(self.ttl, false, "")?).unwrap_or(u32::MAX);
        let key = self.key.ok_or_else(|| Error::invalid("tsig", "a TSIG key is required to sign updates"))?;
        let signer = key.signer()?;
        if self.granularity == 0 || 100 % self.granularity != 0 {
            return Err(Error::invalid("weight_granularity", format!("{} does not divide 100", self.granularity)));
        }
        let pools = settings::pools(&self.pools)?;
        let hosts = bookkeeping::described_hosts(Family::V4, &pools, &self.hosts)?;
        let meta = name.prepend_label(META).map_err(|e| Error::invalid("name", e.to_string()))?;
        let answer_meta = meta.prepend_label("answer").map_err(|e| Error::invalid("name", e.to_string()))?;
        let mut pool_meta = BTreeMap::new();
        for pool in &pools {
            let n = meta.prepend_label(format!("pool-{pool}")).map_err(|e| Error::invalid("pools", e.to_string()))?;
            pool_meta.insert(pool.clone(), n);
        }
        let mut check = PropagationCheck::new(&name.to_ascii())?.query_timeout(self.timeout);
        for (label, address) in &self.authoritatives {
            check = check.server(label.clone(), *address);
        }
        Ok(Rfc2136Router {
            inner: Arc::new(Inner {
                server: self.server,
                zone,
                name,
                key_name: key.name().to_owned(),
                signer,
                ttl,
                margin: self.margin,
                granularity: self.granularity,
                pools,
                answer_meta,
                pool_meta,
                timeout: self.timeout,
                check: (!self.authoritatives.is_empty()).then_some(check),
                sync_timeout: self.sync_timeout,
                updates_sent: AtomicU64::new(0),
                clock: WallClock::or_default(self.clock),
                write_lock: tokio::sync::Mutex::new(()),
                hosts,
            }),
        })
    }
}

fn fqdn(s: &str, field: &str) -> Result<Name> {
    let mut name =
        Name::from_ascii(s).map_err(|e| Error::invalid(field, format!("{s:?} is not a domain name: {e}")))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}
