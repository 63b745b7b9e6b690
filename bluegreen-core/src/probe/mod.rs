//! Health probes: is one target healthy now?

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::Target;

mod closure;
#[cfg(feature = "http-probe")]
mod http;
mod tcp;

pub use closure::FnProbe;
#[cfg(feature = "http-probe")]
pub use http::{HttpProbe, HttpProbeBuilder};
pub use tcp::TcpProbe;

/// The answer of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "health", rename_all = "snake_case")]
pub enum Health {
    /// The target serves correctly.
    Healthy,
    /// The target does not serve correctly, and why.
    Unhealthy {
        /// What the probe saw (`status 503`, `connection refused`, `timed out after 2s`).
        reason: String,
    },
}

impl Health {
    /// An [`Health::Unhealthy`] with `reason`.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Self::Unhealthy { reason: reason.into() }
    }

    /// Whether this is [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }
}

/// Says whether one target is healthy now.
///
/// # Guarantees (what an implementation must provide)
/// - Talks to the target itself (or to the router's view of it, for router-backed probes) on
///   every call; never answers from a cache older than the call.
/// - Returns within a bounded time of its own; the executor also applies the health policy's
///   timeout and counts an overrun as unhealthy.
///
/// # Assumptions
/// - Calls for different targets may run concurrently.
///
/// # Errors
/// - None: a probe that cannot reach its target answers [`Health::Unhealthy`] with the reason.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait HealthProbe: Send + Sync + Debug {
    /// Checks `target` once.
    async fn check(&self, target: &Target) -> Health;
}
