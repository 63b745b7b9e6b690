//! An ECS service serving behind an ALB rule in moto, as a deploy file meets it: for the tests
//! that deploy one through a deploy file (the CLI's, the facade's example). Not part of
//! `moto/mod.rs`, whose tests may be built without bluegreen-aws's `ecs` feature: those tests
//! include it beside `moto` (`#[path = ".../moto/ecs_on_alb.rs"] mod ecs_on_alb;`).

use crate::moto::ecs::{CONTAINER, IMAGE};
use crate::moto::{ecs::EcsService, Alb, Moto};

/// An ECS service whose tasks serve in pool `blue` of an ALB rule, as a deploy file meets it:
/// made by [`Moto::serving_ecs_service`].
pub(crate) struct ServingEcsService {
    pub(crate) alb: Alb,
    pub(crate) service: EcsService,
    /// The service's task sets, as bluegreen sees them.
    pub(crate) fleet: bluegreen_aws::EcsFleet,
    /// The ALB's rule, pools `blue` and `green`.
    pub(crate) router: bluegreen_aws::AlbRouter,
}

impl ServingEcsService {
    /// `[backend]` of a deploy file for this service (`kind = "ecs"`, on the rule); the file
    /// adds `[backend.aws]`.
    pub(crate) fn backend_section(&self) -> String {
        format!(
            r#"[backend]
kind = "ecs"
cluster = "{cluster}"
service = "{service}"
container = "{CONTAINER}"
image = "{IMAGE}"
poll_interval = "100ms"
start_timeout = "30s"

[backend.alb]
listener_arn = "{listener}"
rule_arn = "{rule}"
target_groups = {{ blue = "{blue}", green = "{green}" }}
drain_poll = "100ms"
"#,
            cluster = self.service.cluster,
            service = self.service.service,
            listener = self.alb.listener_arn,
            rule = self.alb.rule_arn,
            blue = self.alb.blue_arn,
            green = self.alb.green_arn,
        )
    }
}

impl Moto {
    /// An ALB with a rule ([`Moto::create_alb`]) and an ECS service `name` of `count` tasks of
    /// `version` ([`Moto::create_ecs_service`]) registered in its `blue` target group.
    pub(crate) async fn serving_ecs_service(&self, name: &str, version: &str, count: i32) -> ServingEcsService {
        use bluegreen_core::{Fleet as _, Router as _};
        let sdk = self.config().load().await;
        let alb = self.create_alb(&aws_sdk_elasticloadbalancingv2::Client::new(&sdk)).await;
        let service = self.create_ecs_service(&aws_sdk_ecs::Client::new(&sdk), "sales", name, version, count).await;
        let fleet = bluegreen_aws::EcsFleet::builder(&sdk, &service.cluster, &service.service)
            .container(CONTAINER)
            .image(IMAGE)
            .build()
            .expect("fleet");
        let router = bluegreen_aws::AlbRouter::new(
            &sdk,
            &alb.listener_arn,
            [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())],
        )
        .expect("router")
        .on_rule(&alb.rule_arn)
        .expect("rule");
        let tasks = fleet.list().await.expect("tasks");
        assert_eq!(tasks.len(), usize::try_from(count).expect("a count"), "{tasks:?}");
        router.add_targets(&"blue".into(), &tasks).await.expect("register");
        ServingEcsService { alb, service, fleet, router }
    }
}
