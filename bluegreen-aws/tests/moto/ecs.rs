//! ECS set-up in moto for the tests: an `EXTERNAL` service with one task set serving a version,
//! in moto's default VPC.
//!
//! Moto 5.2 as measured: ECS services never start tasks by themselves, but `CreateTaskSet` starts
//! `floor(desiredCount × scale %)` tasks at once (`startedBy` = the account id, the task set's tags
//! copied onto them), `UpdateTaskSet` only stores the scale, and `DeleteTaskSet` leaves the tasks
//! running. Tasks start `RUNNING` and move one status further on every `DescribeTasks` (to
//! `STOPPED` after four) unless the state manager holds them: [`Moto::hold_ecs_tasks`].

use std::io::{Read, Write};
use std::net::TcpStream;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController, DeploymentControllerType,
    LaunchType, NetworkConfiguration, NetworkMode, PortMapping, Scale, ScaleUnit, Tag,
};
use aws_sdk_ecs::Client;

use super::Moto;

/// The container every test task definition runs.
pub(crate) const CONTAINER: &str = "app";
/// Its port, which is the targets' port.
pub(crate) const PORT: u16 = 8080;
/// The image template of the test services.
pub(crate) const IMAGE: &str = "registry.example/app:{version}";

/// An ECS service made by [`Moto::create_ecs_service`].
#[derive(Debug, Clone)]
pub(crate) struct EcsService {
    pub(crate) cluster: String,
    pub(crate) service: String,
    /// The task definition family (named like the service).
    pub(crate) family: String,
    /// The task set serving the first version.
    pub(crate) task_set_arn: String,
}

impl Moto {
    /// Posts `body` (JSON) to moto's own API at `path`; returns the answer.
    fn moto_api(&self, path: &str, body: &str) -> String {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to moto");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("write to moto");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read from moto");
        assert!(answer.starts_with("HTTP/1.1 2") || answer.starts_with("HTTP/1.0 2"), "{path}: {answer}");
        answer
    }

    /// Keeps ECS tasks in their status until a call changes it (moto's default moves a task one
    /// status on at every `DescribeTasks`, so a task listed four times would be `STOPPED`).
    pub(crate) fn hold_ecs_tasks(&self) {
        self.moto_api(
            "/moto-api/state-manager/set-transition",
            r#"{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000000}}"#,
        );
    }

    /// The default VPC's subnets and default security group, with DNS hostnames turned on
    /// (moto's `awsvpc` network interfaces need them).
    fn default_network(&self) -> (Vec<String>, String) {
        let values = |xml: &str, tag: &str| -> Vec<String> {
            xml.split(&format!("<{tag}>")).skip(1).filter_map(|s| s.split('<').next()).map(str::to_owned).collect()
        };
        let subnets = self.raw_query("ec2", "Action=DescribeSubnets&Version=2016-11-15");
        let vpc = values(&subnets, "vpcId").into_iter().next().expect("moto's default VPC");
        let answer = self.raw_query(
            "ec2",
            &format!("Action=ModifyVpcAttribute&Version=2016-11-15&VpcId={vpc}&EnableDnsHostnames.Value=true"),
        );
        assert!(answer.contains("HTTP/1.1 200"), "ModifyVpcAttribute: {answer}");
        let groups = self.raw_query(
            "ec2",
            &format!(
                "Action=DescribeSecurityGroups&Version=2016-11-15&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}\
                 &Filter.2.Name=group-name&Filter.2.Value.1=default"
            ),
        );
        let group = values(&groups, "groupId").into_iter().next().expect("the default security group");
        (values(&subnets, "subnetId").into_iter().take(2).collect(), group)
    }

    /// Creates cluster `cluster` and an `EXTERNAL` service `name` with `desired` desired tasks,
    /// and a task set of `version` (a FARGATE / awsvpc task definition whose container `app` runs
    /// `registry.example/app:<version>` on port 8080) at 100 %, primary, tagged `externalId`
    /// `<name>/<version>/blue`. Tasks are held in their status ([`hold_ecs_tasks`](Self::hold_ecs_tasks)).
    pub(crate) async fn create_ecs_service(
        &self,
        client: &Client,
        cluster: &str,
        name: &str,
        version: &str,
        desired: i32,
    ) -> EcsService {
        self.hold_ecs_tasks();
        let (subnets, group) = self.default_network();
        client.create_cluster().cluster_name(cluster).send().await.expect("create_cluster");
        let container = ContainerDefinition::builder()
            .name(CONTAINER)
            .image(IMAGE.replace("{version}", version))
            // Moto needs each container's own memory for FARGATE.
            .memory(512)
            .port_mappings(PortMapping::builder().container_port(i32::from(PORT)).build())
            .essential(true)
            .build();
        let definition = client
            .register_task_definition()
            .family(name)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(container)
            .send()
            .await
            .expect("register_task_definition");
        let definition_arn =
            definition.task_definition().and_then(|d| d.task_definition_arn()).expect("task definition arn").to_owned();
        client
            .create_service()
            .cluster(cluster)
            .service_name(name)
            .desired_count(desired)
            .deployment_controller(
                DeploymentController::builder().r#type(DeploymentControllerType::External).build().expect("controller"),
            )
            .send()
            .await
            .expect("create_service");
        let external_id = format!("{name}/{version}/blue");
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(subnets))
                    .security_groups(group)
                    .build()
                    .expect("awsvpc configuration"),
            )
            .build();
        let set = client
            .create_task_set()
            .cluster(cluster)
            .service(name)
            .task_definition(&definition_arn)
            .external_id(&external_id)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network)
            .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
            .tags(Tag::builder().key("bluegreen:tag").value(&external_id).build())
            // Ties the tasks to the set (moto copies task set tags onto the tasks but does not
            // set their `startedBy` to the set's id, as ECS does).
            .tags(Tag::builder().key("bluegreen:set").value(format!("{name}-{version}-base")).build())
            .send()
            .await
            .expect("create_task_set");
        let task_set_arn = set.task_set().and_then(|s| s.task_set_arn()).expect("task set arn").to_owned();
        client
            .update_service_primary_task_set()
            .cluster(cluster)
            .service(name)
            .primary_task_set(&task_set_arn)
            .send()
            .await
            .expect("update_service_primary_task_set");
        EcsService { cluster: cluster.to_owned(), service: name.to_owned(), family: name.to_owned(), task_set_arn }
    }
}
