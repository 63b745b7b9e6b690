//! Errors by meaning, shared by every backend.
//!
//! Backends keep their own private error enums and convert into [`Error`]; the executor only
//! needs to know what an error *means* (not found, conflict, retryable backend trouble, ...).

use std::time::Duration;

/// A boxed error source from a backend or the OS.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every fallible bluegreen call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by meaning.
///
/// `#[non_exhaustive]`: match the variants you act on and keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a spec, plan or argument that cannot work. Nothing on a backend was changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or argument at fault, as a path (`strategy.steps[1].weight`).
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// A named thing (pool, target, deployment, resource) does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, with its name (`pool "green"`).
        what: String,
    },
    /// The state store refuses the request: a lock held by another owner, a lease taken over
    /// (stale fence), a record that exists already or has ended.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicts, with names and, for locks, the owner and expiry.
        what: String,
    },
    /// The backend is not in the state the deploy describes: something it names does not hold
    /// what it should (a rule on another listener, a live pool the listener does not forward
    /// to), or the backend holds what no pool describes (a member the fleet does not know, an
    /// address in no pool, a split left half-way by an earlier deploy). Nothing was changed.
    #[error("the backend does not match the deploy: {what}")]
    Drift {
        /// What was found, naming the resource and what was expected of it.
        what: String,
    },
    /// Targets did not become (or stay) healthy.
    #[error("unhealthy: {what}")]
    Unhealthy {
        /// Which targets, and the last reason the probe gave.
        what: String,
    },
    /// An operation did not finish within its deadline.
    #[error("{what} timed out after {}", humantime::format_duration(*after))]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long it was waited for.
        after: Duration,
    },
    /// A backend call failed.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend's name (`haproxy`, `alb`, `sim`, ...).
        backend: String,
        /// What the backend said, with the operation.
        message: String,
        /// Whether repeating the same call later may succeed (throttling, a 5xx, a timeout).
        retryable: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A hook or analysis failed the deployment.
    #[error("{what} failed: {reason}")]
    Check {
        /// The hook or analysis, by name and point.
        what: String,
        /// What it reported.
        reason: String,
    },
    /// The deployment was aborted through its [`Control`](crate::Control) handle.
    #[error("aborted by operator")]
    Aborted,
    /// The deployment was stopped at a safe point through its [`Control`](crate::Control)
    /// handle, to be resumed later.
    #[error("stopped by operator; resumable")]
    Stopped,
    /// Stored state cannot be read (corrupt, truncated, empty, or written by a newer format).
    /// It is left as it is.
    #[error("state {path} is unreadable: {reason}; it was left as it is")]
    Corrupt {
        /// The file or key.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The router read back a state different from what was written.
    #[error("read-back mismatch on {what}: asked for {expected}, router serves {observed}")]
    ReadBackMismatch {
        /// What was written.
        what: String,
        /// The requested value.
        expected: String,
        /// The observed value.
        observed: String,
    },
}

impl Error {
    /// Builds an [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// Builds an [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Builds an [`Error::Conflict`].
    pub fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    /// Builds an [`Error::Drift`].
    pub fn drift(what: impl Into<String>) -> Self {
        Self::Drift { what: what.into() }
    }

    /// Builds a retryable [`Error::Backend`] (throttling, a transient 5xx, a dropped connection).
    pub fn transient(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Backend { backend: backend.into(), message: message.into(), retryable: true, source: None }
    }

    /// Builds a permanent [`Error::Backend`] (access denied, malformed request).
    pub fn permanent(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Backend { backend: backend.into(), message: message.into(), retryable: false, source: None }
    }

    /// Whether repeating the failed call may succeed. Only [`Error::Backend`] errors that the
    /// backend marked retryable are; everything else fails fast.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend { retryable: true, .. })
    }

    /// Renames the field of an [`Error::Invalid`] (a builder's name for a setting → where the
    /// setting is in a file); other errors are returned unchanged.
    pub fn rename_field(self, rename: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Invalid { field, reason } => Self::Invalid { field: rename(field), reason },
            other => other,
        }
    }

    /// Puts the field of an [`Error::Invalid`] under `prefix` (`separator` →
    /// `backend.separator`; the empty field, the table itself, becomes `prefix`). Fields that
    /// name the spec's pools (`pools`, `pools[1]`) are the spec's and stay as they are.
    pub fn within(self, prefix: &str) -> Self {
        self.rename_field(|field| {
            if field == "pools" || field.starts_with("pools[") {
                field
            } else if field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{field}")
            }
        })
    }

    /// The field named by an [`Error::Invalid`], if this is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
