//! The stability watch (rolling in place, [`Stability::Watched`](crate::Stability)): a target
//! serves again at its first passing probe, and the rest of its gate — `healthy_threshold`
//! passes in a row spanning `min_healthy_time`, before `deadline` — is probed here while the next
//! batches proceed. The first target that fails its window fails the run at its next wait or
//! step; before any step that is not a batch, and before the end, every window must have passed.

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
    /// Windows to start watching.
    queued: Mutex<Vec<Window>>,
    added: Notify,
    /// Windows not yet ended, and the first failure.
    state: watch::Sender<WatchState>,
}

/// One target's window: what its gate saw so far.
struct Window {
    target: Target,
    /// When its streak of passes began.
    since: Instant,
    /// Passes in a row so far.
    passes: u32,
    /// When its gate gives up.
    deadline: Instant,
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
    /// Whether this run's gates may open windows: a rolling update in place with
    /// [`Stability::Watched`](crate::Stability).
    pub(super) fn opens_windows(&self) -> bool {
        matches!(
            &self.plan.spec.strategy,
            crate::Strategy::Rolling(r) if r.stability == crate::Stability::Watched && r.mode == crate::RollingMode::InPlace
        )
    }

    /// Watches the rest of `target`'s gate: it passed `passes` probes in a row since `since`,
    /// and must be stable by `deadline`.
    pub(super) fn watch_window(&self, target: Target, since: Instant, passes: u32, deadline: Instant) {
        self.watches.state.send_modify(|s| s.open += 1);
        let window = Window { target, since, passes, deadline };
        self.watches.queued.lock().unwrap_or_else(PoisonError::into_inner).push(window);
        self.watches.added.notify_one();
    }

    /// Probes every queued window until the run ends (never returns: the run's step loop is
    /// raced against it and drops it when done).
    pub(super) async fn drive_watches(&self) -> std::convert::Infallible {
        let mut running = FuturesUnordered::new();
        loop {
            let queued = std::mem::take(&mut *self.watches.queued.lock().unwrap_or_else(PoisonError::into_inner));
            running.extend(queued.into_iter().map(|window| self.watch_one(window)));
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

    /// Probes the window's target every interval until `healthy_threshold` passes in a row
    /// span `min_healthy_time` (`Ok`), or it fails `unhealthy_threshold` probes in a row or is
    /// not stable by its deadline (`Err` with why). A failure restarts the streak.
    async fn watch_one(&self, window: Window) -> std::result::Result<(), String> {
        let Window { target, mut since, mut passes, deadline } = window;
        let policy = &self.plan.spec.health;
        let mut fails = 0u32;
        loop {
            // The next probe is due an interval on, or when the window ends if that is sooner
            // and the passes are in.
            let mut wait = policy.interval;
            if passes >= policy.healthy_threshold {
                wait = wait.min(policy.min_healthy_time.saturating_sub(since.elapsed()));
            }
            if Instant::now() + wait > deadline {
                self.emit(EventKind::TargetUnhealthy { target: target.id.clone(), reason: "not stable".into() });
                return Err(format!(
                    "target {} served after its first passing probe but was not stable ({} passes in a row \
                     spanning {}) within {}",
                    target.id,
                    policy.healthy_threshold,
                    humantime::format_duration(policy.min_healthy_time),
                    humantime::format_duration(policy.deadline)
                ));
            }
            tokio::time::sleep(wait.max(std::time::Duration::from_millis(1))).await;
            match self.probe(&target).await {
                Health::Healthy => {
                    fails = 0;
                    if passes == 0 {
                        // A new streak, after a failure.
                        since = Instant::now();
                    }
                    passes += 1;
                    if passes >= policy.healthy_threshold && since.elapsed() >= policy.min_healthy_time {
                        return Ok(());
                    }
                }
                Health::Unhealthy { reason } => {
                    fails += 1;
                    passes = 0;
                    if fails >= policy.unhealthy_threshold {
                        self.emit(EventKind::TargetUnhealthy { target: target.id.clone(), reason: reason.clone() });
                        return Err(format!(
                            "target {} passed its health gate, then failed {fails} checks in a row within its \
                             window ({} passes spanning {}): {reason}",
                            target.id,
                            policy.healthy_threshold,
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
