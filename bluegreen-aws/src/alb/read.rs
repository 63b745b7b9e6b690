//! Reading what the ALB serves: the forward action's weights and split, and a pool's registered
//! targets.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, TargetHealthStateEnum};
use bluegreen_core::{Error, PoolName, Result, Split};

use super::target::target_name;
use super::AlbRouter;
use crate::error::AwsError;

impl AlbRouter {
    /// The actions the split lives in, as the ALB serves them.
    pub(super) async fn actions(&self) -> Result<Vec<Action>> {
        self.place.actions(&self.client).await
    }

    /// The weights of the forward action in `actions`, by target group ARN.
    pub(super) fn weights(&self, actions: &[Action]) -> Result<Vec<(String, u32)>> {
        let forward = actions
            .iter()
            .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .ok_or_else(|| Error::drift(format!("{} has no forward action to weight", self.where_())))?;
        let tuples = forward.forward_config().map(ForwardActionConfig::target_groups).unwrap_or_default();
        if tuples.is_empty() {
            let arn = forward.target_group_arn().unwrap_or_default();
            return Ok(vec![(arn.to_owned(), 1)]);
        }
        Ok(tuples
            .iter()
            .map(|t| {
                (
                    t.target_group_arn().unwrap_or_default().to_owned(),
                    u32::try_from(t.weight().unwrap_or(1)).unwrap_or(0),
                )
            })
            .collect())
    }

    /// Registered targets of `pool` (`ip:port` → state) and the ones marked drained.
    pub(super) async fn observe(
        &self,
        pool: &PoolName,
    ) -> Result<(BTreeMap<String, TargetHealthStateEnum>, BTreeSet<String>)> {
        Ok((self.registered(pool).await?, self.drained(pool).await?))
    }

    /// Registered targets of `pool` (`ip:port` → state): one `DescribeTargetHealth`.
    pub(super) async fn registered(&self, pool: &PoolName) -> Result<BTreeMap<String, TargetHealthStateEnum>> {
        Ok(self.health_of(pool).await?.into_iter().map(|(id, (state, _))| (id, state)).collect())
    }

    /// Registered targets of `pool` (`ip:port` → state, and the ALB's reason when it gives one:
    /// `Target.NotInUse: Target group is not configured to receive traffic…`): one
    /// `DescribeTargetHealth`.
    pub(super) async fn health_of(
        &self,
        pool: &PoolName,
    ) -> Result<BTreeMap<String, (TargetHealthStateEnum, Option<String>)>> {
        let (arn, resource) = self.group(pool)?;
        let health = self
            .client
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeTargetHealth", &resource, e))?;
        let mut registered = BTreeMap::new();
        for description in health.target_health_descriptions.unwrap_or_default() {
            let Some(target) = description.target() else { continue };
            let id = target_name(target.id().unwrap_or_default(), target.port().unwrap_or_default());
            let health = description.target_health();
            let state = health.and_then(|h| h.state()).cloned().unwrap_or(TargetHealthStateEnum::Initial);
            let reason = health.and_then(|h| match (h.reason(), h.description()) {
                (None, None) => None,
                (reason, text) => {
                    Some([reason.map(|r| r.as_str()), text].into_iter().flatten().collect::<Vec<_>>().join(": "))
                }
            });
            registered.insert(id, (state, reason));
        }
        Ok(registered)
    }

    /// The split the forward action in `actions` makes, named by pool (a target group no pool
    /// names keeps its ARN as its name).
    pub(super) fn split_of(&self, actions: &[Action]) -> Result<Split> {
        let names: BTreeMap<&str, &PoolName> = self.pools.iter().map(|(p, a)| (a.as_str(), p)).collect();
        let named = self.weights(actions)?.into_iter().map(|(arn, w)| {
            (names.get(arn.as_str()).map_or_else(|| PoolName::from(arn.clone()), |p| (*p).clone()), u64::from(w))
        });
        Split::from_weights(named)
            .ok_or_else(|| Error::drift(format!("{} forwards with every weight 0: it serves nothing", self.where_())))
    }
}
