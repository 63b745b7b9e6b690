//! `EcsFleet` with the real aws-sdk-ecs client against moto server (see `moto/mod.rs` and
//! `moto/ecs.rs` for what moto's ECS does and does not do): provision / list / retire of task
//! sets, "ensure" (a re-run writes nothing), the core fleet conformance checks an ECS fleet can
//! pass, a blue-green deploy through the core executor with the `AlbRouter`, and bad input
//! refused before any write.
//!
//! Write calls are counted by an interceptor on the ECS client that reads each request's
//! `X-Amz-Target` (the operation), so the counts do not depend on moto.

mod moto;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_ecs::config::interceptors::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextMut};
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::error::BoxError;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::Client;
use bluegreen_aws::{AlbRouter, EcsFleet};
use bluegreen_core::conformance::FleetFixture;
use bluegreen_core::conformance::{fleet_suite, update_of_unknown_target_is_not_found};
use bluegreen_core::{
    BatchSize, BlueGreen, Error, Executor, Fleet, FnProbe, Health, HealthPolicy, MemorySink, Outcome, PoolName,
    ProvisionRequest, Rolling, RollingMode, Router, Spec, Split, Status, Strategy, Target,
};
use moto::ecs::{EcsService, CONTAINER, IMAGE, PORT};
use moto::{Alb, Moto};

/// Records the ECS operations a client sends (`CreateTaskSet`, ...).
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The operations that change something (everything but Describe* and List*).
    fn writes(&self) -> Vec<String> {
        self.all().into_iter().filter(|op| !op.starts_with("Describe") && !op.starts_with("List")).collect()
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "bluegreen-test-calls"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        let op = target.rsplit('.').next().unwrap_or(target).to_owned();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(op);
        Ok(())
    }
}

struct Setup {
    sdk: aws_config::SdkConfig,
    /// A plain client, for the tests' own set-up and checks.
    client: Client,
    service: EcsService,
    calls: Calls,
}

impl Setup {
    async fn new(moto: &Moto, desired: i32) -> Self {
        let sdk = moto.config().load().await;
        let client = Client::new(&sdk);
        let service = moto.create_ecs_service(&client, "bluegreen-test", "web", "v1", desired).await;
        Self { sdk, client, service, calls: Calls::default() }
    }

    /// A fleet on the service whose client records its calls in `self.calls`.
    fn fleet(&self) -> EcsFleet {
        let conf = aws_sdk_ecs::config::Builder::from(&self.sdk).interceptor(self.calls.clone()).build();
        EcsFleet::builder_from_client(Client::from_conf(conf), &self.service.cluster, &self.service.service)
            .container(CONTAINER)
            .image(IMAGE)
            .poll_interval(Duration::from_millis(20))
            .start_timeout(Duration::from_secs(20))
            .build()
            .expect("fleet")
    }

    async fn task_sets(&self) -> Vec<aws_sdk_ecs::types::TaskSet> {
        let out = self
            .client
            .describe_task_sets()
            .cluster(&self.service.cluster)
            .service(&self.service.service)
            .send()
            .await
            .expect("describe_task_sets");
        out.task_sets.unwrap_or_default()
    }

    async fn revisions(&self) -> usize {
        let out = self
            .client
            .list_task_definitions()
            .family_prefix(&self.service.family)
            .send()
            .await
            .expect("list_task_definitions");
        out.task_definition_arns().len()
    }
}

fn request(version: &str, count: usize, tag: &str) -> ProvisionRequest {
    ProvisionRequest { version: version.into(), count, zones: Vec::new(), tag: tag.into() }
}

/// An ALB in moto and a router on its blue and green target groups (drains polled every 20 ms).
async fn alb_router(setup: &Setup, moto: &Moto) -> (aws_sdk_elasticloadbalancingv2::Client, Alb, AlbRouter) {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&setup.sdk);
    let alb = moto.create_alb(&elb).await;
    let router = AlbRouter::new(
        &setup.sdk,
        &alb.listener_arn,
        [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())],
    )
    .expect("router")
    .drain_poll_interval(Duration::from_millis(20));
    (elb, alb, router)
}

/// `spec` with health checks every 20 ms, one pass enough.
fn quick(mut spec: Spec) -> Spec {
    spec.health = HealthPolicy {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(20),
        healthy_threshold: 1,
        min_healthy_time: Duration::ZERO,
        ..HealthPolicy::default()
    };
    spec
}

/// Registers the fleet's (v1) tasks in blue, then deploys `spec` through the executor with a
/// probe that answers healthy (moto's tasks run nothing): the v1 targets, the outcome, the log.
async fn deploy(router: &AlbRouter, fleet: &EcsFleet, spec: &Spec) -> (Vec<Target>, Outcome, MemorySink) {
    let v1 = fleet.list().await.expect("list");
    router.add_targets(&PoolName::from("blue"), &v1).await.expect("register v1 in blue");
    let sink = MemorySink::new();
    let probe = FnProbe::new("healthy", |_| async { Health::Healthy });
    let executor = Executor::builder(Arc::new(router.clone()), Arc::new(fleet.clone()), Arc::new(probe))
        .sink(sink.clone())
        .build();
    let outcome = executor.deploy(spec).await.expect("deploy");
    (v1, outcome, sink)
}

/// Real moto: the service's first task set lists as targets; a provision of another version
/// registers one revision, creates one task set and returns its running tasks as `ip:port`
/// targets; retire deletes that set and stops its tasks.
#[tokio::test]
async fn provision_list_and_retire_follow_the_task_sets() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let fleet = setup.fleet();

    let blue = fleet.list().await.expect("list");
    assert_eq!(blue.len(), 2, "{blue:?}");
    for t in &blue {
        assert_eq!(t.id.as_str(), t.address, "an ALB ip target's id is its address");
        assert!(t.address.ends_with(&format!(":{PORT}")), "{t:?}");
        assert_eq!(t.version.as_str(), "v1", "the version is read from the image through the template");
        assert_eq!(t.tag.as_deref(), Some("web/v1/blue"));
    }

    let green = fleet.provision(&request("v2", 2, "web/v2/green")).await.expect("provision");
    assert_eq!(green.len(), 2, "{green:?}");
    assert!(green.iter().all(|t| t.version.as_str() == "v2" && t.tag.as_deref() == Some("web/v2/green")));
    assert!(green.iter().all(|t| !blue.iter().any(|b| b.id == t.id)), "new tasks have new addresses");
    assert_eq!(setup.revisions().await, 2, "one new task definition revision");
    assert_eq!(setup.task_sets().await.len(), 2, "one new task set");
    let writes = setup.calls.writes();
    assert_eq!(writes, vec!["RegisterTaskDefinition", "CreateTaskSet"], "{:?}", setup.calls.all());
    assert_eq!(fleet.list().await.expect("list").len(), 4);

    setup.calls.clear();
    let ids: Vec<_> = green.iter().map(|t| t.id.clone()).collect();
    fleet.retire(&ids).await.expect("retire");
    assert_eq!(setup.calls.writes(), vec!["DeleteTaskSet", "StopTask", "StopTask"]);
    let left = fleet.list().await.expect("list");
    assert_eq!(left, blue, "only the first version's tasks are left");
    assert_eq!(setup.task_sets().await.len(), 1);
}

/// Real moto: provisioning the same tag again, after it succeeded, makes only read calls and
/// returns the same tasks; a second tag of the same version reuses the registered revision.
#[tokio::test]
async fn provision_again_writes_nothing_and_reuses_the_revision() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let fleet = setup.fleet();
    let first = fleet.provision(&request("v2", 2, "web/v2/green")).await.expect("provision");
    setup.calls.clear();
    let again = fleet.provision(&request("v2", 2, "web/v2/green")).await.expect("provision again");
    assert_eq!(again, first);
    assert!(setup.calls.writes().is_empty(), "a re-run wrote: {:?}", setup.calls.all());

    // A fresh fleet (nothing remembered) and another tag of v2: no second revision.
    let fleet = setup.fleet();
    setup.calls.clear();
    fleet.provision(&request("v2", 1, "web/v2/batch-1")).await.expect("provision another tag");
    assert_eq!(setup.calls.writes(), vec!["CreateTaskSet"], "{:?}", setup.calls.all());
    assert_eq!(setup.revisions().await, 2);
}

/// Real moto: the core fleet conformance suite, which checks what `EcsFleet` claims (it
/// provisions) and that what it does not claim (an in-place update) is refused with `Invalid`,
/// changing nothing; and an unknown task is `NotFound`.
#[tokio::test]
async fn ecs_fleet_passes_the_fleet_conformance_suite() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let fleet = setup.fleet();
    let fixture = FleetFixture { version: "v2".into(), other_version: "v3".into(), tag: "conformance".into() };
    assert!(!fleet.capabilities().updates_in_place && fleet.capabilities().provisions);
    fleet_suite(&fleet, &fixture).await;
    update_of_unknown_target_is_not_found(&fleet, &fixture).await;

    let blue = fleet.list().await.expect("list");
    assert_eq!(blue.len(), 2, "only the first task set is left: {blue:?}");
    let same = fleet.update(&blue[0].id, &"v1".into()).await.expect("update to the version it runs");
    assert_eq!(same, blue[0]);
    let err = fleet.update(&blue[0].id, &"v3".into()).await.expect_err("in-place update");
    assert_eq!(err.field(), Some("strategy.mode"), "{err}");
    assert!(err.to_string().contains("replace"), "{err}");
}

/// Real moto, both fleet and router: a blue-green deploy of v2 through the core executor
/// (`EcsFleet` + `AlbRouter` on the `/reporting*` rule + a probe that answers healthy, since
/// moto's tasks run nothing) moves the rule's weights to green, and leaves only v2's task set.
#[tokio::test]
async fn blue_green_deploy_moves_the_rule_to_the_new_task_set_and_retires_the_old_one() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let (elb, alb, router) = alb_router(&setup, &moto).await;
    let router = router.on_rule(&alb.rule_arn).expect("rule");
    let fleet = setup.fleet();
    let spec = quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())));
    let (_, outcome, sink) = deploy(&router, &fleet, &spec).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}\n{}", sink.lines().join("\n"));

    let rules = elb.describe_rules().rule_arns(&alb.rule_arn).send().await.expect("rules");
    let weights: Vec<(String, i32)> = rules.rules()[0].actions()[0]
        .forward_config()
        .expect("a weighted forward")
        .target_groups()
        .iter()
        .map(|t| (t.target_group_arn().unwrap_or_default().to_owned(), t.weight().unwrap_or(-1)))
        .collect();
    assert_eq!(weights, vec![(alb.blue_arn.clone(), 0), (alb.green_arn.clone(), 100)]);
    assert!(router.split().await.expect("split").same_traffic(&Split::all_to(&"green".into())));

    let now = fleet.list().await.expect("list");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|t| t.version.as_str() == "v2"), "{now:?}");
    let sets = setup.task_sets().await;
    assert_eq!(sets.len(), 1, "the old task set is deleted");
    assert_eq!(sets[0].status(), Some("PRIMARY"), "the new task set is the service's primary");
    assert_eq!(router.members(&"blue".into()).await.expect("members").len(), 0);
    let green: Vec<_> = router.members(&"green".into()).await.expect("members").into_iter().map(|m| m.id).collect();
    assert!(now.iter().all(|t| green.contains(&t.id)), "{green:?} vs {now:?}");
}

/// Real moto: input that cannot work is refused with the resource or field named, and the
/// fleet's client sent no write.
#[tokio::test]
async fn bad_input_is_refused_before_any_write() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let fleet_of = |cluster: &str, service: &str| {
        let conf = aws_sdk_ecs::config::Builder::from(&setup.sdk).interceptor(setup.calls.clone()).build();
        EcsFleet::builder_from_client(Client::from_conf(conf), cluster, service)
            .container(CONTAINER)
            .image(IMAGE)
            .build()
            .expect("fleet")
    };
    let v2 = request("v2", 2, "web/v2/green");

    let err = fleet_of("bluegreen-test", "ghost").provision(&v2).await.expect_err("missing service");
    assert!(matches!(&err, Error::NotFound { what } if what.contains("ghost")), "{err}");
    let err = fleet_of("no-such-cluster", "web").provision(&v2).await.expect_err("missing cluster");
    assert!(matches!(&err, Error::NotFound { what } if what.contains("no-such-cluster")), "{err}");
    let err = fleet_of("bluegreen-test", "web").list().await;
    assert!(err.is_ok(), "{err:?}");

    let fleet = setup.fleet();
    let err = fleet.provision(&request("v2", 3, "web/v2/green")).await.expect_err("more than desiredCount");
    assert_eq!(err.field(), Some("count"), "{err}");
    let err = fleet.provision(&request("v2:latest", 2, "web/v2/green")).await.expect_err("not an image tag");
    assert_eq!(err.field(), Some("version"), "{err}");
    let conf = aws_sdk_ecs::config::Builder::from(&setup.sdk).interceptor(setup.calls.clone()).build();
    let wrong_container = EcsFleet::builder_from_client(Client::from_conf(conf), "bluegreen-test", "web")
        .container("sidecar")
        .image(IMAGE)
        .build()
        .expect("fleet");
    let err = wrong_container.provision(&v2).await.expect_err("no such container");
    assert_eq!(err.field(), Some("container"), "{err}");
    assert!(err.to_string().contains("sidecar") && err.to_string().contains("app"), "{err}");

    // A service under the ECS deployment controller.
    setup
        .client
        .create_service()
        .cluster("bluegreen-test")
        .service_name("rolling")
        .desired_count(1)
        .send()
        .await
        .expect("create_service");
    let err = fleet_of("bluegreen-test", "rolling").provision(&v2).await.expect_err("not EXTERNAL");
    assert_eq!(err.field(), Some("service"), "{err}");
    assert!(err.to_string().contains("EXTERNAL"), "{err}");

    assert!(setup.calls.writes().is_empty(), "refused calls wrote: {:?}", setup.calls.all());
    assert_eq!(setup.revisions().await, 1);
    assert_eq!(setup.task_sets().await.len(), 1);
}

/// Real moto: retiring one task of a two-task set lowers the set's scale to 50 % and stops only
/// that task; the set and its other task stay.
#[tokio::test]
async fn retiring_part_of_a_task_set_is_refused_before_any_write() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let fleet = setup.fleet();
    let green = fleet.provision(&request("v2", 2, "web/v2/green")).await.expect("provision");
    setup.calls.clear();
    // ECS, not the caller, would pick the task a lower scale stops: it could be a serving one.
    let err = fleet.retire(&[green[0].id.clone()]).await.expect_err("part of a set");
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "strategy"), "{err}");
    assert!(err.to_string().contains("blue_green, canary or linear"), "{err}");
    assert!(setup.calls.writes().is_empty(), "{:?}", setup.calls.writes());
    assert_eq!(fleet.list().await.expect("list").iter().filter(|t| t.version.as_str() == "v2").count(), 2);
    // The whole set goes in one call.
    fleet.retire(&[green[0].id.clone(), green[1].id.clone()]).await.expect("retire the set");
    assert_eq!(setup.task_sets().await.len(), 1);
}

/// Real moto, fleet and router: a rolling replace in batches of one through the core executor
/// would retire one v1 task of the base set at a time, which ECS cannot do safely: the first
/// retire is refused, and the deploy rolls back with nothing lost — both v1 tasks serve blue,
/// the v2 task set is gone.
#[tokio::test]
async fn a_rolling_replace_is_refused_at_its_first_retire_and_rolls_back_with_nothing_lost() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let (_, _, router) = alb_router(&setup, &moto).await;
    let fleet = setup.fleet();
    let rolling = Rolling { batch: BatchSize::Count(1), mode: RollingMode::Replace, ..Rolling::in_place(1) };
    let spec = quick(Spec::new("web", "v2", Strategy::Rolling(rolling)));
    let (v1, outcome, sink) = deploy(&router, &fleet, &spec).await;
    assert_eq!(outcome.status, Status::RolledBack, "{outcome:?}\n{}", sink.lines().join("\n"));
    assert!(outcome.reason.unwrap_or_default().contains("blue_green, canary or linear"));
    let now = fleet.list().await.expect("list");
    assert_eq!(now, v1, "the v1 tasks are the fleet again");
    let mut members: Vec<_> =
        router.members(&"blue".into()).await.expect("members").into_iter().map(|m| m.id).collect();
    members.sort();
    let mut ids: Vec<_> = v1.iter().map(|t| t.id.clone()).collect();
    ids.sort();
    assert_eq!(members, ids, "blue serves exactly the v1 tasks");
    assert_eq!(setup.task_sets().await.len(), 1, "the v2 task set is gone");
}

/// Makes the tasks of task sets tagged with a provisioning tag containing `/green` fail to start
/// in moto's `DescribeTasks` answers, as ECS reports an image that cannot be pulled.
#[derive(Debug, Clone)]
struct GreenCannotPull;

impl Intercept for GreenCannotPull {
    fn name(&self) -> &'static str {
        "bluegreen-test-green-cannot-pull"
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error_mut() else { return Ok(()) };
        let Some(output) = output.downcast_mut::<DescribeTasksOutput>() else { return Ok(()) };
        for task in output.tasks.iter_mut().flatten() {
            let green = task
                .tags()
                .iter()
                .any(|t| t.key() == Some("bluegreen:tag") && t.value().is_some_and(|v| v.contains("/green")));
            if green {
                task.last_status = Some("STOPPED".into());
                task.desired_status = Some("STOPPED".into());
                task.stopped_reason = Some("Task failed to start".into());
                for container in task.containers.iter_mut().flatten() {
                    container.reason = Some("CannotPullContainerError: registry.example/app:v2: not found".into());
                }
            }
        }
        Ok(())
    }
}

/// Real moto and `AlbRouter`, with moto's `DescribeTasks` answers rewritten (`GreenCannotPull`)
/// because moto never fails a task: a blue-green deploy whose new tasks cannot pull their image
/// rolls back, the event log says why (the stopped reason and the container's
/// `CannotPullContainerError`), blue keeps all traffic, and the failed task set is gone.
#[tokio::test]
async fn a_deploy_whose_tasks_cannot_pull_rolls_back_and_the_log_says_why() {
    let Some(moto) = Moto::start() else { return };
    let setup = Setup::new(&moto, 2).await;
    let (_, _, router) = alb_router(&setup, &moto).await;
    let conf = aws_sdk_ecs::config::Builder::from(&setup.sdk).interceptor(GreenCannotPull).build();
    let fleet = EcsFleet::builder_from_client(Client::from_conf(conf), &setup.service.cluster, &setup.service.service)
        .container(CONTAINER)
        .image(IMAGE)
        .poll_interval(Duration::from_millis(20))
        .start_timeout(Duration::from_secs(20))
        .build()
        .expect("fleet");
    let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
    let (blue, outcome, sink) = deploy(&router, &fleet, &spec).await;
    let log = sink.lines().join("\n");
    assert_eq!(outcome.status, Status::RolledBack, "{outcome:?}\n{log}");
    assert!(log.contains("CannotPullContainerError") && log.contains("Task failed to start"), "{log}");
    assert!(router.split().await.expect("split").same_traffic(&Split::all_to(&"blue".into())));
    assert_eq!(fleet.list().await.expect("list"), blue, "only v1 runs");
    assert_eq!(setup.task_sets().await.len(), 1, "the failed task set is deleted");
}
