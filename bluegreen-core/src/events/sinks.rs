//! Event sinks: where events go.

use std::fmt::Debug;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::Event;

/// Receives every event of a deployment, in order.
///
/// # Guarantees (what the executor provides)
/// - Events arrive in `seq` order, one call at a time per deployment.
///
/// # Assumptions
/// - `emit` returns quickly and does not block on I/O for long: it runs on the deploy's
///   task. Slow consumers should take events from a [`ChannelSink`].
pub trait EventSink: Send + Sync + Debug {
    /// Takes one event.
    fn emit(&self, event: &Event);
}

/// Logs each event through `tracing` at INFO (WARN for failures and rollbacks).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn emit(&self, event: &Event) {
        use super::EventKind as K;
        let id = event.deployment_id.as_str();
        match &event.kind {
            K::RollbackStarted { .. }
            | K::RollbackBlocked { .. }
            | K::AnalysisFailed { .. }
            | K::TargetUnhealthy { .. } => {
                tracing::warn!(deployment = id, seq = event.seq, "{}", event.kind);
            }
            kind => tracing::info!(deployment = id, seq = event.seq, "{kind}"),
        }
    }
}

/// Writes each event as one JSON object per line.
#[derive(Debug)]
pub struct JsonLinesSink<W: Write + Send + Debug> {
    out: Mutex<W>,
}

impl<W: Write + Send + Debug> JsonLinesSink<W> {
    /// A sink writing to `out` (a file, stdout, a `Vec<u8>`).
    pub fn new(out: W) -> Self {
        Self { out: Mutex::new(out) }
    }

    /// Gives the writer back.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<W: Write + Send + Debug> EventSink for JsonLinesSink<W> {
    fn emit(&self, event: &Event) {
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An event log that cannot be written must not stop a deploy half-way.
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Sends each event into a tokio channel (for progress displays).
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::UnboundedSender<Event>,
}

impl ChannelSink {
    /// A sink and the receiver of its events.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

impl EventSink for ChannelSink {
    fn emit(&self, event: &Event) {
        // A display that went away must not stop the deploy.
        let _ = self.tx.send(event.clone());
    }
}

/// Keeps every event in memory; clones share the log (for tests and reports).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl MemorySink {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Every event so far, one displayed line each.
    pub fn lines(&self) -> Vec<String> {
        self.events().iter().map(|e| e.kind.to_string()).collect()
    }
}

impl EventSink for MemorySink {
    fn emit(&self, event: &Event) {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event.clone());
    }
}
