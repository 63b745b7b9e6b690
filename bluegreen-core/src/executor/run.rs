//! One deployment attempt: event emission, retries, control-aware waiting, the step loop.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::control::ControlState;
use super::journal::Journal;
use super::{plan_spec_hooks, Executor};
use crate::analysis::Analysis;
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::hooks::{Hook, HookPoint};
use crate::model::Version;
use crate::outcome::{Outcome, Status};
use crate::plan::{Plan, Step};

/// Health probes in flight at once, per deployment.
const PROBE_CONCURRENCY: usize = 64;

/// Why a run whose lease was taken over stops.
const LOCK_LOST: &str = "another owner took the service's lock over";

pub(super) struct Run<'a> {
    pub(super) exec: &'a Executor,
    pub(super) plan: &'a Plan,
    pub(super) id: String,
    started: Instant,
    seq: Mutex<u64>,
    control: watch::Receiver<ControlState>,
    /// Set once the rollback begins: aborts no longer interrupt waits.
    pub(super) rolling_back: AtomicBool,
    promoted_seen: AtomicBool,
    spec_hooks: Vec<(HookPoint, Arc<dyn Hook>)>,
    pub(super) analyses: Vec<Arc<dyn Analysis>>,
    journal: Option<&'a Journal>,
    /// Whether this run continues an interrupted deployment.
    resumed: bool,
    /// What to tell the operator when the run starts (a lock taken over).
    notes: Vec<String>,
    /// Probes in flight at most.
    pub(super) probes: tokio::sync::Semaphore,
    /// When each target last passed its health gate in this run: a gate asked again right
    /// after (a standing pool's hosts, gated by their update, then by the plan's
    /// `AwaitHealthy`) passes at once.
    pub(super) gated: Mutex<std::collections::BTreeMap<crate::model::TargetId, Instant>>,
    /// Stability windows watched while the deploy goes on.
    pub(super) watches: super::watch::Watches,
}

impl<'a> Run<'a> {
    pub(super) fn new(exec: &'a Executor, plan: &'a Plan, id: &str) -> Self {
        Self {
            exec,
            plan,
            id: id.to_owned(),
            started: Instant::now(),
            seq: Mutex::new(0),
            control: exec.control.subscribe(),
            rolling_back: AtomicBool::new(false),
            promoted_seen: AtomicBool::new(false),
            spec_hooks: plan_spec_hooks(&plan.spec),
            analyses: exec.analyses_for(&plan.spec),
            journal: None,
            resumed: false,
            notes: Vec::new(),
            probes: tokio::sync::Semaphore::new(PROBE_CONCURRENCY),
            gated: Mutex::default(),
            watches: super::watch::Watches::default(),
        }
    }

    /// Records progress in `journal` as the run goes.
    pub(super) fn with_journal(mut self, journal: &'a Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Says `notes` to the operator as `warning` events once the run has started.
    pub(super) fn with_notes(mut self, notes: impl IntoIterator<Item = String>) -> Self {
        self.notes.extend(notes);
        self
    }

    /// Continues a deployment whose log ends before `next_seq` and which began `elapsed` ago:
    /// its events go on numbering and timing from there, and it starts with
    /// `deployment_resumed`.
    pub(super) fn continuing(mut self, next_seq: u64, elapsed: Duration) -> Self {
        self.seq = Mutex::new(next_seq);
        self.started = Instant::now().checked_sub(elapsed).unwrap_or_else(Instant::now);
        self.resumed = true;
        self
    }

    /// Runs the plan from `from_step`; with `rollback_reason`, only the rollback (a resumed
    /// deployment that was rolling back).
    pub(super) async fn execute(&self, from_step: usize, rollback_reason: Option<String>) -> Outcome {
        let spec = &self.plan.spec;
        if !self.resumed && from_step == 0 && rollback_reason.is_none() {
            self.emit(EventKind::DeploymentStarted {
                service: spec.service.clone(),
                strategy: spec.strategy.name().to_owned(),
                from: self.plan.from_version.clone(),
                to: spec.version.clone(),
                steps: self.plan.steps.len(),
            });
            for message in &self.plan.warnings {
                self.emit(EventKind::Warning { message: message.clone() });
            }
        } else {
            self.emit(EventKind::DeploymentResumed { from_step });
        }
        for message in &self.notes {
            self.emit(EventKind::Warning { message: message.clone() });
        }
        let completed = from_step.min(self.plan.steps.len());
        if let Some(reason) = rollback_reason {
            return self.fail(Error::Check { what: "the interrupted deployment".into(), reason }, completed).await;
        }
        // The steps, with the stability windows of updated targets probed beside them (only a
        // rolling update in place opens windows: other plans run without the watch).
        if !self.opens_windows() {
            return self.steps_from(completed).await;
        }
        tokio::select! {
            biased;
            outcome = self.steps_from(completed) => outcome,
            never = self.drive_watches() => match never {},
        }
    }

    /// Runs the steps from `completed` on, then finishes (or fails and rolls back).
    async fn steps_from(&self, mut completed: usize) -> Outcome {
        for (index, step) in self.plan.steps.iter().enumerate().skip(completed) {
            let started = Instant::now();
            // Only batches (and bakes between them) run while windows are still watched.
            let overlaps_windows = matches!(step, Step::UpdateBatch { .. } | Step::Bake { .. });
            let result = match self.checkpoint().await {
                Ok(()) if !overlaps_windows => self.settle_windows().await,
                other => other,
            };
            let result = match result {
                Ok(()) => {
                    self.emit(EventKind::StepStarted { index, step: step.to_string() });
                    self.run_step(step).await
                }
                Err(e) => Err(e),
            };
            if self.lost_lock() {
                return self.abandon(completed).await;
            }
            // Stopped by the operator at a safe point; a genuine failure still rolls back.
            if self.stop_requested() && matches!(result, Err(Error::Stopped)) {
                return self.interrupt(completed).await;
            }
            if let Err(error) = result {
                return self.fail(error, completed).await;
            }
            completed += 1;
            let took = started.elapsed();
            self.emit(EventKind::StepCompleted { index, took });
            if let Some(journal) = self.journal {
                if journal.step_completed(index, took).await.is_err() && journal.lost() {
                    return self.abandon(completed).await;
                }
            }
        }
        // No success before every updated target stayed healthy through its window.
        if let Err(error) = self.settle_windows().await {
            if self.stop_requested() && matches!(error, Error::Stopped) {
                return self.interrupt(completed).await;
            }
            return self.fail(error, completed).await;
        }
        self.finish(Status::Succeeded, None, completed).await
    }

    pub(super) fn lost_lock(&self) -> bool {
        self.journal.is_some_and(Journal::lost)
    }

    /// Another owner is in charge: stop without touching anything.
    async fn abandon(&self, completed: usize) -> Outcome {
        let reason = Some(LOCK_LOST.to_owned());
        self.emit(EventKind::DeploymentFinished { status: Status::Abandoned, reason: reason.clone() });
        self.outcome(Status::Abandoned, reason, Default::default(), completed)
    }

    /// The outcome of this run, ending now.
    fn outcome(
        &self,
        status: Status,
        reason: Option<String>,
        (split, serving_versions): (crate::Split, Vec<Version>),
        steps_completed: usize,
    ) -> Outcome {
        Outcome {
            deployment_id: self.id.clone(),
            status,
            reason: reason.map(|r| self.exec.secrets.redact(&r).into_owned()),
            split,
            serving_versions,
            steps_completed,
            elapsed: self.started.elapsed(),
        }
    }

    /// The operator asked to stop: leave everything as it is, resumable.
    async fn interrupt(&self, completed: usize) -> Outcome {
        let reason =
            format!("stopped by operator after {completed} of {} steps; resume to continue", self.plan.steps.len());
        self.emit(EventKind::DeploymentFinished { status: Status::Interrupted, reason: Some(reason.clone()) });
        if let Some(journal) = self.journal {
            let _ = journal.release().await;
        }
        let serving = self.serving().await.unwrap_or_default();
        self.outcome(Status::Interrupted, Some(reason), serving, completed)
    }

    async fn fail(&self, error: Error, completed: usize) -> Outcome {
        if let Some(journal) = self.journal {
            if journal.rolling_back(&error.to_string()).await.is_err() && journal.lost() {
                return self.abandon(completed).await;
            }
        }
        let status = self.rollback(&error).await;
        if self.lost_lock() {
            return self.abandon(completed).await;
        }
        self.finish(status, Some(error.to_string()), completed).await
    }

    async fn finish(&self, status: Status, reason: Option<String>, steps_completed: usize) -> Outcome {
        // The outcome reports what the router serves; a failed read is tried again, and an
        // empty report means it could not be read.
        let mut observed = self.serving().await;
        for _ in 1..3 {
            if observed.is_ok() {
                break;
            }
            observed = self.serving().await;
        }
        let read = observed.is_ok();
        let (split, serving_versions) = observed.unwrap_or_default();
        if status != Status::RollbackFailed && read {
            self.emit(EventKind::SteadyState { split: split.clone(), versions: serving_versions.clone() });
        }
        self.emit(EventKind::DeploymentFinished { status, reason: reason.clone() });
        let outcome = self.outcome(status, reason, (split, serving_versions), steps_completed);
        if let Some(journal) = self.journal {
            // The deploy is over either way; a store that cannot record it leaves the record
            // "running", and a resume then finds every step done and finishes it again.
            let _ = journal.finished(&outcome).await;
        }
        outcome
    }

    /// The observed split and the versions of the members serving traffic.
    async fn serving(&self) -> Result<(crate::Split, Vec<Version>)> {
        let split = self.call("read split", || self.exec.router.split()).await?;
        let targets = self.fleet_map().await?;
        let mut versions = Vec::new();
        for pool in split.live_pools() {
            for t in self.serving_in(pool, &targets).await? {
                if !versions.contains(&t.version) {
                    versions.push(t.version);
                }
            }
        }
        versions.sort();
        Ok((split, versions))
    }

    /// Sends one event to every sink, in order.
    pub(super) fn emit(&self, kind: EventKind) {
        let mut seq = self.seq.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let event = Event { deployment_id: self.id.clone(), seq: *seq, at: self.started.elapsed(), kind };
        // No sink and no store sees a secret; an event that would not survive redaction (a
        // secret was a whole duration, say) is replaced by a warning that says so.
        let event = if self.exec.secrets.is_empty() {
            event
        } else {
            self.exec.secrets.redacted(&event).unwrap_or_else(|_| Event {
                kind: EventKind::Warning { message: format!("event {} withheld: it held a secret", event.seq) },
                ..event
            })
        };
        *seq += 1;
        for sink in &self.exec.sinks {
            sink.emit(&event);
        }
        if let Some(journal) = self.journal {
            journal.record_event(event);
        }
    }

    /// Calls a backend operation, repeating it with backoff while it fails retryably.
    pub(super) async fn call<T, F, Fut>(&self, operation: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let policy = &self.plan.spec.retry;
        let mut attempt = 1;
        loop {
            // Another owner may be in charge: no backend call of ours may follow.
            if self.lost_lock() {
                return Err(Error::conflict(LOCK_LOST));
            }
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                    let backoff = policy.backoff(attempt);
                    self.emit(EventKind::Retrying {
                        operation: operation.to_owned(),
                        attempt,
                        error: e.to_string(),
                        backoff,
                    });
                    self.sleep(backoff).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn state(&self) -> ControlState {
        *self.control.borrow()
    }

    fn abort_requested(&self) -> bool {
        self.state().aborted && !self.rolling_back.load(Ordering::SeqCst)
    }

    /// Ends any wait at once when another owner took the lock over, a watched stability window
    /// failed, or the operator asked to stop.
    fn check_lock(&self) -> Result<()> {
        if self.lost_lock() {
            return Err(Error::conflict(LOCK_LOST));
        }
        if let Some(failed) = self.window_failed() {
            return Err(failed);
        }
        if self.stop_requested() {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    /// A stop was asked for (and no abort, which wins over it).
    fn stop_requested(&self) -> bool {
        let state = self.state();
        state.stopped && !state.aborted && !self.rolling_back.load(Ordering::SeqCst)
    }

    pub(super) fn promoted(&self) -> bool {
        let promoted = self.state().promoted && !self.rolling_back.load(Ordering::SeqCst);
        if promoted && !self.promoted_seen.swap(true, Ordering::SeqCst) {
            self.emit(EventKind::Promoted);
        }
        promoted
    }

    /// Times the operator called `resume` in this deployment.
    pub(super) fn control_resumes(&self) -> u64 {
        self.state().resumes
    }

    pub(super) fn paused(&self) -> bool {
        self.state().paused && !self.rolling_back.load(Ordering::SeqCst)
    }

    fn aborted(&self) -> Error {
        self.emit(EventKind::AbortRequested);
        Error::Aborted
    }

    /// Sleeps `duration`; an abort ends it with [`Error::Aborted`].
    pub(super) async fn sleep(&self, duration: Duration) -> Result<()> {
        let deadline = Instant::now() + duration;
        let mut control = self.control.clone();
        let mut windows = self.watches.subscribe();
        loop {
            self.check_lock()?;
            if self.abort_requested() {
                return Err(self.aborted());
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(()),
                changed = control.changed() => if changed.is_err() {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                },
                // A stability window that failed ends the wait (checked above, next turn).
                _ = windows.changed() => {}
            }
        }
    }

    /// Waits until `until` holds for the control state (or a stop, an abort or a lost lock
    /// ends the wait), at most `limit`. Checking and waiting are one step, so a change made
    /// meanwhile is never missed.
    pub(super) async fn wait_control(&self, until: impl Fn(&ControlState) -> bool, limit: Duration) -> Result<()> {
        let mut control = self.control.clone();
        let waited = control.wait_for(|s| until(s) || s.aborted || s.stopped || s.lock_lost);
        let _ = tokio::time::timeout(limit, waited).await;
        self.check_lock()?;
        if self.abort_requested() {
            return Err(self.aborted());
        }
        Ok(())
    }

    /// Between steps: stop on abort, hold while paused.
    async fn checkpoint(&self) -> Result<()> {
        self.check_lock()?;
        if self.abort_requested() {
            return Err(self.aborted());
        }
        self.hold_while_paused().await
    }

    /// Holds while the operator has paused the deployment.
    pub(super) async fn hold_while_paused(&self) -> Result<()> {
        if !self.paused() {
            return Ok(());
        }
        self.emit(EventKind::Paused { reason: "paused by operator".to_owned() });
        while self.paused() {
            self.wait_control(|s| !s.paused, Duration::from_secs(3600)).await?;
        }
        self.emit(EventKind::Resumed);
        Ok(())
    }

    pub(super) fn hooks_at(&self, point: HookPoint) -> Vec<Arc<dyn Hook>> {
        self.exec.hooks_at(&self.spec_hooks, point)
    }
}
