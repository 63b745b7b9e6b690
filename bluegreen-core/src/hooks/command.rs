//! Shell-command hooks.

use std::time::Duration;

use async_trait::async_trait;

use super::{Hook, HookContext, HookOutput};
use crate::error::{Error, Result};
use crate::shell;

/// Runs `sh -c COMMAND` with the deploy's facts as `BLUEGREEN_*` environment variables
/// (see [`HookContext::env`]), killed after `timeout`. A non-zero exit fails the hook with
/// the tail of its output.
///
/// The command runs with [`shell::run`]:
/// - The command inherits the deployer's environment plus the `BLUEGREEN_*` variables; its
///   stdin is `/dev/null`.
/// - Its stdout and stderr are captured together (in the order they arrive); the last 20
///   lines (at most 4 KiB) become [`HookOutput::output`], or the error's reason.
/// - On Unix the command runs in its own process group. When the timeout passes, the whole
///   group is killed (`SIGKILL`), so processes the command started do not live on; the
///   hook fails with `timed out after …`. The group is killed as well when the hook's
///   future is dropped (the deployment task is cancelled).
/// - Processes the command leaves running in the background after it exits are not waited
///   for (their output is read for a short grace period only).
///
/// ```
/// use std::time::Duration;
/// use bluegreen_core::CommandHook;
/// let migrate = CommandHook::new("./migrate.sh --to \"$BLUEGREEN_VERSION\"", Duration::from_secs(600));
/// ```
#[derive(Debug, Clone)]
pub struct CommandHook {
    command: String,
    timeout: Duration,
}

impl CommandHook {
    /// A hook running `command` with `timeout`.
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        Self { command: command.into(), timeout }
    }
}

#[async_trait]
impl Hook for CommandHook {
    fn name(&self) -> String {
        self.command.clone()
    }

    async fn run(&self, context: &HookContext) -> Result<HookOutput> {
        match shell::run(&self.command, context.env(), self.timeout).await {
            Ok(finished) => Ok(HookOutput { output: finished.output }),
            Err(failure) => {
                // `exit status 3: <output>`, `timed out after 5s: <output>`, `cannot start `sh`: …`
                let output = failure.output();
                let reason = if output.is_empty() { failure.to_string() } else { format!("{failure}: {output}") };
                Err(Error::Check { what: format!("hook {:?}", self.command), reason })
            }
        }
    }
}
