//! The TCP connect probe.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;

use super::{Health, HealthProbe};
use crate::model::Target;

/// Healthy when a TCP connection to the target's address opens within `timeout`.
///
/// The connection is closed again right away; nothing is sent. Use it for targets that speak
/// no HTTP (databases, queues, raw TCP services), or as a cheap liveness check.
///
/// ```
/// use std::time::Duration;
/// use bluegreen_core::TcpProbe;
/// let probe = TcpProbe::new(Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct TcpProbe {
    timeout: Duration,
}

impl TcpProbe {
    /// A probe with a connect timeout.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

#[async_trait]
impl HealthProbe for TcpProbe {
    async fn check(&self, target: &Target) -> Health {
        match tokio::time::timeout(self.timeout, TcpStream::connect(target.address.as_str())).await {
            Ok(Ok(_stream)) => Health::Healthy,
            Ok(Err(error)) => Health::unhealthy(describe_io(&error)),
            Err(_) => Health::unhealthy(timed_out(self.timeout)),
        }
    }
}

/// `timed out after 2s`.
pub(super) fn timed_out(after: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(after))
}

/// A short, operator-readable reason for an I/O error met while reaching a target.
pub(super) fn describe_io(error: &io::Error) -> String {
    known_io_reason(error.kind()).map_or_else(|| error.to_string(), str::to_owned)
}

/// A short reason for the I/O errors that say what happened to a connection.
pub(super) fn known_io_reason(kind: io::ErrorKind) -> Option<&'static str> {
    match kind {
        io::ErrorKind::ConnectionRefused => Some("connection refused"),
        io::ErrorKind::ConnectionReset => Some("connection reset"),
        io::ErrorKind::ConnectionAborted => Some("connection aborted"),
        io::ErrorKind::TimedOut => Some("connect timed out"),
        io::ErrorKind::AddrNotAvailable => Some("address not available"),
        _ => None,
    }
}
