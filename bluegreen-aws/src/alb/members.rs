//! A pool's members: registering targets, removing them, and listing them with their state.

use std::net::IpAddr;

use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use bluegreen_core::{Error, Member, MemberState, PoolName, Result, Target, TargetId};

use super::target::{description, member_state, serving};
use super::AlbRouter;
use crate::error::AwsError;

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
        let registered = self.registered(pool).await?;
        for target in targets {
            let state = registered.get(target.id.as_str());
            if !state.is_some_and(serving) {
                return Err(Error::ReadBackMismatch {
                    what: format!("target {} in pool {pool}", target.id),
                    expected: "registered".into(),
                    observed: state.map_or_else(|| "not registered".to_owned(), |s| s.as_str().to_owned()),
                });
            }
        }
        self.sync_test_listener().await
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
