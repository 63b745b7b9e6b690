//! The stability watch (rolling in place, [`Stability::Watched`](crate::Stability)): a target
//! that passed `healthy_threshold` probes serves again at once, and the rest of its
//! `min_healthy_time` is probed here while the next batches proceed. The first target that
//! fails its window fails the run at its next wait or step; before any step that is not a
//! batch, and before the end, every window must have passed.

use std::sync::{Mutex, PoisonError};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::run::Run;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::model::Target;
use crate::probe::Health;

/// The windows being watched in one run.
pub(super) struct Watches {
    /// Targets to start watching, with when their passing streak began.
    queued: Mutex<Vec<(Target, Instant)>>,
    added: Notify,
    /// Windows not yet ended, and the first failure.
    state: watch::Sender<WatchState>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct WatchState {
    /// Windows queued or being probed.
    pub(super) open: usize,
    /// Why the first failed window failed.
    pub(super) failed: Option<String>,
}

impl Default for Watches {
    fn default() -> Self {
        Self { queued: Mutex::default(), added: Notify::new(), state: watch::Sender::new(WatchState::default()) }
    }
}

impl Watches {
    /// A view of the state that wakes its holder on every change.
    pub(super) fn subscribe(&self) -> watch::Receiver<WatchState> {
        self.state.subscribe()
    }

    /// Why a window failed, if one did.
    pub(super) fn failure(&self) -> Option<String> {
        self.state.borrow().failed.clone()
    }
}

impl Run<'_> {
    /// Watches the rest of `target`'s `min_healthy_time`, counted from `since` (its first pass
    /// of the streak that passed the gate).
    pub(super) fn watch_window(&self, target: Target, since: Instant) {
        self.watches.state.send_modify(|s| s.open += 1);
        self.watches.queued.lock().unwrap_or_else(PoisonError::into_inner).push((target, since));
        self.watches.added.notify_one();
    }

    /// Probes every queued window until the run ends (never returns: the run's step loop is
    /// raced against it and drops it when done).
    pub(super) async fn drive_watches(&self) -> std::convert::Infallible {
        let mut running = FuturesUnordered::new();
        loop {
            let queued = std::mem::take(&mut *self.watches.queued.lock().unwrap_or_else(PoisonError::into_inner));
            running.extend(queued.into_iter().map(|(target, since)| self.watch_one(target, since)));
            tokio::select! {
                Some(result) = running.next(), if !running.is_empty() => {
                    self.watches.state.send_modify(|s| {
                        s.open -= 1;
                        if let Err(reason) = result {
                            s.failed.get_or_insert(reason);
                        }
                    });
                }
                () = self.watches.added.notified() => {}
            }
        }
    }

    /// Probes `target` every interval until a pass at least `min_healthy_time` after `since`
    /// (`Ok`), or `unhealthy_threshold` failures in a row (`Err` with why).
    async fn watch_one(&self, target: Target, since: Instant) -> std::result::Result<(), String> {
        let policy = &self.plan.spec.health;
        let mut fails = 0u32;
        loop {
            let left = policy.min_healthy_time.saturating_sub(since.elapsed());
            tokio::time::sleep(policy.interval.min(left.max(std::time::Duration::from_millis(1)))).await;
            match self.probe(&target).await {
                Health::Healthy => {
                    fails = 0;
                    if since.elapsed() >= policy.min_healthy_time {
                        return Ok(());
                    }
                }
                Health::Unhealthy { reason } => {
                    fails += 1;
                    if fails >= policy.unhealthy_threshold {
                        self.emit(EventKind::TargetUnhealthy { target: target.id.clone(), reason: reason.clone() });
                        return Err(format!(
                            "target {} passed its health gate, then failed {fails} checks in a row within its \
                             min_healthy_time of {}: {reason}",
                            target.id,
                            humantime::format_duration(policy.min_healthy_time)
                        ));
                    }
                }
            }
        }
    }

    /// The failure of a watched window, as the error that fails the run (none while rolling
    /// back: the rollback must not be cut short by what caused it).
    pub(super) fn window_failed(&self) -> Option<Error> {
        if self.rolling_back.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.watches.failure().map(|what| Error::Unhealthy { what })
    }

    /// Waits until every watched window passed; the first that fails (or a stop, an abort, a
    /// lost lock) ends the wait with its error.
    pub(super) async fn settle_windows(&self) -> Result<()> {
        let mut state = self.watches.subscribe();
        loop {
            if let Some(error) = self.window_failed() {
                return Err(error);
            }
            if state.borrow_and_update().open == 0 {
                return Ok(());
            }
            // Wakes on a window's end, or returns the stop / abort that ends the wait.
            tokio::select! {
                _ = state.changed() => {}
                waited = self.sleep(self.plan.spec.health.interval) => waited?,
            }
        }
    }
}
