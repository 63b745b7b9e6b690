//! The Route53 router's drain: the shared DNS drain ([`crate::drain`]) with Route53's change
//! batch, whose time is when it was seen `INSYNC`.

use std::net::IpAddr;
use std::time::Duration;

use bluegreen_core::{DrainReport, MemberState, PoolName, Result, TargetId};

use super::records::{desired, Answer, Weights};
use super::Inner;
use crate::bookkeeping::{unix_now, unix_secs_up, MemberRecord};
use crate::drain::{self, Drain};

/// Whether `member` is one of `targets`, disabled by a drain recorded at `at`.
fn stamped(member: &MemberRecord, targets: &[TargetId], at: u64) -> bool {
    targets.contains(&member.id) && member.state == MemberState::Disabled && member.disabled_at == Some(at)
}

impl Inner {
    /// Drains `targets` of `pool` (see [`Route53Router`](super::Route53Router)): one batch
    /// removes their values and records them disabled with the time it is sent; when Route53
    /// answers `PENDING`, a second (TXT only) batch records when it was seen `INSYNC`. Then the
    /// drain waits TTL + margin after `INSYNC` (longer when the sets had a longer TTL), and what
    /// is left of the recorded drains of targets drained before.
    pub(super) async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        let drain = Drain::start(timeout);
        let mut drained_at = 0;
        let (state, want, synced) = self
            .update(|state| {
                let old = state.members();
                let mut members = old.clone();
                let newly = drain::disable(members.entry(pool.clone()).or_default(), pool, targets)?;
                let mut desired = desired(&self.pools, &state.answers(), &old, &members, Weights::Current, self.ttl)?;
                // The drain's time goes with the members whose value this batch withdraws (an
                // estimate, corrected once the batch is `INSYNC`); the others have nothing to
                // wait for.
                drained_at = unix_secs_up(unix_now(&self.clock));
                let has = |a: Option<&Answer>, ip: IpAddr| {
                    a.is_some_and(|a| a.values.iter().any(|v| v.parse::<IpAddr>().ok() == Some(ip)))
                };
                let answers = state.answers();
                let before = answers.get(pool);
                if let Some(want) = desired.get_mut(pool) {
                    let after = want.answer.clone();
                    drain::stamp(&mut want.members, &newly, drained_at, |ip| {
                        has(before, ip) && !has(after.as_ref(), ip)
                    });
                }
                Ok(desired)
            })
            .await?;
        // DNS draining is TTL-based: a resolver may hand out a removed value until the answer
        // it cached before the change was in sync expires.
        let withdrawn = state.answers().iter().any(|(pool, before)| {
            let after = want.get(pool).and_then(|d| d.answer.as_ref());
            before.values.iter().any(|v| !after.is_some_and(|a| a.values.contains(v)))
        });
        // The pool's members as written: those drained before with their time, those this batch
        // withdrew with `drained_at`.
        let mut members = want.get(pool).map(|w| w.members.clone()).unwrap_or_default();
        let mut until = None;
        if let (true, Some(synced)) = (withdrawn, synced) {
            until = Some(synced.at + self.wait_after(&state, "drain"));
            if !synced.at_once && members.iter().any(|m| stamped(m, targets, drained_at)) {
                // The batch was PENDING for a while: record when it was seen INSYNC, so that a
                // resumed drain (or another process) waits from then.
                if let Some(at) = self.record_insync(pool, targets, drained_at).await {
                    for m in members.iter_mut().filter(|m| stamped(m, targets, drained_at)) {
                        m.disabled_at = Some(at);
                    }
                }
            }
        }
        // The recorded times are rounded up: the drain waits for them too, so that members()
        // reports the targets disabled once it returns. Targets drained before (a step re-run
        // after a crash, another process) wait the rest of their drain.
        let recorded = drain::ends(&members, targets, self.delay());
        Ok(drain.finish(until, recorded, &self.clock).await)
    }

    /// Rewrites the drain time `at` of `targets` in `pool` with now, after the drain's batch was
    /// seen `INSYNC`. Returns the time recorded, or `None` (with a warning) when it could not be
    /// written: the estimate stays.
    async fn record_insync(&self, pool: &PoolName, targets: &[TargetId], at: u64) -> Option<u64> {
        let mut now = at;
        let confirmed = self
            .update(|state| {
                let old = state.members();
                let mut members = old.clone();
                now = unix_secs_up(unix_now(&self.clock));
                for m in members.entry(pool.clone()).or_default().iter_mut().filter(|m| stamped(m, targets, at)) {
                    m.disabled_at = Some(now);
                }
                desired(&self.pools, &state.answers(), &old, &members, Weights::Current, self.ttl)
            })
            .await;
        match confirmed {
            Ok(_) => Some(now),
            Err(err) => {
                tracing::warn!(
                    name = %self.name, pool = %pool, error = %err,
                    "could not record when the drain's change was INSYNC"
                );
                None
            }
        }
    }
}
