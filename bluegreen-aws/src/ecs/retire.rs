//! Retiring: whole task sets are deleted and their tasks stopped. Part of a set is refused: ECS,
//! not the caller, picks which task a lower scale stops, and it could pick one still serving.

use std::collections::BTreeSet;

use bluegreen_core::{Error, Result, TargetId};

use super::observe::SetView;
use super::EcsFleet;
use crate::error::aws_error;

/// The reason ECS shows on a task this fleet stopped.
const STOP_REASON: &str = "bluegreen: retired after draining";

impl EcsFleet {
    /// Stops the tasks named by `targets`; those already gone are ignored.
    pub(super) async fn retire_tasks(&self, targets: &[TargetId]) -> Result<()> {
        let wanted: BTreeSet<&str> = targets.iter().map(TargetId::as_str).collect();
        let observed = self.observe().await?;
        // Per task set: the task ARNs to stop.
        let mut plan: Vec<(&SetView, Vec<String>)> = Vec::new();
        for set in &observed.sets {
            let stop: Vec<String> = set
                .targets()
                .filter(|(t, _)| wanted.contains(t.id.as_str()))
                .filter_map(|(_, task)| task.task_arn().map(str::to_owned))
                .collect();
            if stop.is_empty() {
                continue;
            }
            let live = set.live().count();
            if stop.len() < live {
                return Err(Error::invalid(
                    "strategy",
                    format!(
                        "retiring {} of the {live} tasks of task set {} of {}: ECS retires part of a task set by \
                         lowering its scale and picks the task to stop itself, possibly one still serving; on \
                         ECS deploy blue_green, canary or linear (whole task sets)",
                        stop.len(),
                        set.id(),
                        self.where_()
                    ),
                ));
            }
            plan.push((set, stop));
        }
        for (set, stop) in &plan {
            if set.is_primary() {
                // ECS serves the primary set's definition as the service's: hand that role to the
                // newest set that stays and runs tasks (not one whose tasks never started).
                let staying = observed
                    .sets
                    .iter()
                    .filter(|s| !plan.iter().any(|(p, _)| p.id() == s.id()) && s.live().count() > 0)
                    .max_by_key(|s| s.set.created_at().map(|d| (d.secs(), d.subsec_nanos())));
                if let Some(next) = staying {
                    self.client
                        .update_service_primary_task_set()
                        .cluster(&self.cluster)
                        .service(&self.service)
                        .primary_task_set(next.set.task_set_arn().unwrap_or_else(|| next.id()))
                        .send()
                        .await
                        .map_err(|e| aws_error("ecs:UpdateServicePrimaryTaskSet", &self.where_(), e))?;
                }
            }
            self.delete_task_set(set.set.task_set_arn().unwrap_or_else(|| set.id())).await?;
            // Deleting a set stops its tasks in time; stopping them now makes it immediate and
            // observable (and some emulators do not stop them at all).
            for task in stop {
                self.client
                    .stop_task()
                    .cluster(&self.cluster)
                    .task(task)
                    .reason(STOP_REASON)
                    .send()
                    .await
                    .map_err(|e| aws_error("ecs:StopTask", &format!("task {task} of {}", self.where_()), e))?;
            }
        }
        if plan.is_empty() {
            return Ok(());
        }
        let listed = self.observe().await?.targets();
        if let Some(left) = listed.iter().find(|t| wanted.contains(t.id.as_str())) {
            return Err(Error::ReadBackMismatch {
                what: format!("task {} of {}", left.id, self.where_()),
                expected: "stopped".into(),
                observed: "still running".into(),
            });
        }
        Ok(())
    }

    /// Deletes a task set (ECS stops its tasks), even if it is not scaled to zero.
    pub(super) async fn delete_task_set(&self, task_set: &str) -> Result<()> {
        self.client
            .delete_task_set()
            .cluster(&self.cluster)
            .service(&self.service)
            .task_set(task_set)
            .force(true)
            .send()
            .await
            .map_err(|e| aws_error("ecs:DeleteTaskSet", &format!("task set {task_set} of {}", self.where_()), e))?;
        Ok(())
    }
}
