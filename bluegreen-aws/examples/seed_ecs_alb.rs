//! The seed's release, end to end: the ECS service `sales-area-graphql` (task sets under the
//! `EXTERNAL` deployment controller) serves v86 behind an Application Load Balancer whose
//! `/reporting*` rule forwards to the blue target group; v87 is deployed blue-green through the
//! core executor with [`EcsFleet`] and [`AlbRouter::on_rule`]: register the v87 task definition,
//! start its tasks in a new task set, wait until they are healthy, register them in the green
//! target group, switch the rule's weights, drain and deregister the v86 targets, stop the v86
//! tasks. It prints the deployment as ECS service events read:
//!
//! ```text
//! (service sales-area-graphql) has started 2 tasks: (task 1a2b…) (task 3c4d…).
//! (service sales-area-graphql) registered 2 targets in (target-group arn:…:targetgroup/green/…)
//! (service sales-area-graphql) switched /reporting* to (target-group arn:…:targetgroup/green/…) 100%
//! ...
//! (service sales-area-graphql) has reached a steady state.
//! ```
//!
//! It runs against the moto AWS emulator: at `$BLUEGREEN_AWS_ENDPOINT` if set, else a
//! `moto_server` it starts on 127.0.0.1 (`$MOTO_SERVER`, the workspace's `.venv-moto`, or `PATH`;
//! moto 5.2.5 or later). Because the emulator starts empty, [`run`] first creates what a real
//! account already has — the VPC settings, the load balancer, its listener, rule and target
//! groups, the cluster, the v86 task definition, the service and its v86 task set, and the v86
//! targets in the blue group. On a real account only [`deploy`] runs. Moto runs no containers,
//! so the ALB (moto) reports every registered target healthy at once; on a real account the
//! switch waits for the target group's health checks.
//!
//! `cargo run -p bluegreen-aws --example seed_ecs_alb`

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController, DeploymentControllerType,
    DesiredStatus, LaunchType, NetworkConfiguration, NetworkMode, PortMapping, Scale, ScaleUnit, Tag,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, PathPatternConditionConfig, ProtocolEnum, RuleCondition, TargetTypeEnum,
};
use bluegreen_aws::{AlbRouter, AwsConfig, CallLog, EcsFleet};
use bluegreen_core::{
    BlueGreen, EventKind, Executor, Fleet, HealthPolicy, MemorySink, PoolName, Router, Spec, Status, Strategy,
};

/// What [`run`] returns errors as.
pub type BoxError = Box<dyn Error + Send + Sync>;

const CLUSTER: &str = "sales";
const SERVICE: &str = "sales-area-graphql";
const CONTAINER: &str = "graphql";
const PORT: u16 = 4000;
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sales-area-graphql:{version}";
const PATH: &str = "/reporting*";

/// The load balancer's pieces the deploy uses.
#[derive(Debug, Clone)]
pub struct Alb {
    /// The HTTP listener.
    pub listener_arn: String,
    /// Its `/reporting*` rule, whose forward action is weighted.
    pub rule_arn: String,
    /// The target group serving v86.
    pub blue_arn: String,
    /// The empty target group v87 goes into.
    pub green_arn: String,
}

/// Sets up the emulator at `endpoint` and deploys v87; returns the deployment's log lines.
///
/// # Errors
/// When the set-up or the deploy fails, or the deploy did not succeed.
pub async fn run(endpoint: &str) -> Result<Vec<String>, BoxError> {
    let calls = CallLog::new();
    let sdk = AwsConfig::new()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("testing", "testing")
        .call_log(&calls)
        .load()
        .await;
    let alb = emulate_account(endpoint, &sdk).await?;
    calls.reset();
    let mut lines = deploy(&sdk, &alb).await?;
    // What the deploy cost in API calls (docs/BENCHMARKS.md), the emulator's set-up left out.
    let by_call: Vec<String> = calls.counts().iter().map(|(call, n)| format!("{call} {n}")).collect();
    lines.push(format!("AWS API calls: {} ({} writes): {}", calls.total(), calls.writes(), by_call.join(", ")));
    Ok(lines)
}

/// The deploy itself, as on a real account: v87 blue-green, the seed's log lines.
///
/// # Errors
/// When the deploy cannot start or does not succeed.
pub async fn deploy(sdk: &SdkConfig, alb: &Alb) -> Result<Vec<String>, BoxError> {
    let fleet = EcsFleet::builder(sdk, CLUSTER, SERVICE)
        .container(CONTAINER)
        .image(IMAGE)
        .env("APP_VERSION", "{version}")
        .poll_interval(Duration::from_millis(200))
        .start_timeout(Duration::from_secs(120))
        .build()?;
    let pools = [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())];
    let router = AlbRouter::new(sdk, &alb.listener_arn, pools.clone())?
        .on_rule(&alb.rule_arn)?
        .drain_poll_interval(Duration::from_millis(200));
    // The switch waits for the ALB's own health checks (moto reports registered targets
    // healthy at once; a real ALB after its healthy threshold).
    let probe = router.health_probe();
    let sink = MemorySink::new();
    let executor = Executor::builder(Arc::new(router), Arc::new(fleet), Arc::new(probe)).sink(sink.clone()).build();
    let mut spec = Spec::new(SERVICE, "v87", Strategy::BlueGreen(BlueGreen::default()));
    spec.health = HealthPolicy {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        ..HealthPolicy::default()
    };
    spec.drain.timeout = Duration::from_secs(5);
    let outcome = executor.deploy(&spec).await?;
    let tasks = task_ids(sdk).await?;
    let groups: BTreeMap<PoolName, String> = pools.into_iter().map(|(p, arn)| (PoolName::from(p), arn)).collect();
    let lines = seed_log(&sink, &tasks, &groups);
    if outcome.status != Status::Succeeded {
        return Err(format!(
            "the deploy {}: {}\n{}",
            outcome.status,
            outcome.reason.unwrap_or_default(),
            lines.join("\n")
        )
        .into());
    }
    Ok(lines)
}

/// The executor's events as the seed's ECS service events.
fn seed_log(sink: &MemorySink, tasks: &BTreeMap<String, String>, groups: &BTreeMap<PoolName, String>) -> Vec<String> {
    let svc = format!("(service {SERVICE})");
    let task_list = |targets: &[bluegreen_core::TargetId]| {
        let names: Vec<String> = targets
            .iter()
            .map(|t| format!("(task {})", tasks.get(t.as_str()).map_or(t.as_str(), String::as_str)))
            .collect();
        names.join(" ")
    };
    let group = |pool: &PoolName| format!("(target-group {})", groups.get(pool).map_or(pool.as_str(), String::as_str));
    sink.events()
        .into_iter()
        .filter_map(|event| match event.kind {
            EventKind::DeploymentStarted { from, to, .. } => Some(format!(
                "{svc} began a blue-green deployment from {} to {to}.",
                from.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
            )),
            EventKind::TargetsStarted { targets, .. } if !targets.is_empty() => {
                Some(format!("{svc} has started {} tasks: {}.", targets.len(), task_list(&targets)))
            }
            EventKind::TargetsRegistered { pool, targets } => {
                Some(format!("{svc} registered {} targets in {}", targets.len(), group(&pool)))
            }
            EventKind::TrafficShifted { to, .. } => {
                let parts: Vec<String> = to.live_pools().map(|p| format!("{} {}%", group(p), to.weight(p))).collect();
                Some(format!("{svc} switched {PATH} to {}", parts.join(", ")))
            }
            EventKind::DrainStarted { targets, .. } => {
                Some(format!("{svc} has begun draining connections on {} tasks.", targets.len()))
            }
            EventKind::TargetsDeregistered { pool, targets } => {
                Some(format!("{svc} deregistered {} targets in {}", targets.len(), group(&pool)))
            }
            EventKind::TargetsStopped { targets } => {
                Some(format!("{svc} has stopped {} running tasks: {}.", targets.len(), task_list(&targets)))
            }
            EventKind::SteadyState { .. } => Some(format!("{svc} has reached a steady state.")),
            EventKind::DeploymentFinished { status, reason } => {
                Some(format!("{svc} deployment {status}{}.", reason.map(|r| format!(": {r}")).unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

/// Task id by target (`ip:port`), for every task of the cluster, stopped ones included.
async fn task_ids(sdk: &SdkConfig) -> Result<BTreeMap<String, String>, BoxError> {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let mut ids = BTreeMap::new();
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let arns = ecs.list_tasks().cluster(CLUSTER).desired_status(status).send().await?.task_arns.unwrap_or_default();
        if arns.is_empty() {
            continue;
        }
        for task in ecs.describe_tasks().cluster(CLUSTER).set_tasks(Some(arns)).send().await?.tasks() {
            let ip =
                task.attachments().iter().flat_map(|a| a.details()).find(|d| d.name() == Some("privateIPv4Address"));
            if let (Some(ip), Some(arn)) = (ip.and_then(|d| d.value()), task.task_arn()) {
                ids.insert(format!("{ip}:{PORT}"), arn.rsplit('/').next().unwrap_or(arn).to_owned());
            }
        }
    }
    Ok(ids)
}

/// Creates in the emulator what a real account already has: the load balancer (listener,
/// `/reporting*` rule, blue and green `ip` target groups), the cluster, the v86 task definition,
/// the service with its v86 task set, and the v86 tasks registered in blue.
async fn emulate_account(endpoint: &str, sdk: &SdkConfig) -> Result<Alb, BoxError> {
    // Moto moves a task one status on at every DescribeTasks unless told to hold it.
    post(
        endpoint,
        "/moto-api/state-manager/set-transition",
        "application/json",
        r#"{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000000}}"#,
        "",
    )?;
    let ec2 = |body: &str| {
        post(endpoint, "/", "application/x-www-form-urlencoded", &format!("{body}&Version=2016-11-15"), "ec2")
    };
    let values = |xml: &str, tag: &str| -> Vec<String> {
        xml.split(&format!("<{tag}>")).skip(1).filter_map(|s| s.split('<').next()).map(str::to_owned).collect()
    };
    let subnets_xml = ec2("Action=DescribeSubnets")?;
    let subnets: Vec<String> = values(&subnets_xml, "subnetId").into_iter().take(2).collect();
    let vpc = values(&subnets_xml, "vpcId").into_iter().next().ok_or("the emulator has no default VPC")?;
    // awsvpc tasks in moto need DNS hostnames in their VPC.
    ec2(&format!("Action=ModifyVpcAttribute&VpcId={vpc}&EnableDnsHostnames.Value=true"))?;
    let groups = ec2(&format!("Action=DescribeSecurityGroups&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"))?;
    let group = values(&groups, "groupId").into_iter().next().ok_or("the emulator's VPC has no security group")?;

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
    let lb = elb.create_load_balancer().name("sales").set_subnets(Some(subnets.clone())).send().await?;
    let lb_arn = lb.load_balancers()[0].load_balancer_arn().ok_or("no load balancer ARN")?.to_owned();
    let mut tgs = Vec::new();
    for name in ["blue", "green"] {
        let tg = elb
            .create_target_group()
            .name(format!("{SERVICE}-{name}"))
            .protocol(ProtocolEnum::Http)
            .port(i32::from(PORT))
            .vpc_id(&vpc)
            .target_type(TargetTypeEnum::Ip)
            .send()
            .await?;
        tgs.push(tg.target_groups()[0].target_group_arn().ok_or("no target group ARN")?.to_owned());
    }
    let forward_blue = || Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(&tgs[0]).build();
    let listener = elb
        .create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(ProtocolEnum::Http)
        .port(80)
        .default_actions(forward_blue())
        .send()
        .await?;
    let listener_arn = listener.listeners()[0].listener_arn().ok_or("no listener ARN")?.to_owned();
    let rule = elb
        .create_rule()
        .listener_arn(&listener_arn)
        .priority(10)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(PathPatternConditionConfig::builder().values(PATH).build())
                .build(),
        )
        .actions(forward_blue())
        .send()
        .await?;
    let rule_arn = rule.rules()[0].rule_arn().ok_or("no rule ARN")?.to_owned();

    let ecs = aws_sdk_ecs::Client::new(sdk);
    ecs.create_cluster().cluster_name(CLUSTER).send().await?;
    let definition = ecs
        .register_task_definition()
        .family(SERVICE)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("512")
        .memory("1024")
        .container_definitions(
            ContainerDefinition::builder()
                .name(CONTAINER)
                .image(IMAGE.replace("{version}", "v86"))
                .memory(1024)
                .port_mappings(PortMapping::builder().container_port(i32::from(PORT)).build())
                .essential(true)
                .build(),
        )
        .send()
        .await?;
    let definition_arn =
        definition.task_definition().and_then(|d| d.task_definition_arn()).ok_or("no task definition ARN")?.to_owned();
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name(SERVICE)
        .desired_count(2)
        .deployment_controller(DeploymentController::builder().r#type(DeploymentControllerType::External).build()?)
        .send()
        .await?;
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().set_subnets(Some(subnets)).security_groups(group).build()?)
        .build();
    let set = ecs
        .create_task_set()
        .cluster(CLUSTER)
        .service(SERVICE)
        .task_definition(&definition_arn)
        .external_id(format!("{SERVICE}/v86/blue"))
        .launch_type(LaunchType::Fargate)
        .network_configuration(network)
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
        // Moto copies task set tags onto its tasks but does not set their `startedBy` to the
        // set's id as ECS does; this tag ties them (EcsFleet reads either).
        .tags(Tag::builder().key("bluegreen:set").value("v86-pipeline").build())
        .send()
        .await?;
    let set_arn = set.task_set().and_then(|s| s.task_set_arn()).ok_or("no task set ARN")?;
    ecs.update_service_primary_task_set().cluster(CLUSTER).service(SERVICE).primary_task_set(set_arn).send().await?;

    // The v86 tasks serve in blue.
    let fleet = EcsFleet::builder(sdk, CLUSTER, SERVICE).container(CONTAINER).image(IMAGE).build()?;
    let router = AlbRouter::new(sdk, &listener_arn, [("blue", tgs[0].clone())])?;
    router.add_targets(&"blue".into(), &fleet.list().await?).await?;
    Ok(Alb { listener_arn, rule_arn, blue_arn: tgs[0].clone(), green_arn: tgs[1].clone() })
}

/// One unsigned HTTP/1.1 POST to the emulator (moto checks no signatures; `service` names the
/// AWS query API in the authorization header, empty for moto's own API).
fn post(endpoint: &str, path: &str, content_type: &str, body: &str, service: &str) -> Result<String, BoxError> {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr)?;
    let auth = if service.is_empty() {
        String::new()
    } else {
        format!(
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=0\r\n"
        )
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 2") && !answer.starts_with("HTTP/1.0 2") {
        return Err(format!("POST {path}: {}", answer.lines().next().unwrap_or("no answer")).into());
    }
    Ok(answer)
}

/// A `moto_server` started by this example, stopped on drop.
struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `moto_server` on a free 127.0.0.1 port; returns it and its endpoint.
fn start_moto() -> Result<(Emulator, String), BoxError> {
    let workspace_venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-moto/bin/moto_server");
    let binary = std::env::var_os("MOTO_SERVER")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| workspace_venv.is_file().then_some(workspace_venv))
        .unwrap_or_else(|| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = std::process::Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {} ({e}); set MOTO_SERVER or BLUEGREEN_AWS_ENDPOINT", binary.display()))?;
    let emulator = Emulator(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if post(&endpoint, "/moto-api/reset", "application/json", "", "").is_ok() {
            return Ok((emulator, endpoint));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{} did not answer on {endpoint} within 60 s", binary.display()).into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (_emulator, endpoint) = match std::env::var("BLUEGREEN_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => (None, endpoint),
        _ => {
            let (emulator, endpoint) = start_moto()?;
            (Some(emulator), endpoint)
        }
    };
    for line in run(&endpoint).await? {
        println!("{line}");
    }
    Ok(())
}
