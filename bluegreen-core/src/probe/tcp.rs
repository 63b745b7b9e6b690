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
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        io::ErrorKind::TimedOut => "connect timed out".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => error.to_string(),
    }
}
