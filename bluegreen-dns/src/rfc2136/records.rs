//! The records the RFC 2136 router keeps in the zone, as plain data: record sets as read, with
//! the prerequisites that pin them; the member and attribution TXT records; and the A records
//! that express a split by multiplicity. No messages here, so the rules are unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use bluegreen_core::{Error, MemberState, PoolName, Result, Split};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::wire;
use super::Inner;
use crate::bookkeeping::{self, DescribedHost, Family, MemberRecord, FORMAT};

/// The TXT record data of a member.
pub(super) fn member_rdata(member: &MemberRecord) -> RData {
    RData::TXT(TXT::new(member.strings()))
}

/// A member from its TXT record, if the record is one of ours.
pub(super) fn parse_member(record: &Record) -> Option<MemberRecord> {
    let RData::TXT(txt) = record.data() else { return None };
    let strings: Vec<String> = txt.txt_data().iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    MemberRecord::parse(&strings, Family::V4)
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
pub(super) struct RrSet {
    pub(super) name: Name,
    pub(super) rtype: RecordType,
    pub(super) records: Vec<Record>,
}

impl RrSet {
    pub(super) fn canonical(data: impl IntoIterator<Item = RData>) -> BTreeSet<String> {
        data.into_iter().map(|d| d.to_string()).collect()
    }

    pub(super) fn current(&self) -> BTreeSet<String> {
        Self::canonical(self.records.iter().map(|r| r.data().clone()))
    }

    /// The prerequisite "this record set is exactly what was read" (RFC 2136 §2.4.2), or
    /// "this record set does not exist" (§2.4.3) when it was empty.
    pub(super) fn prerequisites(&self) -> Vec<Record> {
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
pub(super) struct State {
    pub(super) answer: RrSet,
    pub(super) attribution: RrSet,
    pub(super) pools: BTreeMap<PoolName, (RrSet, Vec<MemberRecord>)>,
    /// Hosts of the inventory whose addresses are served with no member record: they are in
    /// `pools` as serving members too (read, not yet recorded).
    pub(super) unmanaged: Vec<DescribedHost>,
}

impl State {
    pub(super) fn members(&self) -> BTreeMap<PoolName, Vec<MemberRecord>> {
        self.pools.iter().map(|(p, (_, m))| (p.clone(), m.clone())).collect()
    }

    pub(super) fn served(&self) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = wire::ipv4s(&self.answer.records).collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Which pool each served address counts for: the attribution written with it, else the
    /// only pool that has the address as a member.
    pub(super) fn attributed(&self, router: &Inner) -> Result<Vec<(Ipv4Addr, PoolName)>> {
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
                    return Err(bookkeeping::not_described(
                        &router.name.to_ascii(),
                        IpAddr::V4(ip),
                        &router.pools,
                        !router.hosts.is_empty(),
                    ));
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
    pub(super) fn split(&self, router: &Inner) -> Result<Split> {
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
pub(super) fn answer_for(
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
}
