//! The ECS fleet: targets are the tasks of an ECS service's task sets (the `EXTERNAL`
//! deployment controller), and a version is a task definition revision.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ecs::Client;
use bluegreen_core::{Error, Fleet, FleetCapabilities, ProvisionRequest, Result, Target, TargetId, Version};

mod config;
mod diagnose;
mod known;
mod observe;
mod provision;
mod retire;
mod revision;

pub use config::EcsFleetConfig;
use known::KnownRevisions;

/// Task tag naming the provisioning tag (the task set's `externalId`) its task was started for.
const TAG_KEY: &str = "bluegreen:tag";
/// Task set (and task) tag holding the set's client token: ties a task to its set where ECS does
/// not set the task's `startedBy` to the set's id (emulators), even when two sets share a tag.
const SET_KEY: &str = "bluegreen:set";
/// Task definition (and task) tag naming the version a revision runs.
const VERSION_KEY: &str = "bluegreen:version";

/// Runs targets as the tasks of one ECS service with the `EXTERNAL` deployment controller:
/// every provisioning tag gets its own task set, so blue and green (or a rolling deploy's
/// batches) are task sets side by side, and the router (an [`AlbRouter`](crate::AlbRouter))
/// moves traffic between their tasks.
///
/// - **A target** is one task: its id and address are both `<private IPv4>:<container port>`
///   (the ALB knows an `ip` target by address only), its zone the task's availability zone, its
///   tag the task set's `externalId`, its version the one of its task definition revision.
/// - **A version** is a task definition revision: a copy of the service's current one (its
///   primary task set's) with [`container`](EcsFleetBuilder::container)'s image set from the
///   [`image`](EcsFleetBuilder::image) template and the [`env`](EcsFleetBuilder::env)
///   variables set, tagged `bluegreen:version=<version>`. An existing revision of the family with
///   that tag and image is reused, so a re-run registers nothing.
/// - **[`provision`](Fleet::provision)** ensures the tag's tasks: it counts the running and
///   starting tasks of the task sets whose `externalId` is the tag, creates one more task set for
///   the missing ones (scale = missing ÷ the service's `desiredCount`, network configuration and
///   launch type copied from the primary task set), and waits (bounded by
///   [`start_timeout`](EcsFleetBuilder::start_timeout)) until every task is `RUNNING` with an IP.
///   A task that stops first fails the call with its stopped reason, its containers' reasons
///   (`CannotPullContainerError: …`) and the service's latest events; the task set the call
///   created is then deleted again (ECS would retry its tasks forever). The request's `zones`
///   are not used: ECS spreads a task set's tasks over the subnets of its network configuration.
/// - **[`retire`](Fleet::retire)** of every task of a task set deletes the set (making another
///   set that runs tasks primary first if it was the primary one) and stops its tasks. Retiring
///   part of a set is refused ([`Error::Invalid`], before any write): ECS retires part of a set
///   by lowering its scale and picks the task to stop itself, possibly one still serving. So on
///   ECS, deploy blue-green, canary or linear (whole task sets), not rolling.
/// - **[`update`](Fleet::update)** in place is impossible (a task's definition is fixed): it is
///   refused with [`Error::Invalid`].
/// - **[`list`](Fleet::list)** reads the task sets and their tasks on every call (task
///   definitions are immutable, so what a revision runs is remembered). A task belongs to the set
///   its `startedBy` names, else to the set whose `bluegreen:set` tag it carries, else to the only
///   set running its task definition.
///
/// # Assumptions
/// - The service uses the `EXTERNAL` deployment controller, has at least one task set to copy
///   (the version serving now), and its tasks use `awsvpc` networking (every task has its own IP).
/// - The task sets have no `loadBalancers` of their own: the router registers the tasks.
/// - One deployment at a time drives the service (the state store's lock).
///
/// # Caveats
/// - A task set holds at most the service's `desiredCount` tasks (scale ≤ 100 %): a provision of
///   more is refused before any write.
/// - Task ids are addresses, and `awsvpc` may give a new task the address of a stopped one; the
///   whole-set rule keeps old and new tasks alive side by side until the old set goes, so a
///   rollback never mistakes one for the other.
///
/// # Errors
/// - [`Error::Invalid`] from [`build`](EcsFleetBuilder::build) for a missing or malformed
///   setting (no AWS call), and from `provision` for a version that is not an image tag, a
///   service not under the `EXTERNAL` controller, or a container not in the task definition —
///   all before any write.
/// - [`Error::NotFound`] naming the cluster, service or task definition that does not exist,
///   before any write.
/// - [`Error::Backend`] for AWS errors (access denied names the IAM action, and is permanent).
/// - [`Error::Unhealthy`] when tasks stop while starting, [`Error::Timeout`] when they do not
///   run in time; both with the reasons ECS gives.
///
/// IAM actions: `ecs:DescribeServices`, `ecs:DescribeTaskSets`, `ecs:ListTasks`,
/// `ecs:DescribeTasks`, `ecs:DescribeTaskDefinition`, `ecs:ListTaskDefinitions`,
/// `ecs:RegisterTaskDefinition`, `ecs:TagResource` (tags on the new revision and task set),
/// `ecs:CreateTaskSet`, `ecs:UpdateTaskSet`, `ecs:DeleteTaskSet`,
/// `ecs:UpdateServicePrimaryTaskSet`, `ecs:StopTask`, and `iam:PassRole` on the task
/// definition's task and execution roles.
///
/// ```no_run
/// # async fn example(sdk: &aws_config::SdkConfig) -> bluegreen_core::Result<()> {
/// use bluegreen_aws::EcsFleet;
/// let fleet = EcsFleet::builder(sdk, "prod", "sales-area-graphql")
///     .container("app")
///     .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/sales-area-graphql:{version}")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EcsFleet {
    client: Client,
    cluster: String,
    service: String,
    container: String,
    image: String,
    env: Vec<(String, String)>,
    poll: Duration,
    start_timeout: Duration,
    /// Task definition ARN → what it runs. Revisions are immutable, so this never goes stale.
    revisions: KnownRevisions,
}

/// Builds an [`EcsFleet`]; see [`EcsFleet::builder`].
#[derive(Debug, Clone)]
pub struct EcsFleetBuilder {
    client: Client,
    cluster: String,
    service: String,
    container: Option<String>,
    image: Option<String>,
    env: Vec<(String, String)>,
    poll: Duration,
    start_timeout: Duration,
}

impl EcsFleet {
    /// A builder for the fleet of `service` in `cluster` (names or ARNs).
    pub fn builder(config: &SdkConfig, cluster: impl Into<String>, service: impl Into<String>) -> EcsFleetBuilder {
        Self::builder_from_client(Client::new(config), cluster, service)
    }

    /// Like [`builder`](Self::builder), through an existing client (one with interceptors, a
    /// test's scripted client).
    pub fn builder_from_client(
        client: Client,
        cluster: impl Into<String>,
        service: impl Into<String>,
    ) -> EcsFleetBuilder {
        EcsFleetBuilder {
            client,
            cluster: cluster.into(),
            service: service.into(),
            container: None,
            image: None,
            env: Vec::new(),
            poll: Duration::from_secs(5),
            start_timeout: Duration::from_secs(600),
        }
    }

    /// The cluster, as configured.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The service, as configured.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The image `version` runs: the template with `{version}` replaced.
    pub fn image_of(&self, version: &Version) -> String {
        self.image.replace("{version}", version.as_str())
    }

    fn where_(&self) -> String {
        format!("service {} in cluster {}", self.service, self.cluster)
    }
}

impl EcsFleetBuilder {
    /// The container whose image changes with the version and whose first port mapping is the
    /// target's port. Required.
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// The image a version runs, with `{version}` where the version goes
    /// (`registry/app:{version}`). Required.
    #[must_use]
    pub fn image(mut self, template: impl Into<String>) -> Self {
        self.image = Some(template.into());
        self
    }

    /// Sets an environment variable of the container in every new revision; `{version}` in
    /// `value` is replaced by the version.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// How often a start is observed (default 5 s).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }

    /// How long `provision` waits for tasks to run (default 10 min: image pulls and
    /// capacity provider scale-out take minutes).
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The fleet.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the setting (`cluster`, `service`, `container`, `image`,
    /// `env`) that is missing or malformed. No AWS call is made.
    pub fn build(self) -> Result<EcsFleet> {
        for (field, value) in [("cluster", &self.cluster), ("service", &self.service)] {
            if value.trim().is_empty() {
                return Err(Error::invalid(field, "must not be empty"));
            }
        }
        let container = self.container.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            Error::invalid("container", "name the container whose image changes (EcsFleetBuilder::container)")
        })?;
        let image = self.image.ok_or_else(|| {
            Error::invalid(
                "image",
                "give the image template, such as \"registry/app:{version}\" (EcsFleetBuilder::image)",
            )
        })?;
        if !image.contains("{version}") || image.starts_with("{version}") {
            return Err(Error::invalid("image", format!("{image:?} must contain {{version}} after the repository")));
        }
        for (i, (name, _)) in self.env.iter().enumerate() {
            if name.is_empty() || name.contains('=') {
                return Err(Error::invalid(format!("env[{i}]"), format!("{name:?} is not a variable name")));
            }
        }
        Ok(EcsFleet {
            client: self.client,
            cluster: self.cluster,
            service: self.service,
            container,
            image,
            env: self.env,
            poll: self.poll,
            start_timeout: self.start_timeout,
            revisions: KnownRevisions::default(),
        })
    }
}

#[async_trait]
impl Fleet for EcsFleet {
    fn name(&self) -> &str {
        "ecs"
    }

    /// Versions are whole task sets: a task is never moved to another version in place.
    fn capabilities(&self) -> FleetCapabilities {
        FleetCapabilities::all().with_updates_in_place(false)
    }

    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        self.ensure_tasks(request).await
    }

    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target> {
        let observed = self.observe().await?;
        let current = observed.target(target).ok_or_else(|| {
            Error::not_found(format!("target {target} (no running task of {} has that address)", self.where_()))
        })?;
        if current.version == *version {
            return Ok(current.clone());
        }
        Err(Error::invalid(
            "strategy.mode",
            format!(
                "an ECS task cannot be updated in place ({target} runs {}, asked for {version}); \
                 use a rolling deploy with mode = \"replace\", which starts new tasks and retires old ones",
                current.version
            ),
        ))
    }

    async fn retire(&self, targets: &[TargetId]) -> Result<()> {
        self.retire_tasks(targets).await
    }

    async fn list(&self) -> Result<Vec<Target>> {
        Ok(self.observe().await?.targets())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::from_conf(
            aws_sdk_ecs::Config::builder().behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest()).build(),
        )
    }

    #[test]
    fn build_refuses_missing_and_malformed_settings_by_field() {
        let ok = || EcsFleet::builder_from_client(client(), "c", "s").container("app").image("r/app:{version}");
        assert!(ok().build().is_ok());
        let field = |b: EcsFleetBuilder| b.build().unwrap_err().field().map(str::to_owned);
        assert_eq!(field(EcsFleet::builder_from_client(client(), "", "s")), Some("cluster".into()));
        assert_eq!(field(EcsFleet::builder_from_client(client(), "c", " ").container("a")), Some("service".into()));
        assert_eq!(
            field(EcsFleet::builder_from_client(client(), "c", "s").image("r:{version}")),
            Some("container".into())
        );
        assert_eq!(field(ok().image("r/app:latest")), Some("image".into()));
        assert_eq!(field(ok().env("A=B", "x")), Some("env[0]".into()));
    }
}
