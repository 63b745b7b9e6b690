//! The [`Router`] trait: what moves traffic.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{Member, PoolName, Split, Target, TargetId};

/// What a router can do, so that strategies and the conformance suite ask only for what is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Can split traffic by weight between pools (canary, linear). Without it only 0/100 splits.
    pub weighted_split: bool,
    /// The smallest weight step the router can express, in percent (1 for ALB; coarser for
    /// DNS record multiplicity). A split that is not a multiple of it is refused.
    pub weight_granularity: u32,
    /// Can drain one target without touching its pool (HAProxy `drain`, ALB deregistration).
    pub per_target_drain: bool,
    /// Moves all traffic from one pool to another in one indivisible write.
    pub atomic_swap: bool,
    /// How long after a change is in sync before clients follow it (a DNS TTL plus resolver
    /// margin; zero for proxies and load balancers). The executor waits this long before a
    /// traffic step counts as in effect, and before draining ends.
    pub propagation_delay: Duration,
    /// Can report requests in flight per member, so drains end when work is done rather than
    /// when their timeout passes.
    pub observes_in_flight: bool,
    /// Health-checks its members itself and sends no traffic to one that fails (an ALB's
    /// target group health checks). New targets are then registered before the health gate
    /// (with no traffic: their pool is at weight 0, or the router holds them back until they
    /// pass), so that a probe reading the router's view (`AlbTargetHealth`) sees them.
    #[serde(default)]
    pub checks_members: bool,
    /// Can report members it serves that the configuration describes but bluegreen does not
    /// manage yet ([`Router::unmanaged`]): servers of an operator's HAProxy config named
    /// `web-01`, A records with no bookkeeping. The executor then asks, and a deploy takes
    /// them over only when told to ([`ExecutorBuilder::adopt`](crate::ExecutorBuilder::adopt)).
    #[serde(default)]
    pub adopts: bool,
    /// A pool's weight is its share of the targets served (DNS record multiplicity: one record
    /// per address), so a split needs, in each pool with traffic, as many distinct targets as
    /// its weight in units of the split's common divisor (75/25 needs 3 and 1; 50/50 needs 1
    /// and 1). A plan whose traffic steps the pools' targets cannot express is refused, saying
    /// what each step would need.
    #[serde(default)]
    pub weight_by_target_count: bool,
}

/// A member a router serves that the configuration describes but bluegreen does not manage
/// yet; taking it over ([`Router::adopt`]) changes nothing it serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Adoption {
    /// The pool it joins.
    pub pool: PoolName,
    /// The target it stands for.
    pub target: TargetId,
    /// What it is on the router (`server web/web-01`, `A 10.0.1.7`).
    pub what: String,
}

impl Capabilities {
    /// A load balancer or proxy: weighted, per-target drain, atomic swap, no propagation delay.
    pub fn load_balancer() -> Self {
        Self {
            weighted_split: true,
            weight_granularity: 1,
            per_target_drain: true,
            atomic_swap: true,
            propagation_delay: Duration::ZERO,
            observes_in_flight: true,
            checks_members: false,
            adopts: false,
            weight_by_target_count: false,
        }
    }

    /// Sets [`weighted_split`](Self::weighted_split).
    #[must_use]
    pub fn with_weighted_split(mut self, yes: bool) -> Self {
        self.weighted_split = yes;
        self
    }

    /// Sets [`weight_granularity`](Self::weight_granularity).
    #[must_use]
    pub fn with_weight_granularity(mut self, percent: u32) -> Self {
        self.weight_granularity = percent.max(1);
        self
    }

    /// Sets [`per_target_drain`](Self::per_target_drain).
    #[must_use]
    pub fn with_per_target_drain(mut self, yes: bool) -> Self {
        self.per_target_drain = yes;
        self
    }

    /// Sets [`atomic_swap`](Self::atomic_swap).
    #[must_use]
    pub fn with_atomic_swap(mut self, yes: bool) -> Self {
        self.atomic_swap = yes;
        self
    }

    /// Sets [`propagation_delay`](Self::propagation_delay).
    #[must_use]
    pub fn with_propagation_delay(mut self, delay: Duration) -> Self {
        self.propagation_delay = delay;
        self
    }

    /// Sets [`checks_members`](Self::checks_members).
    #[must_use]
    pub fn with_checks_members(mut self, yes: bool) -> Self {
        self.checks_members = yes;
        self
    }

    /// Sets [`adopts`](Self::adopts).
    #[must_use]
    pub fn with_adopts(mut self, yes: bool) -> Self {
        self.adopts = yes;
        self
    }

    /// Sets [`observes_in_flight`](Self::observes_in_flight).
    #[must_use]
    pub fn with_observes_in_flight(mut self, yes: bool) -> Self {
        self.observes_in_flight = yes;
        self
    }

    /// Sets [`weight_by_target_count`](Self::weight_by_target_count).
    #[must_use]
    pub fn with_weight_by_target_count(mut self, yes: bool) -> Self {
        self.weight_by_target_count = yes;
        self
    }
}

/// What a finished drain observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Requests or connections in flight on the drained targets when draining began, if counted.
    pub in_flight_at_start: Option<u64>,
    /// Still in flight when the drain ended: 0 unless the timeout passed.
    pub in_flight_at_end: Option<u64>,
    /// Whether the drain ended because its timeout passed rather than because work was done.
    pub timed_out: bool,
    /// How long the drain took.
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
}

/// Moves traffic between pools and in and out of targets.
///
/// # Guarantees (what an implementation must provide)
/// - Every method is idempotent: asking for a state that already holds succeeds and changes
///   nothing, so the executor can re-run an interrupted step.
/// - [`split`](Router::split) and [`members`](Router::members) report what the router *serves*,
///   read from the router, never a cached copy of the last write.
/// - [`drain`](Router::drain) stops new requests to the targets at once and returns only when
///   their in-flight work is done or `timeout` has passed, saying which.
/// - A successful write returns only after the router accepted it; the executor still reads it
///   back before a step succeeds.
///
/// # Assumptions
/// - One deployment at a time drives a given pool (the state store's lock enforces this).
/// - Targets passed to [`add_targets`](Router::add_targets) are reachable at their address.
///
/// # Errors
/// - [`Error::NotFound`](crate::Error::NotFound) for an unknown pool or a target that is not a
///   member, before anything changes.
/// - [`Error::Invalid`](crate::Error::Invalid) for a split the router cannot express
///   (see [`Capabilities`]), before anything changes.
/// - [`Error::Backend`](crate::Error::Backend) with `retryable` set for throttling and
///   transient failures, unset for permanent ones (access denied).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Router: Send + Sync + Debug {
    /// A short name for events and errors (`haproxy`, `alb`, `sim`).
    fn name(&self) -> &str;

    /// What this router can do.
    fn capabilities(&self) -> Capabilities;

    /// The pools this router knows.
    async fn pools(&self) -> Result<Vec<PoolName>>;

    /// The split the router serves now.
    async fn split(&self) -> Result<Split>;

    /// Sets the split. Pools absent from `split` get weight 0.
    async fn set_split(&self, split: &Split) -> Result<()>;

    /// Ensures `targets` are members of `pool` and serving (re-enables drained members).
    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()>;

    /// Stops new requests to `targets` and waits until their in-flight work is done or
    /// `timeout` passes.
    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport>;

    /// Removes `targets` from `pool` (members that are absent are ignored).
    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()>;

    /// The members of `pool` and how the router treats each.
    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>>;

    /// The members of `pool` among `ids` (ids that are not members are left out), read like
    /// [`members`](Router::members). The executor reads a batch's members with it, so a batch
    /// costs what the batch is. The default reads the whole pool and keeps the ones asked
    /// for; a router that can look members up by id cheaply should say so here.
    async fn members_of(&self, pool: &PoolName, ids: &[TargetId]) -> Result<Vec<Member>> {
        let wanted: std::collections::BTreeSet<&TargetId> = ids.iter().collect();
        Ok(self.members(pool).await?.into_iter().filter(|m| wanted.contains(&m.id)).collect())
    }

    /// What the router serves that its configuration describes but bluegreen does not manage
    /// yet (asked only when [`Capabilities::adopts`]; none by default). Such members are listed
    /// by [`members`](Router::members) like any other.
    async fn unmanaged(&self) -> Result<Vec<Adoption>> {
        Ok(Vec::new())
    }

    /// Takes `adoptions` over: writes whatever the router keeps to know its members (DNS
    /// bookkeeping records), changing nothing it serves. Nothing by default.
    async fn adopt(&self, adoptions: &[Adoption]) -> Result<()> {
        let _ = adoptions;
        Ok(())
    }
}
