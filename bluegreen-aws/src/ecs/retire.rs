//! Retiring: whole task sets are deleted, parts of one scaled down; the tasks are stopped.

use std::collections::BTreeSet;

use aws_sdk_ecs::types::{Scale, ScaleUnit};
use bluegreen_core::{Error, Result, TargetId};

use super::observe::SetView;
use super::{ecs_error, EcsFleet};

/// The reason ECS shows on a task this fleet stopped.
const STOP_REASON: &str = "bluegreen: retired after draining";

impl EcsFleet {
    /// Stops the tasks named by `targets`; those already gone are ignored.
    pub(super) async fn retire_tasks(&self, targets: &[TargetId]) -> Result<()> {
        let wanted: BTreeSet<&str> = targets.iter().map(TargetId::as_str).collect();
        let observed = self.observe().await?;
        // Per task set: the task ARNs to stop, and whether that is all of the set.
        let mut plan: Vec<(&SetView, Vec<String>, bool)> = Vec::new();
        for set in &observed.sets {
            let live = set.live().count();
            let stop: Vec<String> = set
                .targets()
                .filter(|(t, _)| wanted.contains(t.id.as_str()))
                .filter_map(|(_, task)| task.task_arn().map(str::to_owned))
                .collect();
            if !stop.is_empty() {
                let whole = stop.len() >= live;
                plan.push((set, stop, whole));
            }
        }
        for (set, stop, whole) in &plan {
            if *whole {
                if set.is_primary() {
                    // ECS serves the primary set's definition as the service's: hand that role to
                    // the newest set that stays before deleting this one.
                    let staying = observed
                        .sets
                        .iter()
                        .filter(|s| !plan.iter().any(|(p, _, w)| *w && p.id() == s.id()))
                        .max_by_key(|s| s.set.created_at().map(|d| (d.secs(), d.subsec_nanos())));
                    if let Some(next) = staying {
                        self.client
                            .update_service_primary_task_set()
                            .cluster(&self.cluster)
                            .service(&self.service)
                            .primary_task_set(next.set.task_set_arn().unwrap_or_else(|| next.id()))
                            .send()
                            .await
                            .map_err(|e| ecs_error("ecs:UpdateServicePrimaryTaskSet", &self.where_(), e))?;
                    }
                }
                self.delete_task_set(set.set.task_set_arn().unwrap_or_else(|| set.id())).await?;
            } else {
                // Lower the scale first, so ECS does not start replacements for the stopped tasks.
                let left = set.live().count() - stop.len();
                let desired = usize::try_from(observed.desired).unwrap_or(0).max(1);
                #[allow(clippy::cast_precision_loss)]
                let percent = ((left * 100 * 10_000 / desired) as f64 / 10_000.0).min(100.0);
                self.client
                    .update_task_set()
                    .cluster(&self.cluster)
                    .service(&self.service)
                    .task_set(set.set.task_set_arn().unwrap_or_else(|| set.id()))
                    .scale(Scale::builder().unit(ScaleUnit::Percent).value(percent).build())
                    .send()
                    .await
                    .map_err(|e| {
                        ecs_error("ecs:UpdateTaskSet", &format!("task set {} of {}", set.id(), self.where_()), e)
                    })?;
            }
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
                    .map_err(|e| ecs_error("ecs:StopTask", &format!("task {task} of {}", self.where_()), e))?;
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
            .map_err(|e| ecs_error("ecs:DeleteTaskSet", &format!("task set {task_set} of {}", self.where_()), e))?;
        Ok(())
    }
}
