//! A state store that keeps no secret: what it is given to write passes through
//! [`Secrets::stored`] first (a secret from a reference becomes the reference, any other
//! `***`); reads and the lock pass through unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Command, CommandRecord, DeploymentRecord, Lease, StateStore};
use crate::error::Result;
use crate::events::Event;
use crate::secrets::Secrets;

/// Wraps the executor's store when it has [`Secrets`]
/// ([`ExecutorBuilder::secrets`](crate::ExecutorBuilder::secrets)).
#[derive(Debug)]
pub(crate) struct RedactingStore {
    inner: Arc<dyn StateStore>,
    secrets: Secrets,
}

impl RedactingStore {
    pub(crate) fn new(inner: Arc<dyn StateStore>, secrets: Secrets) -> Self {
        Self { inner, secrets }
    }
}

#[async_trait]
impl StateStore for RedactingStore {
    async fn create(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        if self.secrets.is_empty() {
            return self.inner.create(record, lease).await;
        }
        self.inner.create(&self.secrets.stored(record)?, lease).await
    }

    async fn save(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        // Saved after every step: no copy of the record when there is nothing to keep out.
        if self.secrets.is_empty() {
            return self.inner.save(record, lease).await;
        }
        self.inner.save(&self.secrets.stored(record)?, lease).await
    }

    async fn load(&self, id: &str) -> Result<DeploymentRecord> {
        self.inner.load(id).await
    }

    async fn history(&self, service: &str) -> Result<Vec<DeploymentRecord>> {
        self.inner.history(service).await
    }

    async fn acquire(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.inner.acquire(service, owner, ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.inner.renew(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.inner.release(lease).await
    }

    async fn holder(&self, service: &str) -> Result<Option<Lease>> {
        self.inner.holder(service).await
    }

    async fn enqueue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>> {
        self.inner.enqueue(service, id, ttl).await
    }

    async fn dequeue(&self, service: &str, id: &str) -> Result<()> {
        self.inner.dequeue(service, id).await
    }

    async fn send(&self, id: &str, command: Command) -> Result<u64> {
        self.inner.send(id, command).await
    }

    async fn commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>> {
        self.inner.commands(id, after).await
    }

    async fn append_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()> {
        if self.secrets.is_empty() {
            return self.inner.append_events(id, events, lease).await;
        }
        let stored = events.iter().map(|e| self.secrets.stored(e)).collect::<Result<Vec<_>>>()?;
        self.inner.append_events(id, &stored, lease).await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        self.inner.events(id).await
    }
}
