//! `EcsFleet` against scripted ECS answers (aws-smithy-mocks, no server; the client's endpoint is
//! 127.0.0.1 and nothing is sent), for what moto cannot produce: tasks that stop while starting
//! (an image that cannot be pulled), tasks that never get placed (no capacity), AccessDenied, and
//! the shapes real ECS uses for missing resources (`ClusterNotFoundException`, a service listed
//! under `failures`, `ClientException` for a task definition). Each test counts the write
//! calls its rules answered.

use std::time::Duration;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::operation::create_task_set::CreateTaskSetOutput;
use aws_sdk_ecs::operation::delete_task_set::DeleteTaskSetOutput;
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::describe_task_sets::DescribeTaskSetsOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_task_definitions::ListTaskDefinitionsOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionOutput;
use aws_sdk_ecs::types::{
    Attachment, Container, ContainerDefinition, DeploymentController, DeploymentControllerType, DesiredStatus, Failure,
    KeyValuePair, PortMapping, Service, ServiceEvent, Tag, Task, TaskDefinition, TaskSet,
};
use aws_sdk_ecs::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use bluegreen_aws::EcsFleet;
use bluegreen_core::{Error, Fleet, ProvisionRequest};

const SET_BLUE: &str = "ecs-svc/1111";
const SET_GREEN: &str = "ecs-svc/2222";
const TD_V1: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1";
const TD_V2: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2";
const TAG: &str = "web/v2/green";

fn client(rules: &[&Rule]) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let conf = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(conf)
}

fn fleet(client: Client) -> EcsFleet {
    EcsFleet::builder_from_client(client, "prod", "web")
        .container("app")
        .image("registry.example/app:{version}")
        .poll_interval(Duration::from_secs(5))
        .start_timeout(Duration::from_secs(600))
        .build()
        .expect("fleet")
}

fn request() -> ProvisionRequest {
    ProvisionRequest { version: "v2".into(), count: 2, zones: Vec::new(), tag: TAG.into() }
}

fn service(events: &[&str]) -> Service {
    Service::builder()
        .service_name("web")
        .status("ACTIVE")
        .desired_count(2)
        .deployment_controller(
            DeploymentController::builder().r#type(DeploymentControllerType::External).build().expect("dc"),
        )
        .set_events(Some(events.iter().map(|e| ServiceEvent::builder().message(*e).build()).collect()))
        .build()
}

fn task_set(id: &str, external: &str, definition: &str, primary: bool) -> TaskSet {
    TaskSet::builder()
        .id(id)
        .task_set_arn(format!("arn:aws:ecs:us-east-1:123456789012:task-set/prod/web/{id}"))
        .external_id(external)
        .status(if primary { "PRIMARY" } else { "ACTIVE" })
        .task_definition(definition)
        .build()
}

fn definition(arn: &str, revision: i32, image: &str) -> TaskDefinition {
    TaskDefinition::builder()
        .task_definition_arn(arn)
        .family("web")
        .revision(revision)
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(image)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .build(),
        )
        .build()
}

fn task(id: &str, set: &str, ip: &str, last: &str, desired: &str) -> Task {
    Task::builder()
        .task_arn(format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{id}"))
        .started_by(set)
        .last_status(last)
        .desired_status(desired)
        .attachments(
            Attachment::builder()
                .r#type("ElasticNetworkInterface")
                .details(KeyValuePair::builder().name("privateIPv4Address").value(ip).build())
                .build(),
        )
        .build()
}

/// The answers of a service `web` serving v1 from task set blue, where a provision of v2 creates
/// task set green; `tasks` answers `DescribeTasks` after green exists.
struct Script {
    rules: Vec<Rule>,
}

impl Script {
    fn new(events: &'static [&'static str], green_tasks: fn() -> Vec<Task>) -> Self {
        let blue_tasks = || {
            vec![
                task("b1", SET_BLUE, "10.0.0.1", "RUNNING", "RUNNING"),
                task("b2", SET_BLUE, "10.0.0.2", "RUNNING", "RUNNING"),
            ]
        };
        let rules = vec![
            mock!(Client::describe_services)
                .sequence()
                .output(move || DescribeServicesOutput::builder().services(service(events)).build())
                .repeatedly()
                .build(),
            mock!(Client::describe_task_sets)
                .sequence()
                .output(|| {
                    DescribeTaskSetsOutput::builder().task_sets(task_set(SET_BLUE, "web/v1/blue", TD_V1, true)).build()
                })
                .output(|| {
                    DescribeTaskSetsOutput::builder()
                        .task_sets(task_set(SET_BLUE, "web/v1/blue", TD_V1, true))
                        .task_sets(task_set(SET_GREEN, TAG, TD_V2, false))
                        .build()
                })
                .repeatedly()
                .build(),
            mock!(Client::describe_task_definition)
                .match_requests(|r| r.task_definition() == Some(TD_V1))
                .sequence()
                .output(|| {
                    DescribeTaskDefinitionOutput::builder()
                        .task_definition(definition(TD_V1, 1, "registry.example/app:v1"))
                        .build()
                })
                .repeatedly()
                .build(),
            mock!(Client::describe_task_definition)
                .match_requests(|r| r.task_definition() == Some(TD_V2))
                .sequence()
                .output(|| {
                    DescribeTaskDefinitionOutput::builder()
                        .task_definition(definition(TD_V2, 2, "registry.example/app:v2"))
                        .tags(Tag::builder().key("bluegreen:version").value("v2").build())
                        .build()
                })
                .repeatedly()
                .build(),
            mock!(Client::list_task_definitions)
                .sequence()
                .output(|| ListTaskDefinitionsOutput::builder().task_definition_arns(TD_V1).build())
                .repeatedly()
                .build(),
            mock!(Client::register_task_definition)
                .sequence()
                .output(|| {
                    RegisterTaskDefinitionOutput::builder()
                        .task_definition(definition(TD_V2, 2, "registry.example/app:v2"))
                        .build()
                })
                .repeatedly()
                .build(),
            mock!(Client::create_task_set)
                .sequence()
                .output(|| CreateTaskSetOutput::builder().task_set(task_set(SET_GREEN, TAG, TD_V2, false)).build())
                .repeatedly()
                .build(),
            mock!(Client::list_tasks)
                .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Running))
                .sequence()
                .output(|| ListTasksOutput::builder().task_arns("running").build())
                .repeatedly()
                .build(),
            mock!(Client::list_tasks)
                .match_requests(|r| r.desired_status() == Some(&DesiredStatus::Stopped))
                .sequence()
                .output(|| ListTasksOutput::builder().task_arns("stopped").build())
                .repeatedly()
                .build(),
            // Both lists are described: blue's tasks, then green's (before green exists, none).
            mock!(Client::describe_tasks)
                .match_requests(|r| r.tasks() == ["running"])
                .sequence()
                .output(move || DescribeTasksOutput::builder().set_tasks(Some(blue_tasks())).build())
                .repeatedly()
                .build(),
            mock!(Client::describe_tasks)
                .match_requests(|r| r.tasks() == ["stopped"])
                .sequence()
                .output(move || DescribeTasksOutput::builder().set_tasks(Some(green_tasks())).build())
                .repeatedly()
                .build(),
            mock!(Client::delete_task_set)
                .sequence()
                .output(|| DeleteTaskSetOutput::builder().build())
                .repeatedly()
                .build(),
        ];
        Self { rules }
    }

    fn client(&self) -> Client {
        client(&self.rules.iter().collect::<Vec<_>>())
    }

    fn calls(&self, index: usize) -> usize {
        self.rules[index].num_calls()
    }
}

const REGISTER: usize = 5;
const CREATE: usize = 6;
const DELETE: usize = 11;

/// Scripted: green's task stops with `CannotPullContainerError` right after the task set is
/// created; provision fails at once (no waiting) with the task's and container's reasons and the
/// service's latest event in the message, and deletes the set it created (ECS would otherwise
/// retry its tasks forever).
#[tokio::test(start_paused = true)]
async fn a_task_that_cannot_pull_its_image_fails_provision_with_the_reason() {
    let script = Script::new(&["(service web) has started 1 tasks: (task g1)."], || {
        let mut stopped = task("g1", SET_GREEN, "10.0.1.1", "STOPPED", "STOPPED");
        stopped.stopped_reason = Some("Task failed to start".into());
        stopped.containers = Some(vec![Container::builder()
            .name("app")
            .reason("CannotPullContainerError: pull image manifest has been retried 5 time(s): registry.example/app:v2: not found")
            .build()]);
        vec![stopped]
    });
    let started = tokio::time::Instant::now();
    let err = fleet(script.client()).provision(&request()).await.expect_err("the image cannot be pulled");
    let text = err.to_string();
    assert!(matches!(err, Error::Unhealthy { .. }), "{text}");
    assert!(text.contains("Task failed to start") && text.contains("CannotPullContainerError"), "{text}");
    assert!(text.contains("task g1") && text.contains("(service web) has started 1 tasks"), "{text}");
    assert_eq!(started.elapsed(), Duration::ZERO, "a stopped task fails the start without waiting");
    assert_eq!((script.calls(REGISTER), script.calls(CREATE), script.calls(DELETE)), (1, 1, 1));
}

/// Scripted, paused clock: green's tasks stay `PROVISIONING` (ECS cannot place them); provision
/// polls every 5 s and gives up after the 10-minute start timeout with the tasks' status and the
/// service event that says why.
#[tokio::test(start_paused = true)]
async fn tasks_that_never_run_time_out_with_the_service_events() {
    let script = Script::new(
        &["(service web) was unable to place a task because no container instance met all of its requirements."],
        || {
            let mut pending = task("g1", SET_GREEN, "10.0.1.1", "PROVISIONING", "RUNNING");
            pending.started_by = Some(SET_GREEN.into());
            vec![pending]
        },
    );
    let started = tokio::time::Instant::now();
    let err = fleet(script.client()).provision(&request()).await.expect_err("never placed");
    let text = err.to_string();
    assert!(matches!(err, Error::Timeout { after, .. } if after == Duration::from_secs(600)), "{text}");
    assert!(text.contains("task g1 PROVISIONING") && text.contains("unable to place a task"), "{text}");
    assert_eq!(started.elapsed(), Duration::from_secs(600));
    assert_eq!(script.calls(DELETE), 1, "the set that never started is deleted");
}

/// Scripted: AccessDenied on the first call fails at once, permanent, naming the IAM action; no
/// retry, no write.
#[tokio::test]
async fn access_denied_fails_fast_naming_the_action() {
    let denied = mock!(Client::describe_services)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecs:DescribeServices"}"#.into()),
        )
        .repeatedly()
        .build();
    let create = mock!(Client::create_task_set).then_output(|| CreateTaskSetOutput::builder().build());
    let err = fleet(client(&[&denied, &create])).provision(&request()).await.expect_err("denied");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("access denied") && text.contains("ecs:DescribeServices"), "{text}");
    assert_eq!(denied.num_calls(), 1, "AccessDenied is not retried");
    assert_eq!(create.num_calls(), 0);
}

/// Scripted, in the shapes real ECS answers with: a missing cluster (`ClusterNotFoundException`),
/// a missing service (listed under `failures` with reason `MISSING`) and a task set whose task
/// definition is gone (`ClientException`) are `NotFound` naming the resource, with no write.
#[tokio::test]
async fn missing_cluster_service_and_task_definition_are_not_found_before_any_write() {
    let create = || mock!(Client::create_task_set).then_output(|| CreateTaskSetOutput::builder().build());
    let register =
        || mock!(Client::register_task_definition).then_output(|| RegisterTaskDefinitionOutput::builder().build());

    let no_cluster = mock!(Client::describe_services)
        .sequence()
        .http_status(400, Some(r#"{"__type":"ClusterNotFoundException","message":"Cluster not found."}"#.into()))
        .repeatedly()
        .build();
    let (c, r) = (create(), register());
    let err = fleet(client(&[&no_cluster, &c, &r])).provision(&request()).await.expect_err("no cluster");
    assert!(matches!(&err, Error::NotFound { what } if what.contains("cluster prod")), "{err}");
    assert_eq!(c.num_calls() + r.num_calls(), 0);

    let no_service = mock!(Client::describe_services)
        .sequence()
        .output(|| {
            DescribeServicesOutput::builder()
                .failures(
                    Failure::builder()
                        .arn("arn:aws:ecs:us-east-1:123456789012:service/prod/web")
                        .reason("MISSING")
                        .build(),
                )
                .build()
        })
        .repeatedly()
        .build();
    let (c, r) = (create(), register());
    let err = fleet(client(&[&no_service, &c, &r])).provision(&request()).await.expect_err("no service");
    assert!(
        matches!(&err, Error::NotFound { what } if what.contains("service web") && what.contains("MISSING")),
        "{err}"
    );
    assert_eq!(c.num_calls() + r.num_calls(), 0);

    let services = mock!(Client::describe_services)
        .sequence()
        .output(|| DescribeServicesOutput::builder().services(service(&[])).build())
        .repeatedly()
        .build();
    let sets = mock!(Client::describe_task_sets)
        .sequence()
        .output(|| DescribeTaskSetsOutput::builder().task_sets(task_set(SET_BLUE, "web/v1/blue", TD_V1, true)).build())
        .repeatedly()
        .build();
    let tasks = mock!(Client::list_tasks).sequence().output(|| ListTasksOutput::builder().build()).repeatedly().build();
    let gone = mock!(Client::describe_task_definition)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"ClientException","message":"Unable to describe task definition."}"#.into()),
        )
        .repeatedly()
        .build();
    let (c, r) = (create(), register());
    let err = fleet(client(&[&services, &sets, &tasks, &gone, &c, &r])).provision(&request()).await.expect_err("no td");
    assert!(
        matches!(&err, Error::NotFound { what } if what.contains("task definition") && what.contains("web:1")),
        "{err}"
    );
    assert_eq!(c.num_calls() + r.num_calls(), 0);
}

/// Scripted: tasks whose `startedBy` names no task set and that carry no tag are attributed to
/// the one task set running their task definition.
#[tokio::test]
async fn unclaimed_tasks_belong_to_the_only_set_running_their_task_definition() {
    let rules = [
        mock!(Client::describe_services)
            .sequence()
            .output(|| DescribeServicesOutput::builder().services(service(&[])).build())
            .repeatedly()
            .build(),
        mock!(Client::describe_task_sets)
            .sequence()
            .output(|| {
                DescribeTaskSetsOutput::builder().task_sets(task_set(SET_BLUE, "web/v1/blue", TD_V1, true)).build()
            })
            .repeatedly()
            .build(),
        mock!(Client::describe_task_definition)
            .sequence()
            .output(|| {
                DescribeTaskDefinitionOutput::builder()
                    .task_definition(definition(TD_V1, 1, "registry.example/app:v1"))
                    .build()
            })
            .repeatedly()
            .build(),
        mock!(Client::list_tasks)
            .sequence()
            .output(|| ListTasksOutput::builder().task_arns("running").build())
            .repeatedly()
            .build(),
        mock!(Client::describe_tasks)
            .sequence()
            .output(|| {
                let mut one = task("b1", "some-scheduler", "10.0.0.1", "RUNNING", "RUNNING");
                one.task_definition_arn = Some(TD_V1.into());
                let mut other = task("x1", "some-scheduler", "10.0.9.9", "RUNNING", "RUNNING");
                other.task_definition_arn = Some("arn:aws:ecs:us-east-1:123456789012:task-definition/other:1".into());
                DescribeTasksOutput::builder().tasks(one).tasks(other).build()
            })
            .repeatedly()
            .build(),
    ];
    let listed = fleet(client(&rules.iter().collect::<Vec<_>>())).list().await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["10.0.0.1:8080"], "{listed:?}");
    assert_eq!(listed[0].version.as_str(), "v1");
}
