//! The routing table: pools, weights, members and their states, and the choice of a member
//! for each request.

use std::collections::BTreeMap;
use std::sync::Arc;

use bluegreen_core::{Error, Member, MemberState, PoolName, Result, Split, Target, TargetId};

use super::counters::{Counters, MemberStats, PoolStats, ProxyStats, Ticket};

/// One member of a pool.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) id: TargetId,
    /// `host:port`, checked when the member was added.
    pub(super) address: String,
    pub(super) state: MemberState,
    pub(super) counters: Arc<Counters>,
}

#[derive(Debug)]
pub(super) struct Pool {
    weight: u32,
    /// Smooth weighted round-robin state (nginx's algorithm): deterministic, and spreads a
    /// pool's turns evenly (90/10 sends every tenth request to the 10% pool).
    current: i64,
    members: Vec<Slot>,
    /// Where the round-robin over serving members goes on.
    next: usize,
    pub(super) counters: Arc<Counters>,
}

/// Where one request goes.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) pool: PoolName,
    pub(super) target: TargetId,
    pub(super) address: String,
    /// In flight on the member until finished.
    pub(super) member: Ticket,
}

/// Why a request cannot be routed.
#[derive(Debug)]
pub(super) enum NoRoute {
    /// No pool has weight (cannot happen after a valid split, kept for safety).
    NoPool,
    /// The chosen pool has no serving member.
    NoServingMember(PoolName),
}

#[derive(Debug)]
pub(super) struct Table {
    pools: BTreeMap<PoolName, Pool>,
}

impl Table {
    /// A table of `pools`, with `split` in effect (validated by the caller).
    pub(super) fn new(pools: &[PoolName], split: &Split) -> Self {
        let pools = pools
            .iter()
            .map(|name| {
                let pool = Pool {
                    weight: split.weight(name),
                    current: 0,
                    members: Vec::new(),
                    next: 0,
                    counters: Arc::new(Counters::default()),
                };
                (name.clone(), pool)
            })
            .collect();
        Self { pools }
    }

    pub(super) fn pool_names(&self) -> Vec<PoolName> {
        self.pools.keys().cloned().collect()
    }

    fn pool(&self, name: &PoolName) -> Result<&Pool> {
        self.pools.get(name).ok_or_else(|| Error::not_found(format!("pool {name:?}")))
    }

    fn pool_mut(&mut self, name: &PoolName) -> Result<&mut Pool> {
        self.pools.get_mut(name).ok_or_else(|| Error::not_found(format!("pool {name:?}")))
    }

    pub(super) fn split(&self) -> Split {
        // The weights always sum to 100: they are only ever written from a validated split.
        Split::new(self.pools.iter().map(|(name, pool)| (name.clone(), pool.weight))).unwrap_or_default()
    }

    /// Sets the weights; pools absent from `split` get 0. Refuses (changing nothing) a split
    /// that does not sum to 100 or names an unknown pool.
    pub(super) fn set_split(&mut self, split: &Split) -> Result<()> {
        split.validate("split")?;
        for (name, _) in split.iter() {
            self.pool(name)?;
        }
        for (name, pool) in &mut self.pools {
            pool.weight = split.weight(name);
            pool.current = 0;
        }
        Ok(())
    }

    /// Adds `targets` to `pool` as serving, or re-enables them (taking a changed address).
    /// Checks everything before changing anything.
    pub(super) fn add(&mut self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        let pool = self.pool_mut(pool)?;
        for target in targets {
            check_address(target)?;
        }
        for target in targets {
            match pool.members.iter_mut().find(|m| m.id == target.id) {
                Some(slot) => {
                    slot.state = MemberState::Serving;
                    slot.address.clone_from(&target.address);
                }
                None => pool.members.push(Slot {
                    id: target.id.clone(),
                    address: target.address.clone(),
                    state: MemberState::Serving,
                    counters: Arc::new(Counters::default()),
                }),
            }
        }
        Ok(())
    }

    /// Stops new requests to `targets` (serving → draining) and returns each one's counters.
    /// Refuses, changing nothing, when a target is not a member.
    pub(super) fn start_drain(&mut self, pool_name: &PoolName, targets: &[TargetId]) -> Result<Vec<Arc<Counters>>> {
        let pool = self.pool_mut(pool_name)?;
        if let Some(missing) = targets.iter().find(|id| !pool.members.iter().any(|m| m.id == **id)) {
            return Err(Error::not_found(format!("target {missing} in pool {pool_name}")));
        }
        let mut counters = Vec::new();
        for slot in pool.members.iter_mut().filter(|m| targets.contains(&m.id)) {
            if slot.state == MemberState::Serving {
                slot.state = MemberState::Draining;
            }
            counters.push(slot.counters.clone());
        }
        Ok(counters)
    }

    /// Draining → disabled, for the members whose counters are `counters` (so a member that
    /// was removed and added again meanwhile, or re-enabled, is left alone).
    pub(super) fn end_drain(&mut self, pool: &PoolName, counters: &[Arc<Counters>]) {
        if let Some(pool) = self.pools.get_mut(pool) {
            for slot in &mut pool.members {
                if slot.state == MemberState::Draining && counters.iter().any(|c| Arc::ptr_eq(c, &slot.counters)) {
                    slot.state = MemberState::Disabled;
                }
            }
        }
    }

    pub(super) fn remove(&mut self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        let pool = self.pool_mut(pool)?;
        pool.members.retain(|m| !targets.contains(&m.id));
        Ok(())
    }

    pub(super) fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        Ok(self
            .pool(pool)?
            .members
            .iter()
            .map(|m| Member { id: m.id.clone(), state: m.state, in_flight: Some(m.counters.in_flight()) })
            .collect())
    }

    /// Chooses a pool by weight (smooth weighted round-robin), then a serving member of it
    /// round-robin, and counts the request in flight on that member and on the pool (the
    /// second ticket). A pool without a serving member counts the request as failed.
    pub(super) fn route(&mut self) -> std::result::Result<(Route, Ticket), NoRoute> {
        let total: i64 = self.pools.values().map(|p| i64::from(p.weight)).sum();
        let mut chosen: Option<(&PoolName, &mut Pool)> = None;
        for (name, pool) in self.pools.iter_mut().filter(|(_, p)| p.weight > 0) {
            pool.current += i64::from(pool.weight);
            if chosen.as_ref().is_none_or(|(_, c)| pool.current > c.current) {
                chosen = Some((name, pool));
            }
        }
        let (name, pool) = chosen.ok_or(NoRoute::NoPool)?;
        pool.current -= total;
        match Self::member_of(name, pool, None, true) {
            Some(route) => Ok((route, pool.counters.begin())),
            None => {
                pool.counters.unroutable();
                Err(NoRoute::NoServingMember(name.clone()))
            }
        }
    }

    /// Another serving member of `pool` than `not`, for a retry after a connection failure.
    pub(super) fn route_again(&mut self, pool: &PoolName, not: &TargetId) -> Option<Route> {
        let members = self.pools.get_mut(pool)?;
        Self::member_of(pool, members, Some(not), false)
    }

    /// The next serving member (other than `not`); `advance` moves the round-robin past it
    /// (a retry does not, so retries leave the rotation as it was).
    fn member_of(name: &PoolName, pool: &mut Pool, not: Option<&TargetId>, advance: bool) -> Option<Route> {
        let n = pool.members.len();
        let start = pool.next;
        let index = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| pool.members[i].state == MemberState::Serving && Some(&pool.members[i].id) != not)?;
        if advance {
            pool.next = (index + 1) % n;
        }
        let slot = &pool.members[index];
        Some(Route {
            pool: name.clone(),
            target: slot.id.clone(),
            address: slot.address.clone(),
            member: slot.counters.begin(),
        })
    }

    pub(super) fn stats(&self) -> ProxyStats {
        let pools = self
            .pools
            .iter()
            .map(|(name, pool)| {
                let members = pool
                    .members
                    .iter()
                    .map(|m| (m.id.clone(), MemberStats::new(m.address.clone(), m.state, m.counters.counts())))
                    .collect();
                (name.clone(), PoolStats::new(pool.weight, pool.counters.counts(), members))
            })
            .collect();
        ProxyStats::new(self.split(), pools)
    }
}

/// A member address must be `host:port` so that `http://{address}/` is a URL.
fn check_address(target: &Target) -> Result<()> {
    let field = || format!("target {} address", target.id);
    let authority: hyper::http::uri::Authority = target
        .address
        .parse()
        .map_err(|e| Error::invalid(field(), format!("{:?} is not host:port: {e}", target.address)))?;
    if authority.port_u16().is_none() || authority.as_str().contains('@') {
        return Err(Error::invalid(field(), format!("{:?} is not host:port", target.address)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, port: u16) -> Target {
        Target { id: id.into(), address: format!("127.0.0.1:{port}"), zone: None, version: "v1".into(), tag: None }
    }

    fn table() -> Table {
        let pools = [PoolName::from("blue"), PoolName::from("green")];
        let mut table = Table::new(&pools, &Split::all_to(&pools[0]));
        table.add(&"blue".into(), &[target("b1", 1), target("b2", 2)]).unwrap();
        table.add(&"green".into(), &[target("g1", 3)]).unwrap();
        table
    }

    #[test]
    fn weighted_choice_is_exact_and_spread() {
        let mut table = table();
        table.set_split(&Split::between(&"blue".into(), &"green".into(), 10)).unwrap();
        let picks: Vec<String> = (0..100).map(|_| table.route().unwrap().0.pool.to_string()).collect();
        assert_eq!(picks.iter().filter(|p| *p == "green").count(), 10);
        // Never two green turns within ten requests.
        let greens: Vec<usize> = picks.iter().enumerate().filter(|(_, p)| *p == "green").map(|(i, _)| i).collect();
        assert!(greens.windows(2).all(|w| w[1] - w[0] == 10), "{greens:?}");
    }

    #[test]
    fn round_robin_skips_members_not_serving() {
        let mut table = table();
        let ids: Vec<String> = (0..4).map(|_| table.route().unwrap().0.target.to_string()).collect();
        assert_eq!(ids, ["b1", "b2", "b1", "b2"]);
        table.start_drain(&"blue".into(), &["b1".into()]).unwrap();
        let ids: Vec<String> = (0..3).map(|_| table.route().unwrap().0.target.to_string()).collect();
        assert_eq!(ids, ["b2", "b2", "b2"]);
        table.start_drain(&"blue".into(), &["b2".into()]).unwrap();
        assert!(matches!(table.route(), Err(NoRoute::NoServingMember(p)) if p.as_str() == "blue"));
    }

    #[test]
    fn bad_input_changes_nothing() {
        let mut table = table();
        let bad = Target { address: "no-port".into(), ..target("b3", 0) };
        assert!(matches!(table.add(&"blue".into(), &[target("b4", 4), bad]), Err(Error::Invalid { .. })));
        assert_eq!(table.members(&"blue".into()).unwrap().len(), 2);
        let err = table.start_drain(&"blue".into(), &["b1".into(), "nope".into()]).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }));
        assert!(table.members(&"blue".into()).unwrap().iter().all(|m| m.state == MemberState::Serving));
    }
}
