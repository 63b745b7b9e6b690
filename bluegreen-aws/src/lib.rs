//! AWS backends for bluegreen.
//!
//! - [`DynamoDbStore`]: a [`StateStore`](bluegreen_core::StateStore) in one DynamoDB table, with
//!   conditional writes and lease fencing, for deployments run from many hosts.
//! - [`AlbRouter`]: a [`Router`](bluegreen_core::Router) on an Application Load Balancer: target
//!   groups as pools, a weighted `forward` action as the split, observed deregistration drains;
//!   [`AlbTargetHealth`], the ALB's own health checks as a probe.
//! - [`EcsFleet`]: a [`Fleet`](bluegreen_core::Fleet) of ECS tasks: a task set per deployment step, a version
//!   is a task definition revision, stopped-task reasons and service events in its errors.
//! - [`AwsConfig`]: the configuration every client shares (region, profile, endpoint override,
//!   credentials, the SDK's standard retry mode, a client-side rate limit per service shared by
//!   every client) and [`CallLog`] (how many calls of each kind a deploy made).
//!
//! Errors map onto [`bluegreen_core::Error`] ([`error::aws_error`], public so that backends in
//! other crates map theirs alike): throttling, 5xx and transport failures are retryable
//! [`Error::Backend`](bluegreen_core::Error::Backend)s; access denied is permanent and names the
//! IAM action. See `docs/aws.md` for the IAM policy and what the tests' emulator (moto) does not
//! reproduce.
//!
//! Route53 is a DNS provider: `Route53Router` lives in `bluegreen-dns` (feature `route53`), with
//! the RFC 2136 router and the bookkeeping both share. It builds its client from an
//! [`AwsConfig`] too, so it shares this crate's HTTP client and rate limits.

#[cfg(feature = "alb")]
mod alb;
mod calls;
mod config;
#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "ecs")]
mod ecs;
pub mod error;
mod settings;

#[cfg(feature = "alb")]
pub use alb::{AlbRouter, AlbRouterConfig, AlbTargetHealth};
/// The SDK's configuration, as the builders and [`AwsSettings::load`] take and give it.
pub use aws_config::SdkConfig;
pub use calls::CallLog;
pub use config::{AwsConfig, MIN_RATE_LIMIT};
#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoDbStateConfig, DynamoDbStore};
#[cfg(feature = "ecs")]
pub use ecs::{EcsFleet, EcsFleetBuilder, EcsFleetConfig};
pub use settings::AwsSettings;
