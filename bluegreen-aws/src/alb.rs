//! The Application Load Balancer router: pools are target groups, the split is a weighted
//! `forward` action.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, ProtocolEnum, Rule, Tag, TargetDescription, TargetGroup,
    TargetGroupTuple, TargetHealthStateEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_core::{
    Capabilities, DrainReport, Error, Member, MemberState, PoolName, Result, Router, Split, Target, TargetId,
};
use tokio::sync::OnceCell;

use crate::alb_health::AlbTargetHealth;
use crate::alb_place::Place;
use crate::error::AwsError;

/// The most target groups one ALB `forward` action can weight.
const MAX_POOLS: usize = 5;

/// How long past a target group's deregistration delay a drain still waits for the ALB to
/// report the targets gone.
const DRAIN_SLACK: Duration = Duration::from_secs(10);

/// Tags on a target group that mark a target as drained but still a member (the ALB itself
/// forgets a target once it is deregistered).
const DRAINED_TAG: &str = "bluegreen:drained:";

/// Rules asked for per `DescribeRules` page (the API's largest page; a listener holds 100 rules
/// unless its quota was raised).
const RULES_PAGE: i32 = 400;

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
///   targets stay members, as [`MemberState::Disabled`], through a tag on the target group
///   (`bluegreen:drained:<ip>:<port>`) until they are added again or removed: a target group
///   holds at most 50 tags, so at most about 45 targets per pool can be drained and not yet
///   removed at once.
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
    /// A router on the default actions of `listener_arn`, with `pools` mapping pool names to
    /// target group ARNs.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an ARN of the wrong kind, no pools, more than five, or one target
    /// group under two names. No AWS call is made: whether the listener and the target groups
    /// exist is checked by the first call of a [`Router`] method (see the type's docs).
    pub fn new<P: Into<PoolName>>(
        config: &SdkConfig,
        listener_arn: impl Into<String>,
        pools: impl IntoIterator<Item = (P, String)>,
    ) -> Result<Self> {
        Self::from_client(Client::new(config), listener_arn, pools)
    }

    /// Like [`new`](Self::new), through an existing client.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_client<P: Into<PoolName>>(
        client: Client,
        listener_arn: impl Into<String>,
        pools: impl IntoIterator<Item = (P, String)>,
    ) -> Result<Self> {
        let listener_arn = listener_arn.into();
        check_arn("listener_arn", &listener_arn, ":listener/")?;
        let pools: BTreeMap<PoolName, String> = pools.into_iter().map(|(p, arn)| (p.into(), arn)).collect();
        if pools.is_empty() || pools.len() > MAX_POOLS {
            return Err(Error::invalid(
                "pools",
                format!("an ALB forward action weights 1 to 5 target groups, not {}", pools.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (pool, arn) in &pools {
            check_arn(&format!("pools.{pool}"), arn, ":targetgroup/")?;
            if !seen.insert(arn) {
                return Err(Error::invalid(format!("pools.{pool}"), format!("target group {arn} is named twice")));
            }
        }
        Ok(Self {
            client,
            listener: listener_arn.clone(),
            place: Place::Listener(listener_arn),
            test: None,
            pools,
            drain_poll: Duration::from_secs(2),
            checked: Arc::default(),
        })
    }

    /// Weights the `forward` action of this rule of the listener instead of the listener's
    /// default actions (a path or host rule).
    ///
    /// # Errors
    /// [`Error::Invalid`] (`rule_arn`) if `rule_arn` is not a listener rule ARN, or if it names
    /// another listener than the router's `listener_arn` (a rule ARN is
    /// `…:listener-rule/app/LB/LB-ID/LISTENER-ID/RULE-ID`, its listener's
    /// `…:listener/app/LB/LB-ID/LISTENER-ID`). No AWS call is made; an ARN of another layout is
    /// looked for among the listener's rules by the first call (see the type's docs).
    pub fn on_rule(mut self, rule_arn: impl Into<String>) -> Result<Self> {
        let rule_arn = rule_arn.into();
        check_arn("rule_arn", &rule_arn, ":listener-rule/")?;
        if let Some(named) = listener_of_rule(&rule_arn) {
            if named != self.listener {
                return Err(Error::invalid(
                    "rule_arn",
                    format!(
                        "{rule_arn} names listener {named}, not listener_arn {}: a rule is weighted on its own \
                         listener (set listener_arn to that listener, or name a rule of this one)",
                        self.listener
                    ),
                ));
            }
        }
        self.place = Place::Rule(rule_arn);
        self.checked = Arc::default();
        Ok(self)
    }

    /// Keeps a **test listener** (a second port of the load balancer, as CodeDeploy's) forwarding
    /// to the idle pool: after every change the router makes, the test listener's forward action
    /// sends everything to the pool that has members and no production traffic (the first by
    /// name if several; left as it is if none). So a blue-green's new pool can be checked on the
    /// test port before any user reaches it — by a `before_traffic` hook's smoke tests, or by an
    /// analysis during the `test_for` phase — and after the switch the test port shows the old
    /// pool until it is drained.
    ///
    /// # Errors
    /// [`Error::Invalid`] (`test_listener_arn`) if `listener_arn` is not a listener ARN, is the
    /// router's own listener, or names another load balancer than the router's listener (a
    /// target group serves one load balancer). No AWS call is made.
    pub fn test_listener(mut self, listener_arn: impl Into<String>) -> Result<Self> {
        let listener_arn = listener_arn.into();
        check_arn("test_listener_arn", &listener_arn, ":listener/")?;
        if listener_arn == self.listener {
            return Err(Error::invalid(
                "test_listener_arn",
                format!(
                    "{listener_arn} is listener_arn itself: the test listener is a second listener of the load \
                     balancer (another port), kept forwarding to the idle pool"
                ),
            ));
        }
        if let (Some(theirs), Some(ours)) =
            (load_balancer_of_listener(&listener_arn), load_balancer_of_listener(&self.listener))
        {
            if theirs != ours {
                return Err(Error::invalid(
                    "test_listener_arn",
                    format!(
                        "{listener_arn} names load balancer {theirs}, not listener_arn's {ours}: a target group \
                         serves one load balancer, so the test listener must be one of {ours}'s"
                    ),
                ));
            }
        }
        self.test = Some(Place::Listener(listener_arn));
        self.checked = Arc::default();
        Ok(self)
    }

    /// How often a drain reads the targets' health (default 2 s; the ALB's deregistration delay
    /// is whole seconds).
    #[must_use]
    pub fn drain_poll_interval(mut self, interval: Duration) -> Self {
        self.drain_poll = interval.max(Duration::from_millis(10));
        self
    }

    /// A [`HealthProbe`](bluegreen_core::HealthProbe) asking this ALB whether a target of one
    /// of the router's target groups passes its health checks.
    pub fn health_probe(&self) -> AlbTargetHealth {
        AlbTargetHealth::from_client(self.client.clone(), self.pools.values().cloned())
    }

    /// The deregistration delay of `pool`'s target group (`deregistration_delay.timeout_seconds`,
    /// 300 s unless set), or `None` if the ALB does not say.
    pub async fn deregistration_delay(&self, pool: &PoolName) -> Result<Option<Duration>> {
        let (arn, resource) = self.group(pool)?;
        let out = self
            .client
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeTargetGroupAttributes", &resource, e))?;
        Ok(out
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value()?.parse::<u64>().ok())
            .map(Duration::from_secs))
    }

    fn where_(&self) -> String {
        self.place.to_string()
    }

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

    /// The actions the split lives in, as the ALB serves them.
    async fn actions(&self) -> Result<Vec<Action>> {
        self.place.actions(&self.client).await
    }

    /// The weights of the forward action in `actions`, by target group ARN.
    fn weights(&self, actions: &[Action]) -> Result<Vec<(String, u32)>> {
        let forward = actions
            .iter()
            .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .ok_or_else(|| Error::drift(format!("{} has no forward action to weight", self.where_())))?;
        let tuples = forward.forward_config().map(ForwardActionConfig::target_groups).unwrap_or_default();
        if tuples.is_empty() {
            let arn = forward.target_group_arn().unwrap_or_default();
            return Ok(vec![(arn.to_owned(), 1)]);
        }
        Ok(tuples
            .iter()
            .map(|t| {
                (
                    t.target_group_arn().unwrap_or_default().to_owned(),
                    u32::try_from(t.weight().unwrap_or(1)).unwrap_or(0),
                )
            })
            .collect())
    }

    /// Registered targets of `pool` (`ip:port` → state) and the ones marked drained.
    async fn observe(&self, pool: &PoolName) -> Result<(BTreeMap<String, TargetHealthStateEnum>, BTreeSet<String>)> {
        Ok((self.registered(pool).await?, self.drained(pool).await?))
    }

    /// Registered targets of `pool` (`ip:port` → state): one `DescribeTargetHealth`.
    async fn registered(&self, pool: &PoolName) -> Result<BTreeMap<String, TargetHealthStateEnum>> {
        let (arn, resource) = self.group(pool)?;
        let health = self
            .client
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeTargetHealth", &resource, e))?;
        let mut registered = BTreeMap::new();
        for description in health.target_health_descriptions.unwrap_or_default() {
            let Some(target) = description.target() else { continue };
            let id = target_name(target.id().unwrap_or_default(), target.port().unwrap_or_default());
            let state = description.target_health().and_then(|h| h.state()).cloned();
            registered.insert(id, state.unwrap_or(TargetHealthStateEnum::Initial));
        }
        Ok(registered)
    }

    /// The targets of `pool` marked drained (its target group's tags): one `DescribeTags`.
    async fn drained(&self, pool: &PoolName) -> Result<BTreeSet<String>> {
        let (arn, resource) = self.group(pool)?;
        let tags = self
            .client
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeTags", &resource, e))?;
        Ok(tags
            .tag_descriptions
            .unwrap_or_default()
            .iter()
            .flat_map(|d| d.tags().iter().filter_map(|t| t.key()?.strip_prefix(DRAINED_TAG).map(str::to_owned)))
            .collect())
    }

    /// Checks, once per router (its clones share the answer), that the backend is the one the
    /// router was given, before anything reads the split or writes: see
    /// [`check_backend`](Self::check_backend). A failed check is not kept: the next call asks again.
    async fn checked(&self) -> Result<()> {
        self.checked.get_or_try_init(|| self.check_backend()).await.copied()
    }

    /// The listener and the test listener exist, the rule is one of the listener's, every
    /// target group exists and one ALB can weight them together, and the forward action gives
    /// no traffic to a group outside the pools. Reads only: one `DescribeListeners`, one
    /// `DescribeRules` of the listener (with a rule; more only past 400 rules) and one
    /// `DescribeTargetGroups` (more only on the way to naming a missing group).
    async fn check_backend(&self) -> Result<()> {
        let listeners = self.listeners().await?;
        let actions = match &self.place {
            Place::Listener(arn) => listeners.get(arn).map(|l| l.default_actions().to_vec()).unwrap_or_default(),
            Place::Rule(arn) => self.rule_of_listener(arn).await?.actions.unwrap_or_default(),
        };
        self.check_target_groups().await?;
        self.check_forward(&actions)
    }

    /// The listener and the test listener by ARN, both found: one `DescribeListeners`.
    async fn listeners(&self) -> Result<BTreeMap<String, Listener>> {
        let mut wanted = vec![("listener_arn", self.listener.clone())];
        if let Some(Place::Listener(test) | Place::Rule(test)) = &self.test {
            wanted.push(("test_listener_arn", test.clone()));
        }
        // `None`: the API refused the whole call because a listener asked for does not exist.
        let describe = |arns: Vec<String>| async move {
            match self.client.describe_listeners().set_listener_arns(Some(arns.clone())).send().await {
                Ok(out) => Ok(Some(out.listeners.unwrap_or_default())),
                Err(e) => {
                    let resource = format!("listener {}", arns.join(", "));
                    match AwsError::from_sdk("elasticloadbalancing:DescribeListeners", &resource, e) {
                        err if err.code() == Some("ListenerNotFound") => Ok(None),
                        err => Err(Error::from(err)),
                    }
                }
            }
        };
        let by_arn =
            |listeners: Vec<Listener>| listeners.into_iter().filter_map(|l| Some((l.listener_arn.clone()?, l)));
        let mut found: BTreeMap<String, Listener> = BTreeMap::new();
        match describe(wanted.iter().map(|(_, arn)| arn.clone()).collect()).await? {
            Some(listeners) => found.extend(by_arn(listeners)),
            // One at a time, to name the missing one.
            None if wanted.len() > 1 => {
                for (_, arn) in &wanted {
                    found.extend(by_arn(describe(vec![arn.clone()]).await?.unwrap_or_default()));
                }
            }
            None => {}
        }
        match wanted.iter().find(|(_, arn)| !found.contains_key(arn)) {
            Some((field, arn)) => Err(Error::not_found(format!("listener {arn} ({field})"))),
            None => Ok(found),
        }
    }

    /// Rule `rule_arn` among the listener's rules (`DescribeRules` of the listener, by pages of
    /// 400); if it is not there, whether it is a rule of another listener ([`Error::Drift`]) or
    /// none at all ([`Error::NotFound`]).
    async fn rule_of_listener(&self, rule_arn: &str) -> Result<Rule> {
        let resource = format!("listener {}", self.listener);
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_rules()
                .listener_arn(&self.listener)
                .page_size(RULES_PAGE)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeRules", &resource, e))?;
            let next = out.next_marker.clone().filter(|m| !m.is_empty());
            if let Some(rule) = out.rules.unwrap_or_default().into_iter().find(|r| r.rule_arn() == Some(rule_arn)) {
                return Ok(rule);
            }
            if next.is_none() || next == marker {
                break;
            }
            marker = next;
        }
        let missing = || Error::not_found(format!("rule {rule_arn} (rule_arn)"));
        match self.client.describe_rules().rule_arns(rule_arn).send().await {
            Ok(out) if out.rules().iter().any(|r| r.rule_arn() == Some(rule_arn)) => Err(Error::drift(format!(
                "rule {rule_arn} (rule_arn) is not a rule of listener {} (listener_arn): it belongs to another \
                 listener, whose traffic the deploy would move instead",
                self.listener
            ))),
            Ok(_) => Err(missing()),
            Err(e) => match AwsError::from_sdk("elasticloadbalancing:DescribeRules", &format!("rule {rule_arn}"), e) {
                err if err.code() == Some("RuleNotFound") => Err(missing()),
                err => Err(err.into()),
            },
        }
    }

    /// Every configured target group exists ([`Error::NotFound`] naming the missing ones), and
    /// one forward action can weight them together (HTTP / HTTPS, one VPC: the API refuses
    /// others at the write; some emulators accept them, so look first).
    async fn check_target_groups(&self) -> Result<()> {
        let describe = |arns: Vec<String>| async move {
            match self.client.describe_target_groups().set_target_group_arns(Some(arns)).send().await {
                Ok(out) => Ok(Some(out.target_groups.unwrap_or_default())),
                Err(e) => match AwsError::from_sdk("elasticloadbalancing:DescribeTargetGroups", "target groups", e) {
                    err if err.code() == Some("TargetGroupNotFound") => Ok(None),
                    err => Err(Error::from(err)),
                },
            }
        };
        let answered = |groups: &[TargetGroup], arn: &str| groups.iter().any(|g| g.target_group_arn() == Some(arn));
        if let Some(groups) = describe(self.pools.values().cloned().collect()).await? {
            if self.pools.values().all(|arn| answered(&groups, arn)) {
                return self.check_compatible(&groups);
            }
        }
        // One at a time, to name the missing ones.
        let (mut missing, mut found) = (Vec::new(), Vec::new());
        for (pool, arn) in &self.pools {
            match describe(vec![arn.clone()]).await? {
                Some(groups) if answered(&groups, arn) => found.extend(groups),
                _ => missing.push(format!("target group {arn} of pool {pool}")),
            }
        }
        if missing.is_empty() {
            return self.check_compatible(&found);
        }
        Err(Error::not_found(missing.join(", ")))
    }

    /// The forward action in `actions` gives traffic only to the pools' target groups.
    fn check_forward(&self, actions: &[Action]) -> Result<()> {
        let weights = self.weights(actions)?;
        let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let foreign: Vec<String> = weights
            .iter()
            .filter(|(arn, weight)| *weight > 0 && !self.pools.values().any(|a| a == arn))
            .map(|(arn, weight)| format!("{arn} ({} %)", u64::from(*weight) * 100 / total.max(1)))
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        let pools: Vec<String> = self.pools.iter().map(|(pool, arn)| format!("{pool} = {arn}")).collect();
        Err(Error::drift(format!(
            "{} forwards to target group {}, which no pool names ({}): the deploy would take that traffic \
             away; name the group as a pool, or move its traffic first",
            self.where_(),
            foreign.join(" and "),
            pools.join(", ")
        )))
    }

    /// Refuses target groups of another protocol than HTTP / HTTPS, or of different VPCs.
    fn check_compatible(&self, groups: &[TargetGroup]) -> Result<()> {
        let pool_of = |arn: Option<&str>| {
            self.pools
                .iter()
                .find(|(_, a)| Some(a.as_str()) == arn)
                .map_or_else(|| "?".to_owned(), |(p, _)| p.to_string())
        };
        let mut first_vpc: Option<(&str, String)> = None;
        for group in groups {
            let pool = pool_of(group.target_group_arn());
            let arn = group.target_group_arn().unwrap_or_default();
            if let Some(protocol) = group.protocol() {
                if !matches!(protocol, ProtocolEnum::Http | ProtocolEnum::Https) {
                    return Err(Error::invalid(
                        format!("pools.{pool}"),
                        format!(
                            "target group {arn} uses {}: an ALB forwards only to HTTP or HTTPS groups",
                            protocol.as_str()
                        ),
                    ));
                }
            }
            let Some(vpc) = group.vpc_id() else { continue };
            match &first_vpc {
                None => first_vpc = Some((vpc, pool)),
                Some((other, other_pool)) if *other != vpc => {
                    return Err(Error::invalid(
                        format!("pools.{pool}"),
                        format!(
                            "target group {arn} is in {vpc}, pool {other_pool}'s in {other}: one load balancer serves one VPC"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The split the forward action in `actions` makes, named by pool (a target group no pool
    /// names keeps its ARN as its name).
    fn split_of(&self, actions: &[Action]) -> Result<Split> {
        let names: BTreeMap<&str, &PoolName> = self.pools.iter().map(|(p, a)| (a.as_str(), p)).collect();
        let named = self.weights(actions)?.into_iter().map(|(arn, w)| {
            (names.get(arn.as_str()).map_or_else(|| PoolName::from(arn.clone()), |p| (*p).clone()), u64::from(w))
        });
        Split::from_weights(named)
            .ok_or_else(|| Error::drift(format!("{} forwards with every weight 0: it serves nothing", self.where_())))
    }

    /// Whether every pool's target group is in the forward action (at weight 0 or more).
    fn all_attached(&self, actions: &[Action]) -> Result<bool> {
        let attached: BTreeSet<String> = self.weights(actions)?.into_iter().map(|(arn, _)| arn).collect();
        Ok(self.pools.values().all(|arn| attached.contains(arn)))
    }

    /// Puts every pool's target group into the forward action, keeping the traffic as it is.
    ///
    /// Why: an ALB health-checks only the targets of target groups that a listener or rule
    /// uses; the targets of a group outside every action stay `unused` (`Target.NotInUse`) and
    /// would never pass a health gate. A group at weight 0 is in use but gets no traffic.
    async fn attach_pools(&self) -> Result<()> {
        let actions = self.actions().await?;
        if self.all_attached(&actions)? {
            return Ok(());
        }
        let current = self.split_of(&actions)?;
        if let Some((foreign, _)) = current.iter().find(|(pool, _)| !self.pools.contains_key(pool)) {
            // Adding all pools would drop this group from the action (a traffic change), and
            // without the write the new targets would never be health-checked: refuse first.
            return Err(Error::drift(format!(
                "{} forwards to target group {foreign}, which is none of the router's pools: name it as a pool, \
                 or set a split first",
                self.where_()
            )));
        }
        self.write_forward(actions, &current).await
    }

    /// Replaces the forward action in `actions` by one weighting every pool as `split` says,
    /// keeping the other actions, the order and the stickiness.
    async fn write_forward(&self, actions: Vec<Action>, split: &Split) -> Result<()> {
        self.write_forward_at(&self.place, actions, split).await
    }

    /// [`write_forward`](Self::write_forward) at `place`.
    async fn write_forward_at(&self, place: &Place, actions: Vec<Action>, split: &Split) -> Result<()> {
        let forward_at = actions
            .iter()
            .position(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .ok_or_else(|| Error::drift(format!("{place} has no forward action to weight")))?;
        let old = &actions[forward_at];
        let tuples = self
            .pools
            .iter()
            .map(|(pool, arn)| {
                let weight = i32::try_from(split.weight(pool)).unwrap_or(0);
                TargetGroupTuple::builder().target_group_arn(arn).weight(weight).build()
            })
            .collect();
        let config = ForwardActionConfig::builder()
            .set_target_groups(Some(tuples))
            .set_target_group_stickiness_config(
                old.forward_config().and_then(|c| c.target_group_stickiness_config()).cloned(),
            )
            .build();
        let forward =
            Action::builder().r#type(ActionTypeEnum::Forward).set_order(old.order()).forward_config(config).build();
        let mut new_actions = actions.clone();
        new_actions[forward_at] = forward;
        place.set_actions(&self.client, new_actions).await?;
        Ok(())
    }

    /// Points the test listener (if any) at the idle pool: members, no production traffic.
    async fn sync_test_listener(&self) -> Result<()> {
        if self.test.is_none() {
            return Ok(());
        }
        self.sync_test_listener_to(&self.split_of(&self.actions().await?)?).await
    }

    /// [`sync_test_listener`](Self::sync_test_listener), with the production split as just read.
    async fn sync_test_listener_to(&self, production: &Split) -> Result<()> {
        let Some(test) = &self.test else { return Ok(()) };
        let mut idle = None;
        for pool in self.pools.keys().filter(|p| production.weight(p) == 0) {
            let registered = self.registered(pool).await?;
            if registered.values().any(serving) {
                idle = Some(pool);
                break;
            }
        }
        let Some(idle) = idle else { return Ok(()) };
        let wanted = Split::all_to(idle);
        let actions = test.actions(&self.client).await?;
        if self.split_of(&actions).is_ok_and(|s| s.same_traffic(&wanted)) {
            return Ok(());
        }
        self.write_forward_at(test, actions, &wanted).await?;
        let read = self.split_of(&test.actions(&self.client).await?)?;
        if !read.same_traffic(&wanted) {
            return Err(Error::ReadBackMismatch {
                what: format!("the test split of {test}"),
                expected: wanted.to_string(),
                observed: read.to_string(),
            });
        }
        Ok(())
    }

    async fn set_drained_tags(&self, pool: &PoolName, ids: &[String], drained: bool) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (arn, resource) = self.group(pool)?;
        if drained {
            let tags = ids.iter().map(|id| Tag::builder().key(format!("{DRAINED_TAG}{id}")).value("true").build());
            self.client
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:AddTags", &resource, e))?;
        } else {
            self.client
                .remove_tags()
                .resource_arns(arn)
                .set_tag_keys(Some(ids.iter().map(|id| format!("{DRAINED_TAG}{id}")).collect()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:RemoveTags", &resource, e))?;
        }
        Ok(())
    }

    async fn deregister(&self, pool: &PoolName, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (arn, resource) = self.group(pool)?;
        let targets = ids.iter().map(|id| description(id)).collect::<Result<Vec<_>>>()?;
        self.client
            .deregister_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DeregisterTargets", &resource, e))?;
        Ok(())
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
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.target_group(pool)?;
        }
        // Every configured target group goes into the forward action: all must exist (the ALB
        // API of some emulators accepts unknown ARNs), which the check looked at.
        self.checked().await?;
        let actions = self.actions().await?;
        if self.split_of(&actions)?.same_traffic(split) && self.all_attached(&actions)? {
            return Ok(());
        }
        self.write_forward(actions, split).await?;
        let read = self.split_of(&self.actions().await?)?;
        if !read.same_traffic(split) {
            return Err(Error::ReadBackMismatch {
                what: format!("the split of {}", self.where_()),
                expected: split.to_string(),
                observed: read.to_string(),
            });
        }
        self.sync_test_listener_to(&read).await
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        let (arn, resource) = self.group(pool)?;
        for target in targets {
            let ip_target = description(target.id.as_str())?.id().is_some_and(|id| id.parse::<IpAddr>().is_ok());
            if ip_target && target.id.as_str() != target.address {
                return Err(Error::invalid(
                    format!("targets[{}]", target.id),
                    format!("an ALB ip target's id must be its address ip:port ({})", target.address),
                ));
            }
        }
        self.checked().await?;
        self.attach_pools().await?;
        let (registered, drained) = self.observe(pool).await?;
        let todo: Vec<String> = targets
            .iter()
            .map(|t| t.id.as_str().to_owned())
            .filter(|id| !matches!(registered.get(id), Some(s) if serving(s)))
            .collect();
        if !todo.is_empty() {
            let descriptions = todo.iter().map(|id| description(id)).collect::<Result<Vec<_>>>()?;
            self.client
                .register_targets()
                .target_group_arn(arn)
                .set_targets(Some(descriptions))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:RegisterTargets", &resource, e))?;
        }
        let untag: Vec<String> =
            targets.iter().map(|t| t.id.as_str().to_owned()).filter(|id| drained.contains(id)).collect();
        self.set_drained_tags(pool, &untag, false).await?;
        let registered = self.registered(pool).await?;
        for target in targets {
            let state = registered.get(target.id.as_str());
            if !state.is_some_and(serving) {
                return Err(Error::ReadBackMismatch {
                    what: format!("target {} in pool {pool}", target.id),
                    expected: "registered".into(),
                    observed: state.map_or_else(|| "not registered".to_owned(), |s| s.as_str().to_owned()),
                });
            }
        }
        self.sync_test_listener().await
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        let started = tokio::time::Instant::now();
        for id in targets {
            description(id.as_str())?;
        }
        self.group(pool)?;
        self.checked().await?;
        let (registered, drained) = self.observe(pool).await?;
        if let Some(unknown) =
            targets.iter().find(|id| !registered.contains_key(id.as_str()) && !drained.contains(id.as_str()))
        {
            return Err(Error::not_found(format!("target {unknown} in pool {pool}")));
        }
        let present: Vec<String> =
            targets.iter().map(|id| id.as_str().to_owned()).filter(|id| registered.contains_key(id)).collect();
        // Mark first: a crash between the two leaves a registered target, which still reads serving.
        // The ALB ends a drain by the group's deregistration delay: wait for it to say so, but
        // not much past the delay (the slack covers its reporting lag). Read before any write.
        let bound = match self.deregistration_delay(pool).await? {
            Some(delay) => timeout.min(delay + DRAIN_SLACK),
            None => timeout,
        };
        let untagged: Vec<String> = present.iter().filter(|id| !drained.contains(*id)).cloned().collect();
        self.set_drained_tags(pool, &untagged, true).await?;
        self.deregister(pool, &present).await?;
        let deadline = started + bound;
        let mut timed_out = false;
        loop {
            let registered = self.registered(pool).await?;
            if !present.iter().any(|id| registered.contains_key(id)) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            tokio::time::sleep(self.drain_poll.min(deadline - tokio::time::Instant::now())).await;
        }
        Ok(DrainReport { in_flight_at_start: None, in_flight_at_end: None, timed_out, elapsed: started.elapsed() })
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.group(pool)?;
        self.checked().await?;
        let (registered, drained) = self.observe(pool).await?;
        let ids: Vec<String> = targets.iter().map(|id| id.as_str().to_owned()).collect();
        let present: Vec<String> = ids.iter().filter(|id| registered.contains_key(*id)).cloned().collect();
        self.deregister(pool, &present).await?;
        let tagged: Vec<String> = ids.iter().filter(|id| drained.contains(*id)).cloned().collect();
        self.set_drained_tags(pool, &tagged, false).await?;
        let (registered, drained) = self.observe(pool).await?;
        if let Some(left) = ids.iter().find(|id| {
            registered.get(*id).is_some_and(|s| *s != TargetHealthStateEnum::Draining) || drained.contains(*id)
        }) {
            return Err(Error::ReadBackMismatch {
                what: format!("target {left} in pool {pool}"),
                expected: "removed".into(),
                observed: "still a member".into(),
            });
        }
        Ok(())
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.group(pool)?;
        self.checked().await?;
        let (registered, drained) = self.observe(pool).await?;
        let mut members: Vec<Member> = registered
            .iter()
            .map(|(id, state)| Member { id: TargetId::from(id.as_str()), state: member_state(state), in_flight: None })
            .collect();
        members.extend(drained.iter().filter(|id| !registered.contains_key(*id)).map(|id| Member {
            id: TargetId::from(id.as_str()),
            state: MemberState::Disabled,
            in_flight: None,
        }));
        Ok(members)
    }
}

/// Whether the ALB sends (or will send, once healthy) new requests to a target in this state.
fn serving(state: &TargetHealthStateEnum) -> bool {
    member_state(state) == MemberState::Serving
}

fn member_state(state: &TargetHealthStateEnum) -> MemberState {
    match state {
        TargetHealthStateEnum::Draining | TargetHealthStateEnum::UnhealthyDraining => MemberState::Draining,
        TargetHealthStateEnum::Unused => MemberState::Disabled,
        _ => MemberState::Serving,
    }
}

/// The name of the ALB's target `id` (an IP address or an instance id) on `port`: `10.0.0.7:80`,
/// `[2001:db8::7]:80`, `i-0abc:80` — the form [`description`] reads.
pub(crate) fn target_name(id: &str, port: i32) -> String {
    match (id.parse::<IpAddr>(), u16::try_from(port)) {
        (Ok(ip), Ok(port)) => SocketAddr::new(ip, port).to_string(),
        _ => format!("{id}:{port}"),
    }
}

/// The ALB's description of a target named `ip:port` (an `ip` target group) or `i-…:port` (an
/// `instance` target group).
fn description(id: &str) -> Result<TargetDescription> {
    if let Ok(addr) = id.parse::<SocketAddr>() {
        return Ok(TargetDescription::builder().id(addr.ip().to_string()).port(i32::from(addr.port())).build());
    }
    let instance = id.rsplit_once(':').and_then(|(instance, port)| Some((instance, port.parse::<u16>().ok()?)));
    match instance {
        Some((instance, port))
            if instance.starts_with("i-") && instance[2..].chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(TargetDescription::builder().id(instance).port(i32::from(port)).build())
        }
        _ => Err(Error::invalid(
            format!("target {id}"),
            "an ALB target is named ip:port (ip target groups) or i-…:port (instance target groups)",
        )),
    }
}

/// The listener a listener rule ARN names: `…:listener-rule/app/LB/LB-ID/LISTENER-ID/RULE-ID` →
/// `…:listener/app/LB/LB-ID/LISTENER-ID`; `None` for an ARN of another layout.
fn listener_of_rule(rule_arn: &str) -> Option<String> {
    let (head, resource) = rule_arn.split_once(":listener-rule/")?;
    let parts: Vec<&str> = resource.split('/').collect();
    (parts.len() == 5 && parts.iter().all(|p| !p.is_empty()))
        .then(|| format!("{head}:listener/{}", parts[..4].join("/")))
}

/// The load balancer a listener ARN names: `…:listener/app/LB/LB-ID/LISTENER-ID` →
/// `…:loadbalancer/app/LB/LB-ID`; `None` for an ARN of another layout.
fn load_balancer_of_listener(listener_arn: &str) -> Option<String> {
    let (head, resource) = listener_arn.split_once(":listener/")?;
    let parts: Vec<&str> = resource.split('/').collect();
    (parts.len() == 4 && parts.iter().all(|p| !p.is_empty()))
        .then(|| format!("{head}:loadbalancer/{}", parts[..3].join("/")))
}

fn check_arn(field: &str, arn: &str, kind: &str) -> Result<()> {
    let ok = arn.starts_with("arn:") && arn.contains(":elasticloadbalancing:") && arn.contains(kind);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{arn:?} is not an elasticloadbalancing {} ARN", kind.trim_matches([':', '/'])),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_round_trip_through_the_albs_descriptions() {
        for name in ["10.0.0.7:8080", "[2001:db8::7]:8080", "i-0abc123:8080"] {
            let d = description(name).unwrap();
            assert_eq!(target_name(d.id().unwrap(), d.port().unwrap()), name);
        }
        assert!(description("web-1").is_err());
        assert!(description("i-0abc").is_err(), "an instance target needs its port");
    }

    #[test]
    fn arns_of_the_wrong_kind_are_refused_before_any_call() {
        let client = Client::from_conf(
            aws_sdk_elasticloadbalancingv2::Config::builder()
                .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
                .build(),
        );
        let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/2";
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/blue/1";
        let err = AlbRouter::from_client(client.clone(), "not-an-arn", [("blue", tg.to_owned())]).unwrap_err();
        assert_eq!(err.field(), Some("listener_arn"));
        let err = AlbRouter::from_client(client.clone(), listener, [("blue", listener.to_owned())]).unwrap_err();
        assert_eq!(err.field(), Some("pools.blue"));
        let err = AlbRouter::from_client(client.clone(), listener, [("blue", tg.to_owned()), ("green", tg.to_owned())])
            .unwrap_err();
        assert!(err.to_string().contains("named twice"), "{err}");
        let six = (0..6).map(|i| (format!("p{i}"), format!("{tg}{i}")));
        assert!(AlbRouter::from_client(client.clone(), listener, six).is_err());
        let router = AlbRouter::from_client(client, listener, [("blue", tg.to_owned())]).unwrap();
        assert_eq!(router.clone().on_rule(tg).unwrap_err().field(), Some("rule_arn"));
        // A rule of listener 3 on listener 2, a test listener that is the listener, one of
        // another load balancer.
        let rule = |listener: &str, id: &str| format!("{}/{id}", listener.replace(":listener/", ":listener-rule/"));
        let other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/3";
        let err = router.clone().on_rule(rule(other, "9")).unwrap_err();
        assert_eq!(err.field(), Some("rule_arn"));
        assert!(err.to_string().contains(other) && err.to_string().contains(listener), "{err}");
        router.clone().on_rule(rule(listener, "9")).expect("a rule of the listener");
        router.clone().on_rule(format!("{}/9", other.replace(":listener/", ":listener-rule/x/"))).expect("unreadable");
        assert_eq!(router.clone().test_listener(listener).unwrap_err().field(), Some("test_listener_arn"));
        let elsewhere = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb2/7/3";
        let err = router.clone().test_listener(elsewhere).unwrap_err();
        assert!(err.field() == Some("test_listener_arn") && err.to_string().contains("load balancer"), "{err}");
        router.test_listener(other).expect("another listener of the load balancer");
    }

    #[test]
    fn arns_name_their_listener_and_load_balancer() {
        let listener =
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2";
        let rule = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";
        assert_eq!(listener_of_rule(rule).as_deref(), Some(listener));
        assert_eq!(
            load_balancer_of_listener(listener).as_deref(),
            Some("arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188")
        );
        for odd in
            ["arn:aws:elasticloadbalancing:x:1:listener-rule/app/web/1/2", "arn:x:listener-rule/a//b/c/d", "junk"]
        {
            assert_eq!(listener_of_rule(odd), None, "{odd}");
        }
        assert_eq!(load_balancer_of_listener("arn:aws:elasticloadbalancing:x:1:listener/app/web/1"), None);
    }
}
