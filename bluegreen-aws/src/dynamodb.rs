//! The DynamoDB state store: one table, conditional writes, lease fencing.
//!
//! The table layout and the write protocol are documented on [`DynamoDbStore`].

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, ReturnValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use bluegreen_core::state::lease::{self as lease_rules, millis as ms};
use bluegreen_core::state::{
    system_clock, Clock, Command, CommandRecord, DeploymentRecord, Lease, StateStore, FORMAT_VERSION,
};
use bluegreen_core::{Error, Event, EventKind, Result};

use crate::error::AwsError;

type Item = HashMap<String, AttributeValue>;

/// How often a conditional write lost to a concurrent writer is tried again before giving up
/// with a retryable error.
const MAX_RACES: usize = 16;

const LOCK_SK: &str = "lock";
const QUEUE_SEQ_SK: &str = "queue-seq";
const POINTER_SK: &str = "deployment";
/// Events per transaction: DynamoDB takes 100 items, one is the lease check.
const EVENTS_PER_WRITE: usize = 99;
/// Bytes of events per transaction, below DynamoDB's 4 MB per transaction.
const EVENT_BYTES_PER_WRITE: usize = 3_000_000;
/// The largest event stored as it is, below DynamoDB's 400 KB per item.
const MAX_EVENT_BYTES: usize = 350_000;
/// The condition on the lock item under which a write fenced by a lease goes ahead: still held,
/// same fence and owner, a format this build reads (`#held`, `#fence`, `#owner`, `#fv` with
/// `:true`, `:fence`, `:owner`, `:fv`).
const LEASE_HELD: &str = "#held = :true AND #fence = :fence AND #owner = :owner AND #fv <= :fv";

/// Keeps deployments, locks, queues and commands in one DynamoDB table shared by every process
/// and host that uses it.
///
/// # Table
///
/// One table with a string partition key `pk` and a string sort key `sk` (on-demand capacity is
/// enough: a deployment writes a few items per step). Items:
///
/// | pk | sk | what | attributes |
/// |---|---|---|---|
/// | `service#<service>` | `lock` | the service's lease | `owner`, `fence`, `expires_at`, `held`, `rev` |
/// | `service#<service>` | `deployment#<id>` | one [`DeploymentRecord`] | `record` (the record as JSON), `id`, `service`, `phase`, `owner`, `created_at`, `updated_at` |
/// | `service#<service>` | `queue#<id>` | a deployment waiting for the lock | `id`, `seq`, `expires_at` |
/// | `service#<service>` | `queue-seq` | the queue's arrival counter | `n` |
/// | `deployment#<id>` | `deployment` | which service deployment `<id>` belongs to | `service` |
/// | `deployment#<id>` | `command#<seq, 20 digits>` | one command sent to it | `seq`, `command`, `sent_at` |
/// | `deployment#<id>` | `event#<seq, 20 digits>` | one event of its log | `seq`, `event` (the event as JSON) |
///
/// Every item but the counter carries `format_version`; an item of a newer format, or whose
/// record does not parse, gives [`Error::Corrupt`] naming it (`dynamodb://TABLE/PK/SK`) and is
/// never overwritten. Times are Unix milliseconds from the store's clock.
///
/// # Writes
///
/// - The lock item changes only by conditional writes: taking it is a put conditioned on the
///   `rev` read just before (or on the item not existing), so of two racing owners one wins and
///   the other reads again and sees the lock held (or, under the same owner name, takes it over
///   with the next fence); renewal and release are updates conditioned on `held`, `fence` and
///   `owner` matching the caller's lease.
/// - A record is created and saved in a transaction with a condition check on the lock item
///   (held, same fence, same owner): a write from an owner whose lease was taken over is refused
///   with [`Error::Conflict`], atomically.
/// - Commands are numbered by a put conditioned on the next sequence number being free, so the
///   log has no gaps and a reader that has seen `n` never misses a later command.
/// - Events are put in transactions of up to 99 with the same condition check on the lock item,
///   so an owner whose lease was taken over adds none; each event's item is keyed by its `seq`, so
///   a retried append rewrites the same items.
///
/// # IAM
///
/// On the table: `dynamodb:GetItem`, `dynamodb:PutItem`, `dynamodb:UpdateItem`,
/// `dynamodb:DeleteItem`, `dynamodb:Query` and `dynamodb:ConditionCheckItem`. `create` and `save`
/// call `TransactWriteItems`, which IAM authorizes per contained operation (a condition check and
/// one or two puts), so it needs no action of its own.
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    clock: Clock,
}

impl std::fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbStore").field("table", &self.table).finish_non_exhaustive()
    }
}

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
    /// A store on `table`, with clients from `config` (see [`AwsConfig`](crate::AwsConfig)), on
    /// the system clock. The table must exist (see [the layout](DynamoDbStore#table)).
    pub fn new(config: &SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(config), table)
    }

    /// A store on `table` through an existing client.
    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), clock: system_clock() }
    }

    /// Reads `clock` for lease and queue times instead of the system clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn now(&self) -> u64 {
        (self.clock)().duration_since(UNIX_EPOCH).map_or(0, ms)
    }

    fn item_name(&self, pk: &str, sk: &str) -> String {
        format!("dynamodb://{}/{pk}/{sk}", self.table)
    }

    /// The name of a queried item of partition `pk`, once its format is one this build reads.
    fn readable(&self, pk: &str, item: &Item) -> Result<String> {
        let sk = item.get("sk").and_then(|v| v.as_s().ok()).map_or("", String::as_str);
        let name = self.item_name(pk, sk);
        check_version(item, &name)?;
        Ok(name)
    }

    fn table_name(&self) -> String {
        format!("table {}", self.table)
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", &self.item_name(pk, sk), e))?;
        Ok(out.item)
    }

    /// Every item of partition `pk` whose sort key lies in `[from, to]`, in sort-key order.
    async fn query(&self, pk: &str, from: &str, to: &str, newest_first: bool, limit: Option<i32>) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk("dynamodb:Query", &format!("{} partition {pk}", self.table_name()), e)
                })?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if limit.is_none_or(|l| items.len() < l as usize) => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

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
    async fn lease_refusal(&self, lease: &Lease) -> Result<Option<Error>> {
        let lock = self.read_lock(&lease.service).await?;
        Ok(lease_rules::check(lock.lease.as_ref(), lock.held, lease).err())
    }

    /// The condition check on the lock item that fences a record write.
    fn lease_check(&self, lease: &Lease) -> Result<TransactWriteItem> {
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
    async fn read_record(&self, service: &str, id: &str) -> Result<Option<DeploymentRecord>> {
        self.get(&service_pk(service), &record_sk(id)).await?.map(|item| self.parse_record(&item)).transpose()
    }

    /// The service deployment `id` belongs to, from its pointer item.
    async fn service_of(&self, id: &str) -> Result<Option<String>> {
        check_key("deployment id", id)?;
        let pk = deployment_pk(id);
        let Some(item) = self.get(&pk, POINTER_SK).await? else {
            return Ok(None);
        };
        let name = self.item_name(&pk, POINTER_SK);
        check_version(&item, &name)?;
        Ok(Some(string(&item, "service", &name)?))
    }

    /// Runs a transaction: `Ok(false)` if one of its conditions did not hold.
    async fn transact(&self, action: &'static str, resource: &str, items: Vec<TransactWriteItem>) -> Result<bool> {
        let call = self.client.transact_write_items().set_transact_items(Some(items)).send();
        Ok(Self::conditional(action, resource, call).await?.is_some())
    }

    /// Runs a conditional write: `Ok(false)` if its condition did not hold.
    async fn conditional<T, E>(
        action: &'static str,
        resource: &str,
        call: impl std::future::Future<Output = std::result::Result<T, aws_sdk_dynamodb::error::SdkError<E>>>,
    ) -> Result<Option<T>>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match call.await {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                let err = AwsError::from_sdk(action, resource, e);
                if err.is_condition_failed() {
                    Ok(None)
                } else {
                    Err(err.into())
                }
            }
        }
    }

    /// A transaction's put under `condition`, which may compare `#fv` with `:fv` (this build's
    /// format version).
    fn put(&self, item: Item, condition: &str) -> Result<Put> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        if condition.contains(":fv") {
            put = put
                .expression_attribute_names("#fv", "format_version")
                .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
        }
        put.build().map_err(|e| Error::permanent("aws", format!("cannot build a DynamoDB put: {e}")))
    }

    /// Deletes queue entries that expired (conditioned on their still being expired).
    async fn drop_expired(&self, pk: &str, sk: &str, now: u64) -> Result<()> {
        let name = self.item_name(pk, sk);
        Self::conditional(
            "dynamodb:DeleteItem",
            &name,
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(pk, sk)))
                .condition_expression("#exp <= :now")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_values(":now", n(now))
                .send(),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl StateStore for DynamoDbStore {
    async fn create(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
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

    async fn save(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
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

    async fn load(&self, id: &str) -> Result<DeploymentRecord> {
        let service = self.service_of(id).await?.ok_or_else(|| Error::not_found(format!("deployment {id}")))?;
        self.read_record(&service, id).await?.ok_or_else(|| Error::not_found(format!("deployment {id}")))
    }

    async fn history(&self, service: &str) -> Result<Vec<DeploymentRecord>> {
        check_key("service", service)?;
        let items = self.query(&service_pk(service), "deployment#", "deployment#\u{10FFFF}", false, None).await?;
        let mut records = items.iter().map(|item| self.parse_record(item)).collect::<Result<Vec<_>>>()?;
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    async fn acquire(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease> {
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

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
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

    async fn release(&self, lease: &Lease) -> Result<()> {
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

    async fn holder(&self, service: &str) -> Result<Option<Lease>> {
        check_key("service", service)?;
        let now = self.now();
        let lock = self.read_lock(service).await?;
        Ok(lease_rules::holder(lock.lease.as_ref(), lock.held, now))
    }

    async fn enqueue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>> {
        check_key("service", service)?;
        check_key("deployment id", id)?;
        let pk = service_pk(service);
        let sk = queue_sk(id);
        let name = self.item_name(&pk, &sk);
        let now = self.now();
        let expires = now + ms(ttl);
        // A live entry is refreshed in place and keeps its place in line.
        let refresh = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk, &sk)))
            .update_expression("SET #exp = :exp")
            .condition_expression("attribute_exists(pk) AND #exp > :now AND #fv <= :fv")
            .expression_attribute_names("#exp", "expires_at")
            .expression_attribute_names("#fv", "format_version")
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
        if Self::conditional("dynamodb:UpdateItem", &name, refresh.send()).await?.is_none() {
            // A new entry (or an expired one, which goes to the back): take the next number.
            let counter = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(&pk, QUEUE_SEQ_SK)))
                .update_expression("ADD #n :one")
                .expression_attribute_names("#n", "n")
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", &self.item_name(&pk, QUEUE_SEQ_SK), e))?;
            let counter_name = self.item_name(&pk, QUEUE_SEQ_SK);
            let seq = num(&counter.attributes.unwrap_or_default(), "n", &counter_name)?;
            let mut item = key(&pk, &sk);
            item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
            item.insert("id".into(), s(id));
            item.insert("seq".into(), n(seq));
            item.insert("expires_at".into(), n(expires));
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR (#exp <= :now AND #fv <= :fv)")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_names("#fv", "format_version")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":fv", n(u64::from(FORMAT_VERSION)));
            // Refused only if the same id was enqueued concurrently (or the entry is of a newer
            // format, which the listing below reports): either way the entry is there.
            Self::conditional("dynamodb:PutItem", &name, put.send()).await?;
        }
        let mut waiting = Vec::new();
        for item in self.query(&pk, "queue#", "queue#\u{10FFFF}", false, None).await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let name = self.item_name(&pk, &sk);
            check_version(&item, &name)?;
            let entry_expires = num(&item, "expires_at", &name)?;
            if entry_expires <= now {
                self.drop_expired(&pk, &sk, now).await?;
                continue;
            }
            waiting.push((num(&item, "seq", &name)?, string(&item, "id", &name)?));
        }
        waiting.sort();
        Ok(waiting.into_iter().map(|(_, id)| id).collect())
    }

    async fn dequeue(&self, service: &str, id: &str) -> Result<()> {
        check_key("service", service)?;
        check_key("deployment id", id)?;
        let pk = service_pk(service);
        let sk = queue_sk(id);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk, &sk)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:DeleteItem", &self.item_name(&pk, &sk), e))?;
        Ok(())
    }

    async fn send(&self, id: &str, command: Command) -> Result<u64> {
        if self.service_of(id).await?.is_none() {
            return Err(Error::not_found(format!("deployment {id}")));
        }
        let pk = deployment_pk(id);
        let text = serde_json::to_value(command).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        for _ in 0..MAX_RACES {
            let last = self.query(&pk, &command_sk(0), &command_sk(u64::MAX), true, Some(1)).await?;
            let last_seq = match last.first() {
                Some(item) => num(item, "seq", &self.item_name(&pk, "command#…"))?,
                None => 0,
            };
            let seq = last_seq + 1;
            let mut item = key(&pk, &command_sk(seq));
            item.insert("format_version".into(), n(u64::from(FORMAT_VERSION)));
            item.insert("seq".into(), n(seq));
            item.insert("command".into(), s(&text));
            item.insert("sent_at".into(), n(self.now()));
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)");
            if Self::conditional("dynamodb:PutItem", &self.item_name(&pk, &command_sk(seq)), put.send())
                .await?
                .is_some()
            {
                return Ok(seq);
            }
            // Another sender took this number: read the log's end again.
        }
        Err(Error::transient(
            "aws",
            format!("the command log of deployment {id} kept changing under {MAX_RACES} attempts"),
        ))
    }

    async fn commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>> {
        check_key("deployment id", id)?;
        let pk = deployment_pk(id);
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let items = self.query(&pk, &command_sk(from), &command_sk(u64::MAX), false, None).await?;
        items
            .iter()
            .map(|item| {
                let name = self.readable(&pk, item)?;
                let text = string(item, "command", &name)?;
                let command: Command = serde_json::from_value(serde_json::Value::String(text.clone()))
                    .map_err(|_| corrupt(&name, format!("unknown command {text:?}")))?;
                Ok(CommandRecord { seq: num(item, "seq", &name)?, command, sent_at: num(item, "sent_at", &name)? })
            })
            .collect()
    }

    async fn append_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()> {
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

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
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

fn service_pk(service: &str) -> String {
    format!("service#{service}")
}

fn deployment_pk(id: &str) -> String {
    format!("deployment#{id}")
}

fn record_sk(id: &str) -> String {
    format!("deployment#{id}")
}

fn queue_sk(id: &str) -> String {
    format!("queue#{id}")
}

fn command_sk(seq: u64) -> String {
    format!("command#{seq:020}")
}

fn event_sk(seq: u64) -> String {
    format!("event#{seq:020}")
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Keys must be non-empty (DynamoDB refuses empty key strings) and printable.
fn check_key(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(char::is_control) || value.len() > 512 {
        return Err(Error::invalid(what, format!("{value:?} cannot be a key: use 1 to 512 printable characters")));
    }
    Ok(())
}

fn corrupt(name: &str, reason: impl Into<String>) -> Error {
    Error::Corrupt { path: name.to_owned(), reason: reason.into() }
}

fn num(item: &Item, attr: &str, name: &str) -> Result<u64> {
    let value = item.get(attr).ok_or_else(|| corrupt(name, format!("no {attr} attribute")))?;
    value
        .as_n()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(name, format!("{attr} is not a whole number: {value:?}")))
}

fn string(item: &Item, attr: &str, name: &str) -> Result<String> {
    let value = item.get(attr).ok_or_else(|| corrupt(name, format!("no {attr} attribute")))?;
    value.as_s().cloned().map_err(|_| corrupt(name, format!("{attr} is not a string: {value:?}")))
}

fn check_version(item: &Item, name: &str) -> Result<()> {
    let version = num(item, "format_version", name)?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(corrupt(
            name,
            format!("written by a newer bluegreen (format {version}; this build reads up to {FORMAT_VERSION})"),
        ));
    }
    Ok(())
}
