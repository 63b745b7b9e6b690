//! How simulated versions behave, and the faults a simulation injects.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layers::RouterOp;

/// How a version's targets answer health checks over time, counted from their start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthBehaviour {
    /// Healthy once started.
    Healthy,
    /// Never healthy.
    NeverHealthy,
    /// Alternates healthy and unhealthy every `period`, healthy first.
    Flapping {
        /// Length of each phase.
        #[serde(with = "humantime_serde")]
        period: Duration,
    },
    /// Healthy for a while after start, then dead for good.
    DiesAfter {
        /// How long it lives once started.
        #[serde(with = "humantime_serde")]
        lifetime: Duration,
    },
}

/// A version's behaviour: start-up time and health over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionBehaviour {
    /// Unhealthy for this long after a start or update.
    #[serde(with = "humantime_serde")]
    pub startup: Duration,
    /// Health once started.
    pub health: HealthBehaviour,
}

impl Default for VersionBehaviour {
    fn default() -> Self {
        Self::healthy()
    }
}

impl VersionBehaviour {
    /// Healthy at once.
    pub fn healthy() -> Self {
        Self { startup: Duration::ZERO, health: HealthBehaviour::Healthy }
    }

    /// Never healthy.
    pub fn never_healthy() -> Self {
        Self { startup: Duration::ZERO, health: HealthBehaviour::NeverHealthy }
    }

    /// Healthy, then dead after `lifetime`.
    pub fn dies_after(lifetime: Duration) -> Self {
        Self { startup: Duration::ZERO, health: HealthBehaviour::DiesAfter { lifetime } }
    }

    /// Flapping with `period`.
    pub fn flapping(period: Duration) -> Self {
        Self { startup: Duration::ZERO, health: HealthBehaviour::Flapping { period } }
    }

    /// Sets the start-up time.
    #[must_use]
    pub fn with_startup(mut self, startup: Duration) -> Self {
        self.startup = startup;
        self
    }

    /// Whether a target of this version, started `age` ago, is healthy.
    pub fn healthy_at(&self, age: Duration) -> bool {
        let Some(up) = age.checked_sub(self.startup) else { return false };
        match self.health {
            HealthBehaviour::Healthy => true,
            HealthBehaviour::NeverHealthy => false,
            HealthBehaviour::Flapping { period } => {
                let period = period.as_nanos().max(1);
                (up.as_nanos() / period) % 2 == 0
            }
            HealthBehaviour::DiesAfter { lifetime } => up < lifetime,
        }
    }
}

/// A [`Fleet`](crate::Fleet) method the simulator counts and can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetOp {
    /// `Fleet::provision`.
    Provision,
    /// `Fleet::update`.
    Update,
    /// `Fleet::retire`.
    Retire,
    /// `Fleet::list`.
    List,
}

/// A simulated backend operation, for counting calls and injecting faults: a router's
/// ([`RouterOp`], the same the [layers](crate::layers) record) or a fleet's. Written as the
/// method's name (`set_split`, `provision`) in a world file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Op {
    /// A [`Router`](crate::Router) method.
    Router(RouterOp),
    /// A [`Fleet`](crate::Fleet) method.
    Fleet(FleetOp),
}

impl Op {
    /// Whether the operation changes backend state.
    pub fn is_write(self) -> bool {
        match self {
            Self::Router(op) => op.is_write(),
            Self::Fleet(op) => op != FleetOp::List,
        }
    }

    /// The method's name (`set_split`, `provision`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Router(op) => op.as_str(),
            Self::Fleet(FleetOp::Provision) => "provision",
            Self::Fleet(FleetOp::Update) => "update",
            Self::Fleet(FleetOp::Retire) => "retire",
            Self::Fleet(FleetOp::List) => "list",
        }
    }
}

impl From<RouterOp> for Op {
    fn from(op: RouterOp) -> Self {
        Self::Router(op)
    }
}

impl From<FleetOp> for Op {
    fn from(op: FleetOp) -> Self {
        Self::Fleet(op)
    }
}

/// An injected failure: calls of `op` numbered `from_call ..` (from 1) fail `times` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The operation.
    pub op: Op,
    /// The first failing call, counting calls of `op` from 1.
    pub from_call: u64,
    /// How many consecutive calls fail.
    pub times: u32,
    /// Whether the error is marked retryable.
    pub retryable: bool,
}

impl Fault {
    /// `times` transient failures of `op` from its `from_call`-th call.
    pub fn transient(op: impl Into<Op>, from_call: u64, times: u32) -> Self {
        Self { op: op.into(), from_call, times, retryable: true }
    }

    /// One permanent failure of the `from_call`-th call of `op`.
    pub fn permanent(op: impl Into<Op>, from_call: u64) -> Self {
        Self { op: op.into(), from_call, times: 1, retryable: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_op_is_written_as_its_method_name_and_read_back() {
        for (op, name) in [(Op::from(RouterOp::SetSplit), "set_split"), (Op::from(FleetOp::Provision), "provision")] {
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), op);
            assert_eq!(op.as_str(), name);
        }
        assert!(serde_json::from_str::<Op>("\"set_splits\"").is_err());
        assert!(Op::from(FleetOp::Update).is_write() && !Op::from(FleetOp::List).is_write());
        assert!(Op::from(RouterOp::Drain).is_write() && !Op::from(RouterOp::Members).is_write());
    }
}
