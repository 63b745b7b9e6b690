//! Reading what the router keeps in the hosted zone: the pools' weighted record sets (and
//! weighted sets of other owners at the name), and the members' TXT sets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aws_sdk_route53::types::{ResourceRecordSet, RrType};
use bluegreen_aws::error::aws_error;
use bluegreen_core::{Error, PoolName, Result, Split};

use super::records::{in_zone, normalize, parse_txt, served_split, Answer};
use super::{Inner, PAGE};
use crate::bookkeeping::{self, DescribedHost, MemberRecord};

/// Everything the router keeps in the zone, as read in one pass.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    /// The pools' weighted sets: as listed (for DELETE, which must match exactly) and as answer.
    pub(super) answers: BTreeMap<PoolName, (ResourceRecordSet, Answer)>,
    /// Weighted sets at the name that are no pool of this router: `(SetIdentifier, weight)`.
    pub(super) foreign: Vec<(String, i64)>,
    /// The longest TTL of those foreign sets that get traffic (weight above 0).
    pub(super) foreign_ttl: i64,
    /// The pools' TXT sets as listed, and their members.
    pub(super) members: BTreeMap<PoolName, (Option<ResourceRecordSet>, Vec<MemberRecord>)>,
    /// A simple (unweighted) address record set at the name, as listed, whose values are all
    /// the inventory's hosts' (records that predate bluegreen; read only when the router has
    /// hosts, refused otherwise). Route53 allows no weighted set beside it, so the first change
    /// of the answers deletes it in the batch that creates the pools' weighted sets.
    pub(super) simple: Option<(ResourceRecordSet, Answer)>,
    /// Hosts of the inventory whose addresses are served with no member record: they are in
    /// `members` as serving members too (read, not yet recorded).
    pub(super) unmanaged: Vec<DescribedHost>,
}

impl State {
    pub(super) fn members(&self) -> BTreeMap<PoolName, Vec<MemberRecord>> {
        self.members.iter().map(|(p, (_, m))| (p.clone(), m.clone())).collect()
    }

    /// The pools' answers: their weighted sets, or the share of a simple set each pool's
    /// members hold (weighted by their count).
    pub(super) fn answers(&self) -> BTreeMap<PoolName, Answer> {
        let Some((_, simple)) = &self.simple else {
            return self.answers.iter().map(|(p, (_, a))| (p.clone(), a.clone())).collect();
        };
        let split = self.split().unwrap_or_default();
        let mut out = BTreeMap::new();
        for (pool, (_, members)) in &self.members {
            let values: Vec<String> = simple
                .values
                .iter()
                .filter(|v| v.parse::<IpAddr>().is_ok_and(|ip| members.iter().any(|m| m.ip == ip)))
                .cloned()
                .collect();
            if !values.is_empty() {
                let answer =
                    Answer { weight: i64::from(split.weight(pool)), ttl: simple.ttl, values, health_check: None };
                out.insert(pool.clone(), answer);
            }
        }
        out
    }

    /// The longest TTL on the weighted sets that may have been answered with: the pools' and
    /// foreign ones with traffic.
    pub(super) fn ttl_seen(&self) -> i64 {
        let simple = self.simple.as_ref().map_or(0, |(_, a)| a.ttl);
        self.answers.values().map(|(_, a)| a.ttl).fold(self.foreign_ttl.max(simple), i64::max)
    }

    /// The split Route53 answers with, over every weighted set at the name.
    pub(super) fn split(&self) -> Result<Split> {
        if let Some((_, simple)) = &self.simple {
            // Every value of a simple set is answered alike: each pool's share is its count.
            let counts = self.members.iter().map(|(pool, (_, members))| {
                let n = simple
                    .values
                    .iter()
                    .filter(|v| v.parse::<IpAddr>().is_ok_and(|ip| members.iter().any(|m| m.ip == ip)));
                (pool.clone(), n.count() as u64)
            });
            return Ok(Split::from_weights(counts).unwrap_or_default());
        }
        let mut sets: Vec<(PoolName, i64)> = self.answers.iter().map(|(p, (_, a))| (p.clone(), a.weight)).collect();
        sets.extend(self.foreign.iter().map(|(id, w)| (PoolName::from(id.as_str()), *w)));
        served_split(&sets)
    }
}

/// What to do with a record set listed by `ListResourceRecordSets`.
enum Listed {
    Take,
    Skip,
    Stop,
}

fn answer_of(set: &ResourceRecordSet) -> Answer {
    let mut values: Vec<String> = set.resource_records().iter().map(|r| r.value().to_owned()).collect();
    values.sort();
    values.dedup();
    Answer {
        weight: set.weight().unwrap_or(0),
        ttl: set.ttl().unwrap_or(0),
        values,
        health_check: set.health_check_id().map(str::to_owned),
    }
}

impl Inner {
    pub(super) async fn ensure_zone(&self) -> Result<()> {
        self.zone_checked
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_hosted_zone()
                    .id(&self.zone_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("route53:GetHostedZone", &self.zone(), e))?;
                let zone = normalize(out.hosted_zone().map(|z| z.name()).unwrap_or_default());
                if !in_zone(&self.name, &zone) {
                    return Err(Error::invalid(
                        "record_name",
                        format!("{} is outside {} ({zone})", self.name, self.zone()),
                    ));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Lists record sets from `(name, rtype)` on, keeping what `pick` takes, until it stops.
    async fn list(
        &self,
        name: &str,
        rtype: Option<RrType>,
        pick: impl Fn(&ResourceRecordSet) -> Listed,
    ) -> Result<Vec<ResourceRecordSet>> {
        let resource = format!("{name} in {}", self.zone());
        let (mut next_name, mut next_type, mut next_id) = (Some(name.to_owned()), rtype, None::<String>);
        let mut out = Vec::new();
        loop {
            let page = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(&self.zone_id)
                .set_start_record_name(next_name.take())
                .set_start_record_type(next_type.take())
                .set_start_record_identifier(next_id.take())
                .max_items(PAGE)
                .send()
                .await
                .map_err(|e| aws_error("route53:ListResourceRecordSets", &resource, e))?;
            for set in page.resource_record_sets() {
                match pick(set) {
                    Listed::Take => out.push(set.clone()),
                    Listed::Skip => {}
                    Listed::Stop => return Ok(out),
                }
            }
            if !page.is_truncated() || page.next_record_name().is_none() {
                return Ok(out);
            }
            next_name = page.next_record_name().map(str::to_owned);
            next_type = page.next_record_type().cloned();
            next_id = page.next_record_identifier().map(str::to_owned);
        }
    }

    /// The record sets at the name with the pools' type.
    async fn answer_sets(&self) -> Result<Vec<ResourceRecordSet>> {
        let rtype = self.rr_type();
        self.list(&self.name, Some(rtype.clone()), |set| {
            if normalize(set.name()) == self.name && *set.r#type() == rtype {
                Listed::Take
            } else {
                Listed::Stop
            }
        })
        .await
    }

    /// The bookkeeping TXT sets under `_bluegreen.<name>` (one listing: they sort together).
    pub(super) async fn meta_sets(&self) -> Result<Vec<ResourceRecordSet>> {
        let suffix = format!(".{}", self.meta);
        self.list(&self.meta, None, |set| {
            let name = normalize(set.name());
            if name == self.meta {
                Listed::Skip
            } else if name.ends_with(&suffix) {
                if *set.r#type() == RrType::Txt {
                    Listed::Take
                } else {
                    Listed::Skip
                }
            } else {
                Listed::Stop
            }
        })
        .await
    }

    /// The pools' weighted sets and the foreign ones (one listing; enough for the split).
    pub(super) async fn read_answers(&self) -> Result<State> {
        let mut state = State::default();
        for set in self.answer_sets().await? {
            let Some(id) = set.set_identifier() else {
                if self.hosts.is_empty() {
                    return Err(Error::drift(format!(
                        "{} has a simple (unweighted) {} record in {}: a weighted record set cannot be next to it; \
                         to take it over, list its hosts in the inventory with their pools (and deploy with --adopt)",
                        self.name,
                        self.family.record_type(),
                        self.zone()
                    )));
                }
                // Read as the inventory's hosts by `read`, which checks every value is one.
                let answer = answer_of(&set);
                state.simple = Some((set, answer));
                continue;
            };
            let Some(weight) = set.weight() else {
                return Err(Error::drift(format!(
                    "{} {} record set {id:?} in {} has a routing policy other than weighted",
                    self.name,
                    self.family.record_type(),
                    self.zone()
                )));
            };
            let pool = PoolName::from(id);
            if self.pools.contains(&pool) {
                let answer = answer_of(&set);
                state.answers.insert(pool, (set, answer));
            } else {
                if weight > 0 {
                    state.foreign_ttl = state.foreign_ttl.max(set.ttl().unwrap_or(0));
                }
                state.foreign.push((id.to_owned(), weight));
            }
        }
        Ok(state)
    }

    /// Everything: the weighted sets and the members.
    pub(super) async fn read(&self) -> Result<State> {
        let mut state = self.read_answers().await?;
        let meta = self.meta_sets().await?;
        for (pool, name) in &self.pool_meta {
            let set = meta.iter().find(|s| normalize(s.name()) == *name).cloned();
            let members = set
                .iter()
                .flat_map(|s| s.resource_records())
                .filter_map(|r| parse_txt(r.value(), self.family))
                .collect();
            state.members.insert(pool.clone(), (set, members));
        }
        if !self.hosts.is_empty() {
            self.read_unmanaged(&mut state)?;
        }
        Ok(state)
    }

    /// Adds the hosts whose addresses are served with no member record to their pools'
    /// members, as unmanaged: every value of a simple set must be a member's or a host's
    /// (`Error::Drift` otherwise); values of a pool's weighted set that are a host's of that
    /// pool. Other values of a weighted set are kept as they are (records that predate bluegreen).
    fn read_unmanaged(&self, state: &mut State) -> Result<()> {
        let member = |state: &State, ip: IpAddr| state.members.values().any(|(_, m)| m.iter().any(|m| m.ip == ip));
        let mut found: Vec<DescribedHost> = Vec::new();
        let simple = state.simple.as_ref().map(|(_, a)| a.values.clone()).unwrap_or_default();
        for value in &simple {
            let Some(ip) = self.family.address_of(value) else { continue };
            if member(state, ip) {
                continue;
            }
            match self.hosts.iter().find(|h| h.member.ip == ip) {
                Some(host) => found.push(host.clone()),
                None => return Err(bookkeeping::not_described(&self.name, ip, &self.pools, true)),
            }
        }
        for (pool, (_, answer)) in &state.answers {
            for ip in answer.values.iter().filter_map(|v| self.family.address_of(v)) {
                if member(state, ip) || found.iter().any(|h| h.member.ip == ip) {
                    continue;
                }
                found.extend(self.hosts.iter().find(|h| h.member.ip == ip && h.pool == *pool).cloned());
            }
        }
        for host in found {
            if let Some((_, members)) = state.members.get_mut(&host.pool) {
                members.push(host.member.clone());
            }
            state.unmanaged.push(host);
        }
        Ok(())
    }
}
