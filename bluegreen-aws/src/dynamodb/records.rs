//! Deployment records: their items (encoded as JSON, checked when read), their creation and
//! saving under the lease, and the pointer from a deployment id to its service.

use aws_sdk_dynamodb::types::TransactWriteItem;
use bluegreen_core::state::{DeploymentRecord, Lease, FORMAT_VERSION};
use bluegreen_core::{Error, Result};

use super::item::{check_version, corrupt, n, s, string, Item};
use super::keys::{check_key, deployment_pk, key, record_sk, service_pk};
use super::DynamoDbStore;

const POINTER_SK: &str = "deployment";

impl DynamoDbStore {
    /// The item of `record`: the record as JSON, and the attributes a reader may look at.
    fn record_item(&self, record: &DeploymentRecord) -> Result<Item> {
        let json = serde_json::to_string(record)
            .map_err(|e| Error::invalid("record", format!("deployment {} cannot be encoded: {e}", record.id)))?;
        let phase = serde_json::to_value(record.phase).ok().and_then(|v| v.as_str().map(str::to_owned));
        let mut item = key(&service_pk(&record.service), &record_sk(&record.id));
        item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
        item.insert("id".into(), s(&record.id));
        item.insert("service".into(), s(&record.service));
        item.insert("owner".into(), s(&record.owner));
        item.insert("phase".into(), s(phase.as_deref().unwrap_or("unknown")));
        item.insert("created_at".into(), n(record.created_at));
        item.insert("updated_at".into(), n(record.updated_at));
        item.insert("record".into(), s(&json));
        Ok(item)
    }

    /// The record in a record item, of a format this build reads.
    fn parse_record(&self, item: &Item) -> Result<DeploymentRecord> {
        let name = self.item_name(
            item.get("pk").and_then(|v| v.as_s().ok()).map_or("?", String::as_str),
            item.get("sk").and_then(|v| v.as_s().ok()).map_or("?", String::as_str),
        );
        check_version(item, &name)?;
        let json = string(item, "record", &name)?;
        if json.trim().is_empty() {
            return Err(corrupt(&name, "the record is empty"));
        }
        let record: DeploymentRecord =
            serde_json::from_str(&json).map_err(|e| corrupt(&name, format!("the record is not valid JSON: {e}")))?;
        if record.format_version > FORMAT_VERSION {
            return Err(corrupt(
                &name,
                format!(
                    "written by a newer bluegreen (format {}; this build reads up to {FORMAT_VERSION})",
                    record.format_version
                ),
            ));
        }
        Ok(record)
    }

    /// The record item of deployment `id` of `service`, parsed; `None` if there is none.
    pub(super) async fn read_record(&self, service: &str, id: &str) -> Result<Option<DeploymentRecord>> {
        self.get(&service_pk(service), &record_sk(id)).await?.map(|item| self.parse_record(&item)).transpose()
    }

    /// The service deployment `id` belongs to, from its pointer item.
    pub(super) async fn service_of(&self, id: &str) -> Result<Option<String>> {
        check_key("deployment id", id)?;
        let pk = deployment_pk(id);
        let Some(item) = self.get(&pk, POINTER_SK).await? else {
            return Ok(None);
        };
        let name = self.item_name(&pk, POINTER_SK);
        check_version(&item, &name)?;
        Ok(Some(string(&item, "service", &name)?))
    }

    /// Creates `record` and its pointer item under `lease`, in one transaction.
    pub(super) async fn create_record(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        check_key("deployment id", &record.id)?;
        check_key("service", &record.service)?;
        let mut pointer = key(&deployment_pk(&record.id), POINTER_SK);
        pointer.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
        pointer.insert("service".into(), s(&record.service));
        let items = vec![
            self.lease_check(lease)?,
            TransactWriteItem::builder().put(self.put(self.record_item(record)?, "attribute_not_exists(pk)")?).build(),
            TransactWriteItem::builder().put(self.put(pointer, "attribute_not_exists(pk)")?).build(),
        ];
        let name = self.item_name(&service_pk(&record.service), &record_sk(&record.id));
        if self.transact("dynamodb:TransactWriteItems", &name, items).await? {
            return Ok(());
        }
        if let Some(stale) = self.lease_refusal(lease).await? {
            return Err(stale);
        }
        Err(Error::conflict(format!(
            "deployment {} exists already ({})",
            record.id,
            self.item_name(&deployment_pk(&record.id), POINTER_SK)
        )))
    }

    /// Overwrites `record` under `lease`; refuses one that does not exist or cannot be read.
    pub(super) async fn save_record(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        check_key("deployment id", &record.id)?;
        check_key("service", &record.service)?;
        // Refuse to overwrite what cannot be read: it may be someone's newer state.
        if self.read_record(&record.service, &record.id).await?.is_none() {
            return Err(Error::not_found(format!("deployment {}", record.id)));
        }
        let items = vec![
            self.lease_check(lease)?,
            TransactWriteItem::builder()
                .put(self.put(self.record_item(record)?, "attribute_exists(pk) AND #fv <= :fv")?)
                .build(),
        ];
        let name = self.item_name(&service_pk(&record.service), &record_sk(&record.id));
        if self.transact("dynamodb:TransactWriteItems", &name, items).await? {
            return Ok(());
        }
        if let Some(stale) = self.lease_refusal(lease).await? {
            return Err(stale);
        }
        match self.read_record(&record.service, &record.id).await? {
            None => Err(Error::not_found(format!("deployment {}", record.id))),
            Some(_) => Err(Error::transient(
                "aws",
                format!("the write of {name} was refused by a concurrent change; try again"),
            )),
        }
    }

    /// Every record of `service`, oldest first.
    pub(super) async fn record_history(&self, service: &str) -> Result<Vec<DeploymentRecord>> {
        check_key("service", service)?;
        let items = self.query(&service_pk(service), "deployment#", "deployment#\u{10FFFF}", false, None).await?;
        let mut records = items.iter().map(|item| self.parse_record(item)).collect::<Result<Vec<_>>>()?;
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }
}
