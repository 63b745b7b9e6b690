//! The lock item: taking a lease (a put conditioned on the `rev` read just before), renewing and
//! releasing it (updates conditioned on the caller's lease), and the condition check that fences
//! a record or event write with it.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use bluegreen_core::state::lease as lease_rules;
use bluegreen_core::state::{Lease, FORMAT_VERSION};
use bluegreen_core::{Error, Result};

use super::access::MAX_RACES;
use super::item::{check_version, n, num, s, string};
use super::keys::{check_key, key, service_pk};
use super::DynamoDbStore;

const LOCK_SK: &str = "lock";
/// The condition on the lock item under which a write fenced by a lease goes ahead: still held,
/// same fence and owner, a format this build reads (`#held`, `#fence`, `#owner`, `#fv` with
/// `:true`, `:fence`, `:owner`, `:fv`).
const LEASE_HELD: &str = "#held = :true AND #fence = :fence AND #owner = :owner AND #fv <= :fv";

/// The lock item as read.
#[derive(Debug, Default)]
struct LockItem {
    /// Whether the item exists.
    exists: bool,
    /// The last lease granted.
    lease: Option<Lease>,
    /// Whether it is still held (false once released).
    held: bool,
    /// Bumped by every write of the item.
    rev: u64,
}

impl DynamoDbStore {
    /// The lock item of `service` as it is (the default if there is none).
    async fn read_lock(&self, service: &str) -> Result<LockItem> {
        let pk = service_pk(service);
        let Some(item) = self.get(&pk, LOCK_SK).await? else {
            return Ok(LockItem::default());
        };
        let name = self.item_name(&pk, LOCK_SK);
        check_version(&item, &name)?;
        let rev = num(&item, "rev", &name)?;
        let held = item.get("held").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
        let lease = match item.get("owner") {
            None => None,
            Some(_) => Some(Lease {
                service: service.to_owned(),
                owner: string(&item, "owner", &name)?,
                fence: num(&item, "fence", &name)?,
                expires_at: num(&item, "expires_at", &name)?,
            }),
        };
        Ok(LockItem { exists: true, lease, held, rev })
    }

    /// The error for a write under `lease` that the lock refused.
    async fn stale(&self, lease: &Lease) -> Error {
        match self.lease_refusal(lease).await {
            Err(e) | Ok(Some(e)) => e,
            Ok(None) => Error::conflict(format!("the lock of {} changed meanwhile", lease.service)),
        }
    }

    /// Why the lock no longer holds `lease` (another fence or owner, or released), read once;
    /// `None` if it still does.
    pub(super) async fn lease_refusal(&self, lease: &Lease) -> Result<Option<Error>> {
        let lock = self.read_lock(&lease.service).await?;
        Ok(lease_rules::check(lock.lease.as_ref(), lock.held, lease).err())
    }

    /// The condition check on the lock item that fences a record write.
    pub(super) fn lease_check(&self, lease: &Lease) -> Result<TransactWriteItem> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(&service_pk(&lease.service), LOCK_SK)))
            .condition_expression(LEASE_HELD)
            .expression_attribute_names("#held", "held")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#fv", "format_version")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":fence", n(lease.fence))
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)))
            .build()
            .map_err(|e| Error::permanent("aws", format!("cannot build a DynamoDB condition check: {e}")))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Takes the lock of `service` for `owner`, or takes it over under the same owner name
    /// ([`StateStore::acquire`](bluegreen_core::StateStore::acquire)).
    pub(super) async fn acquire_lease(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        check_key("service", service)?;
        check_key("owner", owner)?;
        let pk = service_pk(service);
        for _ in 0..MAX_RACES {
            let now = self.now();
            let current = self.read_lock(service).await?;
            let lease = lease_rules::grant(current.lease.as_ref(), current.held, service, owner, ttl, now)?;
            let fence = lease.fence;
            let mut item = key(&pk, LOCK_SK);
            item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
            item.insert("owner".into(), s(owner));
            item.insert("fence".into(), n(fence));
            item.insert("expires_at".into(), n(lease.expires_at));
            item.insert("held".into(), AttributeValue::Bool(true));
            item.insert("rev".into(), n(current.rev + 1));
            let mut put = self.client.put_item().table_name(&self.table).set_item(Some(item));
            put = if current.exists {
                put.condition_expression("#rev = :rev")
                    .expression_attribute_names("#rev", "rev")
                    .expression_attribute_values(":rev", n(current.rev))
            } else {
                put.condition_expression("attribute_not_exists(pk)")
            };
            if Self::conditional("dynamodb:PutItem", &self.item_name(&pk, LOCK_SK), put.send()).await?.is_some() {
                return Ok(lease);
            }
            // Another writer changed the lock between our read and write: read it again.
        }
        Err(Error::transient("aws", format!("the lock of service {service} kept changing under {MAX_RACES} attempts")))
    }

    /// Extends `lease` by `ttl` if the lock still holds it.
    pub(super) async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let pk = service_pk(&lease.service);
        let renewed = lease_rules::renewed(lease, ttl, self.now());
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk, LOCK_SK)))
            .update_expression("SET #exp = :exp ADD #rev :one")
            .condition_expression(LEASE_HELD)
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_names("#held", "held")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#fv", "format_version")
            .expression_attribute_values(":exp", n(renewed.expires_at))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":fence", n(lease.fence))
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
        match Self::conditional("dynamodb:UpdateItem", &self.item_name(&pk, LOCK_SK), update.send()).await? {
            Some(_) => Ok(renewed),
            None => Err(self.stale(lease).await),
        }
    }

    /// Releases `lease`; a no-op if the lock no longer holds it.
    pub(super) async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let pk = service_pk(&lease.service);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk, LOCK_SK)))
            .update_expression("SET #held = :false ADD #rev :one")
            .condition_expression(LEASE_HELD)
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_names("#held", "held")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#fv", "format_version")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":fence", n(lease.fence))
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
        // A lease that is no longer held is released already: a no-op.
        Self::conditional("dynamodb:UpdateItem", &self.item_name(&pk, LOCK_SK), update.send()).await?;
        Ok(())
    }

    /// The live lease on `service`, if any.
    pub(super) async fn lease_holder(&self, service: &str) -> Result<Option<Lease>> {
        check_key("service", service)?;
        let now = self.now();
        let lock = self.read_lock(service).await?;
        Ok(lease_rules::holder(lock.lease.as_ref(), lock.held, now))
    }
}
