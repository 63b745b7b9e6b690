//! The in-memory state store: one process, clones share the state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{millis, system_clock, Clock, Command, CommandRecord, DeploymentRecord, Lease, StateStore};
use crate::error::{Error, Result};

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
    /// Grants the lock to `owner` if it is free, expired, or theirs already. Every grant gets a
    /// fence one higher than the last, even one to the live holder's own owner name (a takeover:
    /// the older lease of that owner is then stale), so two holders never share a fence.
    pub(super) fn acquire(&mut self, service: &str, owner: &str, ttl: Duration, now: u64) -> Result<Lease> {
        let fence = match &self.lease {
            Some(lease) if self.held && lease.expires_at > now && lease.owner != owner => {
                return Err(Error::conflict(format!(
                    "service {service} is locked by {} until {} (Unix ms; {} ms from now)",
                    lease.owner,
                    lease.expires_at,
                    lease.expires_at - now
                )));
            }
            Some(lease) => lease.fence + 1,
            None => 1,
        };
        let lease = Lease { service: service.to_owned(), owner: owner.to_owned(), fence, expires_at: now + ms(ttl) };
        self.lease = Some(lease.clone());
        self.held = true;
        Ok(lease)
    }

    /// Checks that `lease` is the current one.
    pub(super) fn check(&self, lease: &Lease) -> Result<()> {
        match &self.lease {
            Some(current) if self.held && current.fence == lease.fence && current.owner == lease.owner => Ok(()),
            Some(current) => Err(Error::conflict(format!(
                "stale lease on service {}: fence {} of {} is older than fence {} of {}{}",
                lease.service,
                lease.fence,
                lease.owner,
                current.fence,
                current.owner,
                if self.held { "" } else { " (released)" }
            ))),
            None => Err(Error::conflict(format!("service {} is not locked", lease.service))),
        }
    }

    pub(super) fn renew(&mut self, lease: &Lease, ttl: Duration, now: u64) -> Result<Lease> {
        self.check(lease)?;
        let renewed = Lease { expires_at: now + ms(ttl), ..lease.clone() };
        self.lease = Some(renewed.clone());
        Ok(renewed)
    }

    pub(super) fn release(&mut self, lease: &Lease) {
        if self.check(lease).is_ok() {
            self.held = false;
        }
    }

    pub(super) fn holder(&self, now: u64) -> Option<Lease> {
        self.lease.clone().filter(|l| self.held && l.expires_at > now)
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

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct Inner {
    records: BTreeMap<String, DeploymentRecord>,
    locks: BTreeMap<String, LockState>,
    commands: BTreeMap<String, Vec<CommandRecord>>,
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
}
