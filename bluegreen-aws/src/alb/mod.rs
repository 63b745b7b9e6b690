//! The Application Load Balancer router: pools are target groups, the split is a weighted
//! `forward` action.
//!
//! One idea a file, imports pointing one way (leaves first):
//!
//! - `target`: how a target is named (`ip:port`, `i-…:port`) and what its ALB state means;
//! - `place`: where the forward action lives (a listener's default actions or a rule's);
//! - `health`: [`AlbTargetHealth`], the ALB's health checks as a probe;
//! - `builder`: building a router, the ARN checks made with no call;
//! - `tags`: the drained marks, tags on the target group;
//! - `read`: reading the forward action's split and a pool's registered targets;
//! - `check`: the one-time check of the backend before any write;
//! - `split`: writing the split (and keeping the test listener on the idle pool);
//! - `members`: adding, removing and listing a pool's targets;
//! - `drain`: deregistering targets and watching them drain.
//!
//! This file holds the [`AlbRouter`] type and its [`Router`] impl, which hands every call to
//! those modules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_core::{Capabilities, DrainReport, Error, Member, PoolName, Result, Router, Split, Target, TargetId};
use tokio::sync::OnceCell;

mod builder;
mod check;
mod config;
mod drain;
mod health;
mod members;
mod place;
mod read;
mod split;
mod tags;
mod target;

pub use config::AlbRouterConfig;
pub use health::AlbTargetHealth;
use place::Place;

/// Moves traffic on an AWS Application Load Balancer.
///
/// - **Pools** are target groups of target type `ip` or `instance`, named by the caller
///   (`blue` → `arn:aws:elasticloadbalancing:…:targetgroup/blue/…`); at most five.
/// - **The split** is the weighted `forward` action of a listener's default actions, or of one
///   listener rule ([`on_rule`](Self::on_rule): a path or host rule, or a rule of a separate
///   test listener); weights are percents. Other actions on the listener or rule
///   (authentication, their order) and the forward action's stickiness are kept. Every write is
///   read back. Before the first target is added, every pool's target group joins the forward
///   action at weight 0: the ALB health-checks only target groups in use.
/// - **Targets** are named `ip:port` in an `ip` target group (the id must equal the address:
///   the ALB knows a target by IP and port only, so that is what [`members`](Router::members)
///   reports) and `i-…:port` in an `instance` target group.
/// - **Drain** deregisters the targets and observes `DescribeTargetHealth` until they are no
///   longer `draining`, bounded by the caller's timeout and by the target group's
///   deregistration delay (plus 10 s for the ALB's reporting lag): no blind sleep. The drained
///   targets stay members, as [`MemberState::Disabled`](bluegreen_core::MemberState::Disabled),
///   through a tag on the target group (`bluegreen:drained:<ip>:<port>`) until they are added
///   again or removed: a target group holds at most 50 tags, so at most about 45 targets per
///   pool can be drained and not yet removed at once.
/// - **Health**: [`health_probe`](Self::health_probe) is the ALB's own view as a probe.
/// - **Test listener** (optional, [`test_listener`](Self::test_listener)): kept forwarding to
///   the idle pool, for pre-traffic checks on another port.
/// - **The backend is checked before anything else**: the first call of any [`Router`] method
///   (the executor's first read, before any write) checks that the listener (and the test
///   listener) exists, that the rule exists and is one of the listener's rules, that every
///   target group exists (and can be weighted by one ALB: `HTTP` / `HTTPS`, one VPC), and that
///   the forward action gives traffic to no target group outside the pools. One
///   `DescribeListeners`, one `DescribeRules` of the listener (with a rule) and one
///   `DescribeTargetGroups`; the result is kept for the router and its clones, so it runs once.
///   A missing listener, rule or target group is [`Error::NotFound`], a rule of another
///   listener or traffic on a group no pool names is [`Error::Drift`]; their messages carry
///   the ARNs as given. A rule ARN naming another listener than `listener_arn`, or a test
///   listener that is the listener itself or on another load balancer, is refused when the
///   router is built, with no call.
///
/// IAM actions: `elasticloadbalancing:DescribeListeners`, `DescribeRules` (with a rule),
/// `ModifyListener` (or `ModifyRule`), `DescribeTargetGroups`,
/// `DescribeTargetGroupAttributes`, `DescribeTargetHealth`, `RegisterTargets`,
/// `DeregisterTargets`, `DescribeTags`, `AddTags`, `RemoveTags`.
#[derive(Debug, Clone)]
pub struct AlbRouter {
    client: Client,
    /// `listener_arn`: the listener whose default actions, or one of whose rules, hold the split.
    listener: String,
    /// Where the production split lives.
    place: Place,
    /// A test listener, kept forwarding to the idle pool.
    test: Option<Place>,
    pools: BTreeMap<PoolName, String>,
    drain_poll: Duration,
    /// Set once [`check_backend`](Self::check_backend) passed; shared by clones.
    checked: Arc<OnceCell<()>>,
}

impl AlbRouter {
    /// A [`HealthProbe`](bluegreen_core::HealthProbe) asking this ALB whether a target of one
    /// of the router's target groups passes its health checks.
    pub fn health_probe(&self) -> AlbTargetHealth {
        AlbTargetHealth::from_client(self.client.clone(), self.pools.values().cloned())
    }

    /// How errors name where the split lives (`listener arn:…`, `rule arn:…`).
    fn where_(&self) -> String {
        self.place.to_string()
    }

    /// `pool`'s target group ARN ([`Error::NotFound`] for a pool the router does not know).
    fn target_group(&self, pool: &PoolName) -> Result<&str> {
        self.pools.get(pool).map(String::as_str).ok_or_else(|| {
            Error::not_found(format!(
                "pool {pool:?} (the router knows {})",
                self.pools.keys().map(PoolName::as_str).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// `pool`'s target group ARN, and how errors name it (`target group arn:… (pool blue)`).
    fn group(&self, pool: &PoolName) -> Result<(&str, String)> {
        let arn = self.target_group(pool)?;
        Ok((arn, format!("target group {arn} (pool {pool})")))
    }
}

#[async_trait]
impl Router for AlbRouter {
    fn name(&self) -> &str {
        "alb"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::load_balancer().with_observes_in_flight(false).with_checks_members(true)
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.checked().await?;
        Ok(self.pools.keys().cloned().collect())
    }

    async fn split(&self) -> Result<Split> {
        self.checked().await?;
        self.split_of(&self.actions().await?)
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        self.write_split(split).await
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.add_members(pool, targets).await
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.drain_members(pool, targets, timeout).await
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.remove_members(pool, targets).await
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.list_members(pool).await
    }
}
