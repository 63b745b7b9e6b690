//! The journal of a running deployment: its record kept in step with the store after each
//! step, its events appended to the store's log, its lease renewed, and commands from other
//! processes (pause, resume, promote, abort) polled and applied. The run writes to it; it
//! knows nothing of the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::Control;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::outcome::Outcome;
use crate::state::{Command, DeploymentRecord, Lease, Phase, StateStore, StepRecord};

/// The running deployment's record, kept in step with the store.
pub(super) struct Journal {
    store: Arc<dyn StateStore>,
    lease: Arc<Mutex<Lease>>,
    record: Mutex<DeploymentRecord>,
    events: Arc<EventLog>,
    lost: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The deployment's events not yet in the store: written with every record save, every command
/// poll and at the end, so another runner's `status` and `report` see the same log.
struct EventLog {
    store: Arc<dyn StateStore>,
    id: String,
    pending: Mutex<Vec<Event>>,
    /// Held from taking a batch until it is stored, so that flushes from the poll task and
    /// from a record write follow each other: a write's flush returns only once every event
    /// before it is in the store.
    writing: tokio::sync::Mutex<()>,
}

impl EventLog {
    fn push(&self, event: Event) {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
    }

    /// Appends what is pending under `lease`; on failure the events stay pending for the next
    /// write (a stale lease's are dropped with the run).
    async fn flush(&self, lease: &Lease) -> Result<()> {
        let _writing = self.writing.lock().await;
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.store.append_events(&self.id, &batch, lease).await;
        if result.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let newer = std::mem::replace(&mut *pending, batch);
            pending.extend(newer);
        }
        result
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The wall clock in Unix milliseconds, as records store it.
pub(super) fn now_ms() -> u64 {
    crate::state::unix_millis(SystemTime::now())
}

impl Journal {
    /// Starts renewing `lease` (for `lease_ttl` at a time) and polling `store` for commands to
    /// `record`'s deployment every `poll_interval`.
    pub(super) fn start(
        store: Arc<dyn StateStore>,
        (lease_ttl, poll_interval): (Duration, Duration),
        record: DeploymentRecord,
        lease: Lease,
        control: Control,
    ) -> Self {
        let lease = Arc::new(Mutex::new(lease));
        let lost = Arc::new(AtomicBool::new(false));
        let events = Arc::new(EventLog {
            store: store.clone(),
            id: record.id.clone(),
            pending: Mutex::default(),
            writing: tokio::sync::Mutex::default(),
        });
        let renew = {
            let (store, lease, lost, ttl) = (store.clone(), lease.clone(), lost.clone(), lease_ttl);
            let control = control.clone();
            tokio::spawn(async move {
                let mut wait = ttl / 3;
                loop {
                    tokio::time::sleep(wait).await;
                    let current = lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    match store.renew(&current, ttl).await {
                        Ok(renewed) => {
                            *lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = renewed;
                            wait = ttl / 3;
                        }
                        // Taken over, or expired while the store could not be reached: someone
                        // else may own the service now, so this process must change nothing more.
                        Err(e) if matches!(e, Error::Conflict { .. }) || now_ms() >= current.expires_at => {
                            lost.store(true, Ordering::SeqCst);
                            control.lock_lost();
                            break;
                        }
                        // The store is unreachable for now: try again soon, before the lease ends.
                        Err(_) => wait = (ttl / 10).max(Duration::from_millis(100)),
                    }
                }
            })
        };
        let poll = {
            let (store, id, every) = (store.clone(), record.id.clone(), poll_interval);
            let (events, lease) = (events.clone(), lease.clone());
            tokio::spawn(async move {
                let mut seen = 0;
                loop {
                    if let Ok(commands) = store.commands(&id, seen).await {
                        for c in commands {
                            seen = seen.max(c.seq);
                            apply(&control, c.command);
                        }
                    }
                    // Readers elsewhere (`status`, `report`) see the log within a poll interval.
                    let current = lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    let _ = events.flush(&current).await;
                    tokio::time::sleep(every).await;
                }
            })
        };
        Self { store, lease, record: Mutex::new(record), events, lost, tasks: vec![renew, poll] }
    }

    /// Keeps `event` for the store's log (written with the next record save).
    pub(super) fn record_event(&self, event: Event) {
        self.events.push(event);
    }

    fn lease(&self) -> Lease {
        self.lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether another owner took the lock over: this process must change nothing more.
    pub(super) fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    async fn write(&self, change: impl FnOnce(&mut DeploymentRecord)) -> Result<()> {
        let record = {
            let mut record = self.record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            change(&mut record);
            record.updated_at = now_ms();
            record.clone()
        };
        let lease = self.lease();
        // Events first: a record never claims a step whose events a reader cannot find. A
        // failed append is retried with the next write; the record still goes.
        if let Err(e @ Error::Conflict { .. }) = self.events.flush(&lease).await {
            self.lost.store(true, Ordering::SeqCst);
            return Err(e);
        }
        match self.store.save(&record, &lease).await {
            Err(e @ Error::Conflict { .. }) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(e)
            }
            other => other,
        }
    }

    pub(super) async fn step_completed(&self, index: usize, took: Duration) -> Result<()> {
        self.write(|r| {
            r.completed_steps = index + 1;
            r.steps.push(StepRecord { index, completed_at: now_ms(), took });
        })
        .await
    }

    pub(super) async fn rolling_back(&self, reason: &str) -> Result<()> {
        self.write(|r| {
            r.phase = Phase::RollingBack;
            r.failure = Some(reason.to_owned());
        })
        .await
    }

    /// Gives the lock up, leaving the record as it is (an interrupted, resumable deployment).
    pub(super) async fn release(&self) -> Result<()> {
        let lease = self.lease();
        let _ = self.events.flush(&lease).await;
        self.store.release(&lease).await
    }

    pub(super) async fn finished(&self, outcome: &Outcome) -> Result<()> {
        let saved = self
            .write(|r| {
                r.phase = Phase::Finished;
                r.outcome = Some(outcome.clone());
            })
            .await;
        // Free the lock even when the record could not be written: the next deploy must not
        // wait out a lease nobody holds.
        let released = self.release().await;
        saved.and(released)
    }
}

fn apply(control: &Control, command: Command) {
    match command {
        Command::Pause => control.pause(),
        Command::Resume => control.resume(),
        Command::Promote => control.promote(),
        Command::Abort => control.abort(),
    }
}
