//! The one-time check of the backend, before the router reads the split or writes: the
//! listeners, the rule, the target groups and the traffic the forward action gives.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{Action, Listener, ProtocolEnum, Rule, TargetGroup};
use bluegreen_core::{Error, Result};

use super::place::Place;
use super::AlbRouter;
use crate::error::AwsError;

/// Rules asked for per `DescribeRules` page (the API's largest page; a listener holds 100 rules
/// unless its quota was raised).
const RULES_PAGE: i32 = 400;

impl AlbRouter {
    /// Checks, once per router (its clones share the answer), that the backend is the one the
    /// router was given, before anything reads the split or writes: see
    /// [`check_backend`](Self::check_backend). A failed check is not kept: the next call asks again.
    pub(super) async fn checked(&self) -> Result<()> {
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
}
