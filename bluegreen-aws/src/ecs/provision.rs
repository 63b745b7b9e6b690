//! Provisioning: a task set per provisioning tag (and per top-up), waited for until its tasks run.

use std::collections::BTreeSet;

use aws_sdk_ecs::types::{Scale, ScaleUnit, Tag};
use bluegreen_core::{Error, ProvisionRequest, Result, Target};
use tokio::time::Instant;

use super::observe::{is_live, Observed, SetView};
use super::revision::check_version;
use super::{diagnose, EcsFleet, SET_KEY, TAG_KEY, VERSION_KEY};
use crate::error::aws_error;

/// The longest value ECS takes for a task set's `externalId` and a tag value.
const MAX_TAG: usize = 255;

impl EcsFleet {
    /// Ensures `request.count` running tasks of the version tagged `request.tag`.
    pub(super) async fn ensure_tasks(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        check_version(&request.version)?;
        let tag = request.tag.as_str();
        if tag.is_empty() || tag.len() > MAX_TAG {
            return Err(Error::invalid("tag", format!("a task set's externalId takes 1 to {MAX_TAG} characters")));
        }
        let observed = self.observe_with(true).await?;
        if let Some(other) = observed.tagged(tag).find(|s| s.revision.version != request.version) {
            return Err(Error::drift(format!(
                "task set {} of {} is tagged {tag} but runs {}, not {}",
                other.id(),
                self.where_(),
                other.revision.version,
                request.version
            )));
        }
        // Stops seen before this call belong to an earlier attempt; only new ones fail it.
        let earlier: BTreeSet<String> =
            stopped(&observed, tag).map(|t| t.task_arn().unwrap_or_default().to_owned()).collect();
        let planned = planned(&observed, tag);
        let waited = if planned >= request.count {
            self.await_running(request, Some(observed), &earlier).await
        } else {
            self.start(&observed, request, request.count - planned).await?;
            self.await_running(request, None, &earlier).await
        };
        if waited.is_err() {
            self.remove_stuck_sets(tag).await;
        }
        waited
    }

    /// Deletes the task sets of `tag` that run no task. ECS would retry their tasks forever, and
    /// a rollback cannot see them (it retires running targets): this call's set, and one an
    /// earlier, interrupted attempt left (a resumed deploy fails here too).
    async fn remove_stuck_sets(&self, tag: &str) {
        let observed = match self.observe().await {
            Ok(observed) => observed,
            Err(e) => {
                tracing::warn!(tag, error = %e, "could not look for task sets that failed to start");
                return;
            }
        };
        for set in observed.tagged(tag).filter(|s| s.live().all(|t| t.last_status() != Some("RUNNING"))) {
            let arn = set.set.task_set_arn().unwrap_or_else(|| set.id()).to_owned();
            if let Err(cleanup) = self.delete_task_set(&arn).await {
                tracing::warn!(task_set = %arn, error = %cleanup, "could not delete a task set that failed to start");
            }
        }
    }

    /// Creates one task set of `missing` tasks for `request`; returns its ARN.
    async fn start(&self, observed: &Observed, request: &ProvisionRequest, missing: usize) -> Result<String> {
        let desired = usize::try_from(observed.desired).unwrap_or(0);
        if missing > desired {
            return Err(Error::invalid(
                "count",
                format!(
                    "{missing} more task(s) asked for, but a task set holds at most the desiredCount ({desired}) of {}; \
                     raise the service's desiredCount",
                    self.where_()
                ),
            ));
        }
        // The version serving now is the one to copy: the primary task set, else the newest.
        let template = observed
            .sets
            .iter()
            .find(|s| s.is_primary())
            .or_else(|| observed.sets.iter().max_by_key(|s| s.set.created_at().map(|d| d.secs())))
            .ok_or_else(|| {
                Error::drift(format!("{} has no task set to copy the task definition and network from", self.where_()))
            })?;
        let definition =
            self.ensure_revision(template.set.task_definition().unwrap_or_default(), &request.version).await?;
        let scale = Scale::builder().unit(ScaleUnit::Percent).value(scale_percent(missing, desired)).build();
        // Unique per call (a retry of the call by the SDK resends the same token), and also the
        // tag that ties the tasks to this set where ECS does not set their `startedBy` to it.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let token = client_token(&[&self.cluster, &self.service, &request.tag, &nanos.to_string()]);
        let tags = vec![
            Tag::builder().key(SET_KEY).value(&token).build(),
            Tag::builder().key(TAG_KEY).value(&request.tag).build(),
            Tag::builder().key(VERSION_KEY).value(request.version.as_str()).build(),
        ];
        let set = &template.set;
        let mut create = self
            .client
            .create_task_set()
            .cluster(&self.cluster)
            .service(&self.service)
            .external_id(&request.tag)
            .task_definition(&definition)
            .set_network_configuration(set.network_configuration().cloned())
            .set_platform_version(set.platform_version().map(str::to_owned))
            .scale(scale)
            .client_token(&token)
            .set_tags(Some(tags));
        // One of the two: a capacity provider strategy wins over a launch type.
        if set.capacity_provider_strategy().is_empty() {
            create = create.set_launch_type(set.launch_type().cloned());
        } else {
            create = create.set_capacity_provider_strategy(Some(set.capacity_provider_strategy().to_vec()));
        }
        let out = create.send().await.map_err(|e| aws_error("ecs:CreateTaskSet", &self.where_(), e))?;
        let arn = out.task_set().and_then(|s| s.task_set_arn()).unwrap_or_default().to_owned();
        tracing::info!(task_set = %arn, tag = %request.tag, missing, "created a task set");
        Ok(arn)
    }

    /// Waits until `request.count` tasks tagged `request.tag` run with an IP; fails as soon as one
    /// stops (that is not in `earlier`), or when the start timeout passes.
    async fn await_running(
        &self,
        request: &ProvisionRequest,
        mut observed: Option<Observed>,
        earlier: &BTreeSet<String>,
    ) -> Result<Vec<Target>> {
        let tag = request.tag.as_str();
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let now = match observed.take() {
                Some(o) => o,
                None => self.observe_with(true).await?,
            };
            let new_stops: Vec<_> =
                stopped(&now, tag).filter(|t| !earlier.contains(t.task_arn().unwrap_or_default())).collect();
            if !new_stops.is_empty() {
                return Err(Error::Unhealthy {
                    what: format!(
                        "tasks of {} for {tag} ({}) stopped while starting: {}",
                        self.where_(),
                        request.version,
                        diagnose::start(&now, tag, &new_stops)
                    ),
                });
            }
            let running: Vec<Target> = now
                .tagged(tag)
                .flat_map(SetView::targets)
                .filter(|(_, task)| task.last_status() == Some("RUNNING"))
                .map(|(target, _)| target)
                .collect();
            if running.len() >= request.count {
                return Ok(running);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: format!(
                        "{} task(s) of {} for {tag} to run ({} running; {})",
                        request.count,
                        self.where_(),
                        running.len(),
                        diagnose::start(&now, tag, &[])
                    ),
                    after: self.start_timeout,
                });
            }
            tokio::time::sleep(self.poll.min(left)).await;
        }
    }
}

/// Tasks of the tag's task sets that stopped (or are stopping).
fn stopped<'a>(observed: &'a Observed, tag: &'a str) -> impl Iterator<Item = &'a aws_sdk_ecs::types::Task> {
    observed.tagged(tag).flat_map(|s| s.tasks.iter()).filter(|t| !is_live(t))
}

/// Tasks the tag's task sets run or will run: per set, its live tasks or, if more, the count ECS
/// computed for it (tasks not placed yet).
fn planned(observed: &Observed, tag: &str) -> usize {
    observed
        .tagged(tag)
        .map(|s| s.live().count().max(usize::try_from(s.set.computed_desired_count()).unwrap_or(0)))
        .sum()
}

/// The scale, in percent of the service's desired count, of a task set of `tasks` tasks: ECS
/// rounds the computed count up, so the largest four-decimal percent not above the exact share.
fn scale_percent(tasks: usize, desired: usize) -> f64 {
    let basis_points = (tasks * 100 * 10_000) / desired.max(1);
    // At most 1 000 000 (100 %), exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let percent = basis_points as f64 / 10_000.0;
    percent
}

/// A `clientToken` (at most 36 characters) from `parts`.
fn client_token(parts: &[&str]) -> String {
    // FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.join("\u{0}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("bluegreen-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_rounds_down_to_four_decimals_so_ecs_rounding_up_gives_the_count() {
        assert!((scale_percent(2, 2) - 100.0).abs() < f64::EPSILON);
        assert!((scale_percent(1, 2) - 50.0).abs() < f64::EPSILON);
        assert!((scale_percent(1, 3) - 33.3333).abs() < 1e-9);
        for desired in 1..=50_usize {
            for tasks in 1..=desired {
                #[allow(clippy::cast_precision_loss)]
                let computed = (desired as f64 * scale_percent(tasks, desired) / 100.0).ceil();
                assert_eq!(computed, tasks as f64, "{tasks} of {desired}");
            }
        }
    }

    #[test]
    fn client_tokens_are_short_and_repeat() {
        let a = client_token(&["c", "s", "tag", "0"]);
        assert_eq!(a, client_token(&["c", "s", "tag", "0"]));
        assert_ne!(a, client_token(&["c", "s", "tag", "2"]));
        assert!(a.len() <= 36, "{a}");
    }
}
