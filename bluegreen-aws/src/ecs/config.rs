//! [`EcsFleetConfig`]: the serde settings of an [`EcsFleet`] (a deploy file's `[backend]` with
//! `kind = "ecs"`).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use bluegreen_core::Result;
use serde::Deserialize;

use super::EcsFleet;

/// The task sets of an ECS service with the `EXTERNAL` deployment controller. Read with serde
/// (unknown keys are left to the caller, which may share the table with a router's settings),
/// checked by [`EcsFleetConfig::build`] without any AWS call.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct EcsFleetConfig {
    /// The cluster (name or ARN).
    pub cluster: String,
    /// The service (name or ARN).
    pub service: String,
    /// The container whose image changes and whose port is registered.
    pub container: String,
    /// The image of a version: `registry/app:{version}`.
    pub image: String,
    /// Environment variables set on the container of every new revision.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Longest wait for new tasks to run.
    #[serde(default, with = "humantime_serde")]
    pub start_timeout: Option<Duration>,
    /// How often ECS is asked while waiting.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
}

impl EcsFleetConfig {
    /// The fleet over `config`'s client (no call is made). `Error::Invalid` names the setting
    /// at fault (`image`, `container`).
    pub fn build(&self, config: &SdkConfig) -> Result<EcsFleet> {
        let mut builder =
            EcsFleet::builder(config, &self.cluster, &self.service).container(&self.container).image(&self.image);
        for (name, value) in &self.env {
            builder = builder.env(name, value);
        }
        if let Some(timeout) = self.start_timeout {
            builder = builder.start_timeout(timeout);
        }
        if let Some(every) = self.poll_interval {
            builder = builder.poll_interval(every);
        }
        builder.build()
    }
}
