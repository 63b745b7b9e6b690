//! Durable deployments: where a deployment's progress lives outside the process, the lock that
//! keeps two deployments of one service apart, and commands from other processes.
//!
//! A [`StateStore`] keeps, per service:
//! - one [`DeploymentRecord`] per deployment: its plan (with the spec and the pre-deploy
//!   snapshot), how many steps completed, whether it is rolling back, and its outcome;
//! - a lease-based **lock** ([`Lease`]) with a fencing number: a lease is stolen only after it
//!   expired, and a write carrying an older fence is refused, so an owner that paused past its
//!   lease (a stopped VM, a long GC) cannot undo its successor's work;
//! - a FIFO **queue** of deployments waiting for the lock;
//! - a log of **commands** (pause, resume, promote, abort) other processes send to a running
//!   deployment.
//!
//! Implementations: [`MemoryStore`] (tests, one process) and [`FileStore`] (a directory per
//! service; atomic, fsynced writes). `bluegreen-aws` adds DynamoDB. All pass
//! `conformance::state_store_suite` (feature `conformance`).

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::events::Event;
use crate::outcome::{Outcome, Status};
use crate::plan::Plan;

mod adopted;
mod file;
pub mod lease;
mod memory;
mod redacting;
mod versions;

pub use adopted::recorded_adoptions;
pub use file::FileStore;
pub use memory::MemoryStore;
pub(crate) use redacting::RedactingStore;
pub use versions::recorded_versions;

/// The version of the records' on-disk format. A store refuses records of a newer format.
pub const FORMAT_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch: the store's wall-clock time, shared across processes.
pub type UnixMillis = u64;

/// The wall clock a store reads (injectable for tests).
pub type Clock = std::sync::Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system wall clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(SystemTime::now)
}

/// A wall clock that only moves when told to, for tests of lease expiry.
///
/// ```
/// use std::time::Duration;
/// use bluegreen_core::state::ManualClock;
/// let clock = ManualClock::new();
/// let before = (clock.clock())();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!((clock.clock())().duration_since(before).unwrap(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: std::sync::Arc<std::sync::Mutex<SystemTime>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the current system time.
    pub fn new() -> Self {
        Self { now: std::sync::Arc::new(std::sync::Mutex::new(SystemTime::now())) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += by;
    }

    /// The clock, to give to a store.
    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        std::sync::Arc::new(move || *now.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

pub(crate) fn millis(clock: &Clock) -> UnixMillis {
    unix_millis(clock())
}

/// `at` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_millis(at: SystemTime) -> UnixMillis {
    at.duration_since(UNIX_EPOCH).map_or(0, lease::millis)
}

/// Where a deployment stands, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Running its plan (or interrupted while doing so).
    Running,
    /// Rolling back (or interrupted while doing so).
    RollingBack,
    /// Finished; the record's outcome says how.
    Finished,
}

/// Everything recorded about one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The record format ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The deployment's id.
    pub id: String,
    /// The service.
    pub service: String,
    /// The plan, with its spec and the pre-deploy snapshot.
    pub plan: Plan,
    /// Where it stands.
    pub phase: Phase,
    /// Steps completed, in order: a resume starts at this index.
    pub completed_steps: usize,
    /// Per completed step: when it ended (Unix ms) and how long it took.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// The failure that started a rollback, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// How it ended, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Who runs (or last ran) it.
    pub owner: String,
    /// When it was created (Unix ms).
    pub created_at: UnixMillis,
    /// When it was last written (Unix ms).
    pub updated_at: UnixMillis,
}

impl DeploymentRecord {
    /// A new record for `plan`, nothing completed.
    pub fn new(id: impl Into<String>, plan: Plan, owner: impl Into<String>, now: UnixMillis) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            id: id.into(),
            service: plan.spec.service.clone(),
            plan,
            phase: Phase::Running,
            completed_steps: 0,
            steps: Vec::new(),
            failure: None,
            outcome: None,
            owner: owner.into(),
            created_at: now,
            updated_at: now,
        }
    }

    /// A one-line summary for history listings.
    pub fn summary(&self) -> DeploymentSummary {
        DeploymentSummary {
            id: self.id.clone(),
            service: self.service.clone(),
            from_version: self.plan.from_version.as_ref().map(ToString::to_string),
            to_version: self.plan.spec.version.to_string(),
            strategy: self.plan.spec.strategy.name().to_owned(),
            phase: self.phase,
            status: self.outcome.as_ref().map(|o| o.status),
            completed_steps: self.completed_steps,
            total_steps: self.plan.steps.len(),
            created_at: self.created_at,
            duration: Duration::from_millis(self.updated_at.saturating_sub(self.created_at)),
        }
    }
}

/// One completed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Index in the plan.
    pub index: usize,
    /// When it completed (Unix ms).
    pub completed_at: UnixMillis,
    /// How long it took.
    #[serde(with = "crate::millis")]
    pub took: Duration,
}

/// A line of deployment history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSummary {
    /// The deployment's id.
    pub id: String,
    /// The service.
    pub service: String,
    /// The version it replaced.
    pub from_version: Option<String>,
    /// The version it deployed.
    pub to_version: String,
    /// The strategy.
    pub strategy: String,
    /// Where it stands.
    pub phase: Phase,
    /// How it ended, once finished.
    pub status: Option<Status>,
    /// Steps completed.
    pub completed_steps: usize,
    /// Steps in its plan.
    pub total_steps: usize,
    /// When it started (Unix ms).
    pub created_at: UnixMillis,
    /// From start to its last record.
    #[serde(with = "crate::millis")]
    pub duration: Duration,
}

/// A held lock on one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The service.
    pub service: String,
    /// Who holds it.
    pub owner: String,
    /// Increases every time the lock changes owner; writes carrying an older fence are refused.
    pub fence: u64,
    /// When it expires unless renewed (Unix ms).
    pub expires_at: UnixMillis,
}

/// A command to a running deployment from another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// See [`Control::pause`](crate::Control::pause).
    Pause,
    /// See [`Control::resume`](crate::Control::resume).
    Resume,
    /// See [`Control::promote`](crate::Control::promote).
    Promote,
    /// See [`Control::abort`](crate::Control::abort).
    Abort,
}

/// A command as stored, numbered per deployment from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Position in the deployment's command log, from 1.
    pub seq: u64,
    /// The command.
    pub command: Command,
    /// When it was sent (Unix ms).
    pub sent_at: UnixMillis,
}

/// Keeps deployments, locks, queues and commands outside the process.
///
/// # Guarantees (what an implementation must provide)
/// - Every write is atomic: a reader sees the old or the new value, never a mix, even across a
///   crash of the writer.
/// - [`acquire`](StateStore::acquire) succeeds only when the lock is free, expired, or already
///   held by the same owner; every grant gets a fence greater than any before, so a second
///   acquire by the live holder's own owner name is a takeover that leaves the first lease stale.
/// - [`save`](StateStore::save) and [`renew`](StateStore::renew) are refused with
///   [`Error::Conflict`](crate::Error::Conflict) when the lease's fence is older than the
///   lock's, i.e. once another owner took over.
/// - Unreadable state (corrupt, truncated, empty, from a newer format) gives an error that names
///   it and is never overwritten.
///
/// # Assumptions
/// - Clocks of the processes sharing a store agree within a small fraction of the lease TTL.
///
/// # Errors
/// - [`Error::NotFound`](crate::Error::NotFound) for an unknown deployment.
/// - [`Error::Conflict`](crate::Error::Conflict) for a lock held by a live owner (naming it and
///   its expiry), a stale fence, or a deployment id that exists already.
/// - [`Error::Corrupt`](crate::Error::Corrupt) for unreadable state.
#[async_trait]
pub trait StateStore: Send + Sync + Debug {
    /// Creates a deployment's record; refused if the id exists.
    async fn create(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()>;

    /// Replaces a deployment's record, fenced by `lease`.
    async fn save(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()>;

    /// Reads a deployment's record.
    async fn load(&self, id: &str) -> Result<DeploymentRecord>;

    /// Every deployment of `service`, oldest first.
    async fn history(&self, service: &str) -> Result<Vec<DeploymentRecord>>;

    /// Takes the service's lock for `owner` for `ttl`; when `owner` holds it already, takes it
    /// over with a higher fence, so the older lease's next renew or save is refused with
    /// [`Error::Conflict`](crate::Error::Conflict).
    async fn acquire(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease>;

    /// Extends a held lease by `ttl` from now.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease>;

    /// Gives the lock up (a no-op if it is no longer held under this lease).
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// The lock's current holder, if it is held and not expired.
    async fn holder(&self, service: &str) -> Result<Option<Lease>>;

    /// Joins the service's queue (or refreshes the entry), to expire after `ttl` unless
    /// refreshed; returns the deployment ids waiting, first in line first.
    async fn enqueue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>>;

    /// Leaves the service's queue.
    async fn dequeue(&self, service: &str, id: &str) -> Result<()>;

    /// Appends a command for deployment `id`; returns its sequence number.
    async fn send(&self, id: &str, command: Command) -> Result<u64>;

    /// Commands for deployment `id` with a sequence number above `after`.
    async fn commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>>;

    /// Appends `events` to deployment `id`'s event log, fenced by `lease` like
    /// [`save`](StateStore::save): an owner whose lease was taken over adds nothing. Appending
    /// an event whose `seq` is in the log already replaces it (a retried append is harmless).
    async fn append_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()>;

    /// Deployment `id`'s event log, in `seq` order; empty when nothing was written.
    async fn events(&self, id: &str) -> Result<Vec<Event>>;
}
