//! Events: every observable change of a deployment, in a stable serde shape.
//!
//! The event log alone must tell what happened, like a cloud console's: each [`EventKind`]
//! displays as one operator-readable line ("registered 2 targets in pool green").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{PoolName, Split, TargetId, Version};

mod sinks;

pub use sinks::{ChannelSink, EventSink, JsonLinesSink, MemorySink, TracingSink};

/// One event of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The deployment it belongs to.
    pub deployment_id: String,
    /// Position in the deployment's log, from 0.
    pub seq: u64,
    /// Time since the deployment started (tokio time, so virtual under a paused clock).
    #[serde(with = "crate::millis")]
    pub at: Duration,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.at.as_secs_f64();
        write!(f, "[{:>4}:{:06.3}] {}", (secs / 60.0) as u64, secs % 60.0, self.kind)
    }
}

/// What happened. Serialized with `"event": "<snake_case name>"`; names are stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The deployment began.
    DeploymentStarted {
        /// The service.
        service: String,
        /// The strategy's name.
        strategy: String,
        /// The version serving before, if any.
        from: Option<Version>,
        /// The version being deployed.
        to: Version,
        /// Steps in the plan.
        steps: usize,
    },
    /// Something the operator should know, from the plan (a bake shorter than a DNS TTL).
    Warning {
        /// What.
        message: String,
    },
    /// An interrupted deployment continues.
    DeploymentResumed {
        /// The first step run again (the one that was interrupted).
        from_step: usize,
    },
    /// A plan step began.
    StepStarted {
        /// Index in the plan.
        index: usize,
        /// The step, as the timeline shows it.
        step: String,
    },
    /// A plan step finished and its result was verified.
    StepCompleted {
        /// Index in the plan.
        index: usize,
        /// How long it took.
        #[serde(with = "crate::millis")]
        took: Duration,
    },
    /// New targets were started.
    TargetsStarted {
        /// The version they run.
        version: Version,
        /// Their ids.
        targets: Vec<TargetId>,
    },
    /// A target passed its health gate.
    TargetHealthy {
        /// The target.
        target: TargetId,
        /// Time from gate start to pass.
        #[serde(with = "crate::millis")]
        after: Duration,
    },
    /// A target failed a probe or its gate.
    TargetUnhealthy {
        /// The target.
        target: TargetId,
        /// What the probe said.
        reason: String,
    },
    /// Targets were registered in (or re-enabled in) a pool, and the router confirmed it.
    TargetsRegistered {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: Vec<TargetId>,
    },
    /// The split was changed and read back.
    TrafficShifted {
        /// The split before.
        from: Split,
        /// The split now served.
        to: Split,
    },
    /// Waiting for clients to follow a traffic change (a DNS TTL).
    AwaitingPropagation {
        /// How long.
        #[serde(with = "humantime_serde")]
        wait: Duration,
    },
    /// Draining began: the targets get no new requests.
    DrainStarted {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: Vec<TargetId>,
    },
    /// Draining ended.
    TargetsDrained {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: Vec<TargetId>,
        /// In flight when draining began, if the router counts.
        in_flight_at_start: Option<u64>,
        /// In flight when it ended (non-zero only after a timeout).
        in_flight_at_end: Option<u64>,
        /// Whether the timeout ended it.
        timed_out: bool,
    },
    /// Targets were removed from a pool, and the router confirmed it.
    TargetsDeregistered {
        /// The pool.
        pool: PoolName,
        /// The targets.
        targets: Vec<TargetId>,
    },
    /// A target was updated in place.
    TargetUpdated {
        /// The target.
        target: TargetId,
        /// Its version before.
        from: Version,
        /// Its version now.
        to: Version,
    },
    /// Members the router served unmanaged were taken over (see [`Step::Adopt`](crate::Step::Adopt)).
    Adopted {
        /// What was taken over, per member (`server web/web-01`).
        members: Vec<String>,
    },
    /// Targets were stopped and removed from the fleet.
    TargetsStopped {
        /// The targets.
        targets: Vec<TargetId>,
    },
    /// A bake (watching period) began.
    BakeStarted {
        /// How long it lasts unless promoted.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// An analysis returned a verdict other than pass.
    AnalysisFailed {
        /// The analysis.
        analysis: String,
        /// Why.
        reason: String,
    },
    /// A hook ran.
    HookFinished {
        /// The point.
        point: String,
        /// The hook.
        hook: String,
        /// Whether it succeeded.
        ok: bool,
        /// Its output (a command's tail).
        output: String,
    },
    /// A backend call failed with a retryable error and will be repeated.
    Retrying {
        /// The call.
        operation: String,
        /// Attempt that failed, from 1.
        attempt: u32,
        /// The error.
        error: String,
        /// Wait before the next attempt.
        #[serde(with = "crate::millis")]
        backoff: Duration,
    },
    /// The deployment is paused (by the operator or a manual pause step).
    Paused {
        /// Why.
        reason: String,
    },
    /// The deployment goes on after a pause.
    Resumed,
    /// The operator promoted: remaining bakes and pauses are skipped.
    Promoted,
    /// The operator asked for an abort.
    AbortRequested,
    /// Something failed; the deployment is being undone.
    RollbackStarted {
        /// What failed.
        reason: String,
    },
    /// The rollback could not restore a healthy old version; what the policy did.
    RollbackBlocked {
        /// Why.
        reason: String,
    },
    /// The service serves the given versions with all targets healthy and no change pending.
    SteadyState {
        /// The split served.
        split: Split,
        /// The versions serving traffic.
        versions: Vec<Version>,
    },
    /// The deployment ended.
    DeploymentFinished {
        /// How.
        status: crate::outcome::Status,
        /// The failure that caused a rollback, if any.
        reason: Option<String>,
    },
}

fn ids(targets: &[TargetId]) -> String {
    const SHOWN: usize = 6;
    let mut names: Vec<&str> = targets.iter().take(SHOWN).map(TargetId::as_str).collect();
    if targets.len() > SHOWN {
        names.push("…");
    }
    names.join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: &Duration| crate::model::short(*d);
        match self {
            Self::DeploymentStarted { service, strategy, from, to, steps } => {
                let from = from.as_ref().map_or_else(|| "nothing".to_owned(), ToString::to_string);
                write!(f, "started {strategy} deployment of {service}: {from} → {to} in {steps} steps")
            }
            Self::Warning { message } => write!(f, "warning: {message}"),
            Self::DeploymentResumed { from_step } => write!(f, "resumed the deployment at step {}", from_step + 1),
            Self::StepStarted { index, step } => write!(f, "step {}: {step}", index + 1),
            Self::StepCompleted { index, took } => write!(f, "step {} done in {}", index + 1, d(took)),
            Self::TargetsStarted { version, targets } => {
                write!(f, "started {} target{} of {version} ({})", targets.len(), plural(targets.len()), ids(targets))
            }
            Self::TargetHealthy { target, after } => write!(f, "target {target} is healthy (after {})", d(after)),
            Self::TargetUnhealthy { target, reason } => write!(f, "target {target} is unhealthy: {reason}"),
            Self::TargetsRegistered { pool, targets } => {
                let n = targets.len();
                write!(f, "registered {n} target{} in pool {pool} ({})", plural(n), ids(targets))
            }
            Self::TrafficShifted { from, to } => write!(f, "shifted traffic: {from} → {to}"),
            Self::AwaitingPropagation { wait } => write!(f, "waiting {} for clients to follow the change", d(wait)),
            Self::DrainStarted { pool, targets } => {
                let n = targets.len();
                write!(f, "began draining {n} target{} in pool {pool} ({})", plural(n), ids(targets))
            }
            Self::TargetsDrained { pool, targets, in_flight_at_start, in_flight_at_end, timed_out } => {
                let n = targets.len();
                write!(f, "drained {n} target{} in pool {pool} ({})", plural(n), ids(targets))?;
                if let Some(start) = in_flight_at_start {
                    write!(f, ": {start} in flight at start, {} at end", in_flight_at_end.unwrap_or(0))?;
                }
                if *timed_out {
                    f.write_str(" (drain timeout passed)")?;
                }
                Ok(())
            }
            Self::TargetsDeregistered { pool, targets } => {
                let n = targets.len();
                write!(f, "deregistered {n} target{} from pool {pool} ({})", plural(n), ids(targets))
            }
            Self::TargetUpdated { target, from, to } => write!(f, "updated target {target}: {from} → {to}"),
            Self::Adopted { members } => write!(f, "adopted {} ({})", members.len(), members.join(", ")),
            Self::TargetsStopped { targets } => {
                write!(f, "stopped {} target{} ({})", targets.len(), plural(targets.len()), ids(targets))
            }
            Self::BakeStarted { duration } => write!(f, "baking for {}", d(duration)),
            Self::AnalysisFailed { analysis, reason } => write!(f, "analysis {analysis} failed: {reason}"),
            Self::HookFinished { point, hook, ok, output } => {
                let how = if *ok { "ran" } else { "FAILED" };
                write!(f, "{point} hook {hook:?} {how}")?;
                if !output.is_empty() {
                    write!(f, ": {}", output.trim_end())?;
                }
                Ok(())
            }
            Self::Retrying { operation, attempt, error, backoff } => {
                write!(f, "{operation} failed (attempt {attempt}): {error}; retrying in {}", d(backoff))
            }
            Self::Paused { reason } => write!(f, "paused: {reason}"),
            Self::Resumed => f.write_str("resumed"),
            Self::Promoted => f.write_str("promoted: skipping remaining bakes and pauses"),
            Self::AbortRequested => f.write_str("abort requested"),
            Self::RollbackStarted { reason } => write!(f, "rolling back: {reason}"),
            Self::RollbackBlocked { reason } => write!(f, "rollback blocked: {reason}"),
            Self::SteadyState { split, versions } => {
                let v: Vec<String> = versions.iter().map(ToString::to_string).collect();
                write!(f, "reached a steady state: {split} serving {}", v.join(", "))
            }
            Self::DeploymentFinished { status, reason } => {
                write!(f, "deployment {status}")?;
                if let Some(reason) = reason {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
        }
    }
}
