//! How a deployment ended: plain data the executor returns and the state store keeps.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Split, Version};

/// How a deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The new version serves all traffic and the old one is retired.
    Succeeded,
    /// Something failed; the old split and membership are restored.
    RolledBack,
    /// Something failed and the old version was unhealthy too; by policy, all traffic went to
    /// the healthy new version.
    RolledForward,
    /// The rollback could not restore a healthy state (the old version is unhealthy too and
    /// the policy holds, or the backends kept failing); traffic stays where it was when the
    /// rollback stopped, and a human is needed.
    RollbackFailed,
    /// Stopped at a safe point by [`Control::stop`](crate::Control::stop); nothing was rolled back, and the
    /// deployment resumes from its first uncompleted step.
    Interrupted,
    /// Another owner took the service's lock over (this process's lease had expired); this
    /// process stopped without changing anything more, and the new owner is in charge.
    Abandoned,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled back",
            Self::RolledForward => "rolled forward",
            Self::RollbackFailed => "rollback failed",
            Self::Interrupted => "interrupted (resumable)",
            Self::Abandoned => "abandoned to another owner",
        })
    }
}

/// The result of a deployment that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The deployment's id.
    pub deployment_id: String,
    /// How it ended.
    pub status: Status,
    /// The failure that caused a rollback, if any.
    pub reason: Option<String>,
    /// The split served at the end (read from the router).
    pub split: Split,
    /// The versions serving traffic at the end.
    pub serving_versions: Vec<Version>,
    /// Plan steps completed before the end or the failure.
    pub steps_completed: usize,
    /// Wall time (tokio time) from start to end.
    #[serde(with = "crate::millis")]
    pub elapsed: Duration,
}
