//! The lease rules every [`StateStore`](super::StateStore) applies to a service's lock, kept in
//! one place so that the memory, file and DynamoDB stores cannot drift apart. A store keeps the
//! last lease it granted and whether that lease is still held (not released); these functions
//! say what a request makes of that state.

use std::time::Duration;

use super::{Lease, UnixMillis};
use crate::error::{Error, Result};

/// The lease an acquire by `owner` at `now` gets, given the last lease granted and whether it
/// is still held.
///
/// A live lease of another owner refuses, naming the owner and its expiry. Otherwise — free,
/// expired, released, or held by the same owner name (a takeover) — the new lease's fence is
/// one higher than the last, so no two holders ever share a fence and the older one is stale.
///
/// # Errors
/// [`Error::Conflict`] when another owner holds a live lease.
pub fn grant(
    last: Option<&Lease>,
    held: bool,
    service: &str,
    owner: &str,
    ttl: Duration,
    now: UnixMillis,
) -> Result<Lease> {
    let fence = match last {
        Some(lease) if held && lease.expires_at > now && lease.owner != owner => {
            return Err(Error::conflict(format!(
                "service {service} is locked by {} until {} (Unix ms; {} ms from now)",
                lease.owner,
                lease.expires_at,
                lease.expires_at - now
            )));
        }
        Some(lease) => lease.fence + 1,
        None => 1,
    };
    Ok(Lease { service: service.to_owned(), owner: owner.to_owned(), fence, expires_at: now + millis(ttl) })
}

/// Whether `lease` is still the current one: the last granted, same owner and fence, not
/// released. A fenced write or renewal goes ahead only then.
///
/// # Errors
/// [`Error::Conflict`] naming the lease that superseded it, or saying the lock is free.
pub fn check(last: Option<&Lease>, held: bool, lease: &Lease) -> Result<()> {
    match last {
        Some(current) if held && current.fence == lease.fence && current.owner == lease.owner => Ok(()),
        Some(current) => Err(Error::conflict(format!(
            "stale lease on service {}: fence {} of {} is older than fence {} of {}{}",
            lease.service,
            lease.fence,
            lease.owner,
            current.fence,
            current.owner,
            if held { "" } else { " (released)" }
        ))),
        None => Err(Error::conflict(format!("service {} is not locked", lease.service))),
    }
}

/// `lease` extended to `ttl` from `now`.
pub fn renewed(lease: &Lease, ttl: Duration, now: UnixMillis) -> Lease {
    Lease { expires_at: now + millis(ttl), ..lease.clone() }
}

/// The holder of the lock at `now`: the last lease, if still held and not expired.
pub fn holder(last: Option<&Lease>, held: bool, now: UnixMillis) -> Option<Lease> {
    last.filter(|l| held && l.expires_at > now).cloned()
}

/// A duration in whole milliseconds (saturating).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
