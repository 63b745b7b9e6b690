//! [`FaultyRouter`]: fails, delays or ignores chosen calls.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;

use super::{layer_router, Args, Layer, Request, Response, RouterOp};
use crate::error::{Error, Result};
use crate::router::{Capabilities, DrainReport, Router};

type Hook = Arc<dyn Fn(Request) -> BoxFuture<'static, Result<()>> + Send + Sync>;
type MakeError = Arc<dyn Fn() -> Error + Send + Sync>;

/// A [`Router`] that delegates to another except where told otherwise: it fails the first calls
/// of an operation, delays an operation, acknowledges writes without applying them, reports
/// other capabilities, or runs a hook before an operation. For rehearsing what a deploy does
/// when its router misbehaves.
///
/// Per call, in this order: the [`before`](Self::before) hook runs (its error is the call's),
/// then the [`delaying`](Self::delaying) delay passes (tokio time), then a pending
/// [`failing`](Self::failing) failure is returned, then an [`ignoring`](Self::ignoring) write is
/// acknowledged; otherwise the inner router answers.
///
/// # Guarantees
/// - With nothing configured, calls, answers and errors are the inner router's, unchanged.
/// - A failed or ignored call does not reach the inner router.
///
/// # Errors
/// - The injected ones: [`Error::Backend`] named after the inner router (or what
///   [`failing_with`](Self::failing_with) builds), and a hook's error.
/// - Otherwise the inner router's.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::sync::Arc;
/// use bluegreen_core::layers::{FaultyRouter, RouterOp};
/// use bluegreen_core::{sim::Sim, BlueGreen, Executor, Spec, Status, Strategy};
///
/// let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
/// let spec = Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()));
///
/// // Two throttled switches: the executor retries, and the deploy succeeds.
/// let router = FaultyRouter::new(sim.router()).failing(RouterOp::SetSplit, 2, true);
/// let executor = Executor::builder(Arc::new(router), sim.fleet(), sim.probe()).build();
/// assert_eq!(executor.deploy(&spec).await.unwrap().status, Status::Succeeded);
///
/// // A router that acknowledges a switch without making it: the read-back catches it.
/// let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
/// let router = FaultyRouter::new(sim.router()).ignoring(RouterOp::SetSplit);
/// let executor = Executor::builder(Arc::new(router), sim.fleet(), sim.probe()).build();
/// let outcome = executor.deploy(&spec).await.unwrap();
/// assert_ne!(outcome.status, Status::Succeeded);
/// assert!(outcome.reason.unwrap().starts_with("read-back mismatch on split"));
/// # }
/// ```
pub struct FaultyRouter {
    inner: Arc<dyn Router>,
    failing: Mutex<BTreeMap<RouterOp, (u32, MakeError)>>,
    ignored: BTreeSet<RouterOp>,
    delays: BTreeMap<RouterOp, Duration>,
    hooks: BTreeMap<RouterOp, Hook>,
    capabilities: Option<Box<dyn Fn(Capabilities) -> Capabilities + Send + Sync>>,
}

impl FaultyRouter {
    /// Wraps `inner`, with no fault yet.
    pub fn new(inner: Arc<dyn Router>) -> Self {
        Self {
            inner,
            failing: Mutex::default(),
            ignored: BTreeSet::new(),
            delays: BTreeMap::new(),
            hooks: BTreeMap::new(),
            capabilities: None,
        }
    }

    /// Fails the next `times` calls of `op` with an [`Error::Backend`] named after the inner
    /// router, `retryable` as given (throttling, a 5xx) or not (access denied). Replaces the
    /// failures pending for `op`.
    #[must_use]
    pub fn failing(self, op: RouterOp, times: u32, retryable: bool) -> Self {
        let backend = self.inner.name().to_owned();
        self.failing_with(op, times, move || Error::Backend {
            backend: backend.clone(),
            message: format!("injected failure of {op}"),
            retryable,
            source: None,
        })
    }

    /// Fails the next `times` calls of `op` with the errors `error` builds. Replaces the
    /// failures pending for `op`.
    #[must_use]
    pub fn failing_with(self, op: RouterOp, times: u32, error: impl Fn() -> Error + Send + Sync + 'static) -> Self {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner).insert(op, (times, Arc::new(error)));
        self
    }

    /// Acknowledges every call of the write `op` without passing it on: `Ok(())`, or for
    /// `drain` a report of nothing in flight that did not time out. What a router that loses
    /// writes looks like to the executor (which reads every write back). A read is always
    /// passed on: it has nothing to acknowledge.
    #[must_use]
    pub fn ignoring(mut self, op: RouterOp) -> Self {
        self.ignored.insert(op);
        self
    }

    /// Makes every call of `op` wait `delay` (tokio time) before going on.
    #[must_use]
    pub fn delaying(mut self, op: RouterOp, delay: Duration) -> Self {
        self.delays.insert(op, delay);
        self
    }

    /// Runs `hook` with each call of `op` before anything else; its error fails the call (which
    /// then does not reach the inner router). For setting the scene of a call: put requests in
    /// flight before a drain, change the world before a read.
    #[must_use]
    pub fn before<F, Fut>(mut self, op: RouterOp, hook: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.hooks.insert(op, Arc::new(move |request| hook(request).boxed()));
        self
    }

    /// Reports `change(inner capabilities)` instead of the inner router's capabilities (claim
    /// [`checks_members`](Capabilities::checks_members), a coarser weight granularity, ...).
    #[must_use]
    pub fn with_capabilities(mut self, change: impl Fn(Capabilities) -> Capabilities + Send + Sync + 'static) -> Self {
        self.capabilities = Some(Box::new(change));
        self
    }

    /// Takes one pending failure of `op`, if any.
    fn take_failure(&self, op: RouterOp) -> Option<Error> {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        let (left, error) = failing.get_mut(&op).filter(|(left, _)| *left > 0)?;
        *left -= 1;
        Some(error())
    }
}

impl fmt::Debug for FaultyRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failing: BTreeMap<RouterOp, u32> = self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(op, (left, _))| (*op, *left))
            .collect();
        f.debug_struct("FaultyRouter")
            .field("inner", &self.inner)
            .field("failing", &failing)
            .field("ignored", &self.ignored)
            .field("delays", &self.delays)
            .field("hooks", &self.hooks.keys().collect::<Vec<_>>())
            .field("capabilities_changed", &self.capabilities.is_some())
            .finish()
    }
}

#[async_trait::async_trait]
impl Layer for FaultyRouter {
    fn capabilities(&self, inner: Capabilities) -> Capabilities {
        match &self.capabilities {
            Some(change) => change(inner),
            None => inner,
        }
    }

    async fn call(&self, args: Args<'_>) -> Result<Response> {
        let op = args.op();
        if let Some(hook) = self.hooks.get(&op) {
            hook(args.request()).await?;
        }
        if let Some(delay) = self.delays.get(&op) {
            tokio::time::sleep(*delay).await;
        }
        if let Some(error) = self.take_failure(op) {
            return Err(error);
        }
        if op.is_write() && self.ignored.contains(&op) {
            return Ok(match op {
                RouterOp::Drain => Response::Drained(DrainReport {
                    in_flight_at_start: Some(0),
                    in_flight_at_end: Some(0),
                    timed_out: false,
                    elapsed: Duration::ZERO,
                }),
                _ => Response::Done,
            });
        }
        args.forward(self.inner.as_ref()).await
    }
}

layer_router!(FaultyRouter);
