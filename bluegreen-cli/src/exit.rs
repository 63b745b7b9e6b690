//! Exit codes and the command's error type.

use std::fmt;
use std::process::ExitCode;

use bluegreen::deploy_file::DeployFileError;
use bluegreen_core::{Error, Status};

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// The deploy succeeded (or the command did what was asked).
    Done = 0,
    /// The deploy failed and was rolled back (traffic is on the old version).
    RolledBack = 1,
    /// Bad input: nothing was changed.
    BadInput = 2,
    /// The rollback itself failed, or the deploy was abandoned: a human is needed.
    NeedsHuman = 3,
    /// Another deployment of the service holds its lock.
    LockConflict = 4,
    /// Stopped at a safe point (Ctrl-C); resume with `bluegreen resume-deploy -f FILE ID`.
    Interrupted = 5,
    /// The backend is not in the state the deploy file describes (something it names does not
    /// exist, or the backend holds what no pool describes): nothing was changed.
    Drift = 6,
    /// The deployment is still running (`status`, or `wait` at its timeout).
    Running = 7,
}

impl Code {
    /// The code's name in JSON errors (`bad_input`, `lock_held`).
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::RolledBack => "rolled_back",
            Self::BadInput => "bad_input",
            Self::NeedsHuman => "needs_human",
            Self::LockConflict => "lock_held",
            Self::Interrupted => "interrupted",
            Self::Drift => "drift",
            Self::Running => "running",
        }
    }

    /// The exit code a deploy's status maps to.
    pub(crate) fn of(status: Status) -> Self {
        match status {
            Status::Succeeded => Self::Done,
            Status::RolledBack | Status::RolledForward => Self::RolledBack,
            Status::Interrupted => Self::Interrupted,
            _ => Self::NeedsHuman,
        }
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// An error the command reports before exiting with its code: on stderr, or as a JSON object
/// on stdout under `--output json`.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: Code,
    pub(crate) message: String,
    /// `file:line:column` (or `file`) when the error is in the deploy file.
    pub(crate) location: Option<String>,
}

impl CliError {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self { code: Code::BadInput, message: message.into(), location: None }
    }

    /// A deployment or version the user named that the state store does not hold: bad input.
    pub(crate) fn unknown(error: Error) -> Self {
        match error {
            Error::NotFound { .. } => Self::bad_input(error.to_string()),
            other => other.into(),
        }
    }

    pub(crate) fn needs_human(message: impl Into<String>) -> Self {
        Self { code: Code::NeedsHuman, message: message.into(), location: None }
    }
}

impl CliError {
    /// `{"error": {"kind", "message", "location"}}`, for `--output json`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": { "kind": self.code.kind(), "message": self.message, "location": self.location }
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<DeployFileError> for CliError {
    /// A refused deploy file is bad input; a located `NotFound` or `Drift` keeps its code.
    fn from(error: DeployFileError) -> Self {
        let code = match error.cause() {
            Some(Error::NotFound { .. } | Error::Drift { .. }) => Code::Drift,
            _ => Code::BadInput,
        };
        let location = match &error.position {
            Some(at) => format!("{}:{}:{}", error.file.display(), at.line, at.column),
            None => error.file.display().to_string(),
        };
        Self { code, message: error.to_string(), location: Some(location) }
    }
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::Invalid { .. } | Error::Corrupt { .. } => Code::BadInput,
            // What the file names is not on the backend (a listener, a target group, a pool).
            // Deployments and versions looked up in the state store are mapped to bad input
            // where they are looked up.
            Error::NotFound { .. } | Error::Drift { .. } => Code::Drift,
            Error::Conflict { .. } => Code::LockConflict,
            _ => Code::NeedsHuman,
        };
        Self { code, message: error.to_string(), location: None }
    }
}
