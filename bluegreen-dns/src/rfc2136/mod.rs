//! The RFC 2136 provider: [`Rfc2136Router`] (blue-green and weighted splits by dynamic DNS
//! UPDATE signed with TSIG), its builder, the records it keeps, and [`PropagationCheck`]
//! (every authoritative server serves the new records).

mod builder;
mod config;
pub(crate) mod propagation;
mod records;
pub(crate) mod tsig;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::state::Clock;
use bluegreen_core::{
    Adoption, Capabilities, DrainReport, Error, Member, PoolName, Result, Router, Split, Target, TargetId,
};
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::time::Instant;

pub use builder::Rfc2136RouterBuilder;
pub use config::Rfc2136RouterConfig;
use propagation::PropagationCheck;
use records::{answer_for, member_rdata, parse_member, RrSet, State};
use wire::BACKEND;

use crate::bookkeeping::{self, Family, MemberRecord, FORMAT};
use crate::drain::{self, Drain};
use crate::settings;

/// The label under the service name that holds bluegreen's bookkeeping records.
const META: &str = "_bluegreen";

/// A [`Router`] over one DNS name, driven by RFC 2136 dynamic updates signed with TSIG.
///
/// - **Pools** are sets of A records: each target contributes one record with its IPv4
///   address. Membership and member state are kept in TXT records under
///   `_bluegreen.<name>` in the same zone, so everything is read back from the server.
/// - **The split** is the A record set served at `<name>`: a pool's weight is its share of the
///   records (record multiplicity). The set is replaced in **one** UPDATE message whose
///   prerequisites are the exact record sets it was computed from, so a concurrent change makes
///   the server refuse it (a retryable `Error::Backend`: the next attempt reads the zone again)
///   instead of being overwritten. Calls of one router (and its clones) take turns from their
///   read to their write, so they never fail each other's prerequisites.
/// - **Draining** removes a target's record from the answer; resolvers may still hand it out
///   for one TTL, so [`drain`](Router::drain) waits TTL + margin (bounded by its timeout) when a
///   served record was removed. The router cannot see in-flight requests.
/// - [`capabilities`](Router::capabilities): weighted at the configured granularity and by
///   target count (so a plan refuses a step the pools' hosts cannot express by multiplicity,
///   saying what it needs), no per-target drain, atomic swap, `propagation_delay` = TTL +
///   resolver margin.
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
    /// Held from the read a write is computed from until the write is done (and, with
    /// authoritative servers, served by all of them): concurrent calls of one router (the
    /// executor re-enables the hosts of a batch concurrently) take turns instead of failing
    /// each other's prerequisites.
    write_lock: tokio::sync::Mutex<()>,
    /// The inventory's hosts ([`Rfc2136RouterBuilder::host`]): served addresses of theirs with
    /// no member record are read as their members, unmanaged until adopted.
    hosts: Vec<bookkeeping::DescribedHost>,
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
            hosts: Vec::new(),
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
        settings::known(&self.inner.pools, pool, BACKEND, &self.inner.name.to_ascii())
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
        let mut state = State { answer, attribution, pools, unmanaged: Vec::new() };
        if !self.hosts.is_empty() {
            // Addresses served with no member record that are hosts of the inventory: read as
            // those hosts serving in their pools (unmanaged until adopted). Any other address
            // is left to `split` to refuse.
            let member = |ip| state.pools.values().any(|(_, m)| m.iter().any(|m| m.ip == ip));
            let served: Vec<IpAddr> = state.served().into_iter().map(IpAddr::V4).filter(|ip| !member(*ip)).collect();
            let hosts: Vec<bookkeeping::DescribedHost> =
                served.iter().filter_map(|ip| self.hosts.iter().find(|h| h.member.ip == *ip).cloned()).collect();
            for host in hosts {
                if let Some((_, members)) = state.pools.get_mut(&host.pool) {
                    members.push(host.member.clone());
                }
                state.unmanaged.push(host);
            }
        }
        Ok(state)
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
            .with_weight_by_target_count(true)
            .with_per_target_drain(false)
            .with_atomic_swap(true)
            .with_propagation_delay(i.delay())
            .with_observes_in_flight(false)
            .with_adopts(!i.hosts.is_empty())
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
        let _turn = self.inner.write_lock.lock().await;
        let state = self.inner.read().await?;
        let members = state.members();
        let answer = answer_for(split, &members, true)?;
        self.inner.write(&state, &members, &answer).await?;
        Ok(())
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.known(pool)?;
        let added = Family::V4.members(targets)?;
        let _turn = self.inner.write_lock.lock().await;
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
            bookkeeping::put(members.entry(pool.clone()).or_default(), new);
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
        let drain = Drain::start(timeout);
        let i = &self.inner;
        let turn = i.write_lock.lock().await;
        let state = i.read().await?;
        let mut members = state.members();
        let newly = drain::disable(members.entry(pool.clone()).or_default(), pool, targets)?;
        let current = state.split(i)?;
        let answer = answer_for(&current, &members, false)?;
        let before: BTreeSet<Ipv4Addr> = state.served().into_iter().collect();
        let after: BTreeSet<Ipv4Addr> = answer.iter().map(|(ip, _)| *ip).collect();
        // DNS draining is TTL-based: resolvers may hand out a withdrawn record until its TTL
        // (plus margin) has passed. The time goes into the bookkeeping with each member whose
        // address this drain withdraws, so a resumed run (or another process) waits the rest.
        // The time is written with the change itself, so it cannot be the moment every server
        // serves it: with authoritative servers to wait for, it is the latest that can be
        // (now + the sync timeout), so a resumed run never waits less than it must.
        let lag = if i.check.is_some() { i.sync_timeout } else { Duration::ZERO };
        let drained_at = bookkeeping::unix_secs_up(bookkeeping::unix_now(&i.clock) + lag);
        let list = members.entry(pool.clone()).or_default();
        let gone = |ip| matches!(ip, IpAddr::V4(ip) if before.contains(&ip) && !after.contains(&ip));
        // An address withdrawn that belongs to no drained member still goes from the answer.
        let withdrawn = drain::stamp(list, &newly, drained_at, gone) | !before.is_subset(&after);
        i.write(&state, &members, &answer).await?;
        drop(turn);
        let delay = i.delay();
        // This process waits from when every server serves the change (`write` returns then),
        // and for the recorded times (rounded up, and those of members drained before).
        let served = Instant::now();
        let recorded = drain::ends(&members[pool], targets, delay);
        Ok(drain.finish(withdrawn.then_some(served + delay), recorded, &i.clock).await)
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.known(pool)?;
        let _turn = self.inner.write_lock.lock().await;
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
        let (now, delay) = (bookkeeping::unix_now(&self.inner.clock), self.inner.delay());
        if !self.inner.hosts.is_empty() {
            // With hosts, addresses served unmanaged count as their hosts' members: the answer
            // is read with the bookkeeping.
            let mut state = self.inner.read().await?;
            let members = state.pools.remove(pool).map(|(_, m)| m).unwrap_or_default();
            return Ok(members.into_iter().map(|m| m.reported(now, delay)).collect());
        }
        let set = self.inner.rrset(&self.inner.pool_meta[pool], RecordType::TXT).await?;
        Ok(set.records.iter().filter_map(parse_member).map(|m| m.reported(now, delay)).collect())
    }

    /// The hosts ([`Rfc2136RouterBuilder::host`]) whose addresses the name serves with no
    /// member record (`A 10.0.0.11 (www.example.test.)`).
    async fn unmanaged(&self) -> Result<Vec<Adoption>> {
        if self.inner.hosts.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.inner.read().await?;
        let name = self.inner.name.to_ascii();
        Ok(state.unmanaged.iter().map(|h| bookkeeping::adoption(h, Family::V4, &name)).collect())
    }

    /// Writes the member records of `adoptions` (and which pool each address counts for) in one
    /// UPDATE whose prerequisites pin every record set read, the A records included: the A
    /// records stay as they are, and a concurrent change fails the prerequisites (retryable).
    /// Adoptions already recorded send nothing.
    async fn adopt(&self, adoptions: &[Adoption]) -> Result<()> {
        let i = &self.inner;
        let _turn = i.write_lock.lock().await;
        let state = i.read().await?;
        let mut members = state.members();
        for adoption in adoptions {
            let listed = members.get(&adoption.pool).is_some_and(|m| m.iter().any(|m| m.id == adoption.target));
            if !listed {
                return Err(Error::drift(format!(
                    "{} no longer serves {} as target {} of pool {}: plan again",
                    i.name, adoption.what, adoption.target, adoption.pool
                )));
            }
        }
        // Unmanaged members not asked for stay unrecorded.
        for host in &state.unmanaged {
            if !adoptions.iter().any(|a| a.pool == host.pool && a.target == host.member.id) {
                if let Some(list) = members.get_mut(&host.pool) {
                    list.retain(|m| m.id != host.member.id);
                }
            }
        }
        let answer = state.attributed(i)?;
        i.write(&state, &members, &answer).await?;
        Ok(())
    }
}
