//! The in-memory state store: one process, clones share the state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::lease::{self as rules, millis as ms};
use super::{millis, system_clock, Clock, Command, CommandRecord, DeploymentRecord, Lease, StateStore};
use crate::error::{Error, Result};
use crate::events::Event;

/// What a store holds for one service's lock and queue.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct LockState {
    /// The last lease granted (kept after release so fences keep increasing).
    pub(super) lease: Option<Lease>,
    /// Whether `lease` is still held (false once released).
    pub(super) held: bool,
    /// Waiting deployments with the time their entry expires (Unix ms), first in line first.
    #[serde(default)]
    pub(super) queue: Vec<(String, u64)>,
}

impl LockState {
    /// Grants the lock by the rules of [`rules::grant`](super::lease::grant).
    pub(super) fn acquire(&mut self, service: &str, owner: &str, ttl: Duration, now: u64) -> Result<Lease> {
        let lease = rules::grant(self.lease.as_ref(), self.held, service, owner, ttl, now)?;
        self.lease = Some(lease.clone());
        self.held = true;
        Ok(lease)
    }

    /// Checks that `lease` is the current one ([`rules::check`](super::lease::check)).
    pub(super) fn check(&self, lease: &Lease) -> Result<()> {
        rules::check(self.lease.as_ref(), self.held, lease)
    }

    pub(super) fn renew(&mut self, lease: &Lease, ttl: Duration, now: u64) -> Result<Lease> {
        self.check(lease)?;
        let renewed = rules::renewed(lease, ttl, now);
        self.lease = Some(renewed.clone());
        Ok(renewed)
    }

    pub(super) fn release(&mut self, lease: &Lease) {
        if self.check(lease).is_ok() {
            self.held = false;
        }
    }

    pub(super) fn holder(&self, now: u64) -> Option<Lease> {
        rules::holder(self.lease.as_ref(), self.held, now)
    }

    pub(super) fn enqueue(&mut self, id: &str, ttl: Duration, now: u64) -> Vec<String> {
        self.queue.retain(|(_, expires)| *expires > now);
        match self.queue.iter_mut().find(|(queued, _)| queued == id) {
            Some(entry) => entry.1 = now + ms(ttl),
            None => self.queue.push((id.to_owned(), now + ms(ttl))),
        }
        self.queue.iter().map(|(id, _)| id.clone()).collect()
    }

    pub(super) fn dequeue(&mut self, id: &str) {
        self.queue.retain(|(queued, _)| queued != id);
    }
}

#[derive(Default)]
struct Inner {
    records: BTreeMap<String, DeploymentRecord>,
    locks: BTreeMap<String, LockState>,
    commands: BTreeMap<String, Vec<CommandRecord>>,
    events: BTreeMap<String, BTreeMap<u64, Event>>,
}

/// Keeps state in memory. Clones share it, so a test can hold one and inspect what the
/// executor recorded.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    clock: Clock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// An empty store reading `clock` for lease times.
    pub fn with_clock(clock: Clock) -> Self {
        Self { inner: Arc::default(), clock }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        millis(&self.clock)
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn create(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        let mut inner = self.lock();
        inner.locks.entry(record.service.clone()).or_default().check(lease)?;
        if inner.records.contains_key(&record.id) {
            return Err(Error::conflict(format!("deployment {} exists already", record.id)));
        }
        inner.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn save(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        let mut inner = self.lock();
        inner.locks.entry(record.service.clone()).or_default().check(lease)?;
        if !inner.records.contains_key(&record.id) {
            return Err(Error::not_found(format!("deployment {}", record.id)));
        }
        inner.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<DeploymentRecord> {
        self.lock().records.get(id).cloned().ok_or_else(|| Error::not_found(format!("deployment {id}")))
    }

    async fn history(&self, service: &str) -> Result<Vec<DeploymentRecord>> {
        let mut all: Vec<DeploymentRecord> =
            self.lock().records.values().filter(|r| r.service == service).cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn acquire(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        let now = self.now();
        self.lock().locks.entry(service.to_owned()).or_default().acquire(service, owner, ttl, now)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let now = self.now();
        self.lock().locks.entry(lease.service.clone()).or_default().renew(lease, ttl, now)
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.lock().locks.entry(lease.service.clone()).or_default().release(lease);
        Ok(())
    }

    async fn holder(&self, service: &str) -> Result<Option<Lease>> {
        let now = self.now();
        Ok(self.lock().locks.get(service).and_then(|l| l.holder(now)))
    }

    async fn enqueue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>> {
        let now = self.now();
        Ok(self.lock().locks.entry(service.to_owned()).or_default().enqueue(id, ttl, now))
    }

    async fn dequeue(&self, service: &str, id: &str) -> Result<()> {
        self.lock().locks.entry(service.to_owned()).or_default().dequeue(id);
        Ok(())
    }

    async fn send(&self, id: &str, command: Command) -> Result<u64> {
        let now = self.now();
        let mut inner = self.lock();
        if !inner.records.contains_key(id) {
            return Err(Error::not_found(format!("deployment {id}")));
        }
        let log = inner.commands.entry(id.to_owned()).or_default();
        let seq = log.len() as u64 + 1;
        log.push(CommandRecord { seq, command, sent_at: now });
        Ok(seq)
    }

    async fn commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>> {
        Ok(self
            .lock()
            .commands
            .get(id)
            .map(|log| log.iter().filter(|c| c.seq > after).cloned().collect())
            .unwrap_or_default())
    }

    async fn append_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()> {
        let mut inner = self.lock();
        inner.locks.entry(lease.service.clone()).or_default().check(lease)?;
        let log = inner.events.entry(id.to_owned()).or_default();
        log.extend(events.iter().map(|e| (e.seq, e.clone())));
        Ok(())
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        Ok(self.lock().events.get(id).map(|log| log.values().cloned().collect()).unwrap_or_default())
    }
}
