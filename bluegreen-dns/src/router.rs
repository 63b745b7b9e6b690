//! [`Rfc2136Router`]: blue-green and weighted splits by dynamic DNS UPDATE.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::state::Clock;
use bluegreen_core::{
    Capabilities, DrainReport, Error, Member, MemberState, PoolName, Result, Router, Split, Target, TargetId,
};
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::time::Instant;

use crate::bookkeeping::{self, Family, MemberRecord, FORMAT};
use crate::propagation::PropagationCheck;
use crate::tsig::TsigKey;
use crate::wire::{self, BACKEND};

/// The longest TTL accepted: one day. Longer TTLs make every traffic step wait that long.
const MAX_TTL: u32 = 86_400;
/// The label under the service name that holds bluegreen's bookkeeping records.
const META: &str = "_bluegreen";

/// Builds an [`Rfc2136Router`]; see [`Rfc2136Router::builder`].
#[derive(Debug, Clone)]
pub struct Rfc2136RouterBuilder {
    server: SocketAddr,
    zone: String,
    name: String,
    key: Option<TsigKey>,
    ttl: Duration,
    margin: Duration,
    granularity: u32,
    pools: Vec<String>,
    timeout: Duration,
    authoritatives: Vec<(String, SocketAddr)>,
    sync_timeout: Duration,
    clock: Option<WallClock>,
}

/// The wall clock drain times are recorded with (no `Debug` of its own).
#[derive(Clone)]
struct WallClock(Clock);

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
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
        if self.ttl.subsec_nanos() != 0 {
            return Err(Error::invalid("ttl", format!("{:?} is not whole seconds", self.ttl)));
        }
        let ttl = u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX);
        if ttl == 0 {
            return Err(Error::invalid("ttl", "a TTL of 0 lets every resolver ask on every request; use at least 1 s"));
        }
        if ttl > MAX_TTL {
            return Err(Error::invalid(
                "ttl",
                format!("{ttl} s is more than one day: every traffic step would wait that long"),
            ));
        }
        let key = self.key.ok_or_else(|| Error::invalid("tsig", "a TSIG key is required to sign updates"))?;
        let signer = key.signer()?;
        if self.granularity == 0 || 100 % self.granularity != 0 {
            return Err(Error::invalid("weight_granularity", format!("{} does not divide 100", self.granularity)));
        }
        if self.pools.is_empty() {
            return Err(Error::invalid("pools", "at least one pool is needed"));
        }
        let mut pools = Vec::new();
        for (i, pool) in self.pools.iter().enumerate() {
            let valid = !pool.is_empty()
                && pool.len() <= 63
                && pool.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !pool.starts_with('-');
            if !valid {
                return Err(Error::invalid(format!("pools[{i}]"), format!("{pool:?} is not a DNS label")));
            }
            let pool = PoolName::from(pool.as_str());
            if pools.contains(&pool) {
                return Err(Error::invalid(format!("pools[{i}]"), format!("pool {pool} is listed twice")));
            }
            pools.push(pool);
        }
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
                clock: self.clock.map_or_else(bookkeeping::tokio_wall_clock, |c| c.0),
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

/// A [`Router`] over one DNS name, driven by RFC 2136 dynamic updates signed with TSIG.
///
/// - **Pools** are sets of A records: each target contributes one record with its IPv4
///   address. Membership and member state are kept in TXT records under
///   `_bluegreen.<name>` in the same zone, so everything is read back from the server.
/// - **The split** is the A record set served at `<name>`: a pool's weight is its share of the
///   records (record multiplicity). The set is replaced in **one** UPDATE message whose
///   prerequisites are the exact record sets it was computed from, so a concurrent change makes
///   the server refuse it (`Error::Drift`) instead of being overwritten.
/// - **Draining** removes a target's record from the answer; resolvers may still hand it out
///   for one TTL, so [`drain`](Router::drain) waits TTL + margin (bounded by its timeout) when a
///   served record was removed. The router cannot see in-flight requests.
/// - [`capabilities`](Router::capabilities): weighted at the configured granularity, no
///   per-target drain, atomic swap, `propagation_delay` = TTL + resolver margin.
#[derive(Clone)]
pub struct Rfc2136Router {
    inner: Arc<Inner>,
}

struct Inner {
    server: SocketAddr,
    zone: Name,
    name: Name,
    key_name: String,
    signer: TSigner,
    ttl: u32,
    margin: Duration,
    granularity: u32,
    pools: Vec<PoolName>,
    answer_meta: Name,
    pool_meta: BTreeMap<PoolName, Name>,
    timeout: Duration,
    check: Option<PropagationCheck>,
    sync_timeout: Duration,
    updates_sent: AtomicU64,
    clock: Clock,
}

impl fmt::Debug for Rfc2136Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Rfc2136Router")
            .field("server", &i.server)
            .field("zone", &i.zone.to_ascii())
            .field("name", &i.name.to_ascii())
            .field("key", &i.key_name)
            .field("ttl", &i.ttl)
            .field("pools", &i.pools)
            .finish_non_exhaustive()
    }
}

/// The TXT record data of a member.
fn member_rdata(member: &MemberRecord) -> RData {
    RData::TXT(TXT::new(member.strings()))
}

/// A member from its TXT record, if the record is one of ours.
fn parse_member(record: &Record) -> Option<MemberRecord> {
    let RData::TXT(txt) = record.data() else { return None };
    let strings: Vec<String> = txt.txt_data().iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    MemberRecord::parse(&strings, Family::V4)
}

/// The IPv4 address of a target address (`10.0.0.7` or `10.0.0.7:8080`).
fn ipv4_of(address: &str) -> Option<Ipv4Addr> {
    match Family::V4.address_of(address) {
        Some(IpAddr::V4(ip)) => Some(ip),
        _ => None,
    }
}

/// The IPv4 address a member's record carries (members of an A-record router are IPv4).
fn member_ipv4(member: &MemberRecord) -> Option<Ipv4Addr> {
    match member.ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// A record set as read from the server: its records and a canonical form to compare.
#[derive(Debug, Clone)]
struct RrSet {
    name: Name,
    rtype: RecordType,
    records: Vec<Record>,
}

impl RrSet {
    fn canonical(data: impl IntoIterator<Item = RData>) -> BTreeSet<String> {
        data.into_iter().map(|d| d.to_string()).collect()
    }

    fn current(&self) -> BTreeSet<String> {
        Self::canonical(self.records.iter().map(|r| r.data().clone()))
    }

    /// The prerequisite "this record set is exactly what was read" (RFC 2136 §2.4.2), or
    /// "this record set does not exist" (§2.4.3) when it was empty.
    fn prerequisites(&self) -> Vec<Record> {
        if self.records.is_empty() {
            let mut r = Record::update0(self.name.clone(), 0, self.rtype);
            r.set_dns_class(DNSClass::NONE);
            vec![r]
        } else {
            self.records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.set_ttl(0).set_dns_class(DNSClass::IN);
                    r
                })
                .collect()
        }
    }
}

/// Everything the router keeps in the zone, as read in one pass.
#[derive(Debug, Clone)]
struct State {
    answer: RrSet,
    attribution: RrSet,
    pools: BTreeMap<PoolName, (RrSet, Vec<MemberRecord>)>,
}

impl State {
    fn members(&self) -> BTreeMap<PoolName, Vec<MemberRecord>> {
        self.pools.iter().map(|(p, (_, m))| (p.clone(), m.clone())).collect()
    }

    fn served(&self) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = wire::ipv4s(&self.answer.records).collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Which pool each served address counts for: the attribution written with it, else the
    /// only pool that has the address as a member.
    fn attributed(&self, router: &Inner) -> Result<Vec<(Ipv4Addr, PoolName)>> {
        let written: BTreeMap<Ipv4Addr, PoolName> = self
            .attribution
            .records
            .iter()
            .filter_map(|r| match r.data() {
                RData::TXT(txt) => {
                    let s: Vec<String> =
                        txt.txt_data().iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
                    match s.as_slice() {
                        [f, ip, pool] if f == FORMAT => Some((ip.parse().ok()?, PoolName::from(pool.as_str()))),
                        _ => None,
                    }
                }
                _ => None,
            })
            .filter(|(_, p)| router.pools.contains(p))
            .collect();
        let mut out = Vec::new();
        for ip in self.served() {
            if let Some(pool) = written.get(&ip) {
                out.push((ip, pool.clone()));
                continue;
            }
            let owners: Vec<&PoolName> = self
                .pools
                .iter()
                .filter(|(_, (_, m))| m.iter().any(|m| m.ip == IpAddr::V4(ip)))
                .map(|(p, _)| p)
                .collect();
            match owners.as_slice() {
                [pool] => out.push((ip, (*pool).clone())),
                [] => {
                    return Err(Error::drift(format!(
                        "{} serves {ip}, which is in no pool ({}): the record set was changed outside bluegreen",
                        router.name,
                        router.pools.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    )));
                }
                _ => {
                    return Err(Error::drift(format!(
                        "{} serves {ip}, a member of several pools, without a record of which one it counts for",
                        router.name
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The split the served records express: each pool's share of the records, in percent
    /// (rounded so the weights sum to 100). No records: an empty split.
    fn split(&self, router: &Inner) -> Result<Split> {
        let attributed = self.attributed(router)?;
        // Largest remainder, so a set written by someone else (1:2) still sums to 100.
        let counts = router.pools.iter().map(|p| (p.clone(), attributed.iter().filter(|(_, q)| q == p).count() as u64));
        Ok(Split::from_weights(counts).unwrap_or_default())
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The A records (with the pool each counts for) that express `split` over the serving members.
///
/// Each live pool gets `k × weight / d` records, where `d` is the common divisor of the live
/// weights and `k` the largest factor every pool has enough distinct serving addresses for.
/// `strict` (a requested split) refuses what cannot be expressed; otherwise (a membership change
/// under the served split) pools without serving members drop out and, when the proportions
/// cannot be kept, every serving member of the live pools is used once.
fn answer_for(
    split: &Split,
    members: &BTreeMap<PoolName, Vec<MemberRecord>>,
    strict: bool,
) -> Result<Vec<(Ipv4Addr, PoolName)>> {
    let mut live: Vec<(PoolName, u32, Vec<Ipv4Addr>)> = Vec::new();
    for (pool, weight) in split.iter().filter(|(_, w)| *w > 0) {
        let mut serving: Vec<Ipv4Addr> = Vec::new();
        for m in members.get(pool).into_iter().flatten().filter(|m| m.state == MemberState::Serving) {
            if let Some(ip) = member_ipv4(m).filter(|ip| !serving.contains(ip)) {
                serving.push(ip);
            }
        }
        if serving.is_empty() {
            if strict {
                return Err(Error::invalid(
                    "split",
                    format!("pool {pool} has no serving target: a DNS answer cannot send it {weight}%"),
                ));
            }
            continue;
        }
        live.push((pool.clone(), weight, serving));
    }
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let divisor = live.iter().fold(0, |d, (_, w, _)| gcd(d, *w));
    // Pools with the fewest addresses choose first, so a shared address goes where it is needed.
    live.sort_by_key(|(_, _, s)| s.len());
    let most = live.iter().map(|(_, w, s)| s.len() as u32 / (w / divisor)).min().unwrap_or(0);
    for k in (1..=most).rev() {
        let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
        let mut answer = Vec::new();
        let mut ok = true;
        for (pool, weight, serving) in &live {
            let want = (k * weight / divisor) as usize;
            let picked: Vec<Ipv4Addr> = serving.iter().filter(|ip| !used.contains(ip)).take(want).copied().collect();
            if picked.len() < want {
                ok = false;
                break;
            }
            used.extend(picked.iter().copied());
            answer.extend(picked.into_iter().map(|ip| (ip, pool.clone())));
        }
        if ok {
            return Ok(answer);
        }
    }
    if strict {
        let needs: Vec<String> = live
            .iter()
            .map(|(p, w, s)| format!("{p} {w}% needs {} distinct addresses and has {}", w / divisor, s.len()))
            .collect();
        return Err(Error::invalid(
            "split",
            format!(
                "{split} cannot be expressed by record multiplicity (a record set holds each address once): {}",
                needs.join(", ")
            ),
        ));
    }
    tracing::warn!("the served split cannot be kept exactly with the serving members; each serves once");
    let mut used = BTreeSet::new();
    let mut answer = Vec::new();
    for (pool, _, serving) in &live {
        for ip in serving {
            if used.insert(*ip) {
                answer.push((*ip, pool.clone()));
            }
        }
    }
    Ok(answer)
}

impl Rfc2136Router {
    /// A router for the A records at `name` in `zone`, updated at the primary `server`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bluegreen_core::Router;
    /// use bluegreen_dns::{Rfc2136Router, TsigKey};
    /// let router = Rfc2136Router::builder("127.0.0.1:5353".parse().unwrap(), "example.test.", "www.example.test.")
    ///     .tsig(TsigKey::hmac_sha256("deploy-key.", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0").unwrap())
    ///     .ttl(Duration::from_secs(30))
    ///     .pool("blue")
    ///     .pool("green")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(router.capabilities().propagation_delay, Duration::from_secs(35));
    /// ```
    pub fn builder(server: SocketAddr, zone: &str, name: &str) -> Rfc2136RouterBuilder {
        Rfc2136RouterBuilder {
            server,
            zone: zone.to_owned(),
            name: name.to_owned(),
            key: None,
            ttl: Duration::from_secs(60),
            margin: Duration::from_secs(5),
            granularity: 50,
            pools: Vec::new(),
            timeout: Duration::from_secs(5),
            authoritatives: Vec::new(),
            sync_timeout: Duration::from_secs(60),
            clock: None,
        }
    }

    /// How many UPDATE messages this router (and its clones) sent.
    pub fn updates_sent(&self) -> u64 {
        self.inner.updates_sent.load(Ordering::Relaxed)
    }

    /// The primary server updates go to.
    pub fn server(&self) -> SocketAddr {
        self.inner.server
    }

    /// The TTL of the records written.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.inner.ttl))
    }

    /// The addresses served at the name now, read from the primary.
    ///
    /// # Errors
    /// [`Error::Backend`] when the primary cannot be asked.
    pub async fn served_addresses(&self) -> Result<Vec<Ipv4Addr>> {
        Ok(self.inner.read().await?.served())
    }

    fn known(&self, pool: &PoolName) -> Result<()> {
        if self.inner.pools.contains(pool) {
            Ok(())
        } else {
            let known: Vec<&str> = self.inner.pools.iter().map(PoolName::as_str).collect();
            Err(Error::not_found(format!(
                "pool \"{pool}\" (the {BACKEND} router for {} knows {})",
                self.inner.name,
                known.join(", ")
            )))
        }
    }
}

impl Inner {
    /// How long a drain lasts: TTL + margin.
    fn delay(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl)) + self.margin
    }

    async fn rrset(&self, name: &Name, rtype: RecordType) -> Result<RrSet> {
        let records = wire::query(self.server, name, rtype, self.timeout).await?;
        Ok(RrSet { name: name.clone(), rtype, records })
    }

    async fn read(&self) -> Result<State> {
        let answer = self.rrset(&self.name, RecordType::A).await?;
        let attribution = self.rrset(&self.answer_meta, RecordType::TXT).await?;
        let mut pools = BTreeMap::new();
        for pool in &self.pools {
            let set = self.rrset(&self.pool_meta[pool], RecordType::TXT).await?;
            let members = set.records.iter().filter_map(parse_member).collect();
            pools.insert(pool.clone(), (set, members));
        }
        Ok(State { answer, attribution, pools })
    }

    /// Writes the desired members and answer in one UPDATE whose prerequisites are every
    /// record set read in `state`. Sends nothing when nothing changes. Returns whether a
    /// message was sent.
    async fn write(
        &self,
        state: &State,
        members: &BTreeMap<PoolName, Vec<MemberRecord>>,
        answer: &[(Ipv4Addr, PoolName)],
    ) -> Result<bool> {
        let mut desired: Vec<(&RrSet, Vec<RData>)> = Vec::new();
        desired.push((&state.answer, answer.iter().map(|(ip, _)| RData::A(A(*ip))).collect()));
        desired.push((
            &state.attribution,
            answer
                .iter()
                .map(|(ip, pool)| RData::TXT(TXT::new(vec![FORMAT.into(), ip.to_string(), pool.to_string()])))
                .collect(),
        ));
        for (pool, (set, _)) in &state.pools {
            desired.push((set, members.get(pool).into_iter().flatten().map(member_rdata).collect()));
        }
        let mut updates = Vec::new();
        for (set, data) in &desired {
            if set.current() == RrSet::canonical(data.iter().cloned()) {
                continue;
            }
            let mut delete = Record::update0(set.name.clone(), 0, set.rtype);
            delete.set_dns_class(DNSClass::ANY);
            updates.push(delete);
            updates.extend(data.iter().map(|d| Record::from_rdata(set.name.clone(), self.ttl, d.clone())));
        }
        if updates.is_empty() {
            return Ok(false);
        }
        let prerequisites: Vec<Record> = desired.iter().flat_map(|(set, _)| set.prerequisites()).collect();
        self.updates_sent.fetch_add(1, Ordering::Relaxed);
        wire::update(self.server, &self.zone, &self.signer, prerequisites, updates, self.timeout).await?;
        if let Some(check) = &self.check {
            let expected: BTreeSet<Ipv4Addr> = answer.iter().map(|(ip, _)| *ip).collect();
            check.wait(&expected, self.sync_timeout).await?;
        }
        Ok(true)
    }
}

#[async_trait]
impl Router for Rfc2136Router {
    fn name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        let i = &self.inner;
        Capabilities::load_balancer()
            .with_weighted_split(i.granularity < 100)
            .with_weight_granularity(i.granularity)
            .with_per_target_drain(false)
            .with_atomic_swap(true)
            .with_propagation_delay(i.delay())
            .with_observes_in_flight(false)
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        Ok(self.inner.pools.clone())
    }

    async fn split(&self) -> Result<Split> {
        let state = self.inner.read().await?;
        state.split(&self.inner)
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.known(pool)?;
        }
        let g = self.inner.granularity;
        if let Some((pool, w)) = split.iter().find(|(_, w)| w % g != 0) {
            return Err(Error::invalid(
                "split",
                format!("{pool} {w}% is not a multiple of this router's {g}% granularity (DNS record multiplicity)"),
            ));
        }
        let state = self.inner.read().await?;
        let members = state.members();
        let answer = answer_for(split, &members, true)?;
        self.inner.write(&state, &members, &answer).await?;
        Ok(())
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.known(pool)?;
        let mut added = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let ip = ipv4_of(&t.address).ok_or_else(|| {
                Error::invalid(
                    format!("targets[{i}].address"),
                    format!("target {}: an A record needs an IPv4 address (or IPv4:port), not {:?}", t.id, t.address),
                )
            })?;
            bookkeeping::storable(&format!("targets[{i}].id"), "a target id", t.id.as_str())?;
            bookkeeping::storable(&format!("targets[{i}].address"), "a target address", &t.address)?;
            added.push(MemberRecord::serving(t.id.clone(), t.address.clone(), IpAddr::V4(ip)));
        }
        let state = self.inner.read().await?;
        let mut members = state.members();
        for new in added {
            for (other_pool, list) in &members {
                if let Some(m) = list.iter().find(|m| m.ip == new.ip && m.id != new.id) {
                    return Err(Error::drift(format!(
                        "address {} of target {} is already target {} in pool {other_pool}",
                        new.ip, new.id, m.id
                    )));
                }
            }
            let list = members.entry(pool.clone()).or_default();
            match list.iter_mut().find(|m| m.id == new.id) {
                Some(m) => *m = new,
                None => list.push(new),
            }
        }
        // The served split is read with the new members known, so records that were in the
        // zone before bluegreen managed it are adopted by the pool that now lists them.
        let mut adopted = state.clone();
        for (pool, (_, list)) in &mut adopted.pools {
            *list = members.get(pool).cloned().unwrap_or_default();
        }
        let current = adopted.split(&self.inner)?;
        let answer = answer_for(&current, &members, false)?;
        self.inner.write(&state, &members, &answer).await?;
        Ok(())
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.known(pool)?;
        let started = Instant::now();
        let i = &self.inner;
        let state = i.read().await?;
        let mut members = state.members();
        let list = members.entry(pool.clone()).or_default();
        let mut newly = Vec::new();
        for id in targets {
            let m = list
                .iter_mut()
                .find(|m| m.id == *id)
                .ok_or_else(|| Error::not_found(format!("target {id} in pool {pool}")))?;
            // A member drained before (a step re-run after a crash) keeps its time.
            if m.state == MemberState::Serving {
                m.state = MemberState::Disabled;
                newly.push(m.id.clone());
            }
        }
        let current = state.split(i)?;
        let answer = answer_for(&current, &members, false)?;
        let before: BTreeSet<Ipv4Addr> = state.served().into_iter().collect();
        let after: BTreeSet<Ipv4Addr> = answer.iter().map(|(ip, _)| *ip).collect();
        // DNS draining is TTL-based: resolvers may hand out a withdrawn record until its TTL
        // (plus margin) has passed. The time goes into the bookkeeping with each member whose
        // address this drain withdraws, so a resumed run (or another process) waits the rest.
        let drained_at = bookkeeping::unix_secs_up(bookkeeping::unix_now(&i.clock));
        let mut withdrawn = false;
        for m in members.entry(pool.clone()).or_default().iter_mut().filter(|m| newly.contains(&m.id)) {
            let gone = member_ipv4(m).is_some_and(|ip| before.contains(&ip) && !after.contains(&ip));
            m.disabled_at = gone.then_some(drained_at);
            withdrawn |= gone;
        }
        // An address withdrawn that belongs to no drained member still goes from the answer.
        withdrawn |= !before.is_subset(&after);
        i.write(&state, &members, &answer).await?;
        let delay = i.delay();
        let mut until = withdrawn.then_some(started + delay);
        // The recorded times (rounded up, and those of members drained before) in local time.
        let now = bookkeeping::unix_now(&i.clock);
        if let Some(end) = bookkeeping::drain_ends(&members[pool], targets, delay) {
            let end = Instant::now() + end.saturating_sub(now);
            until = Some(until.map_or(end, |u| u.max(end)));
        }
        let mut timed_out = false;
        if let Some(until) = until {
            let deadline = started + timeout;
            timed_out = until > deadline;
            tokio::time::sleep_until(until.min(deadline)).await;
        }
        Ok(DrainReport { in_flight_at_start: None, in_flight_at_end: None, timed_out, elapsed: started.elapsed() })
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.known(pool)?;
        let state = self.inner.read().await?;
        let current = state.split(&self.inner)?;
        let mut members = state.members();
        if let Some(list) = members.get_mut(pool) {
            list.retain(|m| !targets.contains(&m.id));
        }
        let answer = answer_for(&current, &members, false)?;
        self.inner.write(&state, &members, &answer).await?;
        Ok(())
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.known(pool)?;
        let set = self.inner.rrset(&self.inner.pool_meta[pool], RecordType::TXT).await?;
        let (now, delay) = (bookkeeping::unix_now(&self.inner.clock), self.inner.delay());
        Ok(set
            .records
            .iter()
            .filter_map(parse_member)
            .map(|m| Member { state: m.state_at(now, delay), id: m.id, in_flight: None })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, ips: &[&str]) -> (PoolName, Vec<MemberRecord>) {
        let members = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| MemberRecord::serving(format!("{name}-{i}").into(), (*ip).to_owned(), ip.parse().unwrap()))
            .collect();
        (name.into(), members)
    }

    fn counts(answer: &[(Ipv4Addr, PoolName)]) -> (usize, usize) {
        let blue = answer.iter().filter(|(_, p)| p.as_str() == "blue").count();
        (blue, answer.len() - blue)
    }

    fn four_and_four() -> BTreeMap<PoolName, Vec<MemberRecord>> {
        [
            pool("blue", &["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]),
            pool("green", &["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"]),
        ]
        .into()
    }

    fn between(green: u32) -> Split {
        Split::between(&"blue".into(), &"green".into(), green)
    }

    #[test]
    fn the_worked_example_of_the_docs() {
        let m = four_and_four();
        assert_eq!(counts(&answer_for(&between(0), &m, true).unwrap()), (4, 0));
        assert_eq!(counts(&answer_for(&between(25), &m, true).unwrap()), (3, 1));
        assert_eq!(counts(&answer_for(&between(50), &m, true).unwrap()), (4, 4));
        assert_eq!(counts(&answer_for(&between(75), &m, true).unwrap()), (1, 3));
        assert_eq!(counts(&answer_for(&between(100), &m, true).unwrap()), (0, 4));
        let err = answer_for(&between(10), &m, true).unwrap_err();
        assert!(err.to_string().contains("blue 90% needs 9 distinct addresses and has 4"), "{err}");
    }

    #[test]
    fn a_pool_without_serving_members_cannot_get_traffic() {
        let mut m = four_and_four();
        for member in m.get_mut(&PoolName::from("green")).unwrap() {
            member.state = MemberState::Disabled;
        }
        assert!(matches!(answer_for(&between(50), &m, true), Err(Error::Invalid { .. })));
        // Under a membership change the pool drops out instead.
        assert_eq!(counts(&answer_for(&between(50), &m, false).unwrap()), (4, 0));
    }

    #[test]
    fn an_address_shared_by_two_pools_counts_once() {
        let m = [pool("blue", &["10.0.0.1", "10.0.0.2"]), pool("green", &["10.0.0.2"])].into();
        let answer = answer_for(&between(50), &m, true).unwrap();
        assert_eq!(
            answer,
            vec![("10.0.0.2".parse().unwrap(), "green".into()), ("10.0.0.1".parse().unwrap(), "blue".into())]
        );
    }

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(ipv4_of("10.0.0.7"), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(ipv4_of("10.0.0.7:8080"), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(ipv4_of("[::1]:80"), None);
        assert_eq!(ipv4_of("sim:t-1"), None);
    }
}
