//! Hooks: user code at named points of a deployment.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

mod command;

pub use command::CommandHook;

/// Where in a deployment a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Before any target is started or changed.
    BeforeProvision,
    /// After the test phase ran against the new targets, before production traffic.
    AfterTestTraffic,
    /// After the new targets are healthy, before they get any production traffic (the place
    /// for a database migration).
    BeforeTraffic,
    /// Right after all traffic is on the new version.
    AfterSwitch,
    /// After the old version is retired: the deploy is done.
    AfterDeploy,
    /// After a rollback ended, whatever its end (rolled back, rolled forward, or stopped for a
    /// human), with the reason and the end in [`HookContext::rollback`]. Not a step of the
    /// plan: it runs only when a deploy rolls back, and its failure changes nothing of the
    /// outcome (it is reported in the event log).
    OnRollback,
}

impl HookPoint {
    /// The points a plan has steps for, in the order a deploy reaches them.
    pub const ALL: [HookPoint; 5] =
        [Self::BeforeProvision, Self::AfterTestTraffic, Self::BeforeTraffic, Self::AfterSwitch, Self::AfterDeploy];

    /// The point's name as used in specs, events and `BLUEGREEN_HOOK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeProvision => "before_provision",
            Self::BeforeTraffic => "before_traffic",
            Self::AfterTestTraffic => "after_test_traffic",
            Self::AfterSwitch => "after_switch",
            Self::AfterDeploy => "after_deploy",
            Self::OnRollback => "on_rollback",
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The deploy's facts, given to every hook (and to command hooks as `BLUEGREEN_*` variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookContext {
    /// The point this hook runs at.
    pub point: HookPoint,
    /// The deployment's id.
    pub deployment_id: String,
    /// The service.
    pub service: String,
    /// The version being deployed.
    pub version: String,
    /// The version it replaces, if one was serving.
    pub previous_version: Option<String>,
    /// The pool serving before the deploy.
    pub stable_pool: String,
    /// The pool receiving the new version (the same as `stable_pool` for rolling deploys).
    pub candidate_pool: String,
    /// Addresses of the new version's targets known at this point.
    pub candidate_addresses: Vec<String>,
    /// At [`HookPoint::OnRollback`]: why the deploy rolled back and how the rollback ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackFacts>,
}

/// What an [`OnRollback`](HookPoint::OnRollback) hook is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackFacts {
    /// Why the deploy rolled back (the failure, or `aborted by operator`).
    pub reason: String,
    /// How the rollback ended: `rolled back`, `rolled forward` or `rollback failed`.
    pub status: String,
}

impl HookContext {
    /// The environment a command hook gets: `BLUEGREEN_HOOK`, `BLUEGREEN_DEPLOYMENT_ID`,
    /// `BLUEGREEN_SERVICE`, `BLUEGREEN_VERSION`, `BLUEGREEN_PREVIOUS_VERSION` (empty if none),
    /// `BLUEGREEN_STABLE_POOL`, `BLUEGREEN_CANDIDATE_POOL`, `BLUEGREEN_CANDIDATE_ADDRESSES`
    /// (comma-separated); at `on_rollback` also `BLUEGREEN_ROLLBACK_REASON` and
    /// `BLUEGREEN_ROLLBACK_STATUS`.
    pub fn env(&self) -> BTreeMap<&'static str, String> {
        let mut env = BTreeMap::from([
            ("BLUEGREEN_HOOK", self.point.to_string()),
            ("BLUEGREEN_DEPLOYMENT_ID", self.deployment_id.clone()),
            ("BLUEGREEN_SERVICE", self.service.clone()),
            ("BLUEGREEN_VERSION", self.version.clone()),
            ("BLUEGREEN_PREVIOUS_VERSION", self.previous_version.clone().unwrap_or_default()),
            ("BLUEGREEN_STABLE_POOL", self.stable_pool.clone()),
            ("BLUEGREEN_CANDIDATE_POOL", self.candidate_pool.clone()),
            ("BLUEGREEN_CANDIDATE_ADDRESSES", self.candidate_addresses.join(",")),
        ]);
        if let Some(rollback) = &self.rollback {
            env.insert("BLUEGREEN_ROLLBACK_REASON", rollback.reason.clone());
            env.insert("BLUEGREEN_ROLLBACK_STATUS", rollback.status.clone());
        }
        env
    }
}

/// What a hook reports when it succeeds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookOutput {
    /// Output worth showing in the event log (a command's last lines of stdout and stderr).
    pub output: String,
}

/// User code run at a [`HookPoint`]. An error fails the deployment, which rolls back.
///
/// # Guarantees (what the executor provides)
/// - A hook runs at most once per deployment attempt, at its point, with the deploy's facts.
/// - Hooks at one point run in the order they were added; the first failure stops the rest.
///
/// # Assumptions
/// - A hook is idempotent: a resumed deployment may run the hook of the step it was
///   interrupted in again.
/// - A hook bounds its own run time (command hooks are killed after their timeout).
///
/// # Errors
/// - Any error fails the step; [`Error::Check`](crate::Error::Check) is the expected kind.
#[async_trait]
pub trait Hook: Send + Sync + Debug {
    /// A name for events (`migrate-db`, the command line).
    fn name(&self) -> String;

    /// Runs the hook.
    async fn run(&self, context: &HookContext) -> Result<HookOutput>;
}

type HookFuture = Pin<Box<dyn Future<Output = Result<HookOutput>> + Send>>;

/// A hook from an async closure.
///
/// ```
/// use bluegreen_core::{FnHook, HookOutput};
/// let hook = FnHook::new("migrate", |ctx| async move {
///     println!("migrating for {}", ctx.version);
///     Ok(HookOutput::default())
/// });
/// ```
pub struct FnHook {
    name: String,
    run: Box<dyn Fn(HookContext) -> HookFuture + Send + Sync>,
}

impl FnHook {
    /// A hook named `name` that runs `f`.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(HookContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HookOutput>> + Send + 'static,
    {
        Self { name: name.into(), run: Box::new(move |ctx| Box::pin(f(ctx))) }
    }
}

impl Debug for FnHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHook").field("name", &self.name).finish_non_exhaustive()
    }
}

#[async_trait]
impl Hook for FnHook {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn run(&self, context: &HookContext) -> Result<HookOutput> {
        (self.run)(context.clone()).await
    }
}
