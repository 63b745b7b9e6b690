//! [`RateLimitedRouter`]: at most so many calls per period.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{layer_router, Args, Layer, Response};
use crate::error::Result;
use crate::router::Router;

/// A [`Router`] that holds calls back so that no window of `period` starts more than `calls` of
/// them (all calls, or only writes with [`writes_only`](Self::writes_only)): for an API with a
/// rate limit (Route53 allows 5 requests a second per account) or a proxy that should not be
/// rushed.
///
/// # Guarantees
/// - For any `t`, at most `calls` limited calls reach the inner router in `[t, t + period)`
///   (tokio time): a sliding window, not a token bucket, so a burst is never followed at once
///   by a refill's worth more.
/// - Calls waiting for a slot are let through in the order they arrived; a call that does not
///   wait finds the router answering as the inner router does, name, capabilities and errors
///   unchanged.
/// - A call cancelled while it waits still uses its slot.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bluegreen_core::layers::RateLimitedRouter;
/// use bluegreen_core::{sim::Sim, Router};
///
/// let sim = Sim::builder().pool("blue", 2, "v1").build();
/// let router = RateLimitedRouter::new(sim.router(), 5, Duration::from_secs(1));
/// let start = tokio::time::Instant::now();
/// for _ in 0..10 {
///     router.split().await.unwrap();
/// }
/// // Five at once, five more a second later.
/// assert_eq!(start.elapsed(), Duration::from_secs(1));
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimitedRouter {
    inner: Arc<dyn Router>,
    calls: usize,
    period: Duration,
    writes_only: bool,
    /// When each of the last `calls` limited calls was let through (or will be), oldest first.
    starts: Mutex<VecDeque<Instant>>,
}

impl RateLimitedRouter {
    /// Lets at most `calls` calls (at least 1) to `inner` start in any window of `period`.
    pub fn new(inner: Arc<dyn Router>, calls: u32, period: Duration) -> Self {
        let calls = usize::try_from(calls.max(1)).unwrap_or(usize::MAX);
        Self { inner, calls, period, writes_only: false, starts: Mutex::new(VecDeque::with_capacity(calls)) }
    }

    /// Limits only writes (`set_split`, `add_targets`, `drain`, `remove_targets`); reads pass
    /// at once. For an API that limits its mutations alone.
    #[must_use]
    pub fn writes_only(mut self) -> Self {
        self.writes_only = true;
        self
    }

    /// Takes the next free slot: now, or `period` after the call `calls` places before.
    fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut starts = self.starts.lock().unwrap_or_else(PoisonError::into_inner);
        let at = if starts.len() < self.calls {
            now
        } else {
            starts.pop_front().map_or(now, |oldest| (oldest + self.period).max(now))
        };
        starts.push_back(at);
        at
    }
}

#[async_trait::async_trait]
impl Layer for RateLimitedRouter {
    async fn call(&self, args: Args<'_>) -> Result<Response> {
        if !self.writes_only || args.op().is_write() {
            tokio::time::sleep_until(self.reserve()).await;
        }
        args.forward(self.inner.as_ref()).await
    }
}

layer_router!(RateLimitedRouter);
