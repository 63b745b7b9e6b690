//! Durable deployments: the lock per service, the journal of completed steps, lease renewal,
//! commands from other processes, resume and history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{Control, Executor, Outcome, Status};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::model::Version;
use crate::spec::Spec;
use crate::state::{Command, DeploymentRecord, DeploymentSummary, Lease, Phase, StateStore, StepRecord};

/// What happens when a deployment of a service starts while another one holds its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// Refuse at once with [`Error::Conflict`], naming the holder and its lease's expiry.
    #[default]
    Refuse,
    /// Wait in line (first come, first served) until the lock is free.
    Queue,
    /// Tell the running deployment to stop — by rolling back (`abort`) or by finishing at
    /// once (`promote`) — then take the lock when it is free.
    Supersede(SupersedeWith),
}

/// How a superseded deployment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupersedeWith {
    /// It rolls back.
    Abort,
    /// It skips its remaining bakes and pauses and finishes.
    Promote,
}

/// Where an executor keeps its deployments, and how it holds the lock.
#[derive(Debug, Clone)]
pub(super) struct Durable {
    pub(super) store: Arc<dyn StateStore>,
    pub(super) owner: String,
    pub(super) lease_ttl: Duration,
    pub(super) poll_interval: Duration,
    pub(super) holder_gone: Option<HolderGone>,
}

/// How a journaled run begins.
struct Start {
    /// For a resumed deployment: where it goes on.
    resume: Option<Resumption>,
    /// What to tell the operator (a lock taken over).
    note: Option<String>,
}

/// Where a resumed deployment goes on.
struct Resumption {
    /// The first step to run.
    from_step: usize,
    /// The rollback's reason, when it was rolling back.
    rollback_reason: Option<String>,
    /// The sequence number after its last stored event.
    next_seq: u64,
    /// How long ago it began (never less than its last event's time).
    elapsed: Duration,
}

/// See [`ExecutorBuilder::holder_gone`](super::ExecutorBuilder::holder_gone).
#[derive(Clone)]
pub(super) struct HolderGone(pub(super) Arc<dyn Fn(&Lease) -> bool + Send + Sync>);

impl std::fmt::Debug for HolderGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HolderGone")
    }
}

impl Durable {
    /// Frees the service's lock when its live holder is known to be gone; returns what to tell
    /// the operator.
    async fn free_if_holder_gone(&self, service: &str) -> Result<Option<String>> {
        let Some(gone) = &self.holder_gone else { return Ok(None) };
        let Some(holder) = self.store.holder(service).await? else { return Ok(None) };
        if holder.owner == self.owner || !(gone.0)(&holder) {
            return Ok(None);
        }
        // A release is fenced: it frees the lock only if that lease is still the current one.
        self.store.release(&holder).await?;
        Ok(Some(format!(
            "took over the lock of {service} from {} (fence {}): that process no longer runs",
            holder.owner, holder.fence
        )))
    }
}

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

fn now_ms() -> u64 {
    crate::state::unix_millis(SystemTime::now())
}

impl Journal {
    /// Starts renewing `lease` and polling for commands to `record`'s deployment.
    fn start(durable: &Durable, record: DeploymentRecord, lease: Lease, control: Control) -> Self {
        let lease = Arc::new(Mutex::new(lease));
        let lost = Arc::new(AtomicBool::new(false));
        let events = Arc::new(EventLog {
            store: durable.store.clone(),
            id: record.id.clone(),
            pending: Mutex::default(),
            writing: tokio::sync::Mutex::default(),
        });
        let renew = {
            let (store, lease, lost, ttl) = (durable.store.clone(), lease.clone(), lost.clone(), durable.lease_ttl);
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
            let (store, id, every) = (durable.store.clone(), record.id.clone(), durable.poll_interval);
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
        Self { store: durable.store.clone(), lease, record: Mutex::new(record), events, lost, tasks: vec![renew, poll] }
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

impl Executor {
    fn durable(&self) -> Result<&Durable> {
        self.durable
            .as_ref()
            .ok_or_else(|| Error::invalid("executor", "no state store configured (ExecutorBuilder::state_store)"))
    }

    /// Takes the service's lock as `policy` says; with what to tell the operator about it.
    pub(super) async fn lock_for(&self, spec: &Spec, id: &str) -> Result<(Lease, Option<String>)> {
        let d = self.durable()?;
        let service = spec.service.as_str();
        let note = d.free_if_holder_gone(service).await?;
        self.lock_as_policy_says(spec, id).await.map(|lease| (lease, note))
    }

    async fn lock_as_policy_says(&self, spec: &Spec, id: &str) -> Result<Lease> {
        let d = self.durable()?;
        let service = spec.service.as_str();
        // A live lock refuses a *new* deployment even under this owner's name (an acquire by the
        // same owner is a takeover, which only `resume_deployment` may do).
        let held = |lease: Lease| {
            Error::conflict(format!(
                "service {service} is locked by {} until {} (Unix ms)",
                lease.owner, lease.expires_at
            ))
        };
        match spec.concurrency {
            ConcurrencyPolicy::Refuse => {
                if let Some(lease) = d.store.holder(service).await? {
                    return Err(held(lease));
                }
                return d.store.acquire(service, &d.owner, d.lease_ttl).await;
            }
            ConcurrencyPolicy::Queue => {}
            ConcurrencyPolicy::Supersede(with) => {
                if d.store.holder(service).await?.is_some() {
                    let running =
                        d.store.history(service).await?.into_iter().rev().find(|r| r.phase != Phase::Finished);
                    if let Some(running) = running {
                        let command = match with {
                            SupersedeWith::Abort => Command::Abort,
                            SupersedeWith::Promote => Command::Promote,
                        };
                        d.store.send(&running.id, command).await?;
                    }
                }
            }
        }
        // Wait in line: the first entry of the queue takes the lock once it is free. Entries
        // of waiters that died expire after a lease TTL.
        let control = self.control.subscribe();
        loop {
            let state = *control.borrow();
            if state.stopped || state.aborted {
                // Ctrl-C or an abort while waiting in line: leave the queue, change nothing.
                d.store.dequeue(service, id).await?;
                return Err(if state.aborted { Error::Aborted } else { Error::Stopped });
            }
            let queue = d.store.enqueue(service, id, d.lease_ttl).await?;
            if queue.first().map(String::as_str) == Some(id) && d.store.holder(service).await?.is_none() {
                match d.store.acquire(service, &d.owner, d.lease_ttl).await {
                    Ok(lease) => {
                        d.store.dequeue(service, id).await?;
                        return Ok(lease);
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(d.poll_interval).await;
        }
    }

    /// Plans and runs `spec` under the service's lock, recording every step.
    pub(super) async fn deploy_durably(&self, spec: &Spec, id: &str) -> Result<Outcome> {
        spec.validate()?;
        self.control.reset();
        let d = self.durable()?.clone();
        let (locked, note) = self.lock_for(spec, id).await?;
        let prepared = async {
            let plan = self.plan(spec).await?;
            // Planning reads the backends and may take a while: renew before the first change,
            // so a lease that lapsed meanwhile (and was taken over) stops us while nothing
            // changed yet.
            let lease = d.store.renew(&locked, d.lease_ttl).await?;
            let record = DeploymentRecord::new(id, plan, d.owner.clone(), now_ms());
            d.store.create(&record, &lease).await?;
            Ok((record, lease))
        };
        match prepared.await {
            Ok((record, lease)) => Ok(self.run_journaled(&d, record, lease, Start { resume: None, note }).await),
            Err(e) => {
                // Nothing changed yet: free the lock (a release only needs the lease's fence and
                // owner, which a renewal keeps).
                let _ = d.store.release(&locked).await;
                Err(e)
            }
        }
    }

    async fn run_journaled(&self, d: &Durable, record: DeploymentRecord, lease: Lease, start: Start) -> Outcome {
        let id = record.id.clone();
        let plan = record.plan.clone();
        let journal = Journal::start(d, record, lease, self.control.clone());
        let run = super::run::Run::new(self, &plan, &id).with_journal(&journal).with_notes(start.note);
        match start.resume {
            Some(r) => run.continuing(r.next_seq, r.elapsed).execute(r.from_step, r.rollback_reason).await,
            None => run.execute(0, None).await,
        }
    }

    /// Continues deployment `id` from the store: from its first uncompleted step, or its
    /// rollback if it was rolling back. The interrupted step runs again from its start.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Invalid`] when it finished already or a
    /// later deployment of the service started since (its plan is stale); [`Error::Conflict`]
    /// when another live owner holds the service's lock; store errors.
    pub async fn resume_deployment(&self, id: &str) -> Result<Outcome> {
        self.control.reset();
        let d = self.durable()?.clone();
        let record = d.store.load(id).await?;
        if record.phase == Phase::Finished {
            let status = record.outcome.as_ref().map_or_else(|| "finished".to_owned(), |o| o.status.to_string());
            return Err(Error::invalid("deployment", format!("deployment {id} already ended ({status})")));
        }
        // Its plan describes the backends as they were; a later deployment changed them since.
        let history = d.store.history(&record.service).await?;
        if let Some(newer) = history.iter().find(|r| r.id != record.id && r.created_at > record.created_at) {
            return Err(Error::invalid(
                "deployment",
                format!(
                    "deployment {} of {} started after {id}; {id}'s plan is stale — start a new deploy instead",
                    newer.id, record.service
                ),
            ));
        }
        // Its log goes on: numbered after its last stored event, timed from when it was created
        // (never before that event's time). A log that cannot be read stops the resume here,
        // before the lock is taken: numbering from 0 would overwrite it.
        let log = d.store.events(id).await?;
        let since_created = Duration::from_millis(now_ms().saturating_sub(record.created_at));
        let resumption = Resumption {
            from_step: record.completed_steps,
            rollback_reason: (record.phase == Phase::RollingBack)
                .then(|| record.failure.clone().unwrap_or_else(|| "interrupted".into())),
            next_seq: log.last().map_or(0, |e| e.seq + 1),
            elapsed: log.last().map_or(since_created, |e| e.at.max(since_created)),
        };
        let note = d.free_if_holder_gone(&record.service).await?;
        let lease = d.store.acquire(&record.service, &d.owner, d.lease_ttl).await?;
        Ok(self.run_journaled(&d, record, lease, Start { resume: Some(resumption), note }).await)
    }

    /// Past and running deployments of `service`, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn history(&self, service: &str) -> Result<Vec<DeploymentSummary>> {
        Ok(self.durable()?.store.history(service).await?.iter().map(DeploymentRecord::summary).collect())
    }

    /// Deploys `service` back to `version` (or, if `None`, to the version that served before
    /// the current good one), with the spec that deployed it then.
    ///
    /// A version is a valid target when a deployment of it succeeded, or when a deployment
    /// started from it (it served before: the version Terraform or another tool installed
    /// before the first bluegreen deploy counts). A version known only as a `from` is deployed
    /// with the spec of the deployment that started from it.
    ///
    /// # Errors
    /// [`Error::Invalid`] (field `to`) when history knows no such version; as
    /// [`deploy`](Self::deploy).
    pub async fn rollback_to(&self, service: &str, version: Option<&Version>) -> Result<Outcome> {
        let history = self.durable()?.store.history(service).await?;
        let succeeded = |r: &DeploymentRecord| r.outcome.as_ref().is_some_and(|o| o.status == Status::Succeeded);
        // What serves now: as the newest ended deployment left it (a rolled-back one left its
        // `from`), else the newest good version.
        let left_serving = history.iter().rev().find_map(|r| match r.outcome.as_ref()?.serving_versions.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        });
        let current =
            left_serving.or_else(|| history.iter().rev().find(|r| succeeded(r)).map(|r| r.plan.spec.version.clone()));
        // Newest first: each deployment's own version if it succeeded, then the version it
        // started from (with its spec: the only one known to have served that version).
        let mut candidates = history.iter().rev().flat_map(|r| {
            let own = succeeded(r).then(|| r.plan.spec.clone());
            let from = r.plan.from_version.clone().map(|v| Spec { version: v, ..r.plan.spec.clone() });
            own.into_iter().chain(from)
        });
        let target = candidates.find(|spec| match version {
            Some(v) => spec.version == *v,
            None => Some(&spec.version) != current.as_ref(),
        });
        let Some(found) = target else {
            let what = version.map_or_else(
                || "no version served before the current one".to_owned(),
                |v| format!("{v} never served (no deployment of it succeeded or started from it)"),
            );
            return Err(Error::invalid("to", format!("{what} in the history of {service}")));
        };
        // The spec that deployed the version itself, when bluegreen did.
        let spec = history
            .iter()
            .rev()
            .find(|r| succeeded(r) && r.plan.spec.version == found.version)
            .map_or(found, |r| r.plan.spec.clone());
        self.deploy(&spec).await
    }
}
