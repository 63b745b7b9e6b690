//! AWS backends for bluegreen.
//!
//! - [`DynamoDbStore`]: a [`StateStore`](bluegreen_core::StateStore) in one DynamoDB table, with
//!   conditional writes and lease fencing, for deployments run from many hosts.
//! - [`AlbRouter`]: a [`Router`](bluegreen_core::Router) on an Application Load Balancer: target
//!   groups as pools, a weighted `forward` action as the split, observed deregistration drains.
//! - [`AwsConfig`]: the configuration every client shares (region, profile, endpoint override,
//!   credentials, the SDK's standard retry mode).
//!
//! Errors map onto [`bluegreen_core::Error`]: throttling, 5xx and transport failures are
//! retryable [`Error::Backend`](bluegreen_core::Error::Backend)s; access denied is permanent and
//! names the IAM action. See `docs/aws.md` for the IAM policy and what the tests' emulator (moto)
//! does not reproduce.

mod alb;
mod config;
mod dynamodb;
mod error;

pub use alb::AlbRouter;
pub use config::AwsConfig;
pub use dynamodb::DynamoDbStore;
