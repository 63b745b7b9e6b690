//! The HAProxy router's own errors, and what each means to the executor.

use std::io;
use std::time::Duration;

use bluegreen_core::Error;

/// What went wrong talking to HAProxy. Private: callers see [`bluegreen_core::Error`], by meaning.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HaproxyError {
    /// The runtime API socket could not be reached.
    #[error("cannot connect to the HAProxy runtime API at {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    /// The connection broke while a command was sent or its answer read.
    #[error("runtime API at {endpoint} failed during `{command}`: {source}")]
    Io { endpoint: String, command: String, source: io::Error },
    /// No complete answer within the command timeout.
    #[error("runtime API at {endpoint} did not answer `{command}` within {}", humantime::format_duration(*after))]
    Timeout { endpoint: String, command: String, after: Duration },
    /// The socket's level is below `admin` (HAProxy answered "Permission denied").
    #[error("HAProxy refused `{command}` at {endpoint}: permission denied (the stats socket needs `level admin`)")]
    PermissionDenied { endpoint: String, command: String },
    /// The backend does not exist in the running configuration.
    #[error("backend {backend:?}")]
    UnknownBackend { backend: String },
    /// The server does not exist in the backend.
    #[error("server {backend}/{server}")]
    UnknownServer { backend: String, server: String },
    /// The pool is not one of the router's configured pools (`backend` says what the router
    /// drives: `backend web`, or the pools' backends and the split map).
    #[error("pool {pool:?} in HAProxy {backend} (its pools: {known})")]
    UnknownPool { pool: String, backend: String, known: String },
    /// The split map is not loaded in HAProxy (`show map` lists the ones that are).
    #[error("split map {map:?} (written as in haproxy.cfg's map_int(…); HAProxy's maps: {known})")]
    UnknownMap { map: String, known: String },
    /// A target that is not a member of the pool.
    #[error("target {target:?} in pool {pool} (no server {backend}/{server})")]
    NotAMember { target: String, pool: String, backend: String, server: String },
    /// HAProxy answered a command with an error message.
    #[error("HAProxy refused `{command}`: {answer}")]
    Answer { command: String, answer: String },
    /// This HAProxy does not support a command the operation needs.
    #[error("HAProxy {version} cannot `{command}` at runtime: {what_instead}")]
    Unsupported { version: String, command: String, what_instead: String },
    /// An answer that could not be understood.
    #[error("cannot parse the answer to `{command}`: {reason}")]
    Parse { command: String, reason: String },
    /// A target or argument HAProxy cannot take (bad server name characters, not an IP address).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The backend is not in the state the deploy describes (a stray server, a pool with no
    /// ready server, a target registered at another address).
    #[error("{what}")]
    Drift { what: String },
    /// A server still had connections when it was to be deleted, after waiting.
    #[error("server {backend}/{server} still has connections after {}; it was left in maintenance", humantime::format_duration(*after))]
    Busy { backend: String, server: String, after: Duration },
}

impl From<HaproxyError> for Error {
    fn from(e: HaproxyError) -> Self {
        let message = e.to_string();
        match e {
            HaproxyError::Connect { source, .. } => {
                // A refused connection or a reset is an HAProxy restarting or reloading: try
                // again. A missing socket path or a permission problem is configuration.
                let retryable = !matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput
                );
                Error::Backend { backend: "haproxy".into(), message, retryable, source: Some(Box::new(source)) }
            }
            HaproxyError::Io { source, .. } => {
                Error::Backend { backend: "haproxy".into(), message, retryable: true, source: Some(Box::new(source)) }
            }
            HaproxyError::Timeout { .. } | HaproxyError::Busy { .. } => Error::transient("haproxy", message),
            HaproxyError::PermissionDenied { .. }
            | HaproxyError::Answer { .. }
            | HaproxyError::Unsupported { .. }
            | HaproxyError::Parse { .. } => Error::permanent("haproxy", message),
            HaproxyError::UnknownBackend { .. }
            | HaproxyError::UnknownServer { .. }
            | HaproxyError::UnknownPool { .. }
            | HaproxyError::UnknownMap { .. }
            | HaproxyError::NotAMember { .. } => Error::not_found(message),
            HaproxyError::Invalid { field, reason } => Error::invalid(field, reason),
            HaproxyError::Drift { what } => Error::drift(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meanings() {
        let refused = HaproxyError::Connect {
            endpoint: "unix:/x".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(Error::from(refused).is_retryable());
        let missing =
            HaproxyError::Connect { endpoint: "unix:/x".into(), source: io::Error::from(io::ErrorKind::NotFound) };
        assert!(matches!(Error::from(missing), Error::Backend { retryable: false, .. }));
        let denied = HaproxyError::PermissionDenied { endpoint: "unix:/x".into(), command: "set weight".into() };
        let denied = Error::from(denied);
        assert!(matches!(denied, Error::Backend { retryable: false, .. }));
        assert!(denied.to_string().contains("level admin"), "{denied}");
        let server = HaproxyError::UnknownServer { backend: "web".into(), server: "blue.x".into() };
        assert_eq!(Error::from(server).to_string(), "server web/blue.x not found");
    }
}
