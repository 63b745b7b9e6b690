//! The drained marks: tags on a target group naming the targets drained but still members (the
//! ALB forgets a target once it is deregistered).

use std::collections::BTreeSet;

use aws_sdk_elasticloadbalancingv2::types::Tag;
use bluegreen_core::{PoolName, Result};

use super::AlbRouter;
use crate::error::AwsError;

/// Tags on a target group that mark a target as drained but still a member (the ALB itself
/// forgets a target once it is deregistered).
const DRAINED_TAG: &str = "bluegreen:drained:";

impl AlbRouter {
    /// The targets of `pool` marked drained (its target group's tags): one `DescribeTags`.
    pub(super) async fn drained(&self, pool: &PoolName) -> Result<BTreeSet<String>> {
        let (arn, resource) = self.group(pool)?;
        let tags = self
            .client
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("elasticloadbalancing:DescribeTags", &resource, e))?;
        Ok(tags
            .tag_descriptions
            .unwrap_or_default()
            .iter()
            .flat_map(|d| d.tags().iter().filter_map(|t| t.key()?.strip_prefix(DRAINED_TAG).map(str::to_owned)))
            .collect())
    }

    /// Marks `ids` drained in `pool` (`drained`), or takes the marks off: one `AddTags` or
    /// `RemoveTags`, none for no ids.
    pub(super) async fn set_drained_tags(&self, pool: &PoolName, ids: &[String], drained: bool) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (arn, resource) = self.group(pool)?;
        if drained {
            let tags = ids.iter().map(|id| Tag::builder().key(format!("{DRAINED_TAG}{id}")).value("true").build());
            self.client
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:AddTags", &resource, e))?;
        } else {
            self.client
                .remove_tags()
                .resource_arns(arn)
                .set_tag_keys(Some(ids.iter().map(|id| format!("{DRAINED_TAG}{id}")).collect()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("elasticloadbalancing:RemoveTags", &resource, e))?;
        }
        Ok(())
    }
}
