//! [`Control`]: pause, resume, promote or abort a running deployment.

use std::sync::Arc;

use tokio::sync::watch;

/// What the operator asked for, as the executor sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ControlState {
    pub(crate) paused: bool,
    pub(crate) promoted: bool,
    pub(crate) aborted: bool,
    pub(crate) stopped: bool,
    /// Times `resume` was called (ends a manual pause step even if not paused before).
    pub(crate) resumes: u64,
    /// The lock was taken over: every wait must end.
    pub(crate) lock_lost: bool,
}

/// A handle to steer an executor's running deployment from another task.
///
/// Clones steer the same executor. The state is reset when a deployment starts, so a command
/// given between deployments has no effect on the next one.
///
/// - [`pause`](Self::pause): no new step starts and bakes stop counting until
///   [`resume`](Self::resume); a running backend call finishes.
/// - [`promote`](Self::promote): remaining bakes, test phases and pauses are skipped; health
///   gates, drains and read-backs still apply.
/// - [`abort`](Self::abort): the deployment stops at the next wait or step boundary and rolls
///   back. A rollback in progress is not interrupted.
/// - [`stop`](Self::stop): the deployment stops at the next wait or step boundary *without*
///   rolling back, status `interrupted`, resumable from its first uncompleted step (what a
///   first Ctrl-C does). A rollback in progress is not interrupted.
#[derive(Debug, Clone)]
pub struct Control {
    tx: Arc<watch::Sender<ControlState>>,
}

impl Default for Control {
    fn default() -> Self {
        Self { tx: Arc::new(watch::Sender::new(ControlState::default())) }
    }
}

impl Control {
    /// Pauses the deployment.
    pub fn pause(&self) {
        self.tx.send_modify(|s| s.paused = true);
    }

    /// Resumes a paused deployment (also ends a manual pause step).
    pub fn resume(&self) {
        self.tx.send_modify(|s| {
            s.paused = false;
            s.resumes += 1;
        });
    }

    /// Skips remaining bakes and pauses, and resumes if paused.
    pub fn promote(&self) {
        self.tx.send_modify(|s| {
            s.promoted = true;
            s.paused = false;
        });
    }

    /// Stops the deployment at a safe point without rolling back; it can be resumed.
    pub fn stop(&self) {
        self.tx.send_modify(|s| s.stopped = true);
    }

    /// Stops the deployment and rolls it back.
    pub fn abort(&self) {
        self.tx.send_modify(|s| s.aborted = true);
    }

    /// Ends every wait of the running deployment: another owner took the lock over.
    pub(crate) fn lock_lost(&self) {
        self.tx.send_modify(|s| s.lock_lost = true);
    }

    pub(crate) fn reset(&self) {
        self.tx.send_replace(ControlState::default());
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ControlState> {
        self.tx.subscribe()
    }
}
