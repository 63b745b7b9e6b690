//! [`RecordingRouter`]: records every call.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{layer_router, Args, Layer, Request, Response, RouterOp};
use crate::error::Result;
use crate::router::Router;

/// One call through a [`RecordingRouter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// What was asked.
    pub request: Request,
    /// What the router answered, or its error (as displayed).
    pub result: Result<Response, String>,
    /// When the call reached the layer (tokio time).
    pub started: Instant,
    /// How long the inner router took.
    pub elapsed: Duration,
    /// What the counter given to [`RecordingRouter::with_counter`] rose by during the call
    /// (API requests sent, change batches), if there is one.
    pub counted: Option<u64>,
}

impl Call {
    /// The operation.
    pub fn op(&self) -> RouterOp {
        self.request.op
    }
}

/// A cloneable handle on the calls a [`RecordingRouter`] recorded; it stays readable after the
/// router was moved into an executor.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Call>>>);

impl Recorder {
    /// Every call so far, in the order they ended.
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The calls of `op` so far, in order.
    pub fn calls_of(&self, op: RouterOp) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op() == op).collect()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: RouterOp) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|c| c.op() == op).count()
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn push(&self, call: Call) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(call);
    }
}

/// A [`Router`] that delegates every call to another and records it: the operation, its
/// arguments, the answer or error, when it started and how long it took.
///
/// # Guarantees
/// - Name, capabilities, answers and errors are the inner router's, unchanged.
/// - A call is recorded when it ends, whether it succeeded or failed; one dropped before its
///   end (a cancelled future) is not recorded.
/// - With [`with_counter`](Self::with_counter), [`Call::counted`] is the counter's rise between
///   the call's start and end; calls that overlap in time count each other's rises.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::sync::Arc;
/// use bluegreen_core::layers::{RecordingRouter, RouterOp};
/// use bluegreen_core::{sim::Sim, BlueGreen, Executor, Spec, Status, Strategy};
///
/// let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
/// let router = RecordingRouter::new(sim.router());
/// let recorder = router.recorder();
/// let executor = Executor::builder(Arc::new(router), sim.fleet(), sim.probe()).build();
/// let outcome = executor.deploy(&Spec::new("web", "v2", Strategy::BlueGreen(BlueGreen::default()))).await.unwrap();
/// assert_eq!(outcome.status, Status::Succeeded);
///
/// // One switch of all traffic, written once and read back.
/// let switches = recorder.calls_of(RouterOp::SetSplit);
/// assert_eq!(switches.len(), 1);
/// assert_eq!(switches[0].request.split.as_ref().unwrap().weight(&"green".into()), 100);
/// assert!(switches[0].result.is_ok());
/// # }
/// ```
pub struct RecordingRouter {
    inner: Arc<dyn Router>,
    recorder: Recorder,
    counter: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
}

impl RecordingRouter {
    /// Records the calls to `inner`.
    pub fn new(inner: Arc<dyn Router>) -> Self {
        Self { inner, recorder: Recorder::default(), counter: None }
    }

    /// Reads `counter` before and after each call and records its rise in [`Call::counted`]: a
    /// count the inner router keeps of its API requests, say, to record what each call cost.
    #[must_use]
    pub fn with_counter(mut self, counter: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.counter = Some(Box::new(counter));
        self
    }

    /// A handle on the recorded calls.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }
}

impl fmt::Debug for RecordingRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingRouter")
            .field("inner", &self.inner)
            .field("calls", &self.recorder.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .field("counter", &self.counter.is_some())
            .finish()
    }
}

#[async_trait::async_trait]
impl Layer for RecordingRouter {
    async fn call(&self, args: Args<'_>) -> Result<Response> {
        let request = args.request();
        let count = || self.counter.as_ref().map(|counter| counter());
        let before = count();
        let started = Instant::now();
        let result = args.forward(self.inner.as_ref()).await;
        let elapsed = started.elapsed();
        let counted = before.zip(count()).map(|(before, after)| after.saturating_sub(before));
        let recorded = result.as_ref().map(Response::clone).map_err(ToString::to_string);
        self.recorder.push(Call { request, result: recorded, started, elapsed, counted });
        result
    }
}

layer_router!(RecordingRouter);
