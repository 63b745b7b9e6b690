//! Request counters per pool and per member, and the public statistics read from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bluegreen_core::{MemberState, PoolName, Split, TargetId};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How one proxied request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The target answered and the whole answer was relayed. `server_error`: a 5xx status.
    Served { server_error: bool },
    /// The proxy could not get an answer: no serving member, a connection error, or an
    /// upstream error while the answer was relayed.
    Failed,
    /// The client went away before the answer was complete.
    Cancelled,
}

/// Live counters of one pool or one member.
#[derive(Debug, Default)]
pub(super) struct Counters {
    in_flight: AtomicU64,
    served: AtomicU64,
    failed: AtomicU64,
    server_errors: AtomicU64,
    cancelled: AtomicU64,
    retried: AtomicU64,
    /// Woken whenever `in_flight` drops to 0, so a drain observes the moment work is done.
    idle: Notify,
}

impl Counters {
    /// Counts a request as in flight until the returned ticket is finished or dropped.
    pub(super) fn begin(self: &Arc<Self>) -> Ticket {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ticket { counters: Some(self.clone()) }
    }

    /// Counts a request the proxy could not route to any member (it never was in flight).
    pub(super) fn unroutable(&self) {
        self.failed.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a request sent again to another member after a connection failure.
    pub(super) fn retried(&self) {
        self.retried.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight or `deadline` passes; whether nothing is in flight.
    pub(super) async fn wait_idle_until(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking, so a decrement between the check and the wait is seen.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    pub(super) fn counts(&self) -> Counts {
        Counts {
            in_flight: self.in_flight.load(Ordering::SeqCst),
            served: self.served.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            server_errors: self.server_errors.load(Ordering::SeqCst),
            cancelled: self.cancelled.load(Ordering::SeqCst),
            retried: self.retried.load(Ordering::SeqCst),
        }
    }

    fn finish(&self, outcome: Outcome) {
        match outcome {
            Outcome::Served { server_error } => {
                self.served.fetch_add(1, Ordering::SeqCst);
                if server_error {
                    self.server_errors.fetch_add(1, Ordering::SeqCst);
                }
            }
            Outcome::Failed => {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
            Outcome::Cancelled => {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// One request in flight on one set of counters. Finishing it (or dropping it, which counts
/// as [`Outcome::Cancelled`]) takes it out of flight exactly once.
#[derive(Debug)]
pub(super) struct Ticket {
    counters: Option<Arc<Counters>>,
}

impl Ticket {
    /// Counts a retry of this ticket's request on its counters.
    pub(super) fn retried(&self) {
        if let Some(counters) = &self.counters {
            counters.retried();
        }
    }

    pub(super) fn finish(mut self, outcome: Outcome) {
        if let Some(counters) = self.counters.take() {
            counters.finish(outcome);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(counters) = self.counters.take() {
            counters.finish(Outcome::Cancelled);
        }
    }
}

/// Request counts of a pool, a member or the whole proxy.
///
/// Every request the proxy accepted ends as exactly one of `served`, `failed` or `cancelled`
/// (until then it is `in_flight`); `server_errors` and `retried` are subsets noted on the side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Requests sent to a target whose answer is not complete yet.
    pub in_flight: u64,
    /// Requests a target answered (any status), with the whole answer relayed to the client.
    pub served: u64,
    /// Requests that got no answer from a target: no serving member to route to (answered
    /// 503), a connection error (answered 502), or an error while the answer was relayed.
    pub failed: u64,
    /// Of `served`, answers with a 5xx status from the target itself.
    pub server_errors: u64,
    /// Requests whose client went away before the answer was complete.
    pub cancelled: u64,
    /// Requests sent to a second member after the first refused the connection (only with
    /// [`retry_connect_failures`](crate::LocalProxyRouterBuilder::retry_connect_failures)).
    /// Counted on the pool; the refusing member counts the attempt as `failed`.
    pub retried: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.in_flight += other.in_flight;
        self.served += other.served;
        self.failed += other.failed;
        self.server_errors += other.server_errors;
        self.cancelled += other.cancelled;
        self.retried += other.retried;
    }
}

/// A snapshot of the proxy's counters, read with
/// [`LocalProxyRouter::stats`](crate::LocalProxyRouter::stats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProxyStats {
    /// The split served when the snapshot was taken.
    pub split: Split,
    /// The sums over all pools.
    pub total: Counts,
    /// Per pool, by name.
    pub pools: BTreeMap<PoolName, PoolStats>,
}

/// One pool's counters and members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// The pool's weight in the split, in percent.
    pub weight: u32,
    /// Every request routed to this pool since the proxy started, including requests to
    /// members removed since and requests that found no serving member.
    pub counts: Counts,
    /// The current members. A member's counters start when it is added and are forgotten
    /// when it is removed; draining and re-enabling keeps them.
    pub members: BTreeMap<TargetId, MemberStats>,
}

/// One member's state and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemberStats {
    /// Where the proxy sends its requests.
    pub address: String,
    /// How the proxy treats it.
    pub state: MemberState,
    /// Its requests.
    pub counts: Counts,
}

impl ProxyStats {
    pub(super) fn new(split: Split, pools: BTreeMap<PoolName, PoolStats>) -> Self {
        let mut total = Counts::default();
        for pool in pools.values() {
            total.add(&pool.counts);
        }
        Self { split, total, pools }
    }

    /// The counts of member `target` in `pool`, if it is a member.
    pub fn member(&self, pool: &PoolName, target: &TargetId) -> Option<&MemberStats> {
        self.pools.get(pool)?.members.get(target)
    }
}

impl PoolStats {
    pub(super) fn new(weight: u32, counts: Counts, members: BTreeMap<TargetId, MemberStats>) -> Self {
        Self { weight, counts, members }
    }
}

impl MemberStats {
    pub(super) fn new(address: String, state: MemberState, counts: Counts) -> Self {
        Self { address, state, counts }
    }
}
