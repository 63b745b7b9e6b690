//! A `moto_server` (the AWS API emulator) for one test, from `bluegreen_testkit::moto`, with
//! the clients' configuration and the ALB, ECS and DynamoDB set-ups the tests share (the CLI's
//! AWS tests use it too).

#![allow(dead_code)]

pub(crate) mod ecs;

use std::ops::Deref;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use bluegreen_aws::AwsConfig;
use bluegreen_testkit::moto::{MotoServer, CREDENTIALS, REGION};

/// An ARN of the same kind and parent as `arn` whose id exists nowhere (a resource deleted
/// since, or a typo): `…/listener/app/lb/1/0123456789abcdef`.
pub(crate) fn ghost_arn(arn: &str) -> String {
    let (parent, _) = arn.rsplit_once('/').expect("an ARN with an id");
    format!("{parent}/0123456789abcdef")
}

/// A running `moto_server` on 127.0.0.1 (see [`MotoServer`]), killed on drop.
pub(crate) struct Moto(MotoServer);

impl Deref for Moto {
    type Target = MotoServer;
    fn deref(&self) -> &MotoServer {
        &self.0
    }
}

impl Moto {
    /// Starts moto, or returns `None` (with a notice) when it is not installed outside CI.
    pub(crate) fn start() -> Option<Self> {
        MotoServer::start().map(Self)
    }

    /// The configuration for clients of this server: fake static credentials, us-east-1.
    pub(crate) fn config(&self) -> AwsConfig {
        AwsConfig::new()
            .region(REGION)
            .endpoint_url(&self.endpoint)
            .static_credentials(CREDENTIALS.0, CREDENTIALS.1)
            .max_attempts(3)
            .operation_timeout(Duration::from_secs(60))
            // Route53's real limit (5 calls a second) would only slow the tests down: moto has none.
            .rate_limit("route53", 200.0, 200)
    }

    /// Creates a state table (pk / sk strings, on demand).
    pub(crate) async fn create_state_table(&self, client: &aws_sdk_dynamodb::Client, table: &str) {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition")
        };
        let key =
            |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("key");
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create_table: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)));
    }
}

/// An Application Load Balancer in moto's default VPC: a listener forwarding to `blue`, a
/// `/reporting*` rule forwarding to `blue` too, and two empty `ip` target groups.
#[derive(Debug, Clone)]
pub(crate) struct Alb {
    pub(crate) listener_arn: String,
    pub(crate) rule_arn: String,
    pub(crate) blue_arn: String,
    pub(crate) green_arn: String,
}

impl Moto {
    /// Creates an ALB with a listener, a path rule and two target groups (blue, green).
    pub(crate) async fn create_alb(&self, client: &aws_sdk_elasticloadbalancingv2::Client) -> Alb {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, PathPatternConditionConfig, ProtocolEnum, RuleCondition, TargetTypeEnum,
        };
        let xml = self.raw_query("ec2", "Action=DescribeSubnets&Version=2016-11-15");
        let values = |tag: &str| -> Vec<String> {
            xml.split(&format!("<{tag}>")).skip(1).filter_map(|s| s.split('<').next()).map(str::to_owned).collect()
        };
        let subnets = values("subnetId");
        let vpc = values("vpcId").into_iter().next().expect("moto's default VPC");
        assert!(subnets.len() >= 2, "moto's default subnets: {xml}");
        let lb = client
            .create_load_balancer()
            .name("bluegreen-test")
            .subnets(&subnets[0])
            .subnets(&subnets[1])
            .send()
            .await
            .expect("create_load_balancer");
        let lb_arn = lb.load_balancers()[0].load_balancer_arn().expect("lb arn").to_owned();
        let mut tg_arns = Vec::new();
        for name in ["blue", "green"] {
            let tg = client
                .create_target_group()
                .name(name)
                .protocol(ProtocolEnum::Http)
                .port(8080)
                .vpc_id(&vpc)
                .target_type(TargetTypeEnum::Ip)
                .send()
                .await
                .expect("create_target_group");
            tg_arns.push(tg.target_groups()[0].target_group_arn().expect("tg arn").to_owned());
        }
        let forward_blue = || Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tg_arns[0]).build();
        let listener = client
            .create_listener()
            .load_balancer_arn(&lb_arn)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .default_actions(forward_blue())
            .send()
            .await
            .expect("create_listener");
        let listener_arn = listener.listeners()[0].listener_arn().expect("listener arn").to_owned();
        let rule = client
            .create_rule()
            .listener_arn(&listener_arn)
            .priority(10)
            .conditions(
                RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(PathPatternConditionConfig::builder().values("/reporting*").build())
                    .build(),
            )
            .actions(forward_blue())
            .send()
            .await
            .expect("create_rule");
        let rule_arn = rule.rules()[0].rule_arn().expect("rule arn").to_owned();
        Alb { listener_arn, rule_arn, blue_arn: tg_arns[0].clone(), green_arn: tg_arns[1].clone() }
    }
}

impl Alb {
    /// The load balancer's ARN.
    pub(crate) async fn load_balancer_arn(&self, client: &aws_sdk_elasticloadbalancingv2::Client) -> String {
        let out = client.describe_listeners().listener_arns(&self.listener_arn).send().await.expect("listener");
        out.listeners()[0].load_balancer_arn().expect("load balancer arn").to_owned()
    }

    /// Adds a second listener (port `port`) to the load balancer, forwarding to blue, with a
    /// `/b*` rule forwarding to blue too: returns its ARN and the rule's.
    pub(crate) async fn add_listener(
        &self,
        client: &aws_sdk_elasticloadbalancingv2::Client,
        port: i32,
    ) -> (String, String) {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, PathPatternConditionConfig, ProtocolEnum, RuleCondition,
        };
        let forward_blue =
            || Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&self.blue_arn).build();
        let listener = client
            .create_listener()
            .load_balancer_arn(self.load_balancer_arn(client).await)
            .protocol(ProtocolEnum::Http)
            .port(port)
            .default_actions(forward_blue())
            .send()
            .await
            .expect("create_listener")
            .listeners()[0]
            .listener_arn()
            .expect("listener arn")
            .to_owned();
        let rule = client
            .create_rule()
            .listener_arn(&listener)
            .priority(20)
            .conditions(
                RuleCondition::builder()
                    .field("path-pattern")
                    .path_pattern_config(PathPatternConditionConfig::builder().values("/b*").build())
                    .build(),
            )
            .actions(forward_blue())
            .send()
            .await
            .expect("create_rule")
            .rules()[0]
            .rule_arn()
            .expect("rule arn")
            .to_owned();
        (listener, rule)
    }

    /// Creates another empty `ip` target group `name` in blue's VPC: its ARN.
    pub(crate) async fn add_target_group(&self, client: &aws_sdk_elasticloadbalancingv2::Client, name: &str) -> String {
        use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetTypeEnum};
        let blue = client.describe_target_groups().target_group_arns(&self.blue_arn).send().await.expect("blue");
        let vpc = blue.target_groups()[0].vpc_id().expect("vpc").to_owned();
        let out = client
            .create_target_group()
            .name(name)
            .protocol(ProtocolEnum::Http)
            .port(8080)
            .vpc_id(vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await
            .expect("create_target_group");
        out.target_groups()[0].target_group_arn().expect("target group arn").to_owned()
    }

    /// Every action of every listener and rule of the load balancer, and the registrations and
    /// tags of `groups`: everything a write of an `AlbRouter` could change, as text.
    pub(crate) async fn state(&self, client: &aws_sdk_elasticloadbalancingv2::Client, groups: &[&str]) -> String {
        let mut out = String::new();
        let lb = self.load_balancer_arn(client).await;
        let listeners = client.describe_listeners().load_balancer_arn(lb).send().await.expect("listeners");
        for listener in listeners.listeners() {
            let arn = listener.listener_arn().expect("listener arn");
            let rules = client.describe_rules().listener_arn(arn).send().await.expect("rules");
            out += &format!("{arn}: {:?}\n{:?}\n", listener.default_actions(), rules.rules());
        }
        for group in groups {
            let health = client.describe_target_health().target_group_arn(*group).send().await.expect("health");
            let tags = client.describe_tags().resource_arns(*group).send().await.expect("tags");
            out += &format!("{group}: {:?} {:?}\n", health.target_health_descriptions(), tags.tag_descriptions());
        }
        out
    }
}
