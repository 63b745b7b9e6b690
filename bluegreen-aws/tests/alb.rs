//! `AlbRouter` with the real aws-sdk-elasticloadbalancingv2 client against moto server (see
//! `moto/mod.rs`): the core router conformance suite on a listener's default action and on a
//! path rule, exact read-back of the weights, bad input refused before any write, and an ALB
//! that is not what the router was given (a rule of another listener, a listener, rule or target
//! group that does not exist, traffic on a group no pool names) refused before any write.
//!
//! Moto registers targets `healthy` at once and forgets deregistered ones at once (no
//! `draining`), so these tests see drains end on the first observation; the timing of real
//! deregistration delays is not reproduced here.

mod moto;

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::Client;
use bluegreen_aws::AlbRouter;
use bluegreen_core::conformance::{router_suite, RouterFixture};
use bluegreen_core::{Error, PoolName, Router, Split, Target};
use moto::{Alb, Moto};

async fn setup(moto: &Moto) -> (Client, Alb, aws_config::SdkConfig) {
    let sdk = moto.config().load().await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    (client, alb, sdk)
}

fn router(sdk: &aws_config::SdkConfig, alb: &Alb) -> AlbRouter {
    AlbRouter::new(sdk, &alb.listener_arn, [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())])
        .expect("router")
        .drain_poll_interval(Duration::from_millis(50))
}

fn targets() -> Vec<Target> {
    ["172.31.1.10:8080", "172.31.1.11:8080", "172.31.1.12:8080"]
        .into_iter()
        .map(|a| Target { id: a.into(), address: a.into(), zone: None, version: "v1".into(), tag: None })
        .collect()
}

fn fixture() -> RouterFixture {
    RouterFixture { pools: ["blue".into(), "green".into()], targets: targets() }
}

/// The listener's default actions and the rule's actions, as moto serves them.
async fn actions(client: &Client, alb: &Alb) -> String {
    let listener = client.describe_listeners().listener_arns(&alb.listener_arn).send().await.expect("listeners");
    let rules = client.describe_rules().rule_arns(&alb.rule_arn).send().await.expect("rules");
    format!("{:?}\n{:?}", listener.listeners()[0].default_actions(), rules.rules()[0].actions())
}

#[tokio::test]
async fn alb_router_passes_the_router_suite_on_a_listener_default_action() {
    let Some(moto) = Moto::start() else { return };
    let (_, alb, sdk) = setup(&moto).await;
    router_suite(&router(&sdk, &alb), &fixture()).await;
}

#[tokio::test]
async fn alb_router_passes_the_router_suite_on_a_path_rule() {
    let Some(moto) = Moto::start() else { return };
    let (client, alb, sdk) = setup(&moto).await;
    let before = client.describe_listeners().listener_arns(&alb.listener_arn).send().await.expect("listeners");
    router_suite(&router(&sdk, &alb).on_rule(&alb.rule_arn).expect("rule"), &fixture()).await;
    let after = client.describe_listeners().listener_arns(&alb.listener_arn).send().await.expect("listeners");
    assert_eq!(
        format!("{:?}", before.listeners()[0].default_actions()),
        format!("{:?}", after.listeners()[0].default_actions()),
        "a router on a rule changed the listener's default action"
    );
}

#[tokio::test]
async fn a_canary_split_reads_back_as_exact_weights_on_the_rule() {
    let Some(moto) = Moto::start() else { return };
    let (client, alb, sdk) = setup(&moto).await;
    let router = router(&sdk, &alb).on_rule(&alb.rule_arn).expect("rule");
    router.add_targets(&"blue".into(), &targets()[..1]).await.expect("add blue");
    router.add_targets(&"green".into(), &targets()[1..2]).await.expect("add green");
    for percent in [10, 50, 100, 0] {
        let split = Split::between(&"blue".into(), &"green".into(), percent);
        router.set_split(&split).await.expect("set_split");
        let rules = client.describe_rules().rule_arns(&alb.rule_arn).send().await.expect("rules");
        let weights: Vec<(String, i32)> = rules.rules()[0].actions()[0]
            .forward_config()
            .expect("a weighted forward")
            .target_groups()
            .iter()
            .map(|t| (t.target_group_arn().unwrap_or_default().to_owned(), t.weight().unwrap_or(-1)))
            .collect();
        let expected = vec![(alb.blue_arn.clone(), 100 - percent as i32), (alb.green_arn.clone(), percent as i32)];
        assert_eq!(weights, expected, "the rule's weights at {percent}%");
        assert!(router.split().await.expect("split").same_traffic(&split));
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_changes() {
    let Some(moto) = Moto::start() else { return };
    let (client, alb, sdk) = setup(&moto).await;
    let router = router(&sdk, &alb);
    let before = actions(&client, &alb).await;

    let bad: Split = serde_json::from_value(serde_json::json!({ "blue": 1000, "green": 0 })).expect("json");
    assert!(matches!(router.set_split(&bad).await, Err(Error::Invalid { .. })), "weight 1000");
    let unknown = Split::all_to(&PoolName::from("purple"));
    assert!(matches!(router.set_split(&unknown).await, Err(Error::NotFound { .. })), "unknown pool");
    let mut misnamed = targets()[0].clone();
    misnamed.id = "task-1".into();
    let err = router.add_targets(&"blue".into(), &[misnamed]).await.expect_err("id is not the address");
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(router.members(&"blue".into()).await.expect("members").is_empty(), "a refused add registered targets");

    // A target group ARN that does not exist (moto accepts it in a forward action; we look first).
    let ghost = alb.green_arn.replace("/green/", "/ghost/");
    let router = AlbRouter::new(&sdk, &alb.listener_arn, [("blue", alb.blue_arn.clone()), ("ghost", ghost.clone())])
        .expect("router");
    let err = router.pools().await.expect_err("the ghost pool's group does not exist");
    assert!(matches!(&err, Error::NotFound { what } if what.contains(&ghost)), "{err}");
    let err = router.set_split(&Split::between(&"blue".into(), &"ghost".into(), 10)).await.expect_err("ghost pool");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(actions(&client, &alb).await, before, "a refused call changed the listener or the rule");
}

#[tokio::test]
async fn target_groups_an_alb_cannot_weight_together_are_refused_before_any_write() {
    use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetTypeEnum};
    let Some(moto) = Moto::start() else { return };
    let (client, alb, sdk) = setup(&moto).await;
    let before = actions(&client, &alb).await;
    // A target group in another VPC (moto accepts it in a forward action; the ALB API does not).
    let xml = moto.raw_query("ec2", "Action=CreateVpc&CidrBlock=10.9.0.0%2F16&Version=2016-11-15");
    let vpc = xml.split("<vpcId>").nth(1).and_then(|s| s.split('<').next()).expect("a new VPC").to_owned();
    let group = |name: &'static str, protocol: ProtocolEnum, vpc: String| {
        let client = client.clone();
        async move {
            let out = client
                .create_target_group()
                .name(name)
                .protocol(protocol)
                .port(8080)
                .vpc_id(vpc)
                .target_type(TargetTypeEnum::Ip)
                .send()
                .await
                .expect("create_target_group");
            out.target_groups()[0].target_group_arn().expect("arn").to_owned()
        }
    };
    let elsewhere = group("elsewhere", ProtocolEnum::Http, vpc.clone()).await;
    let tcp_vpc =
        client.describe_target_groups().target_group_arns(&alb.blue_arn).send().await.expect("blue").target_groups()[0]
            .vpc_id()
            .expect("vpc")
            .to_owned();
    let tcp = group("tcp", ProtocolEnum::Tcp, tcp_vpc).await;
    for (name, arn, words) in [("elsewhere", elsewhere, "one load balancer serves one VPC"), ("tcp", tcp, "uses TCP")] {
        let router =
            AlbRouter::new(&sdk, &alb.listener_arn, [("blue", alb.blue_arn.clone()), (name, arn)]).expect("router");
        let err = router.set_split(&Split::all_to(&"blue".into())).await.expect_err(name);
        assert!(matches!(&err, Error::Invalid { field, .. } if field == &format!("pools.{name}")), "{err}");
        assert!(err.to_string().contains(words), "{err}");
        let err = router.add_targets(&"blue".into(), &targets()[..1]).await.expect_err(name);
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
    }
    assert_eq!(actions(&client, &alb).await, before, "a refused call changed the listener or the rule");
}

#[tokio::test]
async fn adding_targets_while_the_action_forwards_to_a_foreign_group_is_refused_before_any_write() {
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum};
    let Some(moto) = Moto::start() else { return };
    let (client, alb, sdk) = setup(&moto).await;
    // The listener forwards to green only; a router knowing only blue would take green's
    // traffic away (and cannot join blue at weight 0 without dropping green from the action).
    let forward_green = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&alb.green_arn).build();
    client
        .modify_listener()
        .listener_arn(&alb.listener_arn)
        .default_actions(forward_green)
        .send()
        .await
        .expect("modify");
    let before = alb.state(&client, &[&alb.blue_arn, &alb.green_arn]).await;
    let router = AlbRouter::new(&sdk, &alb.listener_arn, [("blue", alb.blue_arn.clone())]).expect("router");
    let err = router.add_targets(&"blue".into(), &targets()[..1]).await.expect_err("foreign group");
    assert!(matches!(&err, Error::Drift { .. }) && err.to_string().contains(&alb.green_arn), "{err}");
    assert_eq!(alb.state(&client, &[&alb.blue_arn, &alb.green_arn]).await, before, "a refused add changed the ALB");
}

/// A test listener (a second port of the load balancer) follows the idle pool: the new pool
/// before the switch, the old one after; production is untouched by it.
#[tokio::test]
async fn a_test_listener_forwards_to_the_idle_pool() {
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ProtocolEnum};
    let Some(moto) = Moto::start() else { return };
    let (client, alb, sdk) = setup(&moto).await;
    let lb = client.describe_listeners().listener_arns(&alb.listener_arn).send().await.expect("listener").listeners()
        [0]
    .load_balancer_arn()
    .expect("lb")
    .to_owned();
    let forward_blue = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&alb.blue_arn).build();
    let test_listener = client
        .create_listener()
        .load_balancer_arn(lb)
        .protocol(ProtocolEnum::Http)
        .port(8443)
        .default_actions(forward_blue)
        .send()
        .await
        .expect("create_listener")
        .listeners()[0]
        .listener_arn()
        .expect("arn")
        .to_owned();
    let router = router(&sdk, &alb).test_listener(&test_listener).expect("test listener");
    let test_weights = || async {
        let out = client.describe_listeners().listener_arns(&test_listener).send().await.expect("test listener");
        out.listeners()[0].default_actions()[0]
            .forward_config()
            .map(|c| {
                c.target_groups()
                    .iter()
                    .map(|t| (t.target_group_arn().unwrap_or_default().to_owned(), t.weight().unwrap_or(-1)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    router.add_targets(&"blue".into(), &targets()[..1]).await.expect("blue");
    router.set_split(&Split::all_to(&"blue".into())).await.expect("all to blue");
    router.add_targets(&"green".into(), &targets()[1..2]).await.expect("green");
    assert_eq!(test_weights().await, [(alb.blue_arn.clone(), 0), (alb.green_arn.clone(), 100)], "before the switch");
    assert!(router.split().await.expect("split").same_traffic(&Split::all_to(&"blue".into())), "production kept");
    router.set_split(&Split::all_to(&"green".into())).await.expect("switch");
    assert_eq!(test_weights().await, [(alb.blue_arn.clone(), 100), (alb.green_arn.clone(), 0)], "after the switch");
    let err = AlbRouter::new(&sdk, &alb.listener_arn, [("blue", alb.blue_arn.clone())])
        .expect("router")
        .test_listener(&alb.blue_arn)
        .expect_err("a target group is not a listener");
    assert_eq!(err.field(), Some("test_listener_arn"));
}

// ---- The backend is what the router was given (before any write) ----------------------------

/// A configuration counting its calls, and a router on `listener` over `pools` built from it.
async fn logged(moto: &Moto) -> (bluegreen_aws::CallLog, aws_config::SdkConfig) {
    let log = bluegreen_aws::CallLog::new();
    let sdk = moto.config().call_log(&log).load().await;
    (log, sdk)
}

/// Runs every `Router` call on `router`, each of which must fail with an error `expected`
/// accepts and whose message names `arn`.
async fn every_call_fails(router: &AlbRouter, arn: &str, expected: impl Fn(&Error) -> bool) {
    let blue = PoolName::from("blue");
    let ids: Vec<_> = targets()[..1].iter().map(|t| t.id.clone()).collect();
    let results = [
        ("split", router.split().await.map(drop)),
        ("pools", router.pools().await.map(drop)),
        ("members", router.members(&blue).await.map(drop)),
        ("add_targets", router.add_targets(&blue, &targets()[..1]).await),
        ("set_split", router.set_split(&Split::between(&blue, &"green".into(), 10)).await),
        ("drain", router.drain(&blue, &ids, Duration::from_secs(1)).await.map(drop)),
        ("remove_targets", router.remove_targets(&blue, &ids).await),
    ];
    for (call, result) in results {
        let err = result.expect_err(call);
        assert!(expected(&err), "{call}: {err:?}");
        assert!(err.to_string().contains(arn), "{call}: the error does not name {arn}: {err}");
    }
}

#[tokio::test]
async fn a_rule_of_another_listener_is_refused_when_the_router_is_built() {
    let Some(moto) = Moto::start() else { return };
    let (log, sdk) = logged(&moto).await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    let (listener_b, rule_b) = alb.add_listener(&client, 8081).await;
    log.reset();
    // Listener A with B's rule: the rule ARN names B.
    let err = router(&sdk, &alb).on_rule(&rule_b).expect_err("a rule of listener B on listener A");
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "rule_arn"), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&listener_b) && text.contains(&alb.listener_arn), "names both listeners: {text}");
    // The other way round too, and a test listener that is the production listener itself.
    let on_b = AlbRouter::new(&sdk, &listener_b, [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())])
        .expect("router on B");
    assert_eq!(on_b.clone().on_rule(&alb.rule_arn).expect_err("A's rule on B").field(), Some("rule_arn"));
    on_b.on_rule(&rule_b).expect("B's own rule");
    let err = router(&sdk, &alb).test_listener(&alb.listener_arn).expect_err("test listener = listener");
    assert_eq!(err.field(), Some("test_listener_arn"), "{err}");
    router(&sdk, &alb).test_listener(&listener_b).expect("another listener of the same load balancer");
    assert_eq!(log.total(), 0, "refused by the ARNs, with no call: {:?}", log.counts());
}

#[tokio::test]
async fn a_listener_that_does_not_exist_is_not_found_before_any_write() {
    let Some(moto) = Moto::start() else { return };
    let (log, sdk) = logged(&moto).await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    let groups = [alb.blue_arn.as_str(), alb.green_arn.as_str()];
    let before = alb.state(&client, &groups).await;
    // Same load balancer, another listener id (a listener deleted since, or a typo).
    let ghost = moto::ghost_arn(&alb.listener_arn);
    log.reset();
    let pools = [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())];
    let router =
        AlbRouter::new(&sdk, &ghost, pools.clone()).expect("router").drain_poll_interval(Duration::from_millis(10));
    every_call_fails(&router, &ghost, |e| matches!(e, Error::NotFound { .. })).await;
    // A rule that does not exist on a listener that does.
    let ghost_rule = format!("{}/0123456789abcdef", alb.listener_arn.replace(":listener/", ":listener-rule/"));
    let router = router_on(&sdk, &alb).on_rule(&ghost_rule).expect("router on a ghost rule");
    every_call_fails(&router, &ghost_rule, |e| matches!(e, Error::NotFound { .. })).await;
    // A test listener that does not exist.
    let router = router_on(&sdk, &alb).test_listener(&ghost).expect("router with a ghost test listener");
    every_call_fails(&router, &ghost, |e| matches!(e, Error::NotFound { .. })).await;
    assert_eq!(log.writes(), 0, "{:?}", log.counts());
    assert_eq!(alb.state(&client, &groups).await, before, "a refused call changed the load balancer");
}

#[tokio::test]
async fn a_target_group_that_does_not_exist_is_not_found_before_any_write() {
    let Some(moto) = Moto::start() else { return };
    let (log, sdk) = logged(&moto).await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    let groups = [alb.blue_arn.as_str(), alb.green_arn.as_str()];
    let before = alb.state(&client, &groups).await;
    let ghost = moto::ghost_arn(&alb.green_arn);
    log.reset();
    for rule in [None, Some(&alb.rule_arn)] {
        let mut router =
            AlbRouter::new(&sdk, &alb.listener_arn, [("blue", alb.blue_arn.clone()), ("green", ghost.clone())])
                .expect("router")
                .drain_poll_interval(Duration::from_millis(10));
        if let Some(rule) = rule {
            router = router.on_rule(rule).expect("rule");
        }
        every_call_fails(&router, &ghost, |e| matches!(e, Error::NotFound { .. })).await;
    }
    assert_eq!(log.writes(), 0, "{:?}", log.counts());
    assert_eq!(alb.state(&client, &groups).await, before, "a refused call changed the load balancer");
}

#[tokio::test]
async fn a_listener_forwarding_to_a_group_of_no_pool_is_drift_before_any_write() {
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple};
    let Some(moto) = Moto::start() else { return };
    let (log, sdk) = logged(&moto).await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    let other = alb.add_target_group(&client, "other").await;
    // The listener sends 90 % to a group that is none of the pools, 10 % to blue; the rule all
    // to it.
    let tuple = |arn: &str, weight| TargetGroupTuple::builder().target_group_arn(arn).weight(weight).build();
    let split = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(tuple(&other, 90))
                .target_groups(tuple(&alb.blue_arn, 10))
                .build(),
        )
        .build();
    client.modify_listener().listener_arn(&alb.listener_arn).default_actions(split).send().await.expect("modify");
    let forward_other = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&other).build();
    client.modify_rule().rule_arn(&alb.rule_arn).actions(forward_other).send().await.expect("modify rule");
    let groups = [alb.blue_arn.as_str(), alb.green_arn.as_str(), other.as_str()];
    let before = alb.state(&client, &groups).await;
    log.reset();
    let drift = |e: &Error| matches!(e, Error::Drift { .. });
    every_call_fails(&router_on(&sdk, &alb), &other, drift).await;
    every_call_fails(&router_on(&sdk, &alb).on_rule(&alb.rule_arn).expect("rule"), &other, drift).await;
    assert_eq!(log.writes(), 0, "{:?}", log.counts());
    assert_eq!(alb.state(&client, &groups).await, before, "a refused call changed the load balancer");
}

#[tokio::test]
async fn the_backend_is_checked_once_per_router() {
    let Some(moto) = Moto::start() else { return };
    let (log, sdk) = logged(&moto).await;
    let client = Client::new(&sdk);
    let alb = moto.create_alb(&client).await;
    log.reset();
    let router = router_on(&sdk, &alb).on_rule(&alb.rule_arn).expect("rule");
    let blue = PoolName::from("blue");
    router.pools().await.expect("pools");
    router.split().await.expect("split");
    router.add_targets(&blue, &targets()[..1]).await.expect("add");
    router.set_split(&Split::all_to(&blue)).await.expect("split");
    router.clone().members(&blue).await.expect("members of a clone");
    let counts = log.counts();
    assert_eq!(counts.get("elasticloadbalancing:DescribeTargetGroups"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("elasticloadbalancing:DescribeListeners"), Some(&1), "{counts:?}");
}

fn router_on(sdk: &aws_config::SdkConfig, alb: &Alb) -> AlbRouter {
    router(sdk, alb).drain_poll_interval(Duration::from_millis(10))
}
