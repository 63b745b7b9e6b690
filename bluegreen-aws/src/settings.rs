//! [`AwsSettings`]: where a deploy file's AWS clients connect (`[backend.aws]`, `[state.aws]`).

use aws_config::{BehaviorVersion, SdkConfig};
use serde::Deserialize;

use crate::AwsConfig;

/// Where the clients connect. Unset values come from the SDK's default chain (`AWS_REGION`,
/// `AWS_PROFILE`, the config files, instance or task roles).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AwsSettings {
    /// `eu-west-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// A profile of the shared config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Another endpoint for every service (an emulator, a VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    /// The SDK configuration these settings describe, through an [`AwsConfig`] (its shared,
    /// rate-limited client). Reads the environment and the config files; makes no AWS call.
    pub async fn load(&self) -> SdkConfig {
        let mut config = AwsConfig::new();
        if let Some(region) = &self.region {
            config = config.region(region);
        }
        if let Some(profile) = &self.profile {
            config = config.profile(profile);
        }
        if let Some(url) = &self.endpoint_url {
            config = config.endpoint_url(url);
        }
        config.load().await
    }

    /// A configuration that reads nothing and can make no call: the builders' own checks run
    /// against it (a deploy file is checked before anything connects).
    pub fn offline() -> SdkConfig {
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build()
    }
}
