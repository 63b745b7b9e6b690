//! Building an [`AlbRouter`]: the pools, the rule and the test listener, checked with no AWS
//! call (ARN kinds, one listener, one load balancer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_core::{Error, PoolName, Result};

use super::place::Place;
use super::AlbRouter;

/// The most target groups one ALB `forward` action can weight.
const MAX_POOLS: usize = 5;

impl AlbRouter {
    /// A router on the default actions of `listener_arn`, with `pools` mapping pool names to
    /// target group ARNs.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an ARN of the wrong kind, no pools, more than five, or one target
    /// group under two names. No AWS call is made: whether the listener and the target groups
    /// exist is checked by the first call of a [`Router`](bluegreen_core::Router) method (see
    /// the type's docs).
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
