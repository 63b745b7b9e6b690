//! Router layers: [`Router`]s that wrap another router and delegate every call to it, adding one
//! thing on the way, as a tower layer or object_store's throttled and limited stores do.
//!
//! - [`RecordingRouter`] records every call (operation, arguments, result, tokio time), to
//!   assert or audit what a deploy did, in order.
//! - [`FaultyRouter`] fails, delays or acknowledges-without-applying chosen operations, changes
//!   the capabilities it reports, and runs a hook before an operation: rehearsing faults.
//! - [`RateLimitedRouter`] holds calls so that no window of a given length starts more than a
//!   given number of them: respecting an API's rate limit.
//!
//! Each takes an `Arc<dyn Router>` and is itself a `Router`, so layers stack
//! (`RateLimitedRouter::new(Arc::new(RecordingRouter::new(router)), ..)`) and the result goes
//! wherever a router does ([`Executor::builder`](crate::Executor::builder), the
//! [`conformance`](crate#modules) suite). With nothing configured, a layer changes nothing: the
//! inner router's name, capabilities, answers and errors pass through as they are.
//!
//! Every layer runs on tokio time, so a test with a paused clock sees the delays of
//! [`FaultyRouter`] and [`RateLimitedRouter`] pass at once.

mod faulty;
mod rate_limit;
mod recording;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use faulty::FaultyRouter;
pub use rate_limit::RateLimitedRouter;
pub use recording::{Call, Recorder, RecordingRouter};

use crate::error::{Error, Result};
use crate::model::{Member, PoolName, Split, Target, TargetId};
use crate::router::{Capabilities, DrainReport, Router};

/// A [`Router`] method that does I/O (every one but `name` and `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RouterOp {
    /// [`Router::pools`].
    Pools,
    /// [`Router::split`].
    Split,
    /// [`Router::set_split`].
    SetSplit,
    /// [`Router::add_targets`].
    AddTargets,
    /// [`Router::drain`].
    Drain,
    /// [`Router::remove_targets`].
    RemoveTargets,
    /// [`Router::members`].
    Members,
}

impl RouterOp {
    /// Every operation, reads first.
    pub const ALL: [RouterOp; 7] =
        [Self::Pools, Self::Split, Self::Members, Self::SetSplit, Self::AddTargets, Self::Drain, Self::RemoveTargets];

    /// Whether the operation changes what the router serves (`set_split`, `add_targets`,
    /// `drain`, `remove_targets`).
    pub fn is_write(self) -> bool {
        matches!(self, Self::SetSplit | Self::AddTargets | Self::Drain | Self::RemoveTargets)
    }

    /// The method's name (`set_split`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pools => "pools",
            Self::Split => "split",
            Self::SetSplit => "set_split",
            Self::AddTargets => "add_targets",
            Self::Drain => "drain",
            Self::RemoveTargets => "remove_targets",
            Self::Members => "members",
        }
    }
}

impl fmt::Display for RouterOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One router call as it was asked: the operation and its arguments (targets by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The operation.
    pub op: RouterOp,
    /// The pool, for `add_targets`, `drain`, `remove_targets` and `members`.
    pub pool: Option<PoolName>,
    /// The targets, for `add_targets`, `drain` and `remove_targets`; empty otherwise.
    pub targets: Vec<TargetId>,
    /// The split asked for, for `set_split`.
    pub split: Option<Split>,
    /// The drain timeout, for `drain`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// What a router call answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// From `pools`.
    Pools(Vec<PoolName>),
    /// From `split`.
    Split(Split),
    /// From `set_split`, `add_targets` or `remove_targets`.
    Done,
    /// From `drain`.
    Drained(DrainReport),
    /// From `members`.
    Members(Vec<Member>),
}

/// The arguments of one call, borrowed: what the layers see and hand on.
#[derive(Debug, Clone, Copy)]
enum Args<'a> {
    Pools,
    Split,
    SetSplit(&'a Split),
    AddTargets(&'a PoolName, &'a [Target]),
    Drain(&'a PoolName, &'a [TargetId], Duration),
    RemoveTargets(&'a PoolName, &'a [TargetId]),
    Members(&'a PoolName),
    MembersOf(&'a PoolName, &'a [TargetId]),
}

impl Args<'_> {
    fn op(self) -> RouterOp {
        match self {
            Self::Pools => RouterOp::Pools,
            Self::Split => RouterOp::Split,
            Self::SetSplit(_) => RouterOp::SetSplit,
            Self::AddTargets(..) => RouterOp::AddTargets,
            Self::Drain(..) => RouterOp::Drain,
            Self::RemoveTargets(..) => RouterOp::RemoveTargets,
            // A read of members, whether of the whole pool or some of them.
            Self::Members(_) | Self::MembersOf(..) => RouterOp::Members,
        }
    }

    fn request(self) -> Request {
        let mut request = Request { op: self.op(), pool: None, targets: Vec::new(), split: None, timeout: None };
        match self {
            Self::Pools | Self::Split => {}
            Self::SetSplit(split) => request.split = Some(split.clone()),
            Self::AddTargets(pool, targets) => {
                request.pool = Some(pool.clone());
                request.targets = targets.iter().map(|t| t.id.clone()).collect();
            }
            Self::Drain(pool, ids, timeout) => {
                request.pool = Some(pool.clone());
                request.targets = ids.to_vec();
                request.timeout = Some(timeout);
            }
            Self::RemoveTargets(pool, ids) => {
                request.pool = Some(pool.clone());
                request.targets = ids.to_vec();
            }
            Self::Members(pool) => request.pool = Some(pool.clone()),
            Self::MembersOf(pool, ids) => {
                request.pool = Some(pool.clone());
                request.targets = ids.to_vec();
            }
        }
        request
    }

    /// Makes the call on `router`.
    async fn forward(self, router: &dyn Router) -> Result<Response> {
        match self {
            Self::Pools => router.pools().await.map(Response::Pools),
            Self::Split => router.split().await.map(Response::Split),
            Self::SetSplit(split) => router.set_split(split).await.map(|()| Response::Done),
            Self::AddTargets(pool, targets) => router.add_targets(pool, targets).await.map(|()| Response::Done),
            Self::Drain(pool, ids, timeout) => router.drain(pool, ids, timeout).await.map(Response::Drained),
            Self::RemoveTargets(pool, ids) => router.remove_targets(pool, ids).await.map(|()| Response::Done),
            Self::Members(pool) => router.members(pool).await.map(Response::Members),
            Self::MembersOf(pool, ids) => router.members_of(pool, ids).await.map(Response::Members),
        }
    }
}

/// What a layer adds around the inner router (its field `inner: Arc<dyn Router>`);
/// `layer_router!` makes each layer a [`Router`] from it, so the nine delegating methods are
/// written once.
#[async_trait::async_trait]
trait Layer: Send + Sync + fmt::Debug {
    /// The capabilities reported, given the inner router's: those unless the layer changes them.
    fn capabilities(&self, inner: Capabilities) -> Capabilities {
        inner
    }

    /// One call: the layer's work around `args.forward(&*self.inner)`.
    async fn call(&self, args: Args<'_>) -> Result<Response>;
}

/// The error for a layer answering `op` with another operation's response (a bug in the layer).
fn mismatch(router: &dyn Router, op: RouterOp, response: &Response) -> Error {
    Error::permanent(router.name(), format!("a router layer answered {op} with {response:?}"))
}

/// Implements [`Router`] for a [`Layer`] with a field `inner: Arc<dyn Router>`: every method
/// goes through [`Layer::call`]. Adds the layer's `inner()`.
macro_rules! layer_router {
    ($layer:ty) => {
        impl $layer {
            /// The wrapped router.
            pub fn inner(&self) -> &std::sync::Arc<dyn $crate::router::Router> {
                &self.inner
            }
        }

        #[async_trait::async_trait]
        impl $crate::router::Router for $layer {
            fn name(&self) -> &str {
                self.inner.name()
            }
            fn capabilities(&self) -> $crate::router::Capabilities {
                $crate::layers::Layer::capabilities(self, self.inner.capabilities())
            }
            async fn pools(&self) -> $crate::error::Result<Vec<$crate::model::PoolName>> {
                $crate::layers::answer!(self, Args::Pools, Response::Pools(pools) => pools)
            }
            async fn split(&self) -> $crate::error::Result<$crate::model::Split> {
                $crate::layers::answer!(self, Args::Split, Response::Split(split) => split)
            }
            async fn set_split(&self, split: &$crate::model::Split) -> $crate::error::Result<()> {
                $crate::layers::answer!(self, Args::SetSplit(split), Response::Done => ())
            }
            async fn add_targets(
                &self,
                pool: &$crate::model::PoolName,
                targets: &[$crate::model::Target],
            ) -> $crate::error::Result<()> {
                $crate::layers::answer!(self, Args::AddTargets(pool, targets), Response::Done => ())
            }
            async fn drain(
                &self,
                pool: &$crate::model::PoolName,
                targets: &[$crate::model::TargetId],
                timeout: std::time::Duration,
            ) -> $crate::error::Result<$crate::router::DrainReport> {
                $crate::layers::answer!(self, Args::Drain(pool, targets, timeout), Response::Drained(report) => report)
            }
            async fn remove_targets(
                &self,
                pool: &$crate::model::PoolName,
                targets: &[$crate::model::TargetId],
            ) -> $crate::error::Result<()> {
                $crate::layers::answer!(self, Args::RemoveTargets(pool, targets), Response::Done => ())
            }
            async fn members(
                &self,
                pool: &$crate::model::PoolName,
            ) -> $crate::error::Result<Vec<$crate::model::Member>> {
                $crate::layers::answer!(self, Args::Members(pool), Response::Members(members) => members)
            }
            async fn members_of(
                &self,
                pool: &$crate::model::PoolName,
                ids: &[$crate::model::TargetId],
            ) -> $crate::error::Result<Vec<$crate::model::Member>> {
                $crate::layers::answer!(self, Args::MembersOf(pool, ids), Response::Members(members) => members)
            }
        }
    };
}

/// One call through [`Layer::call`], its [`Response`] unwrapped to the method's return type.
macro_rules! answer {
    ($layer:expr, $args:expr, $expected:pat => $answer:expr) => {{
        use $crate::layers::{Args, Layer as _, Response};
        let args = $args;
        match $layer.call(args).await? {
            $expected => Ok($answer),
            other => Err($crate::layers::mismatch($layer, args.op(), &other)),
        }
    }};
}

use {answer, layer_router};
