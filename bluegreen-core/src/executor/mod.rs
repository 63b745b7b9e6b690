//! The executor: runs a plan over a router, a fleet and a health probe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::Analysis;
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::fleet::Fleet;
use crate::hooks::{CommandHook, Hook, HookPoint};
use crate::model::Target;
use crate::outcome::Outcome;
use crate::plan::{Plan, Snapshot, Step};
use crate::probe::HealthProbe;
use crate::router::Router;
use crate::secrets::Secrets;
use crate::spec::{AnalysisSpec, Spec};

mod control;
mod durable;
mod gate;
mod journal;
mod rollback;
mod run;
mod steps;
mod watch;

pub use control::Control;

/// Runs deployments over one router, fleet and probe.
///
/// # Guarantees
/// - Invalid input is refused before any backend call ([`Spec::validate`]), and a spec that
///   cannot work on the observed backends before any backend *change* ([`Plan::compile`]).
/// - Every step is an "ensure": it observes, does only what is missing, and succeeds only
///   after reading back what it asked for (invariant 7), so a step can be re-run.
/// - Traffic is only shifted to a pool with a healthy serving target (invariant 1); targets
///   are taken out of service only while the healthy serving count stays at or above the
///   plan's floor (invariant 2); a target is updated or retired only after it was drained
///   (invariant 3).
/// - Any failure after the first change (health deadline, analysis, hook, backend error after
///   retries, abort) runs a rollback computed from the observed state, which restores the
///   pre-deploy split and membership (invariant 4) or, if the old version is unhealthy, does
///   what [`RollbackPolicy::if_old_unhealthy`](crate::RollbackPolicy) says.
/// - Every change is reported as an [`Event`](crate::Event) to every sink, in order.
/// - With [`Secrets`](crate::secrets::Secrets) ([`ExecutorBuilder::secrets`]), no secret
///   reaches a sink, the outcome's reason or the state store: events and reasons show `***`,
///   the store keeps each secret as its reference, and a resumed deployment or a rollback to a
///   recorded spec resolves the references again (refused with [`Error::Invalid`] when one
///   cannot be).
///
/// # Assumptions
/// - No one else changes the same pools during the deployment (a state store lock enforces
///   this across processes).
/// - All waiting uses tokio time, so a paused clock runs a long deploy in milliseconds.
///
/// # Errors
/// - `deploy` returns `Err` only for bad input and for failures before the first change;
///   once a change was made it returns an [`Outcome`], whose [`Status`](crate::Status) says how it ended.
#[derive(Debug, Clone)]
pub struct Executor {
    router: Arc<dyn Router>,
    fleet: Arc<dyn Fleet>,
    probe: Arc<dyn HealthProbe>,
    hooks: BTreeMap<HookPoint, Vec<Arc<dyn Hook>>>,
    analyses: Vec<Arc<dyn Analysis>>,
    sinks: Vec<Arc<dyn EventSink>>,
    control: Control,
    durable: Option<durable::Durable>,
    adopt: bool,
    secrets: Secrets,
}

/// Builds an [`Executor`].
#[derive(Debug)]
pub struct ExecutorBuilder {
    executor: Executor,
}

impl ExecutorBuilder {
    /// Adds a hook at `point` (after the spec's command hooks for that point).
    #[must_use]
    pub fn hook(mut self, point: HookPoint, hook: impl Hook + 'static) -> Self {
        self.executor.hooks.entry(point).or_default().push(Arc::new(hook));
        self
    }

    /// Adds an analysis evaluated during every bake and test phase.
    #[must_use]
    pub fn analysis(mut self, analysis: impl Analysis + 'static) -> Self {
        self.executor.analyses.push(Arc::new(analysis));
        self
    }

    /// Adds an event sink.
    #[must_use]
    pub fn sink(mut self, sink: impl EventSink + 'static) -> Self {
        self.executor.sinks.push(Arc::new(sink));
        self
    }

    /// Adds a shared event sink.
    #[must_use]
    pub fn shared_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.executor.sinks.push(sink);
        self
    }

    /// Keeps deployments in `store` under the service's lock, as `owner` (a name unique to
    /// this process or job, e.g. `ci-job-4711`): `deploy` then records every step, renews the
    /// lease, follows commands sent through the store, and can be resumed after a crash.
    #[must_use]
    pub fn state_store(mut self, store: Arc<dyn crate::state::StateStore>, owner: impl Into<String>) -> Self {
        self.executor.durable = Some(durable::Durable {
            store,
            owner: owner.into(),
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            holder_gone: None,
        });
        self
    }

    /// Says whether the holder of a live lock is known to be gone (its process no longer runs,
    /// on this host): such a lock is taken over at once, with a `warning` event naming the old
    /// holder, instead of waiting out its lease. Without it (or when it answers `false`) a live
    /// lease is always respected. Needs [`state_store`](Self::state_store).
    ///
    /// The command answers it for owners named `bluegreen-<this host>-<pid>` whose pid is not
    /// running.
    #[must_use]
    pub fn holder_gone(mut self, gone: impl Fn(&crate::state::Lease) -> bool + Send + Sync + 'static) -> Self {
        if let Some(d) = &mut self.executor.durable {
            d.holder_gone = Some(durable::HolderGone(Arc::new(gone)));
        }
        self
    }

    /// How long the service's lock is held without renewal (default 30 s; renewed every third
    /// of it). Needs [`state_store`](Self::state_store).
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        if let Some(d) = &mut self.executor.durable {
            d.lease_ttl = ttl;
        }
        self
    }

    /// How often commands from other processes and a busy lock are checked (default 1 s).
    /// Needs [`state_store`](Self::state_store).
    #[must_use]
    pub fn poll_interval(mut self, every: Duration) -> Self {
        if let Some(d) = &mut self.executor.durable {
            d.poll_interval = every;
        }
        self
    }

    /// Lets deploys take over what the router serves but bluegreen does not manage yet
    /// ([`Router::unmanaged`]: an operator's HAProxy servers named `web-01`, A records with no
    /// bookkeeping). Without it such a deploy is refused before any change, with
    /// [`Error::Invalid`] on `adopt` naming what would be adopted; [`Executor::plan`] shows the
    /// adoption as its first step either way.
    #[must_use]
    pub fn adopt(mut self, yes: bool) -> Self {
        self.executor.adopt = yes;
        self
    }

    /// Keeps `secrets` out of everything the executor writes: events (before any sink sees
    /// them) and the outcome's reason show `***`; the state store keeps each secret as its
    /// reference, or `***`. What a hook prints is scanned too. The set is shared: secrets added
    /// to it later are redacted from then on.
    #[must_use]
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.executor.secrets = secrets;
        self
    }

    /// The executor.
    pub fn build(mut self) -> Executor {
        if let Some(d) = &mut self.executor.durable {
            d.store = Arc::new(crate::state::RedactingStore::new(d.store.clone(), self.executor.secrets.clone()));
        }
        self.executor
    }
}

impl Executor {
    /// A builder over `router`, `fleet` and `probe`.
    pub fn builder(router: Arc<dyn Router>, fleet: Arc<dyn Fleet>, probe: Arc<dyn HealthProbe>) -> ExecutorBuilder {
        ExecutorBuilder {
            executor: Executor {
                router,
                fleet,
                probe,
                hooks: BTreeMap::new(),
                analyses: Vec::new(),
                sinks: Vec::new(),
                control: Control::default(),
                durable: None,
                adopt: false,
                secrets: Secrets::new(),
            },
        }
    }

    /// The handle that pauses, resumes, promotes or aborts this executor's deployments.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Reads what the backends serve now: split and members of every pool.
    ///
    /// # Errors
    /// Backend errors; [`Error::Drift`] when the router has a member the fleet does not know.
    pub async fn observe(&self) -> Result<Snapshot> {
        let split = self.router.split().await?;
        let fleet: BTreeMap<_, Target> = self.fleet.list().await?.into_iter().map(|t| (t.id.clone(), t)).collect();
        let standing = if self.fleet.capabilities().provisions { BTreeMap::new() } else { self.fleet.standing_pools() };
        let mut pools = BTreeMap::new();
        let mut disabled = std::collections::BTreeSet::new();
        for pool in self.router.pools().await? {
            let mut targets = Vec::new();
            for member in self.router.members(&pool).await? {
                if member.state != crate::model::MemberState::Serving {
                    disabled.insert(member.id.clone());
                }
                let target = fleet.get(&member.id).cloned().ok_or_else(|| {
                    Error::drift(format!(
                        "pool {pool} has member {} that fleet {} does not know",
                        member.id,
                        self.fleet.name()
                    ))
                })?;
                if let Some(home) = standing.get(&member.id).filter(|home| **home != pool) {
                    return Err(Error::drift(format!(
                        "host {} stands in pool {home} in fleet {}'s inventory, but the router has it in pool {pool}: \
                         correct the inventory or the router",
                        member.id,
                        self.fleet.name()
                    )));
                }
                targets.push(target);
            }
            // Hosts of the inventory's pool the router does not list yet: members out of
            // service, registered when their pool is deployed to.
            for (id, _) in standing.iter().filter(|(_, home)| **home == pool) {
                if let (Some(host), false) = (fleet.get(id), targets.iter().any(|t: &Target| t.id == *id)) {
                    disabled.insert(id.clone());
                    targets.push(host.clone());
                }
            }
            pools.insert(pool, targets);
        }
        Ok(Snapshot { split, pools, disabled })
    }

    /// Validates `spec`, observes the backends and compiles the plan (the dry run). Hook steps
    /// at points with no hook are left out.
    ///
    /// # Errors
    /// As [`Spec::validate`] (before any backend call) and [`Plan::compile`].
    pub async fn plan(&self, spec: &Spec) -> Result<Plan> {
        spec.validate()?;
        self.learn_recorded_versions(&spec.service).await?;
        let before = self.observe().await?;
        let mut plan = Plan::compile_for(spec, &before, &self.router.capabilities(), &self.fleet.capabilities())?;
        refuse_what_the_fleet_cannot_do(&plan, self.fleet.as_ref())?;
        let spec_hooks = plan_spec_hooks(spec);
        plan.steps.retain(|step| match step {
            Step::Hook { point } => !self.hooks_at(&spec_hooks, *point).is_empty(),
            _ => true,
        });
        let adoptions = self.unmanaged(&spec.service).await?;
        if !adoptions.is_empty() {
            plan.steps.insert(0, Step::Adopt { adoptions });
        }
        Ok(plan)
    }

    /// What the router serves unmanaged that no recorded deployment adopted yet.
    async fn unmanaged(&self, service: &str) -> Result<Vec<crate::router::Adoption>> {
        if !self.router.capabilities().adopts {
            return Ok(Vec::new());
        }
        let mut unmanaged = self.router.unmanaged().await?;
        if let Some(durable) = &self.durable {
            let adopted = crate::state::recorded_adoptions(durable.store.as_ref(), service).await?;
            unmanaged.retain(|a| !adopted.contains(&(a.pool.clone(), a.target.clone())));
        }
        Ok(unmanaged)
    }

    /// Refuses a plan that adopts unless this executor was told to ([`ExecutorBuilder::adopt`]).
    pub(super) fn refuse_unasked_adoption(&self, plan: &Plan) -> Result<()> {
        let adoptions = plan.adoptions();
        if adoptions.is_empty() || self.adopt {
            return Ok(());
        }
        let what: Vec<String> =
            adoptions.iter().map(|a| format!("{} as {} in pool {}", a.what, a.target, a.pool)).collect();
        Err(Error::invalid(
            "adopt",
            format!(
                "router {} serves {} member(s) bluegreen does not manage yet: {}; check them against the inventory \
                 (`bluegreen plan` shows the adoption) and deploy with --adopt to take them over (nothing they serve \
                 changes)",
                self.router.name(),
                adoptions.len(),
                what.join(", ")
            ),
        ))
    }

    /// Tells a fleet that cannot read what its targets run what the recorded deployments of
    /// `service` left them on (nothing without a state store).
    pub(super) async fn learn_recorded_versions(&self, service: &str) -> Result<()> {
        let Some(durable) = &self.durable else { return Ok(()) };
        if self.fleet.capabilities().reads_versions {
            return Ok(());
        }
        let wanted = self.fleet.list().await?.into_iter().map(|t| t.id).collect();
        let recorded = crate::state::recorded_versions(durable.store.as_ref(), service, &wanted).await?;
        self.fleet.learn_versions(&recorded);
        Ok(())
    }

    /// Plans and runs `spec`.
    ///
    /// # Errors
    /// Bad input and failures before the first change; see the type's docs.
    pub async fn deploy(&self, spec: &Spec) -> Result<Outcome> {
        let id = new_deployment_id(spec);
        if self.durable.is_some() {
            return self.deploy_durably(spec, &id).await;
        }
        let plan = self.plan(spec).await?;
        self.refuse_unasked_adoption(&plan)?;
        Ok(self.run(&plan, &id).await)
    }

    /// Runs a compiled plan under `deployment_id`.
    pub async fn run(&self, plan: &Plan, deployment_id: &str) -> Outcome {
        self.resume(plan, deployment_id, 0).await
    }

    /// Continues an interrupted run of `plan` at step `from_step` (the first step not
    /// recorded as completed). The interrupted step runs again from its start, which is safe
    /// because every step is an "ensure".
    pub async fn resume(&self, plan: &Plan, deployment_id: &str, from_step: usize) -> Outcome {
        self.control.reset();
        let run = run::Run::new(self, plan, deployment_id);
        run.execute(from_step, None).await
    }

    fn hooks_at(&self, spec_hooks: &[(HookPoint, Arc<dyn Hook>)], point: HookPoint) -> Vec<Arc<dyn Hook>> {
        let mut hooks: Vec<Arc<dyn Hook>> =
            spec_hooks.iter().filter(|(p, _)| *p == point).map(|(_, h)| h.clone()).collect();
        hooks.extend(self.hooks.get(&point).into_iter().flatten().cloned());
        hooks
    }

    fn analyses_for(&self, spec: &Spec) -> Vec<Arc<dyn Analysis>> {
        let mut all: Vec<Arc<dyn Analysis>> = spec
            .analyses
            .iter()
            .map(|a| -> Arc<dyn Analysis> {
                match a {
                    #[cfg(feature = "http-probe")]
                    AnalysisSpec::HttpSuccessRate(http) => Arc::new(
                        crate::analysis::HttpSuccessRate::new(http.url.clone(), http.min_success_percent, http.window)
                            .with_requests_per_check(http.requests_per_check)
                            .with_min_requests(http.min_requests)
                            .with_timeout(http.timeout),
                    ),
                    // Refused by `Spec::validate` before any run gets here.
                    #[cfg(not(feature = "http-probe"))]
                    AnalysisSpec::HttpSuccessRate(_) => {
                        Arc::new(crate::analysis::FnAnalysis::new("http_success_rate", |_| async {
                            crate::analysis::Verdict::Fail {
                                reason: "http_success_rate needs bluegreen-core's `http-probe` feature".into(),
                            }
                        }))
                    }
                }
            })
            .collect();
        all.extend(self.analyses.iter().cloned());
        all
    }
}

/// Refuses, before anything changes, a plan that needs what the fleet says it cannot do.
fn refuse_what_the_fleet_cannot_do(plan: &Plan, fleet: &dyn Fleet) -> Result<()> {
    let can = fleet.capabilities();
    let strategy = plan.spec.strategy.name();
    if !can.provisions && plan.steps.iter().any(|s| matches!(s, Step::Provision { .. })) {
        return Err(Error::invalid(
            "strategy",
            format!(
                "fleet {} cannot start targets (a fixed inventory), and a {strategy} deploy starts the new \
                 version's: use a rolling deploy in place",
                fleet.name()
            ),
        ));
    }
    if !can.updates_in_place && plan.steps.iter().any(|s| matches!(s, Step::UpdateBatch { .. })) {
        return Err(Error::invalid(
            "strategy.mode",
            format!(
                "fleet {} cannot update targets in place: use a rolling replace, blue-green, canary or linear",
                fleet.name()
            ),
        ));
    }
    Ok(())
}

fn plan_spec_hooks(spec: &Spec) -> Vec<(HookPoint, Arc<dyn Hook>)> {
    spec.hooks
        .iter()
        .map(|h| (h.point, Arc::new(CommandHook::new(h.command.clone(), h.timeout)) as Arc<dyn Hook>))
        .collect()
}

fn new_deployment_id(spec: &Spec) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Time, process and a counter: unique across the processes sharing a store.
    format!("{}-{}-{millis:x}-{:x}{n:02x}", spec.service, spec.version, std::process::id())
}
