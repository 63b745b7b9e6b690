//! AWS backends for bluegreen.
//!
//! - [`DynamoDbStore`]: a [`StateStore`](bluegreen_core::StateStore) in one DynamoDB table, with
//!   conditional writes and lease fencing, for deployments run from many hosts.
//! - [`AlbRouter`]: a [`Router`](bluegreen_core::Router) on an Application Load Balancer: target
//!   groups as pools, a weighted `forward` action as the split, observed deregistration drains;
//!   [`AlbTargetHealth`], the ALB's own health checks as a probe.
//! - [`Route53Router`]: a [`Router`](bluegreen_core::Router) on Route53 weighted record sets: one
//!   change batch per step, waited for until `INSYNC` and read back, TTL-paced drains.
//! - [`EcsFleet`]: a [`Fleet`](bluegreen_core::Fleet) of ECS tasks: a task set per deployment step, a version
//!   is a task definition revision, stopped-task reasons and service events in its errors.
//! - [`AwsConfig`]: the configuration every client shares (region, profile, endpoint override,
//!   credentials, the SDK's standard retry mode, a client-side rate limit per service shared by
//!   every client) and [`CallLog`] (how many calls of each kind a deploy made).
//!
//! Errors map onto [`bluegreen_core::Error`]: throttling, 5xx and transport failures are
//! retryable [`Error::Backend`](bluegreen_core::Error::Backend)s; access denied is permanent and
//! names the IAM action. See `docs/aws.md` for the IAM policy and what the tests' emulator (moto)
//! does not reproduce.

mod alb;
mod alb_health;
mod alb_place;
mod calls;
mod config;
mod dynamodb;
mod ecs;
mod error;
mod route53;

pub use alb::AlbRouter;
pub use alb_health::AlbTargetHealth;
pub use calls::CallLog;
pub use config::{AwsConfig, MIN_RATE_LIMIT};
pub use dynamodb::DynamoDbStore;
pub use ecs::{EcsFleet, EcsFleetBuilder};
pub use route53::{Route53RecordType, Route53Router, Route53RouterBuilder};
