//! The policies a spec carries: health, drain, rollback, retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a target counts as healthy, and how long to wait for it.
///
/// | field | default | AWS ALB default | Nomad |
/// |---|---|---|---|
/// | `interval` | 5 s | 30 s (`HealthCheckIntervalSeconds`) | — |
/// | `timeout` | 2 s | 5 s (`HealthCheckTimeoutSeconds`) | — |
/// | `healthy_threshold` | 3 | 5 (`HealthyThresholdCount`) | — |
/// | `unhealthy_threshold` | 2 | 2 (`UnhealthyThresholdCount`) | — |
/// | `min_healthy_time` | 10 s | — | 10 s (`min_healthy_time`) |
/// | `deadline` | 5 min | — | 5 min (`healthy_deadline`) |
///
/// The interval is shorter than ALB's because the executor probes the target itself and a
/// deploy waits on it; a router's own checks (ALB, HAProxy) keep their own schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthPolicy {
    /// Time between two probes of one target.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A probe that takes longer counts as a failure.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passes before a new target counts as healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures before a healthy target counts as unhealthy (also while baking).
    pub unhealthy_threshold: u32,
    /// A target must have stayed healthy this long since its first pass.
    #[serde(with = "humantime_serde")]
    pub min_healthy_time: Duration,
    /// Give up on a target that is not healthy this long after the gate started.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            min_healthy_time: Duration::from_secs(10),
            deadline: Duration::from_secs(300),
        }
    }
}

impl HealthPolicy {
    /// The shortest time a new, healthy target takes to pass the gate.
    pub fn fastest_pass(&self) -> Duration {
        let passes = self.interval * self.healthy_threshold.saturating_sub(1);
        passes.max(self.min_healthy_time)
    }
}

/// How targets are drained before they are updated or retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainPolicy {
    /// Longest wait for in-flight work to finish (ALB's `deregistration_delay` defaults to
    /// 300 s; HAProxy has none). After it the target is stopped regardless.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DrainPolicy {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30) }
    }
}

/// What compiling does with a bake shorter than the router's propagation delay (a DNS TTL plus
/// resolver margin).
///
/// The executor starts a bake only once the delay has passed after the change, so the bake
/// does watch the new split; but a bake shorter than the TTL decides on less real traffic than
/// one cache lifetime of the old answers, and the next step comes before most resolvers have
/// asked again. Warn by default; refuse for pipelines that must not ship such a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortBakePolicy {
    /// Compile, with a warning in the plan, its timeline and the deploy's events.
    #[default]
    Warn,
    /// Refuse the spec ([`Error::Invalid`](crate::Error::Invalid)).
    Refuse,
}

/// How fast traffic goes back to the old pool on rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RollbackPace {
    /// In one split change.
    Immediate,
    /// In steps of `percent`, `interval` apart (for old pools that must warm caches).
    Ramp {
        /// Traffic moved per step, in percent.
        percent: u32,
        /// Time between steps.
        #[serde(with = "humantime_serde")]
        interval: Duration,
    },
}

/// What to do when the old version is itself unhealthy during a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OldUnhealthyPolicy {
    /// Leave traffic where it stands and report that a human is needed.
    Hold,
    /// Send all traffic to the new version, if it passes its health gate, and report
    /// `rolled_forward`; otherwise hold.
    RollForward,
}

/// How a failed deploy is undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackPolicy {
    /// How fast traffic returns.
    pub pace: RollbackPace,
    /// What to do when the old version fails its health gate too.
    pub if_old_unhealthy: OldUnhealthyPolicy,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self { pace: RollbackPace::Immediate, if_old_unhealthy: OldUnhealthyPolicy::Hold }
    }
}

/// How a backend call that failed with a retryable error is repeated (exponential backoff).
/// Permanent errors are never retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1), never above
    /// `max_backoff` — also when the growth would overflow (`multiplier = 10` after 20 attempts).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        if secs.is_finite() && secs >= 0.0 && secs < self.max_backoff.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max_backoff
        }
    }
}
