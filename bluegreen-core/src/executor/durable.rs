//! Durable deployments: the lock per service, the journal of completed steps, lease renewal,
//! commands from other processes, resume and history.

use std::sync::Arc;
use std::time::Duration;

use super::journal::{self, Journal};
use super::Executor;
use crate::error::{Error, Result};
use crate::model::Version;
use crate::outcome::{Outcome, Status};
use crate::spec::{ConcurrencyPolicy, Spec, SupersedeWith};
use crate::state::{Command, DeploymentRecord, DeploymentSummary, Lease, Phase, StateStore};

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
            self.refuse_unasked_adoption(&plan)?;
            // Planning reads the backends and may take a while: renew before the first change,
            // so a lease that lapsed meanwhile (and was taken over) stops us while nothing
            // changed yet.
            let lease = d.store.renew(&locked, d.lease_ttl).await?;
            let record = DeploymentRecord::new(id, plan, d.owner.clone(), journal::now_ms());
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
        let journal =
            Journal::start(d.store.clone(), (d.lease_ttl, d.poll_interval), record, lease, self.control.clone());
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
        let mut record = d.store.load(id).await?;
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
        // The store kept its secrets as references (`${env.TOKEN}`): they resolve again, or the
        // resume is refused here, before the lock is taken.
        record.plan = self.secrets.restored(&record.plan, "deployment")?;
        // Its log goes on: numbered after its last stored event, timed from when it was created
        // (never before that event's time). A log that cannot be read stops the resume here,
        // before the lock is taken: numbering from 0 would overwrite it.
        let log = d.store.events(id).await?;
        let since_created = Duration::from_millis(journal::now_ms().saturating_sub(record.created_at));
        let resumption = Resumption {
            from_step: record.completed_steps,
            rollback_reason: (record.phase == Phase::RollingBack)
                .then(|| record.failure.clone().unwrap_or_else(|| "interrupted".into())),
            next_seq: log.last().map_or(0, |e| e.seq + 1),
            elapsed: log.last().map_or(since_created, |e| e.at.max(since_created)),
        };
        let note = d.free_if_holder_gone(&record.service).await?;
        let lease = d.store.acquire(&record.service, &d.owner, d.lease_ttl).await?;
        if let Err(e) = self.learn_recorded_versions(&record.service).await {
            let _ = d.store.release(&lease).await;
            return Err(e);
        }
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
        // Its references (`${env.TOKEN}`) resolve again, or the rollback is refused here.
        self.deploy(&self.secrets.restored(&spec, "deployment")?).await
    }
}
