//! The bookkeeping every DNS router keeps beside the records it weights, as plain data: one
//! TXT string list per pool member, with the time its drain withdrew it. The RFC 2136 router
//! and the Route53 router write the same strings, so a name moved from one to the other, or
//! read by another process, means the same thing. No I/O here, so the rules are unit-tested.
//!
//! A member is `"bg1" "<id>" "<address>" "serving"`, or `"bg1" "<id>" "<address>" "disabled"`
//! with, when its drain withdrew an address that was served, a fifth string: the Unix second
//! (rounded up) from which resolvers may still hold the address for one TTL + margin.
//!
//! How a drain uses these records (and how long it waits) is in [`crate::drain`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bluegreen_core::state::Clock;
use bluegreen_core::{Adoption, Error, Member, MemberState, PoolName, Result, Target, TargetId};

/// The first string of every bookkeeping TXT record (format version).
pub(crate) const FORMAT: &str = "bg1";

/// The address family of the records a router weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Family {
    /// `A` records: targets need an IPv4 address.
    #[default]
    V4,
    /// `AAAA` records: targets need an IPv6 address.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The record type's name: `A` or `AAAA`.
    pub(crate) fn record_type(self) -> &'static str {
        match self {
            Self::V4 => "A",
            Self::V6 => "AAAA",
        }
    }

    /// The address a target contributes, from `10.0.0.7`, `10.0.0.7:8080`, `fd00::7` or
    /// `[fd00::7]:8080`; `None` when it is not an address of this family.
    pub(crate) fn address_of(self, address: &str) -> Option<IpAddr> {
        let ip = address.parse::<IpAddr>().ok().or_else(|| address.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
        (Self::of(ip) == self).then_some(ip)
    }

    /// The serving members `targets` become when a pool of this family adds them.
    ///
    /// # Errors
    /// [`Error::Invalid`] on `targets[i].address` for an address of another family (or no
    /// address), and on `targets[i].id` / `targets[i].address` for an id or address that a TXT
    /// string cannot hold as it is (see [`storable`]).
    pub(crate) fn members(self, targets: &[Target]) -> Result<Vec<MemberRecord>> {
        let mut members = Vec::with_capacity(targets.len());
        for (i, t) in targets.iter().enumerate() {
            let field = format!("targets[{i}].address");
            let ip = self.address_of(&t.address).ok_or_else(|| {
                let ip = if self == Self::V4 { "IPv4" } else { "IPv6" };
                Error::invalid(
                    field.as_str(),
                    format!(
                        "target {}: an {} record needs an {ip} address (or address:port), not {:?}",
                        t.id,
                        self.record_type(),
                        t.address
                    ),
                )
            })?;
            storable(&format!("targets[{i}].id"), "a target id", t.id.as_str())?;
            storable(&field, "a target address", &t.address)?;
            members.push(MemberRecord::serving(t.id.clone(), t.address.clone(), ip));
        }
        Ok(members)
    }
}

/// One pool member as its router records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberRecord {
    /// The target.
    pub(crate) id: TargetId,
    /// The target's address as it was added (`10.0.0.7:8080`).
    pub(crate) address: String,
    /// The address its record carries.
    pub(crate) ip: IpAddr,
    /// `Serving` or `Disabled` (a drain still in its wait is `Disabled` here, with a time).
    pub(crate) state: MemberState,
    /// For a disabled member whose drain withdrew a served address: when resolvers began to
    /// drop it (Unix seconds, rounded up). `None`: nothing of it was served, or a record written
    /// without the time (both count as long drained).
    pub(crate) disabled_at: Option<u64>,
}

impl MemberRecord {
    /// A serving member.
    pub(crate) fn serving(id: TargetId, address: String, ip: IpAddr) -> Self {
        Self { id, address, ip, state: MemberState::Serving, disabled_at: None }
    }

    /// The TXT strings of this member.
    pub(crate) fn strings(&self) -> Vec<String> {
        let mut strings = vec![FORMAT.to_owned(), self.id.to_string(), self.address.clone()];
        match (self.state, self.disabled_at) {
            (MemberState::Serving, _) => strings.push("serving".into()),
            (MemberState::Draining | MemberState::Disabled, at) => {
                strings.push("disabled".into());
                strings.extend(at.map(|at| at.to_string()));
            }
        }
        strings
    }

    /// Parses the TXT strings written by [`strings`](Self::strings); anything else (another
    /// format, another family, another tool's TXT record) is not ours: `None`.
    pub(crate) fn parse<S: AsRef<str>>(strings: &[S], family: Family) -> Option<Self> {
        let strings: Vec<&str> = strings.iter().map(AsRef::as_ref).collect();
        let (format, id, address, state, at) = match strings.as_slice() {
            [format, id, address, state] => (*format, *id, *address, *state, None),
            [format, id, address, state, at] => (*format, *id, *address, *state, Some(at.parse::<u64>().ok()?)),
            _ => return None,
        };
        if format != FORMAT {
            return None;
        }
        let state = match (state, at) {
            ("serving", None) => MemberState::Serving,
            ("disabled", _) => MemberState::Disabled,
            _ => return None,
        };
        Some(Self {
            id: id.into(),
            address: address.to_owned(),
            ip: family.address_of(address)?,
            state,
            disabled_at: at,
        })
    }

    /// The state to report at Unix time `now` when a drain lasts `wait` (TTL + margin): a
    /// disabled member is `Draining` until `wait` has passed since its time.
    pub(crate) fn state_at(&self, now: Duration, wait: Duration) -> MemberState {
        match self.draining_until(wait) {
            Some(until) if now < until => MemberState::Draining,
            _ => self.state,
        }
    }

    /// When the drain of this member ends (Unix time), if it was withdrawn with a time.
    pub(crate) fn draining_until(&self, wait: Duration) -> Option<Duration> {
        match (self.state, self.disabled_at) {
            (MemberState::Disabled, Some(at)) => Some(Duration::from_secs(at) + wait),
            _ => None,
        }
    }

    /// The member as a router reports it at Unix time `now` (see [`state_at`](Self::state_at)).
    pub(crate) fn reported(self, now: Duration, wait: Duration) -> Member {
        Member { state: self.state_at(now, wait), id: self.id, in_flight: None }
    }
}

/// A host of the inventory the router is told about ([`Rfc2136RouterBuilder::host`] and
/// Route53's): when the name serves its address with no member record (records that predate
/// bluegreen), the address is read as this host serving in its pool, and reported as unmanaged
/// until [`adopt`](bluegreen_core::Router::adopt) writes its member record.
///
/// [`Rfc2136RouterBuilder::host`]: crate::Rfc2136RouterBuilder
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedHost {
    /// Its pool.
    pub(crate) pool: PoolName,
    /// The serving member it becomes (its id, address as the inventory gives it, and IP).
    pub(crate) member: MemberRecord,
}

/// Checks the hosts a builder was given: `(target, pool, address)`, each pool one of `pools`,
/// each address of `family` (with or without a port) and stored as it is, no address twice.
///
/// # Errors
/// [`Error::Invalid`] on `hosts[i].pool`, `hosts[i].address` or `hosts[i].id`.
pub(crate) fn described_hosts(
    family: Family,
    pools: &[PoolName],
    hosts: &[(String, String, String)],
) -> Result<Vec<DescribedHost>> {
    let mut out: Vec<DescribedHost> = Vec::with_capacity(hosts.len());
    for (i, (id, pool, address)) in hosts.iter().enumerate() {
        let pool = PoolName::from(pool.as_str());
        if !pools.contains(&pool) {
            return Err(Error::invalid(
                format!("hosts[{i}].pool"),
                format!(
                    "host {id} is in pool {pool}, which this router does not have ({})",
                    pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let target =
            Target { id: id.as_str().into(), address: address.clone(), zone: None, version: "".into(), tag: None };
        let member = family
            .members(std::slice::from_ref(&target))
            .map_err(|e| e.rename_field(|field| field.replace("targets[0]", &format!("hosts[{i}]"))))?
            .remove(0);
        if let Some(other) = out.iter().find(|h| h.member.ip == member.ip || h.member.id == member.id) {
            return Err(Error::invalid(
                format!("hosts[{i}].address"),
                format!(
                    "host {id} ({address}) and host {} ({}) share an id or address",
                    other.member.id, other.member.address
                ),
            ));
        }
        out.push(DescribedHost { pool, member });
    }
    Ok(out)
}

/// How a member served unmanaged is reported (`A 10.0.0.11 (www.example.test.)`).
pub(crate) fn adoption(host: &DescribedHost, family: Family, name: &str) -> Adoption {
    Adoption {
        pool: host.pool.clone(),
        target: host.member.id.clone(),
        what: format!("{} {} ({name})", family.record_type(), host.member.ip),
    }
}

/// The error for a served address that no member record and no host of the inventory has.
pub(crate) fn not_described(name: &str, ip: IpAddr, pools: &[PoolName], hosts: bool) -> Error {
    let pools = pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", ");
    let known = if hosts { "no host of the inventory has it either" } else { "the router was told of no host" };
    Error::drift(format!(
        "{name} serves {ip}, which is in no pool ({pools}) and {known}: the record set was changed outside bluegreen, \
         or predates it; add the host to the inventory with its pool ([[backend.hosts]] with address = \"{ip}:<port>\" \
         and pool = \"<pool>\"), then `bluegreen deploy --adopt` takes the record over; or remove the record"
    ))
}

/// Adds `member` to a pool's `members`, or replaces the member with its id (a target added
/// again, or re-enabled, serves again under its current address).
pub(crate) fn put(members: &mut Vec<MemberRecord>, member: MemberRecord) {
    match members.iter_mut().find(|m| m.id == member.id) {
        Some(m) => *m = member,
        None => members.push(member),
    }
}

/// The wall clock a router records drain times with and reads them against (a builder setting,
/// without a `Debug` of its own).
#[derive(Clone)]
pub(crate) struct WallClock(pub(crate) Clock);

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

impl WallClock {
    /// The clock set, or by default the system time when the router is built, advanced by
    /// tokio's clock (so a paused tokio clock moves it too, and tests of TTL waits run at once).
    pub(crate) fn or_default(clock: Option<Self>) -> Clock {
        clock.map_or_else(
            || {
                let (wall, start) = (SystemTime::now(), tokio::time::Instant::now());
                Arc::new(move || wall + start.elapsed()) as Clock
            },
            |c| c.0,
        )
    }
}

/// `clock`'s time since the Unix epoch.
pub(crate) fn unix_now(clock: &Clock) -> Duration {
    clock().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Unix time `now` in whole seconds, rounded up: a drain's recorded time errs late.
pub(crate) fn unix_secs_up(now: Duration) -> u64 {
    now.as_secs() + u64::from(now.subsec_nanos() > 0)
}

/// Checks that an id or address can be stored in a TXT string as it is (printable ASCII, no
/// quote or backslash, 1 to 255 bytes), so no escaping is ever needed.
///
/// # Errors
/// [`Error::Invalid`] on `field`.
pub(crate) fn storable(field: &str, what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 255 {
        return Err(Error::invalid(field, format!("{what} must be 1 to 255 bytes (one TXT string), not {}", s.len())));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\') {
        return Err(Error::invalid(
            field,
            format!("{what} {s:?} has {c:?}: printable ASCII without quotes or backslashes only"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(state: MemberState, disabled_at: Option<u64>) -> MemberRecord {
        MemberRecord {
            id: "arn:aws:ecs:eu-west-1:1:task/c/0abc".into(),
            address: "10.0.0.7:80".into(),
            ip: "10.0.0.7".parse().unwrap(),
            state,
            disabled_at,
        }
    }

    #[test]
    fn members_round_trip_through_their_strings() {
        for m in [
            member(MemberState::Serving, None),
            member(MemberState::Disabled, None),
            member(MemberState::Disabled, Some(1_700_000_000)),
        ] {
            assert_eq!(MemberRecord::parse(&m.strings(), Family::V4), Some(m.clone()));
            assert_eq!(MemberRecord::parse(&m.strings(), Family::V6), None, "wrong family");
        }
        assert_eq!(
            member(MemberState::Disabled, Some(1_700_000_000)).strings(),
            ["bg1", "arn:aws:ecs:eu-west-1:1:task/c/0abc", "10.0.0.7:80", "disabled", "1700000000"]
        );
        assert_eq!(MemberRecord::parse(&["v=spf1 -all"], Family::V4), None);
        assert_eq!(MemberRecord::parse(&["bg1", "t", "10.0.0.7", "serving", "1"], Family::V4), None);
        assert_eq!(MemberRecord::parse(&["bg1", "t", "10.0.0.7", "disabled", "x"], Family::V4), None);
        assert_eq!(MemberRecord::parse(&["bg2", "t", "10.0.0.7", "serving"], Family::V4), None);
    }

    #[test]
    fn a_drained_member_is_draining_until_its_wait_has_passed() {
        let wait = Duration::from_secs(65);
        let at = 1_700_000_000;
        let m = member(MemberState::Disabled, Some(at));
        assert_eq!(m.state_at(Duration::from_secs(at + 64), wait), MemberState::Draining);
        assert_eq!(m.state_at(Duration::from_secs(at + 65), wait), MemberState::Disabled);
        assert_eq!(m.draining_until(wait), Some(Duration::from_secs(at + 65)));
        assert_eq!(m.clone().reported(Duration::from_secs(at), wait).state, MemberState::Draining);
        // Written without a time: long drained.
        assert_eq!(member(MemberState::Disabled, None).state_at(Duration::from_secs(at), wait), MemberState::Disabled);
        assert_eq!(member(MemberState::Serving, None).state_at(Duration::from_secs(at), wait), MemberState::Serving);
    }

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(Family::V4.address_of("10.0.0.7"), Some("10.0.0.7".parse().unwrap()));
        assert_eq!(Family::V4.address_of("10.0.0.7:8080"), Some("10.0.0.7".parse().unwrap()));
        assert_eq!(Family::V4.address_of("[fd00::7]:80"), None);
        assert_eq!(Family::V6.address_of("[fd00::7]:80"), Some("fd00::7".parse().unwrap()));
        assert_eq!(Family::V4.address_of("sim:t-1"), None);
        assert_eq!(Family::V6.address_of("fd00::7"), Some("fd00::7".parse().unwrap()));
        assert_eq!(unix_secs_up(Duration::from_millis(1_000)), 1);
        assert_eq!(unix_secs_up(Duration::from_millis(1_001)), 2);
    }

    #[test]
    fn only_plain_strings_are_stored() {
        assert!(storable("id", "id", "t-1").is_ok());
        assert!(storable("id", "id", "a\"b").is_err());
        assert!(storable("id", "id", "a b").is_err());
        assert!(storable("id", "id", "").is_err());
        assert!(storable("id", "id", &"x".repeat(256)).is_err());
    }

    #[test]
    fn targets_become_serving_members_of_their_family_only() {
        let target = |id: &str, address: &str| Target {
            id: id.into(),
            address: address.into(),
            zone: None,
            version: "v1".into(),
            tag: None,
        };
        let members = Family::V6.members(&[target("t-1", "[fd00::7]:8080")]).unwrap();
        assert_eq!(members, [MemberRecord::serving("t-1".into(), "[fd00::7]:8080".into(), "fd00::7".parse().unwrap())]);
        let err = Family::V4.members(&[target("t-1", "10.0.0.7"), target("t-2", "sim:t-2")]).unwrap_err();
        assert_eq!(err.field(), Some("targets[1].address"), "{err}");
        assert!(err.to_string().contains("an A record needs an IPv4 address"), "{err}");
        let err = Family::V4.members(&[target("a b", "10.0.0.7")]).unwrap_err();
        assert_eq!(err.field(), Some("targets[0].id"), "{err}");
    }
}
