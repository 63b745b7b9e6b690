//! Changing the split: the production forward action (every pool attached, the stickiness and
//! the other actions kept, read back) and the test listener kept on the idle pool.

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, TargetGroupTuple};
use bluegreen_core::{Error, Result, Split};

use super::place::Place;
use super::target::serving;
use super::AlbRouter;

impl AlbRouter {
    /// Sets the production split ([`Router::set_split`](bluegreen_core::Router::set_split)):
    /// every pool attached, written only if the traffic differs, read back; then the test
    /// listener follows.
    pub(super) async fn write_split(&self, split: &Split) -> Result<()> {
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.target_group(pool)?;
        }
        // Every configured target group goes into the forward action: all must exist (the ALB
        // API of some emulators accepts unknown ARNs), which the check looked at.
        self.checked().await?;
        let actions = self.actions().await?;
        if self.split_of(&actions)?.same_traffic(split) && self.all_attached(&actions)? {
            return Ok(());
        }
        self.write_forward(actions, split).await?;
        let read = self.split_of(&self.actions().await?)?;
        if !read.same_traffic(split) {
            return Err(Error::ReadBackMismatch {
                what: format!("the split of {}", self.where_()),
                expected: split.to_string(),
                observed: read.to_string(),
            });
        }
        self.sync_test_listener_to(&read).await
    }

    /// Whether every pool's target group is in the forward action (at weight 0 or more).
    fn all_attached(&self, actions: &[Action]) -> Result<bool> {
        let attached: BTreeSet<String> = self.weights(actions)?.into_iter().map(|(arn, _)| arn).collect();
        Ok(self.pools.values().all(|arn| attached.contains(arn)))
    }

    /// Puts every pool's target group into the forward action, keeping the traffic as it is.
    ///
    /// Why: an ALB health-checks only the targets of target groups that a listener or rule
    /// uses; the targets of a group outside every action stay `unused` (`Target.NotInUse`) and
    /// would never pass a health gate. A group at weight 0 is in use but gets no traffic.
    pub(super) async fn attach_pools(&self) -> Result<()> {
        let actions = self.actions().await?;
        if self.all_attached(&actions)? {
            return Ok(());
        }
        let current = self.split_of(&actions)?;
        if let Some((foreign, _)) = current.iter().find(|(pool, _)| !self.pools.contains_key(pool)) {
            // Adding all pools would drop this group from the action (a traffic change), and
            // without the write the new targets would never be health-checked: refuse first.
            return Err(Error::drift(format!(
                "{} forwards to target group {foreign}, which is none of the router's pools: name it as a pool, \
                 or set a split first",
                self.where_()
            )));
        }
        self.write_forward(actions, &current).await
    }

    /// Replaces the forward action in `actions` by one weighting every pool as `split` says,
    /// keeping the other actions, the order and the stickiness.
    async fn write_forward(&self, actions: Vec<Action>, split: &Split) -> Result<()> {
        self.write_forward_at(&self.place, actions, split).await
    }

    /// [`write_forward`](Self::write_forward) at `place`.
    async fn write_forward_at(&self, place: &Place, actions: Vec<Action>, split: &Split) -> Result<()> {
        let forward_at = actions
            .iter()
            .position(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .ok_or_else(|| Error::drift(format!("{place} has no forward action to weight")))?;
        let old = &actions[forward_at];
        let tuples = self
            .pools
            .iter()
            .map(|(pool, arn)| {
                let weight = i32::try_from(split.weight(pool)).unwrap_or(0);
                TargetGroupTuple::builder().target_group_arn(arn).weight(weight).build()
            })
            .collect();
        let config = ForwardActionConfig::builder()
            .set_target_groups(Some(tuples))
            .set_target_group_stickiness_config(
                old.forward_config().and_then(|c| c.target_group_stickiness_config()).cloned(),
            )
            .build();
        let forward =
            Action::builder().r#type(ActionTypeEnum::Forward).set_order(old.order()).forward_config(config).build();
        let mut new_actions = actions.clone();
        new_actions[forward_at] = forward;
        place.set_actions(&self.client, new_actions).await?;
        Ok(())
    }

    /// Points the test listener (if any) at the idle pool: members, no production traffic.
    pub(super) async fn sync_test_listener(&self) -> Result<()> {
        if self.test.is_none() {
            return Ok(());
        }
        self.sync_test_listener_to(&self.split_of(&self.actions().await?)?).await
    }

    /// [`sync_test_listener`](Self::sync_test_listener), with the production split as just read.
    async fn sync_test_listener_to(&self, production: &Split) -> Result<()> {
        let Some(test) = &self.test else { return Ok(()) };
        let mut idle = None;
        for pool in self.pools.keys().filter(|p| production.weight(p) == 0) {
            let registered = self.registered(pool).await?;
            if registered.values().any(serving) {
                idle = Some(pool);
                break;
            }
        }
        let Some(idle) = idle else { return Ok(()) };
        let wanted = Split::all_to(idle);
        let actions = test.actions(&self.client).await?;
        if self.split_of(&actions).is_ok_and(|s| s.same_traffic(&wanted)) {
            return Ok(());
        }
        self.write_forward_at(test, actions, &wanted).await?;
        let read = self.split_of(&test.actions(&self.client).await?)?;
        if !read.same_traffic(&wanted) {
            return Err(Error::ReadBackMismatch {
                what: format!("the test split of {test}"),
                expected: wanted.to_string(),
                observed: read.to_string(),
            });
        }
        Ok(())
    }
}
