//! The record sets the Route53 router keeps, as plain data: parsing what Route53 lists,
//! computing what a change should write, and the largest-remainder percent split. No AWS calls
//! here, so the rules are unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use bluegreen_core::{Error, MemberState, PoolName, Result, Split};

use crate::bookkeeping::{Family, MemberRecord};

/// Which address records the pools are (serde: `A`, `AAAA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[non_exhaustive]
pub enum Route53RecordType {
    /// IPv4 `A` records (the default): targets need an IPv4 address.
    #[default]
    A,
    /// IPv6 `AAAA` records: targets need an IPv6 address.
    #[serde(rename = "AAAA")]
    Aaaa,
}

impl Route53RecordType {
    /// The address family of the records.
    pub(super) fn family(self) -> Family {
        match self {
            Self::A => Family::V4,
            Self::Aaaa => Family::V6,
        }
    }
}

/// A member's TXT value as Route53 takes and lists it: its bookkeeping strings, each in double
/// quotes, separated by a space (`"bg1" "t-1" "10.0.0.7:80" "disabled" "1700000000"`). The
/// strings hold no quote or backslash ([`storable`](crate::bookkeeping::storable)), so nothing
/// is escaped.
pub(super) fn txt_value(member: &MemberRecord) -> String {
    let quoted: Vec<String> = member.strings().iter().map(|s| format!("\"{s}\"")).collect();
    quoted.join(" ")
}

/// The member a TXT value written by [`txt_value`] records; `None` for any other value (another
/// format, another family, another tool's TXT record).
pub(super) fn parse_txt(value: &str, family: Family) -> Option<MemberRecord> {
    let inner = value.trim().strip_prefix('"')?.strip_suffix('"')?;
    let strings: Vec<&str> = inner.split("\" \"").collect();
    MemberRecord::parse(&strings, family)
}

/// A pool's weighted address record set: what decides its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) weight: i64,
    pub(super) ttl: i64,
    /// The values, sorted and unique.
    pub(super) values: Vec<String>,
    /// The Route53 health check on the set, if any.
    pub(super) health_check: Option<String>,
}

impl Answer {
    /// Whether `self` serves the same as `other` (value order aside).
    pub(super) fn same(&self, other: &Answer) -> bool {
        let a: BTreeSet<&String> = self.values.iter().collect();
        let b: BTreeSet<&String> = other.values.iter().collect();
        self.weight == other.weight && self.ttl == other.ttl && a == b && self.health_check == other.health_check
    }
}

/// What the router wants one pool to look like after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DesiredPool {
    /// The weighted record set, or none (a pool without values, or nothing serves).
    pub(super) answer: Option<Answer>,
    /// The members, in the order they were added.
    pub(super) members: Vec<MemberRecord>,
}

/// Where the weights of a change come from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Weights<'a> {
    /// A requested split: refused when a pool that should get traffic has no value to serve.
    Split(&'a Split),
    /// A membership change under the weights served now: pools without values drop out.
    Current,
}

/// Computes every pool's record sets after a change.
///
/// - A pool's values are the addresses of its serving members, plus values in its current set
///   that belong to no member old or new (records that predate bluegreen are kept, not dropped).
/// - Route53 needs at least one value per record set, so a pool without values has no set and
///   gets no traffic.
/// - When no pool with a positive weight has values, no set is written at all: Route53 would
///   otherwise serve weight-0 sets, each equally, to pools that were asked for 0%.
pub(super) fn desired(
    pools: &[PoolName],
    current: &BTreeMap<PoolName, Answer>,
    old_members: &BTreeMap<PoolName, Vec<MemberRecord>>,
    members: &BTreeMap<PoolName, Vec<MemberRecord>>,
    weights: Weights<'_>,
    ttl: i64,
) -> Result<BTreeMap<PoolName, DesiredPool>> {
    let mut values: BTreeMap<&PoolName, Vec<String>> = BTreeMap::new();
    for pool in pools {
        let listed = members.get(pool).map(Vec::as_slice).unwrap_or_default();
        let known: BTreeSet<IpAddr> =
            listed.iter().chain(old_members.get(pool).into_iter().flatten()).map(|m| m.ip).collect();
        let mut set: BTreeSet<String> =
            listed.iter().filter(|m| m.state == MemberState::Serving).map(|m| m.ip.to_string()).collect();
        if let Some(answer) = current.get(pool) {
            let foreign = answer.values.iter().filter(|v| v.parse::<IpAddr>().map_or(true, |ip| !known.contains(&ip)));
            set.extend(foreign.cloned());
        }
        values.insert(pool, set.into_iter().collect());
    }
    let weight = |pool: &PoolName| -> i64 {
        match weights {
            Weights::Split(split) => i64::from(split.weight(pool)),
            Weights::Current => current.get(pool).map_or(0, |a| a.weight),
        }
    };
    if let Weights::Split(split) = weights {
        for (pool, w) in split.iter().filter(|(_, w)| *w > 0) {
            if values.get(pool).is_none_or(|v| v.is_empty()) {
                return Err(Error::invalid(
                    "split",
                    format!("pool {pool} has no serving target, so no record to send {w}% of the answers to"),
                ));
            }
        }
    }
    let live = pools.iter().any(|p| weight(p) > 0 && !values[p].is_empty());
    Ok(pools
        .iter()
        .map(|pool| {
            let vals = &values[pool];
            let answer = (live && !vals.is_empty()).then(|| Answer {
                weight: weight(pool),
                ttl,
                values: vals.clone(),
                health_check: None,
            });
            (pool.clone(), DesiredPool { answer, members: members.get(pool).cloned().unwrap_or_default() })
        })
        .collect())
}

/// Route53's share of answers for weighted sets `(name, weight)`, in percent summing to 100:
/// each set gets weight / total; when every weight is 0, Route53 answers with each set
/// equally. No sets: the empty split (nothing is served).
pub(super) fn served_split(sets: &[(PoolName, i64)]) -> Result<Split> {
    if sets.is_empty() {
        return Ok(Split::default());
    }
    let all_zero = sets.iter().all(|(_, w)| *w <= 0);
    let weights = sets.iter().map(|(p, w)| (p.clone(), if all_zero { 1 } else { u64::try_from(*w).unwrap_or(0) }));
    Ok(Split::from_weights(weights).expect("every weight 0 was made equal weights above"))
}

/// A domain name as Route53 compares it: lower case, with the final dot, `\052` as `*`.
pub(super) fn normalize(name: &str) -> String {
    let mut name = name.trim().to_ascii_lowercase().replace("\\052", "*");
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

/// Checks a domain name: labels of 1 to 63 letters, digits, `-`, `_` (or a leading `*`), at most
/// 253 characters.
pub(super) fn check_name(field: &str, name: &str) -> Result<String> {
    let fqdn = normalize(name);
    let bare = fqdn.trim_end_matches('.');
    let valid = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').enumerate().all(|(i, label)| {
            (i == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        });
    if valid {
        Ok(fqdn)
    } else {
        Err(Error::invalid(field, format!("{name:?} is not a domain name")))
    }
}

/// Whether `name` is `zone` or a name under it (both normalized).
pub(super) fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, ip: &str, state: MemberState) -> MemberRecord {
        MemberRecord { state, ..MemberRecord::serving(id.into(), format!("{ip}:80"), ip.parse().unwrap()) }
    }

    fn pools() -> Vec<PoolName> {
        vec!["blue".into(), "green".into()]
    }

    fn answer(weight: i64, values: &[&str]) -> Answer {
        Answer { weight, ttl: 60, values: values.iter().map(|v| (*v).to_owned()).collect(), health_check: None }
    }

    #[test]
    fn txt_values_are_the_bookkeeping_strings_quoted() {
        let m = member("arn:aws:ecs:eu-west-1:1:task/c/0abc", "10.0.0.7", MemberState::Disabled);
        assert_eq!(parse_txt(&txt_value(&m), Family::V4), Some(m.clone()));
        assert_eq!(parse_txt(&txt_value(&m), Family::V6), None, "wrong family");
        assert_eq!(parse_txt("\"v=spf1 -all\"", Family::V4), None);
        let drained = MemberRecord { disabled_at: Some(1_700_000_000), ..m.clone() };
        // Byte for byte what zones written before hold.
        assert_eq!(
            txt_value(&drained),
            "\"bg1\" \"arn:aws:ecs:eu-west-1:1:task/c/0abc\" \"10.0.0.7:80\" \"disabled\" \"1700000000\""
        );
        assert_eq!(parse_txt(&txt_value(&drained), Family::V4), Some(drained));
        assert_eq!(
            txt_value(&member("t", "10.0.0.8", MemberState::Serving)),
            "\"bg1\" \"t\" \"10.0.0.8:80\" \"serving\""
        );
        let old = parse_txt(" \"bg1\" \"t\" \"10.0.0.7:80\" \"disabled\" ", Family::V4).unwrap();
        assert_eq!((old.state, old.disabled_at), (MemberState::Disabled, None), "written without the time");
        assert_eq!(parse_txt("\"bg1\" \"t\" \"10.0.0.7\" \"serving\" \"1\"", Family::V4), None);
        assert_eq!(parse_txt("\"bg1\" \"t\" \"10.0.0.7\" \"disabled\" \"x\"", Family::V4), None);
        assert_eq!(Route53RecordType::Aaaa.family(), Family::V6);
    }

    #[test]
    fn weights_become_percents_like_route53_answers() {
        let s = |w: &[i64]| {
            let sets: Vec<(PoolName, i64)> =
                w.iter().enumerate().map(|(i, w)| (PoolName::from(format!("p{i}")), *w)).collect();
            served_split(&sets).unwrap().iter().map(|(_, w)| w).collect::<Vec<_>>()
        };
        assert_eq!(s(&[90, 10]), vec![90, 10]);
        assert_eq!(s(&[1, 2]), vec![33, 67]);
        assert_eq!(s(&[255, 0]), vec![100, 0]);
        assert_eq!(s(&[0, 0]), vec![50, 50], "all weights 0: Route53 answers with each set equally");
        assert_eq!(served_split(&[]).unwrap(), Split::default());
    }

    #[test]
    fn a_split_change_keeps_membership_and_moves_weights_only() {
        let members = BTreeMap::from([
            ("blue".into(), vec![member("b1", "10.0.0.1", MemberState::Serving)]),
            ("green".into(), vec![member("g1", "10.0.1.1", MemberState::Serving)]),
        ]);
        let current = BTreeMap::from([("blue".into(), answer(100, &["10.0.0.1"]))]);
        let split = Split::between(&"blue".into(), &"green".into(), 10);
        let d = desired(&pools(), &current, &members, &members, Weights::Split(&split), 60).unwrap();
        assert_eq!(d[&PoolName::from("blue")].answer, Some(answer(90, &["10.0.0.1"])));
        assert_eq!(d[&PoolName::from("green")].answer, Some(answer(10, &["10.0.1.1"])));
    }

    #[test]
    fn a_pool_without_values_cannot_get_traffic() {
        let members = BTreeMap::from([("blue".into(), vec![member("b1", "10.0.0.1", MemberState::Serving)])]);
        let split = Split::between(&"blue".into(), &"green".into(), 10);
        let err = desired(&pools(), &BTreeMap::new(), &members, &members, Weights::Split(&split), 60).unwrap_err();
        assert!(matches!(&err, Error::Invalid { reason, .. } if reason.contains("pool green")), "{err}");
    }

    #[test]
    fn membership_alone_serves_nothing_and_a_last_live_pool_takes_the_zero_pools_with_it() {
        let mut members = BTreeMap::from([("blue".into(), vec![member("b1", "10.0.0.1", MemberState::Serving)])]);
        let d = desired(&pools(), &BTreeMap::new(), &members, &members, Weights::Current, 60).unwrap();
        assert!(d.values().all(|p| p.answer.is_none()), "{d:?}");

        members.insert("green".into(), vec![member("g1", "10.0.1.1", MemberState::Serving)]);
        let current =
            BTreeMap::from([("blue".into(), answer(100, &["10.0.0.1"])), ("green".into(), answer(0, &["10.0.1.1"]))]);
        let old = members.clone();
        members.get_mut(&PoolName::from("blue")).unwrap()[0].state = MemberState::Disabled;
        let d = desired(&pools(), &current, &old, &members, Weights::Current, 60).unwrap();
        assert!(d.values().all(|p| p.answer.is_none()), "green at 0% must not take blue's traffic: {d:?}");
    }

    #[test]
    fn values_that_belong_to_no_member_are_kept() {
        let members = BTreeMap::from([("blue".into(), vec![member("b1", "10.0.0.1", MemberState::Disabled)])]);
        let current = BTreeMap::from([("blue".into(), answer(100, &["10.0.0.1", "10.0.0.9"]))]);
        let d = desired(&pools(), &current, &members, &members, Weights::Current, 60).unwrap();
        assert_eq!(d[&PoolName::from("blue")].answer, Some(answer(100, &["10.0.0.9"])));
    }

    #[test]
    fn names_and_zones() {
        assert_eq!(check_name("n", "WWW.Example.test").unwrap(), "www.example.test.");
        assert_eq!(check_name("n", "*.example.test.").unwrap(), "*.example.test.");
        assert!(check_name("n", "a.*.example.test.").is_err(), "a wildcard is the leftmost label only");
        assert!(check_name("n", "a..b").is_err());
        assert!(check_name("n", "bad name.test").is_err());
        assert_eq!(normalize("\\052.example.test."), "*.example.test.");
        assert!(in_zone("www.example.test.", "example.test."));
        assert!(in_zone("example.test.", "example.test."));
        assert!(!in_zone("www.badexample.test.", "example.test."));
    }
}
