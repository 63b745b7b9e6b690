//! A pool's members: registering targets, removing them, and listing them with their state.

use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use bluegreen_core::{Error, Member, MemberState, PoolName, Result, Target, TargetId};

use super::target::{description, member_state, serving};
use super::AlbRouter;
use crate::error::AwsError;

/// How long [`Router::add_targets`](bluegreen_core::Router::add_targets) waits for the ALB to
/// start using a target group it has just attached (its targets read `unused` until then).
const IN_USE_WAIT: Duration = Duration::from_secs(60);

impl AlbRouter {
    /// Registers `targets` in `pool`
    /// ([`Router::add_targets`](bluegreen_core::Router::add_targets)): every pool attached first
    /// (so the ALB health-checks them), drained marks taken off, read back as registered; then
    /// the test listener follows.
    pub(super) async fn add_members(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        let (arn, resource) = self.group(pool)?;
        for target in targets {
            let ip_target = description(target.id.as_str())?.id().is_some_and(|id| id.parse::<IpAddr>().is_ok());
            if ip_target && target.id.as_str() != target.address {
                return Err(Error::invalid(
                    format!("targets[{}]", target.id),
                    format!("an ALB ip target's id must be its address ip:port ({})", target.address),
                ));
            }
        }
        self.checked().await?;
        self.attach_pools().await?;
        let (registered, drained) = self.observe(pool).await?;
        let todo: Vec<String> = targets
            .iter()
            .map(|t| t.id.as_str().to_owned())
            .filter(|id| !matches!(registered.get(id), Some(s) if serving(s)))
            .collect();
        if !todo.is_empty() {
            let descriptions = todo.iter().map(|id| description(id)).collect::<Result<Vec<_>>>()?;
            self.client
                .register_targets()
                .target_group_arn(arn)
                .set_targets(Some(descriptions))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:RegisterTargets", &resource, e))?;
        }
        let untag: Vec<String> =
            targets.iter().map(|t| t.id.as_str().to_owned()).filter(|id| drained.contains(id)).collect();
        self.set_drained_tags(pool, &untag, false).await?;
        self.await_in_use(pool, targets).await?;
        self.sync_test_listener().await
    }

    /// Reads `targets` back as registered in `pool`, waiting (at most [`IN_USE_WAIT`], every
    /// drain poll interval) while the ALB still reports one `unused`: its group was attached to
    /// the forward action just before, and the ALB starts using (health-checking) a newly
    /// attached group a moment after the write. A target not registered is a mismatch at once;
    /// one still `unused` at the deadline is a mismatch with the ALB's reason (a target in an
    /// Availability Zone the load balancer does not enable stays `unused`).
    async fn await_in_use(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        let deadline = tokio::time::Instant::now() + IN_USE_WAIT;
        loop {
            let registered = self.health_of(pool).await?;
            let mut unused = None;
            for target in targets {
                let mismatch = |observed: String| Error::ReadBackMismatch {
                    what: format!("target {} in pool {pool}", target.id),
                    expected: "registered".into(),
                    observed,
                };
                match registered.get(target.id.as_str()) {
                    Some((state, _)) if serving(state) => {}
                    Some((TargetHealthStateEnum::Unused, reason)) => {
                        unused.get_or_insert((target, reason.clone()));
                    }
                    Some((state, _)) => return Err(mismatch(state.as_str().to_owned())),
                    None => return Err(mismatch("not registered".to_owned())),
                }
            }
            let Some((target, reason)) = unused else { return Ok(()) };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::ReadBackMismatch {
                    what: format!("target {} in pool {pool}", target.id),
                    expected: "registered and in use (health-checked by the load balancer)".into(),
                    observed: format!(
                        "unused {}s after its group was attached ({})",
                        IN_USE_WAIT.as_secs(),
                        reason.as_deref().unwrap_or("no reason given")
                    ),
                });
            }
            tokio::time::sleep(self.drain_poll.min(deadline - now)).await;
        }
    }

    /// Deregisters `targets` and takes their drained marks off
    /// ([`Router::remove_targets`](bluegreen_core::Router::remove_targets)), read back as gone.
    pub(super) async fn remove_members(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.group(pool)?;
        self.checked().await?;
        let (registered, drained) = self.observe(pool).await?;
        let ids: Vec<String> = targets.iter().map(|id| id.as_str().to_owned()).collect();
        let present: Vec<String> = ids.iter().filter(|id| registered.contains_key(*id)).cloned().collect();
        self.deregister(pool, &present).await?;
        let tagged: Vec<String> = ids.iter().filter(|id| drained.contains(*id)).cloned().collect();
        self.set_drained_tags(pool, &tagged, false).await?;
        let (registered, drained) = self.observe(pool).await?;
        if let Some(left) = ids.iter().find(|id| {
            registered.get(*id).is_some_and(|s| *s != TargetHealthStateEnum::Draining) || drained.contains(*id)
        }) {
            return Err(Error::ReadBackMismatch {
                what: format!("target {left} in pool {pool}"),
                expected: "removed".into(),
                observed: "still a member".into(),
            });
        }
        Ok(())
    }

    /// `pool`'s registered targets with their state, and its drained ones as disabled
    /// ([`Router::members`](bluegreen_core::Router::members)).
    pub(super) async fn list_members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.group(pool)?;
        self.checked().await?;
        let (registered, drained) = self.observe(pool).await?;
        let mut members: Vec<Member> = registered
            .iter()
            .map(|(id, state)| Member { id: TargetId::from(id.as_str()), state: member_state(state), in_flight: None })
            .collect();
        members.extend(drained.iter().filter(|id| !registered.contains_key(*id)).map(|id| Member {
            id: TargetId::from(id.as_str()),
            state: MemberState::Disabled,
            in_flight: None,
        }));
        Ok(members)
    }

    /// Deregisters `ids` from `pool`'s target group: one `DeregisterTargets`, none for no ids.
    pub(super) async fn deregister(&self, pool: &PoolName, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (arn, resource) = self.group(pool)?;
        let targets = ids.iter().map(|id| description(id)).collect::<Result<Vec<_>>>()?;
        self.client
            .deregister_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DeregisterTargets", &resource, e))?;
        Ok(())
    }
}
