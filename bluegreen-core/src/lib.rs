//! # bluegreen-core
//!
//! The engine of bluegreen: zero-downtime releases (blue-green, canary, linear, rolling) over
//! pluggable backends.
//!
//! - The nouns: [`Target`], pools ([`PoolName`]), [`Split`], [`Version`].
//! - The traits a backend implements: [`Router`] (moves traffic), [`Fleet`] (owns capacity),
//!   [`HealthProbe`] (is one target healthy?).
//! - A [`Spec`] (serde) is validated and compiled into a [`Plan`] of plain-data [`Step`]s
//!   against a [`Snapshot`] of what the backends serve; [`Plan::timeline`] is the dry run.
//! - The [`Executor`] runs a plan: health gates, bakes with [`Analysis`], [`Hook`]s, drains,
//!   retries, and a rollback computed from where it stands; a [`Control`] handle steers it.
//! - Every change is an [`Event`] sent to [`EventSink`]s.
//! - [`layers`] wrap a router to record its calls, inject faults or respect a rate limit.
//! - [`sim`] (feature `sim`, default) is a simulated router, fleet and probe with an invariant
//!   checker, for testing strategies without a cloud account.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bluegreen_core::{sim::Sim, Executor, Rolling, Spec, Status, Strategy};
//!
//! // Ten servers of v1 behind one pool; update them two at a time.
//! let sim = Sim::builder().pool("blue", 10, "v1").build();
//! let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
//! let spec = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2)));
//! let outcome = executor.deploy(&spec).await.unwrap();
//! assert_eq!(outcome.status, Status::Succeeded);
//! assert!(sim.violations().is_empty());
//! # }
//! ```

pub mod analysis;
pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "deploy-file")]
pub mod deploy_file;
mod error;
pub mod events;
mod executor;
mod fleet;
pub mod hooks;
pub mod layers;
mod millis;
mod model;
mod outcome;
mod plan;
mod private_files;
pub mod probe;
mod router;
pub mod secrets;
pub mod shell;
#[cfg(feature = "sim")]
pub mod sim;
mod spec;
pub mod state;

#[cfg(feature = "http-probe")]
pub use analysis::HttpSuccessRate;
pub use analysis::{Analysis, AnalysisContext, FnAnalysis, Verdict};
pub use error::{BoxError, Error, Result};
pub use events::{ChannelSink, Event, EventKind, EventSink, JsonLinesSink, MemorySink, TracingSink};
pub use executor::{Control, Executor, ExecutorBuilder};
#[cfg(feature = "mock")]
pub use fleet::MockFleet;
pub use fleet::{Fleet, FleetCapabilities, ProvisionRequest};
pub use hooks::{CommandHook, FnHook, Hook, HookContext, HookOutput, HookPoint, RollbackFacts};
pub use model::{Member, MemberState, PoolName, Split, Target, TargetId, Version};
pub use outcome::{Outcome, Status};
pub use plan::{Plan, PoolRow, Snapshot, Step, TargetSet, Timeline, TimelineRow};
#[cfg(feature = "http-probe")]
pub use probe::HttpProbe;
#[cfg(feature = "mock")]
pub use probe::MockHealthProbe;
pub use probe::{FnProbe, Health, HealthProbe, TcpProbe};
#[cfg(feature = "mock")]
pub use router::MockRouter;
pub use router::{Adoption, Capabilities, DrainReport, Router};
pub use spec::{
    AnalysisSpec, Approval, BatchSize, BlueGreen, Canary, CommandHookSpec, ConcurrencyPolicy, DrainPolicy,
    HealthPolicy, HttpSuccessRateSpec, Linear, OldUnhealthyPolicy, OnTimeout, Preset, RetryPolicy, RollbackPace,
    RollbackPolicy, Rolling, RollingMode, ShiftStep, ShortBakePolicy, Spec, Stability, Strategy, SupersedeWith,
};
pub use state::{Command, DeploymentRecord, DeploymentSummary, FileStore, Lease, MemoryStore, Phase, StateStore};

/// Compile-time check that the backend traits stay object-safe (usable as `Arc<dyn …>`).
#[allow(dead_code)]
fn _object_safe(_: &dyn Router, _: &dyn Fleet, _: &dyn HealthProbe, _: &dyn Hook, _: &dyn Analysis, _: &dyn EventSink) {
}
