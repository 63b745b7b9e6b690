//! The event log of a deployment: events put in transactions under the lease, chunked by count
//! and size; an event too large for an item is stored as a warning that says so.

use aws_sdk_dynamodb::types::TransactWriteItem;
use bluegreen_core::state::{Lease, FORMAT_VERSION};
use bluegreen_core::{Error, Event, EventKind, Result};

use super::item::{corrupt, n, s, string};
use super::keys::{check_key, deployment_pk, event_sk, key};
use super::DynamoDbStore;

/// Events per transaction: DynamoDB takes 100 items, one is the lease check.
const EVENTS_PER_WRITE: usize = 99;
/// Bytes of events per transaction, below DynamoDB's 4 MB per transaction.
const EVENT_BYTES_PER_WRITE: usize = 3_000_000;
/// The largest event stored as it is, below DynamoDB's 400 KB per item.
const MAX_EVENT_BYTES: usize = 350_000;

impl DynamoDbStore {
    /// Stores `events` in deployment `id`'s log under `lease`, in chunks.
    pub(super) async fn write_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()> {
        check_key("deployment id", id)?;
        let pk = deployment_pk(id);
        // Transactions of at most 99 events and EVENT_BYTES_PER_WRITE bytes; an event too large
        // for an item is stored as a warning that says so, so it cannot block the log.
        let mut chunks: Vec<Vec<(u64, String)>> = vec![Vec::new()];
        let mut bytes = 0;
        for event in events {
            let mut json = serde_json::to_string(event)
                .map_err(|e| Error::invalid("event", format!("event {} cannot be encoded: {e}", event.seq)))?;
            if json.len() > MAX_EVENT_BYTES {
                let stand_in = Event {
                    kind: EventKind::Warning {
                        message: format!(
                            "event {} ({} bytes) is larger than a DynamoDB item: not stored",
                            event.seq,
                            json.len()
                        ),
                    },
                    ..event.clone()
                };
                json = serde_json::to_string(&stand_in).unwrap_or_default();
            }
            let full = chunks
                .last()
                .is_some_and(|c| c.len() == EVENTS_PER_WRITE || bytes + json.len() > EVENT_BYTES_PER_WRITE);
            if full {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += json.len();
            chunks.last_mut().expect("one chunk at least").push((event.seq, json));
        }
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            let mut items = vec![self.lease_check(lease)?];
            for (seq, json) in chunk {
                let mut item = key(&pk, &event_sk(seq));
                item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
                item.insert("seq".into(), n(seq));
                item.insert("event".into(), s(&json));
                items.push(
                    TransactWriteItem::builder().put(self.put(item, "attribute_not_exists(pk) OR #fv <= :fv")?).build(),
                );
            }
            let name = self.item_name(&pk, "event#…");
            if !self.transact("dynamodb:TransactWriteItems", &name, items).await? {
                return Err(self.lease_refusal(lease).await?.unwrap_or_else(|| {
                    Error::transient(
                        "aws",
                        format!("the write of {name} was refused by a concurrent change; try again"),
                    )
                }));
            }
        }
        Ok(())
    }

    /// The event log of deployment `id`, in order.
    pub(super) async fn read_events(&self, id: &str) -> Result<Vec<Event>> {
        check_key("deployment id", id)?;
        let pk = deployment_pk(id);
        let items = self.query(&pk, &event_sk(0), &event_sk(u64::MAX), false, None).await?;
        items
            .iter()
            .map(|item| {
                let name = self.readable(&pk, item)?;
                let json = string(item, "event", &name)?;
                serde_json::from_str(&json).map_err(|e| corrupt(&name, format!("not an event: {e}")))
            })
            .collect()
    }
}
