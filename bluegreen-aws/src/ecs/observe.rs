//! Reading the service: its task sets, what each runs, and their tasks as targets.

use aws_sdk_ecs::types::{DeploymentControllerType, DesiredStatus, Task, TaskField, TaskSet};
use bluegreen_core::{Error, Result, Target, TargetId};

use super::known::Revision;
use super::{EcsFleet, SET_KEY};
use crate::error::aws_error;

/// ECS accepts at most this many tasks per `DescribeTasks`.
const DESCRIBE_BATCH: usize = 100;

/// The service as read in one pass.
#[derive(Debug, Clone)]
pub(super) struct Observed {
    /// The service's `desiredCount`, which task set scales are a percentage of.
    pub(super) desired: i32,
    /// Its task sets, each with what it runs and its tasks.
    pub(super) sets: Vec<SetView>,
    /// The service's latest events, newest first (`(service x) has started 2 tasks: …`).
    pub(super) events: Vec<String>,
}

/// One task set.
#[derive(Debug, Clone)]
pub(super) struct SetView {
    pub(super) set: TaskSet,
    pub(super) revision: Revision,
    /// Its tasks: those ECS still wants running, and (when asked for) the stopped ones.
    pub(super) tasks: Vec<Task>,
}

impl SetView {
    pub(super) fn id(&self) -> &str {
        self.set.id().unwrap_or_default()
    }

    pub(super) fn external_id(&self) -> Option<&str> {
        self.set.external_id().filter(|e| !e.is_empty())
    }

    pub(super) fn is_primary(&self) -> bool {
        self.set.status() == Some("PRIMARY")
    }

    /// Tasks ECS keeps running (desired status `RUNNING`, not yet stopped).
    pub(super) fn live(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| is_live(t))
    }

    /// The live tasks as targets (those that have an IP yet).
    pub(super) fn targets(&self) -> impl Iterator<Item = (Target, &Task)> {
        self.live().filter_map(|task| Some((self.target(task)?, task)))
    }

    fn target(&self, task: &Task) -> Option<Target> {
        let address = format!("{}:{}", private_ip(task)?, self.revision.port?);
        Some(Target {
            id: TargetId::from(address.as_str()),
            address,
            zone: task.availability_zone().map(str::to_owned),
            version: self.revision.version.clone(),
            tag: self.external_id().map(str::to_owned),
        })
    }
}

impl Observed {
    /// Every target of every task set.
    pub(super) fn targets(&self) -> Vec<Target> {
        self.sets.iter().flat_map(|s| s.targets().map(|(t, _)| t)).collect()
    }

    /// The target with this id.
    pub(super) fn target(&self, id: &TargetId) -> Option<Target> {
        self.targets().into_iter().find(|t| t.id == *id)
    }

    /// The task sets started for provisioning tag `tag`.
    pub(super) fn tagged<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a SetView> {
        self.sets.iter().filter(move |s| s.external_id() == Some(tag))
    }
}

/// Whether ECS still wants this task to run.
pub(super) fn is_live(task: &Task) -> bool {
    task.desired_status() != Some("STOPPED") && task.last_status() != Some("STOPPED")
}

/// The task's private IPv4 address (its `awsvpc` network interface).
fn private_ip(task: &Task) -> Option<&str> {
    let from_eni = task
        .attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value());
    from_eni.or_else(|| {
        task.containers().iter().flat_map(|c| c.network_interfaces()).find_map(|n| n.private_ipv4_address())
    })
}

/// The task's id (the last part of its ARN), as ECS events show it.
pub(super) fn task_id(task: &Task) -> &str {
    task.task_arn().and_then(|a| a.rsplit('/').next()).unwrap_or("?")
}

/// Whether `task` belongs to `set`: started by it (`startedBy` is the task set id), or carrying the
/// set's `bluegreen:set` tag (moto copies task set tags onto tasks and leaves `startedBy` to the
/// account id).
fn belongs(task: &Task, set: &TaskSet) -> bool {
    let started = set.id().is_some_and(|id| task.started_by() == Some(id));
    let token = set.tags().iter().find(|t| t.key() == Some(SET_KEY)).and_then(|t| t.value());
    let tagged =
        token.is_some_and(|token| task.tags().iter().any(|t| t.key() == Some(SET_KEY) && t.value() == Some(token)));
    started || tagged
}

impl EcsFleet {
    /// Reads the service, its task sets and their tasks (`stopped`: the stopped ones too).
    pub(super) async fn observe_with(&self, stopped: bool) -> Result<Observed> {
        let service = self.describe_service().await?;
        let desired = service.desired_count();
        let events = service.events().iter().take(5).filter_map(|e| e.message()).map(str::to_owned).collect();
        let out = self
            .client
            .describe_task_sets()
            .cluster(&self.cluster)
            .service(&self.service)
            .include(aws_sdk_ecs::types::TaskSetField::Tags)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DescribeTaskSets", &self.where_(), e))?;
        let mut tasks = self.tasks(DesiredStatus::Running).await?;
        if stopped {
            tasks.extend(self.tasks(DesiredStatus::Stopped).await?);
        }
        let mut sets = Vec::new();
        for set in out.task_sets.unwrap_or_default() {
            if !matches!(set.status(), Some("PRIMARY" | "ACTIVE")) {
                continue;
            }
            let arn = set.task_definition().unwrap_or_default().to_owned();
            let revision = self.revision(&arn).await?;
            // Each task to one set only.
            let (mine, rest): (Vec<Task>, Vec<Task>) = tasks.into_iter().partition(|t| belongs(t, &set));
            tasks = rest;
            sets.push(SetView { set, revision, tasks: mine });
        }
        // A live task no set claims goes to the one set running its task definition, if only one
        // does (in case ECS leaves `startedBy` unset or set to something else).
        for task in tasks.into_iter().filter(is_live) {
            let mut running_it = sets.iter_mut().filter(|s| s.set.task_definition() == task.task_definition_arn());
            if let (Some(set), None) = (running_it.next(), running_it.next()) {
                set.tasks.push(task);
            }
        }
        Ok(Observed { desired, sets, events })
    }

    /// Reads the service's live task sets and tasks.
    pub(super) async fn observe(&self) -> Result<Observed> {
        self.observe_with(false).await
    }

    /// The service, which must exist and use the `EXTERNAL` deployment controller.
    pub(super) async fn describe_service(&self) -> Result<aws_sdk_ecs::types::Service> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DescribeServices", &format!("cluster {}", self.cluster), e))?;
        // A missing service is not an error of the call: ECS lists it under `failures`.
        let service = out.services.unwrap_or_default().into_iter().find(|s| s.status() != Some("INACTIVE"));
        let service = service.ok_or_else(|| {
            let reason = out.failures.unwrap_or_default().into_iter().find_map(|f| f.reason).unwrap_or_default();
            Error::not_found(format!(
                "ECS {} ({})",
                self.where_(),
                if reason.is_empty() { "INACTIVE" } else { &reason }
            ))
        })?;
        let controller = service.deployment_controller().map(|d| d.r#type().clone());
        if controller != Some(DeploymentControllerType::External) {
            return Err(Error::invalid(
                "service",
                format!(
                    "ECS {} uses the {} deployment controller; EcsFleet drives task sets, which need EXTERNAL",
                    self.where_(),
                    controller.map_or_else(|| "ECS".to_owned(), |c| c.as_str().to_owned())
                ),
            ));
        }
        Ok(service)
    }

    /// The cluster's tasks of this service with `status` as their desired status.
    async fn tasks(&self, status: DesiredStatus) -> Result<Vec<Task>> {
        let mut arns = Vec::new();
        let mut next = None;
        loop {
            let out = self
                .client
                .list_tasks()
                .cluster(&self.cluster)
                .service_name(&self.service)
                .desired_status(status.clone())
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| aws_error("ecs:ListTasks", &self.where_(), e))?;
            arns.extend(out.task_arns.unwrap_or_default());
            next = out.next_token;
            if next.is_none() {
                break;
            }
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(DESCRIBE_BATCH) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| aws_error("ecs:DescribeTasks", &self.where_(), e))?;
            tasks.extend(out.tasks.unwrap_or_default());
        }
        Ok(tasks)
    }
}
