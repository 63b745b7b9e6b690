//! `AlbRouter` drains against scripted ELB answers (aws-smithy-mocks), on tokio's paused clock:
//! moto forgets a deregistered target at once and never reports `draining`, and a real
//! deregistration delay is minutes long, so the timing of a drain can only be tested here.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_elasticloadbalancingv2::operation::add_tags::AddTagsOutput;
use aws_sdk_elasticloadbalancingv2::operation::deregister_targets::DeregisterTargetsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_tags::DescribeTagsOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_group_attributes::DescribeTargetGroupAttributesOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetGroupAttribute, TargetHealth, TargetHealthDescription, TargetHealthStateEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use bluegreen_aws::AlbRouter;
use bluegreen_core::{DrainReport, PoolName, Router, TargetId};

const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/2";
const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/blue/1";
const TARGET: &str = "10.0.1.10:8080";

fn client(rules: &[&Rule]) -> Client {
    let interceptor =
        rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny), |i, rule| i.with_rule(rule));
    let conf = aws_sdk_elasticloadbalancingv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(conf)
}

fn health(state: Option<TargetHealthStateEnum>) -> DescribeTargetHealthOutput {
    let descriptions = state.map(|state| {
        TargetHealthDescription::builder()
            .target(TargetDescription::builder().id("10.0.1.10").port(8080).build())
            .target_health(TargetHealth::builder().state(state).build())
            .build()
    });
    DescribeTargetHealthOutput::builder().set_target_health_descriptions(descriptions.map(|d| vec![d])).build()
}

/// Everything a drain calls besides `DescribeTargetHealth`, answered "done"; the target group's
/// deregistration delay is `delay_seconds`. The listener forwards to blue, which exists.
fn quiet_calls(delay_seconds: u32) -> Vec<Rule> {
    use aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Listener, TargetGroup};
    vec![
        mock!(Client::describe_listeners).then_output(|| {
            let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(BLUE).build();
            DescribeListenersOutput::builder()
                .listeners(Listener::builder().listener_arn(LISTENER).default_actions(forward).build())
                .build()
        }),
        mock!(Client::describe_target_groups).then_output(|| {
            DescribeTargetGroupsOutput::builder()
                .target_groups(TargetGroup::builder().target_group_arn(BLUE).build())
                .build()
        }),
        mock!(Client::describe_tags).then_output(|| DescribeTagsOutput::builder().build()),
        mock!(Client::add_tags).then_output(|| AddTagsOutput::builder().build()),
        mock!(Client::deregister_targets).then_output(|| DeregisterTargetsOutput::builder().build()),
        mock!(Client::describe_target_group_attributes).then_output(move || {
            DescribeTargetGroupAttributesOutput::builder()
                .attributes(
                    TargetGroupAttribute::builder()
                        .key("deregistration_delay.timeout_seconds")
                        .value(delay_seconds.to_string())
                        .build(),
                )
                .build()
        }),
    ]
}

fn router(rules: &[&Rule]) -> AlbRouter {
    AlbRouter::from_client(client(rules), LISTENER, [("blue", BLUE.to_owned())]).expect("router")
}

/// Drains the target with `timeout`, the ELB answering `DescribeTargetHealth` by `health_rule`
/// and the group's deregistration delay being `delay_seconds`; polls every 2 s.
async fn drain(health_rule: &Rule, delay_seconds: u32, timeout: Duration) -> DrainReport {
    let quiet = quiet_calls(delay_seconds);
    let rules: Vec<&Rule> = quiet.iter().chain([health_rule]).collect();
    router(&rules)
        .drain_poll_interval(Duration::from_secs(2))
        .drain(&PoolName::from("blue"), &[TargetId::from(TARGET)], timeout)
        .await
        .expect("drain")
}

/// Healthy before the drain, then `draining` for ever.
fn stuck_draining() -> Rule {
    mock!(Client::describe_target_health)
        .sequence()
        .output(|| health(Some(TargetHealthStateEnum::Healthy)))
        .output(|| health(Some(TargetHealthStateEnum::Draining)))
        .repeatedly()
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_drain_ends_when_the_alb_says_the_target_is_gone() {
    // Healthy before the drain, draining for four polls, then gone.
    let health_rule = mock!(Client::describe_target_health)
        .sequence()
        .output(|| health(Some(TargetHealthStateEnum::Healthy)))
        .output(|| health(Some(TargetHealthStateEnum::Draining)))
        .times(4)
        .output(|| health(None))
        .repeatedly()
        .build();
    let report = drain(&health_rule, 300, Duration::from_secs(600)).await;
    assert!(!report.timed_out, "{report:?}");
    // Four answers said `draining` (at 0, 2, 4 and 6 s), the fifth (8 s) said gone: the drain
    // waited for exactly that, not for the 300 s delay.
    assert_eq!(report.elapsed, Duration::from_secs(8), "{report:?}");
    assert_eq!(health_rule.num_calls(), 6, "one look before, four draining, one gone");
}

#[tokio::test(start_paused = true)]
async fn a_drain_is_bounded_by_the_deregistration_delay_not_only_by_its_timeout() {
    // The ALB keeps saying `draining` (a stuck report): the drain gives up 10 s after the
    // group's 60 s delay, although the caller allowed 10 minutes.
    let health_rule = stuck_draining();
    let report = drain(&health_rule, 60, Duration::from_secs(600)).await;
    assert!(report.timed_out, "{report:?}");
    assert_eq!(report.elapsed, Duration::from_secs(70), "{report:?}");
    // Polled every 2 s, not faster: the delay is whole seconds.
    assert!(health_rule.num_calls() <= 2 + 70 / 2, "{} reads in 70 s", health_rule.num_calls());
}

#[tokio::test(start_paused = true)]
async fn a_short_timeout_still_wins_over_a_long_delay() {
    let report = drain(&stuck_draining(), 300, Duration::from_secs(30)).await;
    assert!(report.timed_out && report.elapsed == Duration::from_secs(30), "{report:?}");
}

/// A rule ARN whose layout does not name its listener (an emulator's or a proxy's, say) passes
/// the builder's ARN check; the first read then finds it among another listener's rules only,
/// and refuses (`Error::Drift`) before any write.
#[tokio::test]
async fn a_rule_the_arn_cannot_place_is_looked_for_on_the_listener_before_any_write() {
    use aws_sdk_elasticloadbalancingv2::operation::describe_rules::DescribeRulesOutput;
    use aws_sdk_elasticloadbalancingv2::operation::modify_rule::ModifyRuleOutput;
    use aws_sdk_elasticloadbalancingv2::operation::register_targets::RegisterTargetsOutput;
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Rule as ElbRule};
    const RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/lb/1/elsewhere-7";
    const OTHER_RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/lb/1/2/8";
    fn forward_blue() -> Action {
        Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(BLUE).build()
    }
    fn rule(arn: &str) -> ElbRule {
        ElbRule::builder().rule_arn(arn).priority("10").actions(forward_blue()).build()
    }
    let on_listener = mock!(Client::describe_rules)
        .match_requests(|r| r.listener_arn() == Some(LISTENER))
        .then_output(move || DescribeRulesOutput::builder().rules(rule(OTHER_RULE)).build());
    let by_arn = mock!(Client::describe_rules)
        .match_requests(|r| r.rule_arns().contains(&RULE.to_owned()))
        .then_output(move || DescribeRulesOutput::builder().rules(rule(RULE)).build());
    let writes = [
        mock!(Client::modify_rule).then_output(|| ModifyRuleOutput::builder().build()),
        mock!(Client::register_targets).then_output(|| RegisterTargetsOutput::builder().build()),
    ];
    let mut rules = vec![&on_listener, &by_arn];
    rules.extend(writes.iter());
    let quiet = quiet_calls(300);
    rules.extend(quiet.iter());
    let router = router(&rules).on_rule(RULE).expect("the ARN does not say which listener");
    let err = router.split().await.expect_err("a rule of another listener");
    assert!(matches!(err, bluegreen_core::Error::Drift { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(RULE) && text.contains(LISTENER), "names the rule and the listener: {text}");
    let err = router.set_split(&bluegreen_core::Split::all_to(&PoolName::from("blue"))).await.expect_err("set_split");
    assert!(matches!(err, bluegreen_core::Error::Drift { .. }), "{err:?}");
    assert!(writes.iter().all(|w| w.num_calls() == 0), "a write was sent");
}

/// A target the ALB keeps reporting `unused` after it was registered in a group the listener
/// uses (it is in an Availability Zone the load balancer does not enable): `add_targets` waits
/// 60 s for the ALB to start using it, polling, then fails with the ALB's reason.
#[tokio::test(start_paused = true)]
async fn a_target_left_unused_fails_add_targets_with_the_albs_reason_after_a_minute() {
    use aws_sdk_elasticloadbalancingv2::operation::register_targets::RegisterTargetsOutput;
    use aws_sdk_elasticloadbalancingv2::types::TargetHealthReasonEnum;
    let unused = mock!(Client::describe_target_health).then_output(|| {
        let description = TargetHealthDescription::builder()
            .target(TargetDescription::builder().id("10.0.1.10").port(8080).build())
            .target_health(
                TargetHealth::builder()
                    .state(TargetHealthStateEnum::Unused)
                    .reason(TargetHealthReasonEnum::NotInUse)
                    .description("Target is in an Availability Zone that is not enabled for the load balancer")
                    .build(),
            )
            .build();
        DescribeTargetHealthOutput::builder().target_health_descriptions(description).build()
    });
    let register = mock!(Client::register_targets).then_output(|| RegisterTargetsOutput::builder().build());
    let quiet = quiet_calls(300);
    let rules: Vec<&Rule> = quiet.iter().chain([&unused, &register]).collect();
    let target = bluegreen_core::Target {
        id: TARGET.into(),
        address: TARGET.into(),
        zone: None,
        version: "v1".into(),
        tag: None,
    };
    let started = tokio::time::Instant::now();
    let err = router(&rules)
        .drain_poll_interval(Duration::from_secs(2))
        .add_targets(&PoolName::from("blue"), &[target])
        .await
        .expect_err("never in use");
    assert_eq!(started.elapsed(), Duration::from_secs(60), "{err}");
    assert!(matches!(err, bluegreen_core::Error::ReadBackMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(TARGET) && text.contains("Target.NotInUse") && text.contains("Availability Zone"), "{text}");
    assert_eq!(register.num_calls(), 1);
    // One look before the registration, then one every 2 s for 60 s.
    assert_eq!(unused.num_calls(), 1 + 31, "{} reads", unused.num_calls());
}
