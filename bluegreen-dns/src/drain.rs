//! How a DNS router drains, whatever its provider. DNS cannot see requests: a drain withdraws
//! the targets' addresses from the served records and then waits until resolvers may no longer
//! hand them out, which is one TTL + a resolver margin after the change took effect.
//!
//! 1. [`disable`]: the targets' members become disabled. Members drained before (a step re-run
//!    after a crash, another process) keep their record and the time of their drain.
//! 2. The provider writes the change and, with [`stamp`], records the time (Unix seconds,
//!    rounded up, see [`crate::bookkeeping`]) with each member whose address the change
//!    withdrew. A member of which nothing was served gets no time: it has nothing to wait for.
//! 3. [`Drain::finish`] waits for the later of: the provider's wait for what this change
//!    withdrew, and the end of every target's recorded drain ([`ends`]), so that members drained
//!    before wait only what is left of theirs. The whole drain is bounded by its timeout;
//!    [`DrainReport::timed_out`] says the wait was cut short.

use std::net::IpAddr;
use std::time::Duration;

use bluegreen_core::state::Clock;
use bluegreen_core::{DrainReport, Error, MemberState, PoolName, Result, TargetId};
use tokio::time::Instant;

use crate::bookkeeping::{unix_now, MemberRecord};

/// Marks `targets` disabled among `members` (the members of `pool`); members already disabled
/// keep their record and the time of their drain. Returns the ids newly disabled.
///
/// # Errors
/// [`Error::NotFound`] for a target that is no member of the pool.
pub(crate) fn disable(members: &mut [MemberRecord], pool: &PoolName, targets: &[TargetId]) -> Result<Vec<TargetId>> {
    let mut newly = Vec::new();
    for id in targets {
        let m = members
            .iter_mut()
            .find(|m| m.id == *id)
            .ok_or_else(|| Error::not_found(format!("target {id} in pool {pool}")))?;
        if m.state == MemberState::Serving {
            m.state = MemberState::Disabled;
            newly.push(m.id.clone());
        }
    }
    Ok(newly)
}

/// Records `at` (Unix seconds) with each member of `newly` whose address `withdrawn` says the
/// drain's change takes out of the served records; the others get no time. Returns whether any
/// member got one.
pub(crate) fn stamp(
    members: &mut [MemberRecord],
    newly: &[TargetId],
    at: u64,
    withdrawn: impl Fn(IpAddr) -> bool,
) -> bool {
    let mut any = false;
    for m in members.iter_mut().filter(|m| newly.contains(&m.id)) {
        let gone = withdrawn(m.ip);
        m.disabled_at = gone.then_some(at);
        any |= gone;
    }
    any
}

/// When the drain of `targets` ends (Unix time) when a drain lasts `wait` (TTL + margin): the
/// latest of the times recorded with those members, plus `wait`. `None` when none of them has
/// a time.
pub(crate) fn ends(members: &[MemberRecord], targets: &[TargetId], wait: Duration) -> Option<Duration> {
    members.iter().filter(|m| targets.contains(&m.id)).filter_map(|m| m.draining_until(wait)).max()
}

/// One drain: when it started and how long it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drain {
    /// When the drain began (tokio time).
    pub(crate) started: Instant,
    timeout: Duration,
}

impl Drain {
    /// A drain starting now, bounded by `timeout`.
    pub(crate) fn start(timeout: Duration) -> Self {
        Self { started: Instant::now(), timeout }
    }

    /// Waits until the drain is over: until `withdrawn` (the provider's wait for what the
    /// drain's change withdrew, in tokio time) and until `recorded` (the end of the targets'
    /// recorded drains, Unix time as [`ends`] gives it, read against `clock`), whichever is
    /// later, but no longer than the timeout allows. A recorded end already past waits nothing.
    pub(crate) async fn finish(
        self,
        withdrawn: Option<Instant>,
        recorded: Option<Duration>,
        clock: &Clock,
    ) -> DrainReport {
        let now = unix_now(clock);
        let recorded = recorded.filter(|end| *end > now).map(|end| Instant::now() + (end - now));
        let mut timed_out = false;
        if let Some(until) = withdrawn.into_iter().chain(recorded).max() {
            let deadline = self.started + self.timeout;
            timed_out = until > deadline;
            tokio::time::sleep_until(until.min(deadline)).await;
        }
        DrainReport { in_flight_at_start: None, in_flight_at_end: None, timed_out, elapsed: self.started.elapsed() }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    use super::*;

    const AT: u64 = 1_700_000_000;
    const WAIT: Duration = Duration::from_secs(65);

    fn member(id: &str, ip: &str) -> MemberRecord {
        MemberRecord::serving(id.into(), format!("{ip}:80"), ip.parse().unwrap())
    }

    /// A wall clock standing at Unix time `secs`.
    fn clock_at(secs: u64) -> Clock {
        Arc::new(move || UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn newly_drained_members_get_the_time_only_when_their_address_was_withdrawn() {
        let mut members = vec![member("a", "10.0.0.1"), member("b", "10.0.0.2"), member("c", "10.0.0.3")];
        members[2].state = MemberState::Disabled;
        members[2].disabled_at = Some(AT - 10);
        let pool = PoolName::from("blue");
        let targets: Vec<TargetId> = vec!["a".into(), "b".into(), "c".into()];
        let newly = disable(&mut members, &pool, &targets).unwrap();
        assert_eq!(newly, ["a".into(), "b".into()] as [TargetId; 2], "c was drained before");
        let served: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(stamp(&mut members, &newly, AT, |ip| ip == served));
        let times: Vec<Option<u64>> = members.iter().map(|m| m.disabled_at).collect();
        assert_eq!(times, [Some(AT), None, Some(AT - 10)], "b was not served; c keeps its time");
        assert_eq!(ends(&members, &targets, WAIT), Some(Duration::from_secs(AT) + WAIT));
        assert_eq!(ends(&members, &["c".into()], WAIT), Some(Duration::from_secs(AT - 10) + WAIT));
        assert_eq!(ends(&members, &["b".into()], WAIT), None);
        let err = disable(&mut members, &pool, &["nobody".into()]).unwrap_err();
        assert!(matches!(&err, Error::NotFound { what } if what.contains("nobody in pool blue")), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_waits_for_the_later_end_bounded_by_its_timeout() {
        let drain = Drain::start(Duration::from_secs(100));
        let soon = Some(drain.started + Duration::from_secs(5));
        // The recorded end is 30 s ahead of the wall clock: it is the later one.
        let report = drain.finish(soon, Some(Duration::from_secs(AT + 30)), &clock_at(AT)).await;
        assert_eq!((report.elapsed, report.timed_out), (Duration::from_secs(30), false));

        // A recorded end already past waits nothing; the provider's wait still counts.
        let drain = Drain::start(Duration::from_secs(100));
        let soon = Some(drain.started + Duration::from_secs(5));
        let report = drain.finish(soon, Some(Duration::from_secs(AT - 1)), &clock_at(AT)).await;
        assert_eq!((report.elapsed, report.timed_out), (Duration::from_secs(5), false));

        // Nothing to wait for.
        let report = Drain::start(Duration::ZERO).finish(None, None, &clock_at(AT)).await;
        assert_eq!((report.elapsed, report.timed_out), (Duration::ZERO, false));

        // A timeout shorter than the wait cuts it and says so.
        let drain = Drain::start(Duration::from_secs(10));
        let report = drain.finish(None, Some(Duration::from_secs(AT + 30)), &clock_at(AT)).await;
        assert_eq!((report.elapsed, report.timed_out), (Duration::from_secs(10), true));
    }
}
