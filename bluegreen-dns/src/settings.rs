//! The settings every DNS router's builder checks alike, before any message is sent: the TTL,
//! and the pool names (DNS labels: they name the pools' bookkeeping records); and the error for
//! a pool a router does not know.

use std::time::Duration;

use bluegreen_core::{Error, PoolName, Result};

/// The longest TTL accepted (unless a provider allows any): one day. Every traffic step waits
/// TTL + margin, so a longer TTL makes a deploy take days.
pub(crate) const MAX_TTL: u64 = 86_400;
/// The TTL a config gives records when it names none: one minute.
pub(crate) fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

/// What a config adds to the TTL for resolvers that keep answers longer, when it names
/// nothing: 5 s.
pub(crate) fn default_margin() -> Duration {
    Duration::from_secs(5)
}

/// The longest a pool name (a DNS label) may be.
const MAX_POOL_NAME: usize = 63;

/// Checks a TTL and returns it in seconds: whole seconds, and, unless `any`, 1 s to one day.
/// `or` completes the messages with the way to allow any TTL, if the provider has one
/// (`" (or allow_any_ttl)"`), else it is empty.
///
/// # Errors
/// [`Error::Invalid`] on `ttl`.
pub(crate) fn ttl_secs(ttl: Duration, any: bool, or: &str) -> Result<u64> {
    if ttl.subsec_nanos() != 0 {
        return Err(Error::invalid("ttl", format!("{ttl:?} is not whole seconds")));
    }
    let secs = ttl.as_secs();
    if !any && secs == 0 {
        return Err(Error::invalid(
            "ttl",
            format!(
                "a TTL of 0 makes every resolver ask the authoritative servers on every lookup; use at least 1 s{or}"
            ),
        ));
    }
    if !any && secs > MAX_TTL {
        return Err(Error::invalid(
            "ttl",
            format!("{secs} s is more than one day: every traffic step would wait that long{or}"),
        ));
    }
    Ok(secs)
}

/// Checks the pool names: at least one, each a DNS label (letters, digits and `-`, not first,
/// at most 63), none listed twice (case aside: their bookkeeping names would be the same).
///
/// # Errors
/// [`Error::Invalid`] on `pools` or `pools[i]`.
pub(crate) fn pools(names: &[String]) -> Result<Vec<PoolName>> {
    if names.is_empty() {
        return Err(Error::invalid("pools", "at least one pool is needed"));
    }
    let mut pools: Vec<PoolName> = Vec::new();
    for (i, pool) in names.iter().enumerate() {
        let valid = !pool.is_empty()
            && pool.len() <= MAX_POOL_NAME
            && pool.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !pool.starts_with('-');
        if !valid {
            return Err(Error::invalid(format!("pools[{i}]"), format!("{pool:?} is not a DNS label")));
        }
        if pools.iter().any(|p| p.as_str().eq_ignore_ascii_case(pool)) {
            return Err(Error::invalid(format!("pools[{i}]"), format!("pool {pool} is listed twice")));
        }
        pools.push(PoolName::from(pool.as_str()));
    }
    Ok(pools)
}

/// Checks that `pool` is one of `pools`, the pools of the `backend` router for `name`.
///
/// # Errors
/// [`Error::NotFound`] naming the pool and the ones the router knows.
pub(crate) fn known(pools: &[PoolName], pool: &PoolName, backend: &str, name: &str) -> Result<()> {
    if pools.contains(pool) {
        return Ok(());
    }
    let known: Vec<&str> = pools.iter().map(PoolName::as_str).collect();
    Err(Error::not_found(format!("pool \"{pool}\" (the {backend} router for {name} knows {})", known.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_seconds_from_one_second_to_a_day_unless_any() {
        assert_eq!(ttl_secs(Duration::from_secs(60), false, "").unwrap(), 60);
        for bad in [Duration::ZERO, Duration::from_secs(86_401), Duration::from_millis(1500)] {
            assert_eq!(ttl_secs(bad, false, "").unwrap_err().field(), Some("ttl"), "{bad:?}");
        }
        assert_eq!(ttl_secs(Duration::ZERO, true, "").unwrap(), 0);
        assert_eq!(ttl_secs(Duration::from_secs(172_800), true, "").unwrap(), 172_800);
        assert!(ttl_secs(Duration::from_millis(1500), true, "").is_err(), "whole seconds still");
        let err = ttl_secs(Duration::ZERO, false, " (or allow_any_ttl)").unwrap_err();
        assert!(err.to_string().contains("or allow_any_ttl"), "{err}");
    }

    #[test]
    fn pools_are_distinct_dns_labels() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(pools(&names(&["blue", "green-2"])).unwrap(), [PoolName::from("blue"), "green-2".into()]);
        assert_eq!(pools(&[]).unwrap_err().field(), Some("pools"));
        for (bad, field) in [
            (&["blue", "Bad Pool"][..], "pools[1]"),
            (&["-x"], "pools[0]"),
            (&["blue", "Blue"], "pools[1]"),
            (&[""], "pools[0]"),
        ] {
            assert_eq!(pools(&names(bad)).unwrap_err().field(), Some(field), "{bad:?}");
        }
        assert!(pools(&names(&[&"x".repeat(64)])).is_err());
        let known_pools = pools(&names(&["blue", "green"])).unwrap();
        assert!(known(&known_pools, &"blue".into(), "route53", "www.").is_ok());
        let err = known(&known_pools, &"purple".into(), "route53", "www.").unwrap_err();
        assert!(err.to_string().contains("the route53 router for www. knows blue, green"), "{err}");
    }
}
