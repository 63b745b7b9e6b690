//! Taking over what a router serves but bluegreen does not manage yet: the plan shows it as
//! its first step, a deploy refuses it unless told to adopt (before any change), an adopting
//! deploy changes nothing served by it, and a recorded adoption is not asked for again.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::sim::Sim;
use bluegreen_core::{
    Adoption, BlueGreen, Capabilities, DrainReport, Error, EventKind, Member, MemoryStore, PoolName, Result, Router,
    Spec, Split, StateStore, Status, Step, Strategy, Target, TargetId,
};
use support::*;

/// The simulator's router, reporting the blue pool's members as unmanaged (as HAProxy does for
/// servers an operator named `web-01`: it keeps no bookkeeping of its own).
#[derive(Debug)]
struct Unmanaged(Arc<dyn Router>);

#[async_trait]
impl Router for Unmanaged {
    fn name(&self) -> &str {
        "unmanaged"
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities().with_adopts(true)
    }
    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.0.pools().await
    }
    async fn split(&self) -> Result<Split> {
        self.0.split().await
    }
    async fn set_split(&self, split: &Split) -> Result<()> {
        self.0.set_split(split).await
    }
    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.0.add_targets(pool, targets).await
    }
    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.0.drain(pool, targets, timeout).await
    }
    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.0.remove_targets(pool, targets).await
    }
    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.0.members(pool).await
    }
    async fn unmanaged(&self) -> Result<Vec<Adoption>> {
        let blue = PoolName::from("blue");
        Ok(self
            .0
            .members(&blue)
            .await?
            .into_iter()
            .map(|m| Adoption { pool: blue.clone(), what: format!("server web/{}", m.id), target: m.id })
            .collect())
    }
}

fn spec() -> Spec {
    quick(Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default())))
}

#[tokio::test(start_paused = true)]
async fn an_unmanaged_member_is_adopted_only_when_asked_and_only_once() {
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 2, "v1").standing().build();
    let router: Arc<dyn Router> = Arc::new(Unmanaged(sim.router()));
    let store = Arc::new(MemoryStore::new());
    let (_, log) = executor(&sim);
    let build = |adopt: bool| {
        bluegreen_core::Executor::builder(router.clone(), sim.fleet(), sim.probe())
            .state_store(store.clone(), "adoption-test")
            .sink(log.clone())
            .adopt(adopt)
            .build()
    };

    let plan = build(false).plan(&spec()).await.unwrap();
    let Some(Step::Adopt { adoptions }) = plan.steps.first() else { panic!("{:?}", plan.steps) };
    assert_eq!(adoptions.len(), 2);
    assert!(plan.timeline().to_string().contains("adopt 2 members (server web/blue-001"), "{}", plan.timeline());

    let err = build(false).deploy(&spec()).await.unwrap_err();
    let Error::Invalid { field, reason } = &err else { panic!("{err:?}") };
    assert_eq!(field, "adopt");
    assert!(reason.contains("--adopt") && reason.contains("server web/blue-001 as blue-001 in pool blue"), "{reason}");
    assert_eq!(sim.writes(), 0, "refused before any change");
    assert!(store.holder("web").await.unwrap().is_none(), "the lock is free");

    let outcome = build(true).deploy(&spec()).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{}", log.lines().join("\n"));
    assert!(log.events().iter().any(|e| matches!(&e.kind, EventKind::Adopted { members } if members.len() == 2)));

    // Recorded: the next deploy neither asks nor needs --adopt.
    let mut next = spec();
    next.version = "v3".into();
    let plan = build(false).plan(&next).await.unwrap();
    assert!(!matches!(plan.steps.first(), Some(Step::Adopt { .. })), "{:?}", plan.steps);
    assert_eq!(build(false).deploy(&next).await.unwrap().status, Status::Succeeded);
}
