//! Draining: the targets are marked drained, deregistered, and watched until the ALB stops
//! reporting them, bounded by the target group's deregistration delay.

use std::time::Duration;

use bluegreen_core::{DrainReport, Error, PoolName, Result, TargetId};

use super::target::description;
use super::AlbRouter;
use crate::error::AwsError;

/// How long past a target group's deregistration delay a drain still waits for the ALB to
/// report the targets gone.
const DRAIN_SLACK: Duration = Duration::from_secs(10);

impl AlbRouter {
    /// The deregistration delay of `pool`'s target group (`deregistration_delay.timeout_seconds`,
    /// 300 s unless set), or `None` if the ALB does not say.
    pub async fn deregistration_delay(&self, pool: &PoolName) -> Result<Option<Duration>> {
        let (arn, resource) = self.group(pool)?;
        let out = self
            .client
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeTargetGroupAttributes", &resource, e))?;
        Ok(out
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value()?.parse::<u64>().ok())
            .map(Duration::from_secs))
    }

    /// Marks `targets` drained, deregisters them and waits until the ALB no longer reports them
    /// ([`Router::drain`](bluegreen_core::Router::drain)), bounded by `timeout` and by the
    /// deregistration delay plus [`DRAIN_SLACK`].
    pub(super) async fn drain_members(
        &self,
        pool: &PoolName,
        targets: &[TargetId],
        timeout: Duration,
    ) -> Result<DrainReport> {
        let started = tokio::time::Instant::now();
        for id in targets {
            description(id.as_str())?;
        }
        self.group(pool)?;
        self.checked().await?;
        let (registered, drained) = self.observe(pool).await?;
        if let Some(unknown) =
            targets.iter().find(|id| !registered.contains_key(id.as_str()) && !drained.contains(id.as_str()))
        {
            return Err(Error::not_found(format!("target {unknown} in pool {pool}")));
        }
        let present: Vec<String> =
            targets.iter().map(|id| id.as_str().to_owned()).filter(|id| registered.contains_key(id)).collect();
        // Mark first: a crash between the two leaves a registered target, which still reads serving.
        // The ALB ends a drain by the group's deregistration delay: wait for it to say so, but
        // not much past the delay (the slack covers its reporting lag). Read before any write.
        let bound = match self.deregistration_delay(pool).await? {
            Some(delay) => timeout.min(delay + DRAIN_SLACK),
            None => timeout,
        };
        let untagged: Vec<String> = present.iter().filter(|id| !drained.contains(*id)).cloned().collect();
        self.set_drained_tags(pool, &untagged, true).await?;
        self.deregister(pool, &present).await?;
        let deadline = started + bound;
        let mut timed_out = false;
        loop {
            let registered = self.registered(pool).await?;
            if !present.iter().any(|id| registered.contains_key(id)) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            tokio::time::sleep(self.drain_poll.min(deadline - tokio::time::Instant::now())).await;
        }
        Ok(DrainReport { in_flight_at_start: None, in_flight_at_end: None, timed_out, elapsed: started.elapsed() })
    }
}
